"""``batch_predict`` and ``submit``: prepare -> (re-attach or) plan -> stage -> submit ->
wait -> collect -> parse -> join, then follow-up passes (re-asks and retries).

A run is remembered in its staging location (``runstore``) under its fingerprint before its
first job is created, and each job is recorded as soon as it exists, so the same call made
again re-attaches instead of paying twice. Each stage is a function over one job's rows, so a
pandas frame runs them in a loop and a Dask frame can later map the same functions over
partitions.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from functools import partial

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import config, costs, engine, multimodal, runstore, structured
from .batchrun import BatchRun
from .errors import InputError, JobError
from .formats import lines
from .formats.lines import Frame
from .jobs import JobClient
from .locations import GcsLocation
from .prepare import MAX_REQUESTS_PER_JOB, Prepared, of_rows, prepare

log = logging.getLogger(__name__)

#: Service limit of bytes per input file (spec §4); requests per job: MAX_REQUESTS_PER_JOB.
MAX_BYTES_PER_FILE = 1_000_000_000
_NO_STAGING = "Pass staging= (the run's staging location) or set PDBATCH_STAGING."


def plan(sizes: np.ndarray, rows: np.ndarray, max_requests: int, max_bytes: int
         ) -> list[slice]:
    """Consecutive slices of the lines (of ``sizes`` bytes, for frame ``rows``) within the
    per-job request and byte limits."""
    too_big = np.flatnonzero(sizes > max_bytes)
    if len(too_big):
        row = int(rows[too_big[0]])
        raise InputError(f"The request for row {row} is at least {int(sizes[too_big[0]])} bytes, "
                         f"over the {max_bytes}-byte input file limit; shorten its prompt.")
    ends = np.cumsum(sizes)
    shards, start = [], 0
    while start < len(sizes):
        budget = (ends[start - 1] if start else 0) + max_bytes
        stop = min(start + max_requests, int(np.searchsorted(ends, budget, side="right")))
        shards.append(slice(start, stop))
        start = stop
    return shards


def job_inputs(texts: pa.ChunkedArray, send: np.ndarray, frame: Frame, max_requests: int,
               carried: pa.Table | None = None, file_plan: multimodal.FilePlan | None = None,
               row_config: pa.ChunkedArray | None = None, key_offset: int = 0
               ) -> Iterator[tuple[np.ndarray, pa.ChunkedArray]]:
    """Each job's row positions and request lines for the rows ``send`` marks (with the
    ``carried`` columns, the file parts and the ``row_config`` items of those rows), built one
    job at a time. A line's row key is its position plus ``key_offset``.

    Jobs are planned from a lower bound of each line's size (a line over the limit is refused
    before the first job is built); a job whose escaped lines turn out larger than the byte
    limit is split again.
    """
    sent = np.flatnonzero(send)
    sending = of_rows(texts, send)
    parts = file_plan.json_parts(sent) if file_plan else None
    config = of_rows(row_config, send) if row_config is not None else None
    floor = lines.min_line_sizes(pc.binary_length(sending).to_numpy(), frame)
    for extra in (parts, config):
        if extra is not None:
            floor = floor + pc.binary_length(extra).to_numpy()
    shards = plan(floor, sent, max_requests, MAX_BYTES_PER_FILE)
    con = engine.connect()
    for shard in shards:
        positions = sent[shard]
        requests = lines.request_lines(
            con, sending[shard], positions + key_offset, frame,
            carried.take(pa.array(positions)) if carried is not None else None,
            parts[shard] if parts is not None else None,
            config[shard] if config is not None else None)
        sizes = pc.binary_length(requests).to_numpy()
        for piece in plan(sizes, positions, max_requests, MAX_BYTES_PER_FILE):
            yield positions[piece], requests.slice(piece.start, piece.stop - piece.start)


def new_run_id() -> str:
    """A sortable, unique run id usable in paths, display names and labels."""
    return f"run-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def new_manifest(run_id: str, fingerprint: str, settings: config.Settings, arguments: dict,
                 resource: str, rows: int, requests: int, tag: str = "", **extra) -> dict:
    """A new run's manifest (see ``runstore``), with no job yet."""
    labels = {**(arguments["labels"] or {}), "pdbatch-run": run_id,
              "pdbatch-fingerprint": fingerprint}
    return {
        "run": run_id, "fingerprint": fingerprint, "pass": tag,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": resource.rsplit("/", 1)[-1],
        "project": settings.project, "location": settings.location,
        "staging": settings.staging, "output": settings.output,
        "rows": rows, "requests": requests, "labels": labels,
        "options": _options(arguments), **extra, "jobs": [], "submitted": False,
    }


