"""``batch_predict``: render -> plan -> stage -> submit -> wait -> collect -> parse -> join.

Each stage is a function over one job's rows, so a pandas frame runs them in a loop and a Dask
frame can later map the same functions over partitions.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import config, engine, formats, multimodal, overrides, prompts, structured
from .errors import InputError, JobError
from .formats import lines
from .formats.lines import Frame
from .jobs import JobClient
from .locations import BigQueryLocation, GcsLocation
from .results import ResultBuilder, check_no_clash
from .staging import bigquery

log = logging.getLogger(__name__)

#: Service limits per job (spec §4): requests, and bytes of one input file.
MAX_REQUESTS_PER_JOB = 200_000
MAX_BYTES_PER_FILE = 1_000_000_000
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
ON_INVALID = ("raise", "skip")


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
               row_config: pa.ChunkedArray | None = None
               ) -> Iterator[tuple[np.ndarray, pa.ChunkedArray]]:
    """Each job's row positions and request lines for the rows ``send`` marks (with the
    ``carried`` columns, the file parts and the ``row_config`` items of those rows), built one
    job at a time.

    Jobs are planned from a lower bound of each line's size (a line over the limit is refused
    before the first job is built); a job whose escaped lines turn out larger than the byte
    limit is split again.
    """
    sent = np.flatnonzero(send)
    everything = len(sent) == len(send)

    def of_sent(values: pa.ChunkedArray) -> pa.ChunkedArray:
        return values if everything else values.filter(pa.array(send))

    sending = of_sent(texts)
    parts = file_plan.json_parts(sent) if file_plan else None
    config = of_sent(row_config) if row_config is not None else None
    floor = lines.min_line_sizes(pc.binary_length(sending).to_numpy(), frame)
    for extra in (parts, config):
        if extra is not None:
            floor = floor + pc.binary_length(extra).to_numpy()
    shards = plan(floor, sent, max_requests, MAX_BYTES_PER_FILE)
    con = engine.connect()
    for shard in shards:
        positions = sent[shard]
        requests = lines.request_lines(
            con, sending[shard], positions, frame,
            carried.take(pa.array(positions)) if carried is not None else None,
            parts[shard] if parts is not None else None,
            config[shard] if config is not None else None)
        sizes = pc.binary_length(requests).to_numpy()
        for piece in plan(sizes, positions, max_requests, MAX_BYTES_PER_FILE):
            yield positions[piece], requests.slice(piece.start, piece.stop - piece.start)


def new_run_id() -> str:
    """A sortable, unique run id usable in paths, display names and labels."""
    return f"run-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def _labels(user_labels: Mapping[str, str] | None, run_id: str) -> dict[str, str]:
    labels = dict(user_labels or {})
    for key, value in labels.items():
        if not (isinstance(key, str) and re.match(r"^[a-z][a-z0-9_-]{0,62}$", key)
                and isinstance(value, str) and _LABEL_VALUE.match(value)):
            raise InputError(f"label {key!r}: {value!r} is not a valid Vertex AI label: keys "
                             "start with a lowercase letter; keys and values use lowercase "
                             "letters, digits, '_' and '-', at most 63 characters.")
    labels["pdbatch-run"] = run_id
    return labels


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
            again, in up to this many follow-up passes, stopping when a pass fixes none;
            adds an ``attempts`` column.
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

    Returns:
        A copy of ``df`` with the same index and order plus the columns ``text``,
        ``finish_reason``, ``status`` ("" = ok), ``error_code``, ``error_message``,
        ``prompt_tokens``, ``output_tokens``, ``response`` (unless left out) and ``job``.

    Raises:
        InputError: bad arguments or rows, before anything is uploaded.
        JobError: a job ended FAILED, CANCELLED, EXPIRED or PAUSED.
    """
    arguments = {k: v for k, v in locals().items() if k != "df"}  # for a re-ask
    # --- checks: everything below may cost money, nothing above does
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"batch_predict needs a pandas DataFrame, got {type(df).__name__}.")
    if on_invalid not in ON_INVALID:
        raise InputError(f"on_invalid={on_invalid!r}: choose one of {ON_INVALID}.")
    if not (isinstance(max_retries, int) and 0 <= max_retries <= 10):
        raise InputError("max_retries must be a whole number from 0 to 10.")
    if not (isinstance(max_requests_per_job, int)
            and 0 < max_requests_per_job <= MAX_REQUESTS_PER_JOB):
        raise InputError(f"max_requests_per_job must be between 1 and {MAX_REQUESTS_PER_JOB}.")
    settings = config.resolve(project, location, staging, api_endpoint, transport, output)
    schema = structured.schema_of(response_schema) if response_schema is not None else None
    check_no_clash(df, result_prefix, include_response,
                   (structured.column_names(schema, expand) if schema else [])
                   + (["attempts"] if max_retries else []))
    carried = bigquery.carried_columns(df, carry)
    if schema and formats.resolve(model).name != "gemini":
        raise InputError("response_schema is supported for Gemini models in this version.")
    request_config = structured.generation_config(generation_config, schema) if schema \
        else generation_config
    family = formats.resolve(model, system_instruction, request_config, safety_settings,
                             row_config=bool(config_cols))
    bq = _bigquery(settings, credentials)
    if bq is not None and family.name != "gemini":
        raise InputError(f"BigQuery staging and output support Gemini models in this version; "
                         f"stage {model!r} on Cloud Storage (staging='gs://...').")
    texts, reasons = prompts.render(df, prompt_col, prompt)
    file_plan = _file_plan(df, files, reasons, family, settings)
    row_config = _row_config(df, config_cols, request_config, reasons)
    if on_invalid == "raise" and (reasons != "").any():
        raise InputError(prompts.describe_invalid(df, reasons))
    run_id = new_run_id()
    job_labels = _labels(labels, run_id)

    results = ResultBuilder(len(df), include_response)
    skipped = np.flatnonzero(reasons != "")
    results.skip(skipped, reasons[skipped])
    send = reasons == ""
    if dedup and not carried:
        copies, originals = _duplicates(texts, send, file_plan, row_config)
        send[copies] = False
        results.copy_rows(copies, originals)
    if len(skipped) == len(df):
        log.warning("no row has a prompt to send; no job was created")
        out = results.join(df, result_prefix)
        if schema:
            structured.add_columns(out, schema, result_prefix, expand, engine.connect())
        return out

    # --- stage and submit, one job's lines in memory at a time
    client = JobClient(settings, credentials)
    inputs = _location(settings.staging, run_id, family, bq, job_labels, carried)
    outputs = (inputs if settings.output_location == settings.staging
               else _location(settings.output_location, run_id, family, bq, job_labels,
                              carried))
    carried_values = (pa.Table.from_pandas(df[[f.name for f in carried]], preserve_index=False)
                      if carried else None)
    jobs: list[tuple[str, np.ndarray]] = []
    if file_plan and file_plan.local:
        uploads = inputs if isinstance(inputs, GcsLocation) else outputs
        uploads.staged += file_plan.upload(uploads.fs, uploads.folder)
    for positions, requests in job_inputs(texts, send, family.frame, max_requests_per_job,
                                          carried_values, file_plan, row_config):
        number = len(jobs)
        name = client.submit(f"pdbatch-{run_id}-{number:05d}", family.resource,
                             inputs.stage(number, requests), outputs.destination(number),
                             job_labels)
        jobs.append((name, positions))
        del requests
    sent = int(send.sum())
    log.info("run %s: %d requests for %d rows in %d job(s), staged in %s", run_id, sent,
             len(df) - len(skipped), len(jobs), inputs)

    # --- wait, then collect, parse and join; then remove the staged inputs
    infos = _wait_all(client, [name for name, _ in jobs], sent, progress)
    ended = [i for i in infos if not i.succeeded]
    if ended:
        raise JobError(_ended_message(ended, infos, inputs, outputs))
    con = engine.connect()
    for number, (info, (_, positions)) in enumerate(zip(infos, jobs, strict=True)):
        results.add_job(info.name, positions,
                        outputs.collect(con, number, info.output_dir, include_response))
    if not keep_staging:
        inputs.clean_up()
        if outputs is not inputs:
            outputs.clean_up()  # uploaded files, when they went to the output location
    out = results.join(df, result_prefix)
    out.attrs["pdbatch_run"] = run_id  # read_results(run=...) reads these answers again
    if schema:
        structured.add_columns(out, schema, result_prefix, expand, con)
        if reask_invalid:
            _reask(df, out, arguments)
    if max_retries:
        _retry(df, out, arguments, sent_rows=reasons == "")
    return out


#: Row failures worth asking again: quota and server errors (a 400 would fail the same way).
_TRANSIENT = {429, 500, 502, 503, 504}


def _retry(df: pd.DataFrame, out: pd.DataFrame, arguments: dict, sent_rows: np.ndarray) -> None:
    """Ask failed (transient) and missing rows again, pass after pass, and count attempts."""
    prefix = arguments["result_prefix"]
    attempts = np.where(sent_rows, 1, 0)
    for _ in range(arguments["max_retries"]):
        status = out[prefix + "status"].fillna("").to_numpy(dtype=object)
        codes = out[prefix + "error_code"].to_numpy(dtype=object, na_value=None)
        retryable = [s.startswith("missing: ") or c in _TRANSIENT
                     for s, c in zip(status, codes, strict=True)]
        again = np.flatnonzero(sent_rows & np.array(retryable, dtype=bool))
        if not len(again):
            break
        log.info("asking %d failed or missing rows again", len(again))
        try:
            retry = batch_predict(df.iloc[again],
                                  **{**arguments, "max_retries": 0, "progress": False})
        except JobError as err:  # keep the answers already paid for
            log.warning("a retry pass ended without results; keeping earlier answers: %s", err)
            break
        attempts[again] += 1
        fixed = retry[prefix + "status"].eq("").fillna(False).to_numpy(dtype=bool)
        for column in retry.columns.difference(df.columns, sort=False):
            out.iloc[again, out.columns.get_loc(column)] = retry[column].to_numpy()
        if not fixed.any():
            log.warning("a retry pass answered none of %d rows; stopping", len(again))
            break
    out[prefix + "attempts"] = pd.array(attempts, dtype="Int64")