def create_job(client: JobClient, store, manifest: dict, number: int, resource: str,
               stage: Callable[[], dict], output_config: dict, resumed: bool,
               cap: int | None, **entry) -> None:
    """Create job ``number`` of a run and record it in the manifest at once. ``stage()`` stages
    its input and gives the input config; it is not called when ``resumed`` and an earlier
    attempt created the job (found by display name). With ``cap``, first wait until fewer
    than that many of the run's jobs are unfinished."""
    if cap:
        client.wait([job["name"] for job in manifest["jobs"]], running_at_most=cap - 1)
    display = f"pdbatch-{manifest['run']}-{number:05d}"
    name = (resumed and client.find(display, manifest["run"])) or client.submit(
        display, resource, stage(), output_config, manifest["labels"])
    manifest["jobs"].append({"number": number, "name": name, **entry})
    store.save(manifest)


def batch_predict(
    df: pd.DataFrame,
    *,
    prompt_col: str | None = None,
    prompt: str | None = None,
    model: str = "gemini-2.5-flash",
    staging: str | None = None,
    project: str | None = None,
    location: str | None = None,
    system_instruction: str | None = None,
    generation_config: Mapping | None = None,
    safety_settings: Sequence[Mapping] | None = None,
    config_cols: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    on_invalid: str = "raise",
    result_prefix: str = "",
    include_response: bool = True,
    files: Mapping[str, str | None] | None = None,
    response_schema=None,
    expand: bool = True,
    reask_invalid: bool = False,
    max_retries: int = 0,
    dedup: bool = True,
    carry: Sequence[str] | None = None,
    output: str | None = None,
    keep_staging: bool = False,
    api_endpoint: str | None = None,
    transport: str = "rest",
    credentials=None,
    max_requests_per_job: int = MAX_REQUESTS_PER_JOB,
    progress: bool = True,
    force: bool = False,
    max_cost: float | None = None,
    max_rows: int | None = None,
    retry_expired: bool = False,
    cancel_on_interrupt: bool = False,
    max_concurrent_jobs: int | None = None,
) -> pd.DataFrame:
    """Answer every row of ``df`` with a Vertex AI batch prediction job; return the frame
    with result columns added.

    Args:
        prompt_col: column holding each row's prompt text. Or:
        prompt: a template such as ``"Summarise {title}: {body}"`` (plain ``{column}`` fields).
        model: a Gemini model, e.g. ``"gemini-2.5-flash"`` or a publisher/tuned resource name.
        staging: ``gs://bucket/prefix`` under which each run gets its own folder, or
            ``bq://project.dataset`` where each job gets an input and an output table
            (default: ``PDBATCH_STAGING``).
        project, location: default ``GOOGLE_CLOUD_PROJECT`` / ``GOOGLE_CLOUD_LOCATION``.
        system_instruction: text sent as every request's ``systemInstruction``.
        generation_config: e.g. ``{"temperature": 0.2, "max_output_tokens": 256}``; keys may be
            snake_case or camelCase and are sent as REST camelCase.
        files: Gemini: columns of files to send after each row's text, with their MIME type
            (None: from the extension), e.g. ``{"image": "image/jpeg"}``; cells are ``gs://``
            URIs, local paths or bytes (uploaded to the run's folder first).
        response_schema: a pydantic model class or a JSON Schema dict of an object (Gemini):
            every request asks for JSON of that shape, and each top-level field becomes a typed
            result column (``expand=False``: one ``parsed`` column of dicts). Answers that do not
            fit get the status ``invalid: ...``; ``reask_invalid=True`` asks those rows once
            more.
        config_cols: Gemini: settings taken per row from columns, e.g.
            ``{"temperature": "temp"}`` (temperature, top_p, top_k, max_output_tokens, seed,
            presence_penalty, frequency_penalty).
        safety_settings: Gemini: e.g. ``[{"category": "HARM_CATEGORY_HATE_SPEECH",
            "threshold": "BLOCK_ONLY_HIGH"}]``, sent as every request's ``safetySettings``.
        labels: extra Vertex AI labels for the jobs (``pdbatch-run`` is always added).
        on_invalid: ``"raise"`` (default) refuses a frame with null, empty or non-string
            prompts; ``"skip"`` sends the other rows and returns these with status
            ``"skipped: ..."``.
        result_prefix: prefix for the result column names, e.g. ``"llm_"``.
        include_response: keep each row's raw response as JSON text in ``response``; False
            leaves that column out (often the largest: about half the result's memory).
        max_retries: ask rows that failed with a transient error (429, 5xx) or got no answer
            (also the unanswered rows of a job that FAILED part way) again, in up to this many
            follow-up passes, stopping when a pass fixes none; adds an ``attempts`` column.
        dedup: send identical requests (same prompt, files and per-row settings) once and give
            every row that asked the same answer (not with ``carry``: then every row is sent,
            so that the output holds each row's carried values).
        carry: columns copied into every request line or input-table row, which the service
            passes through to the output (integers, floats, booleans or strings).
        output: where the jobs write, if not where they read: ``gs://bucket/prefix`` or
            ``bq://project.dataset`` (JSONL in with a table out, or a table in with JSONL out).
        keep_staging: keep the staged inputs of a successful run (removed by default; outputs
            are always kept).
        api_endpoint: Vertex AI endpoint (default ``GOOGLE_VERTEX_BASE_URL``, else the
            regional host); ``http://`` endpoints get anonymous credentials.
        transport: ``"rest"`` (default) or ``"grpc"``.
        credentials: google-auth credentials (default: application default credentials).
        max_requests_per_job: split larger frames into several jobs (service limit 200,000).
        progress: show a progress bar while jobs run.
        force: start a new run even if the same call (same frame and arguments) already made
            one in this staging location; by default the call re-attaches to that run: it
            waits for its jobs if they still run, or only reads their answers.
        max_cost: refuse (or, in a terminal or notebook, ask before) a run whose estimated
            batch cost in USD is higher (see ``df.gemini.estimate``).
        max_rows: the same for a run of more requests than this.
        retry_expired: with ``max_retries``, also ask the rows of EXPIRED jobs again
            (default: a JobError).
        cancel_on_interrupt: on Ctrl-C or a notebook interrupt while waiting, cancel the jobs
            (default: leave them running and log how to re-attach).
        max_concurrent_jobs: create a job only while fewer than this many of the run's jobs
            are unfinished (default: all at once, within the project's quota).

    A Dask DataFrame gets a lazy Dask DataFrame back (see docs/dask.md).

    Returns:
        A copy of ``df`` with the same index and order plus the columns ``text``,
        ``finish_reason``, ``status`` ("" = ok), ``error_code``, ``error_message``,
        ``prompt_tokens``, ``output_tokens``, ``response`` (unless left out) and ``job``.

    Raises:
        InputError: bad arguments or rows, or a run over ``max_cost``/``max_rows``, before
            anything is uploaded.
        JobError: a job ended FAILED, CANCELLED, EXPIRED or PAUSED (see ``max_retries``);
            its ``.result`` holds the answers written before.
    """
    arguments = {k: v for k, v in locals().items() if k != "df"}
    if _is_dask(df):  # a lazy result
        from . import dask as on_dask

        return on_dask.batch_predict(df, **arguments)
    return _start(prepare(df, arguments)).result()


def submit(df: pd.DataFrame, **options) -> BatchRun:
    """Like ``batch_predict`` (same arguments), but returns as soon as the jobs exist: a
    ``BatchRun`` with ``status()``, ``wait()``, ``result()`` and ``cancel()``.

    The run is recorded in its staging location: ``pdbatch.attach(run.id, staging=...)`` picks
    it up in another process, and the same ``submit`` or ``batch_predict`` call made again
    re-attaches to it. A Dask DataFrame is staged and its jobs created now (on the workers);
    ``result()`` is then the lazy frame."""
    if _is_dask(df):
        from . import dask as on_dask

        return on_dask.submit(df, **options)
    return _start(prepare(df, _arguments(df, options)))


def estimate(df: pd.DataFrame, *, output_tokens: int | None = None,
             prices: Mapping[str, tuple[float, float]] | None = None,
             count_tokens: bool = True, **options) -> costs.Estimate:
    """What ``batch_predict`` with these ``options`` would send and cost: rows, unique
    requests, input tokens (countTokens on a sample when the API answers and
    ``count_tokens``, else about 4 characters per token), ``output_tokens`` per request
    (default: ``max_output_tokens``, else 256) and the batch cost in USD from a dated price
    table (``pdbatch.costs.PRICES``; ``prices={"model": (input, output)}`` per million
    tokens overrides it). Nothing is uploaded or submitted."""
    prepared = prepare(df, _arguments(df, options))
    return costs.estimate(prepared, output_tokens, dict(prices or {}), count_tokens)