def _reask(df: pd.DataFrame, out: pd.DataFrame, arguments: dict) -> None:
    """Ask the rows with an ``invalid: ...`` answer once more, and keep the new answers."""
    status = out[arguments["result_prefix"] + "status"]
    again = np.flatnonzero(status.str.startswith("invalid: ").fillna(False).to_numpy())
    if not len(again):
        return
    log.info("asking %d rows again whose answers did not fit response_schema", len(again))
    retry = batch_predict(df.iloc[again], **{**arguments, "reask_invalid": False})
    for column in retry.columns.difference(df.columns, sort=False):
        out.iloc[again, out.columns.get_loc(column)] = retry[column].to_numpy()


def _duplicates(texts: pa.ChunkedArray, send: np.ndarray, file_plan, row_config
                ) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose request repeats an earlier row's (same prompt, files and settings), and the
    earlier rows they repeat. Found by a DuckDB hash of each request, then confirmed value by
    value (only rows whose hashes meet are compared)."""
    rows = np.flatnonzero(send)
    keep = None if len(rows) == len(send) else pa.array(send)
    key = {"prompt": texts if keep is None else texts.filter(keep)}
    if file_plan is not None:
        key["parts"] = file_plan.json_parts(rows)
    if row_config is not None:
        key["config"] = row_config if keep is None else row_config.filter(keep)
    con = engine.connect()
    con.register("pdbatch_keys", pa.table(key))
    names = ", ".join(key)  # our own column names: prompt, parts, config
    hashes = con.sql(f"SELECT hash({names}) AS h FROM pdbatch_keys").to_arrow_table()
    hashes = hashes.column("h").to_numpy()
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    copy = np.flatnonzero(first[inverse] != np.arange(len(rows)))
    if not len(copy):
        return copy, copy
    original = first[inverse][copy]
    table = pa.table(key).combine_chunks()
    same = np.ones(len(copy), dtype=bool)
    for column in table.columns:  # a hash collision is not a duplicate
        same &= pc.equal(column.take(pa.array(copy)),
                         column.take(pa.array(original))).to_numpy(zero_copy_only=False)
    return rows[copy[same]], rows[original[same]]


def _row_config(df, config_cols, request_config, reasons) -> pa.ChunkedArray | None:
    """Each row's own generationConfig items, as JSON text; their problems become row
    reasons."""
    if not config_cols:
        return None
    table = overrides.row_config(df, config_cols, request_config, reasons)
    return lines.json_items(engine.connect(), table, "," if request_config else "")


def _file_plan(df, files, reasons, family, settings) -> multimodal.FilePlan | None:
    """The checked file columns; their problems become row reasons."""
    if not files:
        return None
    if not family.frame.close_part:
        raise InputError("files= is supported for Gemini models in this version.")
    file_plan = multimodal.plan(df, files, reasons)
    if file_plan.local and not any(u.startswith("gs://") for u in
                                   (settings.staging, settings.output_location)):
        raise InputError("Local files and bytes are uploaded to Cloud Storage before the run: "
                         "pass a gs:// staging or output location, or use gs:// URIs.")
    return file_plan


def _bigquery(settings: config.Settings, credentials):
    """A BigQuery client when the run stages or writes there, after checking its datasets;
    None otherwise."""
    names = {"staging": settings.staging, "output": settings.output_location}
    used = {name: uri for name, uri in names.items() if uri.startswith("bq://")}
    if not used:
        return None
    bq = bigquery.client(settings.project, credentials)
    for name, uri in used.items():
        bigquery.check_dataset(bq, uri, settings.location, name)
    return bq


def _location(uri: str, run_id: str, family: formats.Family, bq, labels: dict[str, str],
              carried: list):
    if uri.startswith("bq://"):
        return BigQueryLocation(uri, run_id, family.parser, bq, labels, carried)
    return GcsLocation(uri, run_id, family.parser)


def _wait_all(client, names: list[str], rows: int, progress: bool):
    from tqdm.auto import tqdm

    bar = tqdm(total=rows, unit="row", desc="batch prediction", disable=not progress)
    infos = []
    try:
        for name in names:
            info = client.wait(name, on_poll=lambda i: bar.set_postfix_str(
                f"{len(infos) + 1}/{len(names)} {i.state.removeprefix('JOB_STATE_').lower()}"))
            bar.update(info.successful + info.failed)
            infos.append(info)
    finally:
        bar.close()
    return infos


def _ended_message(ended, infos, inputs, outputs) -> str:
    lines = [f"{len(ended)} of {len(infos)} batch job(s) ended without results:"]
    for info in ended:
        error = f": {info.error_message} (code {info.error_code})" if info.error_message else ""
        lines.append(f"  {info.name} {info.state}{error}")
    lines.append(f"Inputs are in {inputs}; any partial outputs in {outputs}.")
    return "\n".join(lines)