def attach(run: str, *, staging: str | None = None, project: str | None = None,
           location: str | None = None, api_endpoint: str | None = None,
           transport: str = "rest", credentials=None) -> BatchRun:
    """The ``BatchRun`` of an earlier ``submit`` or ``batch_predict``, from its run id
    (``run.id``, ``out.attrs["pdbatch_run"]``) and the staging location it was made in
    (default ``PDBATCH_STAGING``), or from one of its jobs' resource names (the staging
    location is then read from the job). ``result(df)`` then needs the frame it was made
    from."""
    if isinstance(run, str) and run.startswith("projects/"):
        match = re.match(r"^projects/([^/]+)/locations/([^/]+)/batchPredictionJobs/\d+$", run)
        if not match:
            raise InputError(f"{run!r} is not a batch prediction job name such as "
                             "'projects/P/locations/L/batchPredictionJobs/123'.")
        settings = config.Settings(match[1], match[2], "", config.endpoint(
            api_endpoint, match[2]), transport)
        job = JobClient(settings, credentials).get(run)
        run_id = job.labels.get("pdbatch-run", "")
        if not runstore.RUN_ID.match(run_id):
            raise InputError(f"{run} was not made by pdbatch (it has no pdbatch-run label).")
        staging = staging or _staging_of(job.input_uri, run_id)
    elif isinstance(run, str) and runstore.RUN_ID.match(run):
        run_id = run
    else:
        raise InputError(f"run={run!r} is neither a pdbatch run id such as "
                         "'run-20261121-183000-a1b2c3' nor a batch prediction job name.")
    where = config.given_or_environment(staging, "staging", _NO_STAGING)
    manifest = runstore.open_store(where, credentials=credentials).load(run_id)
    if manifest is None:
        raise InputError(f"No run {run_id} in {where}: pass staging= where it was made.")
    settings = config.resolve(project or manifest["project"], location or manifest["location"],
                              where, api_endpoint, transport, manifest["output"])
    return BatchRun(manifest, settings, credentials, follow_up=_follow_up)


def runs(staging: str | None = None, credentials=None) -> pd.DataFrame:
    """The runs recorded in a staging location (default ``PDBATCH_STAGING``), newest first:
    run id, creation time, model, rows, requests, jobs, whether every job was submitted, and
    the fingerprint. ``pdbatch.attach(run_id, staging=...)`` gives a run's handle."""
    where = config.given_or_environment(staging, "staging", _NO_STAGING)
    store = runstore.open_store(where, credentials=credentials)
    found = [m for m in map(store.load, store.run_ids()) if m is not None]
    columns = ["run", "created", "model", "rows", "requests", "jobs", "submitted",
               "fingerprint"]
    table = pd.DataFrame([{**m, "jobs": len(m["jobs"])} for m in found],
                         columns=columns)
    return table.sort_values("created", ascending=False, ignore_index=True)


def _is_dask(df) -> bool:
    """A Dask DataFrame (told apart without importing Dask)."""
    return hasattr(df, "__dask_graph__") and hasattr(df, "_meta")


def _arguments(df: pd.DataFrame, options: dict) -> dict:
    """``options`` as ``batch_predict``'s arguments, defaults filled in; a TypeError names
    an unknown one."""
    bound = inspect.signature(batch_predict).bind(df, **options)
    bound.apply_defaults()
    return {k: v for k, v in bound.arguments.items() if k != "df"}


def _staging_of(input_uri: str, run_id: str) -> str | None:
    """The staging location of a job's input: ``gs://.../<run>/input-N.jsonl`` or
    ``bq://project.dataset.pdbatch_<run>_input_N``."""
    folder = f"/{run_id}/"
    if input_uri.startswith("gs://") and folder in input_uri:
        return input_uri[:input_uri.index(folder)]
    if input_uri.startswith("bq://"):
        return input_uri.rsplit(".", 1)[0]
    return None


def _start(prepared: Prepared) -> BatchRun:
    """The run of a prepared call: the one this call already made (unless ``force``), else a
    new one, with every job submitted."""
    a, settings = prepared.arguments, prepared.settings
    store = runstore.open_store(settings.staging, prepared.bq)
    manifest = None
    if not a["force"] and prepared.send.any():
        run_id = store.find(prepared.fingerprint)
        manifest = store.load(run_id) if run_id else None
        if manifest is not None:
            log.info("re-attaching to %s, made by the same call (force=True starts afresh)",
                     run_id)
    resumed = manifest is not None
    if not resumed:
        if a["max_cost"] is not None or a["max_rows"] is not None:
            costs.guard(costs.estimate(prepared, count_tokens=a["max_cost"] is not None),
                        a["max_cost"], a["max_rows"])
        run_id = new_run_id()
        manifest = new_manifest(run_id, prepared.fingerprint, settings, a,
                                prepared.family.resource, len(prepared.df),
                                int(prepared.send.sum()), prepared.tag)
        if not prepared.send.any():
            log.warning("no row has a prompt to send; no job was created")
            manifest["submitted"] = True
            return BatchRun(manifest, settings, a["credentials"], prepared, _follow_up)
        store.save(manifest)
        store.link(prepared.fingerprint, run_id)
    run = BatchRun(manifest, settings, a["credentials"], prepared, _follow_up)
    if not manifest["submitted"]:
        _submit_jobs(run, prepared, store, resumed)
    return run


def _submit_jobs(run: BatchRun, prepared: Prepared, store, resumed: bool) -> None:
    """Stage and create the run's jobs that do not exist yet, recording each in the manifest
    as soon as it exists (when ``resumed``, a job created by an earlier attempt that died
    before recording it is found by its display name)."""
    manifest, a = run.manifest, prepared.arguments
    inputs, outputs = run.locations(prepared)
    plan_ = prepared.file_plan
    if plan_ and plan_.local:
        uploads = inputs if isinstance(inputs, GcsLocation) else outputs
        plan_.upload(uploads.fs, uploads.folder)
    first, known = 0, len(manifest["jobs"])
    for number, (positions, requests) in enumerate(job_inputs(
            prepared.texts, prepared.send, prepared.family.frame, a["max_requests_per_job"],
            prepared.carried_values(), plan_, prepared.row_config)):
        if number >= known:
            create_job(run.client(), store, manifest, number, prepared.family.resource,
                       partial(inputs.stage, number, requests), outputs.destination(number),
                       resumed, a["max_concurrent_jobs"], first=first, count=len(positions))
        first += len(positions)
        del requests
    manifest["submitted"] = True
    store.save(manifest)
    log.info("run %s: %d requests for %d rows in %d job(s), staged in %s", run.id,
             manifest["requests"], len(prepared.df), len(manifest["jobs"]), inputs)


def _options(arguments: dict) -> dict:
    """The call's arguments as JSON, for ``attach``: without credentials, and with a response
    schema as its JSON Schema."""
    options = {k: v for k, v in arguments.items() if k != "credentials"}
    if arguments["response_schema"] is not None:
        options["response_schema"] = structured.schema_of(arguments["response_schema"]).json_schema
    return json.loads(json.dumps(options, default=str))


def _follow_up(prepared: Prepared, out: pd.DataFrame) -> None:
    """The passes after a run: re-ask answers that did not fit the schema, then retry failed
    and missing rows."""
    a = prepared.arguments
    if prepared.schema and a["reask_invalid"]:
        _reask(prepared, out)
    if a["max_retries"]:
        _retry(prepared, out)


#: Row failures worth asking again: quota and server errors (a 400 would fail the same way).
_TRANSIENT = {429, 500, 502, 503, 504}


def _again(prepared: Prepared, rows: np.ndarray, tag: str, **changes) -> pd.DataFrame:
    """Ask ``rows`` of the frame again in a run of their own (no guard, no progress bar);
    the answers written before a job ended when it ended without results."""
    arguments = {**prepared.arguments, "progress": False, "max_cost": None, "max_rows": None,
                 **changes}
    try:
        return _start(prepare(prepared.df.iloc[rows], arguments, f"{prepared.tag}/{tag}")
                      ).result()
    except JobError as err:
        if err.result is None:
            raise
        log.warning("a follow-up pass ended without results for some rows: %s", err)
        return err.result


def _retry(prepared: Prepared, out: pd.DataFrame) -> None:
    """Ask failed (transient) and missing rows again, pass after pass, and count attempts."""
    prefix = prepared.arguments["result_prefix"]
    sent_rows = prepared.reasons == ""
    attempts = np.where(sent_rows, 1, 0)
    for number in range(1, prepared.arguments["max_retries"] + 1):
        status = out[prefix + "status"].fillna("").to_numpy(dtype=object)
        codes = out[prefix + "error_code"].to_numpy(dtype=object, na_value=None)
        retryable = [s.startswith("missing: ") or c in _TRANSIENT
                     for s, c in zip(status, codes, strict=True)]
        again = np.flatnonzero(sent_rows & np.array(retryable, dtype=bool))
        if not len(again):
            break
        log.info("asking %d failed or missing rows again", len(again))
        retry = _again(prepared, again, f"retry-{number}", max_retries=0)
        attempts[again] += 1
        fixed = retry[prefix + "status"].eq("").fillna(False).to_numpy(dtype=bool)
        for column in retry.columns.difference(prepared.df.columns, sort=False):
            out.iloc[again, out.columns.get_loc(column)] = retry[column].to_numpy()
        if not fixed.any():
            log.warning("a retry pass answered none of %d rows; stopping", len(again))
            break
    out[prefix + "attempts"] = pd.array(attempts, dtype="Int64")


def _reask(prepared: Prepared, out: pd.DataFrame) -> None:
    """Ask the rows with an ``invalid: ...`` answer once more, and keep the new answers."""
    status = out[prepared.arguments["result_prefix"] + "status"]
    again = np.flatnonzero(status.str.startswith("invalid: ").fillna(False).to_numpy())
    if not len(again):
        return
    log.info("asking %d rows again whose answers did not fit response_schema", len(again))
    retry = _again(prepared, again, "reask", reask_invalid=False, max_retries=0)
    for column in retry.columns.difference(prepared.df.columns, sort=False):
        out.iloc[again, out.columns.get_loc(column)] = retry[column].to_numpy()
