"""The public functions: ``batch_predict``, ``submit``, ``estimate``, ``attach``, ``runs`` and
``read_results``. Each binds its arguments into typed ``Options`` once (``attach``,
``read_results`` and ``runs`` first find the recorded run), then hands the call to the pandas
driver (``runs.local``) or the Dask driver (``runs.dask``)."""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import config, costs, families, storage
from . import options as opts
from . import service as services
from .columns import SUCCESS, pandas_array
from .errors import InputError, PdbatchError, ServiceError
from .options import MAX_REQUESTS_PER_JOB
from .prepare import prepare
from .runs import keys, local
from .runs import manifest as manifests
from .runs.handle import BatchRun, summarise
from .runs.jobs import output_lines
from .runs.manifest import RUN_LABEL, Manifest

if TYPE_CHECKING:
    import dask.dataframe as dd
    from google.auth.credentials import Credentials

log = logging.getLogger(__name__)


def batch_predict(
    df: pd.DataFrame | dd.DataFrame,
    *,
    prompt_col: str | None = None,
    prompt: str | None = None,
    model: str = "gemini-2.5-flash",
    staging: str | None = None,
    project: str | None = None,
    location: str | None = None,
    service: str | None = None,
    api_key: str | None = None,
    system_instruction: str | None = None,
    generation_config: Mapping | None = None,
    safety_settings: Sequence[Mapping] | None = None,
    config_cols: Mapping[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
    on_invalid: str = "raise",
    result_prefix: str = "",
    include_response: bool = True,
    files: Mapping[str, str | None] | None = None,
    files_root: str | Sequence[str] | None = None,
    response_schema: type | Mapping[str, Any] | None = None,
    expand: bool = True,
    reask_invalid: bool = False,
    max_retries: int = 0,
    dedup: bool = True,
    carry: Sequence[str] | None = None,
    output: str | None = None,
    keep_staging: bool = False,
    api_endpoint: str | None = None,
    transport: str = "rest",
    credentials: Credentials | None = None,
    max_requests_per_job: int = MAX_REQUESTS_PER_JOB,
    progress: bool = True,
    progress_bar_type: str | None = "auto",
    force: bool = False,
    max_cost: float | None = None,
    max_rows: int | None = None,
    retry_expired: bool = False,
    cancel_on_interrupt: bool = False,
    max_concurrent_jobs: int | None = None,
) -> pd.DataFrame | dd.DataFrame:
    """Answer every row of ``df`` with a batch job (Vertex AI batch prediction, or the Gemini
    Developer API's batch mode); return the frame with result columns added.

    Args:
        prompt_col: column holding each row's prompt text. Or:
        prompt: a template such as ``"Summarise {title}: {body}"`` (plain ``{column}`` fields).
        model: a Gemini model (``"gemini-2.5-flash"``), a Llama or other MaaS model
            (``"llama-3.3-70b-instruct-maas"``), a Claude model (``"claude-sonnet-4-5"``), or a
            publisher or tuned model's resource name.
        staging: ``gs://bucket/prefix`` under which each run gets its own folder, or
            ``bq://project.dataset`` where each job gets an input and an output table
            (default: ``PDBATCH_STAGING``).
        project: Google Cloud project id (default ``GOOGLE_CLOUD_PROJECT``, else the
            project of the application default credentials).
        location: job region such as ``us-central1``, or ``global`` (default
            ``GOOGLE_CLOUD_LOCATION``).
        service: ``"vertex"`` (Vertex AI batch prediction, the default, or
            ``PDBATCH_SERVICE``) or ``"gemini-api"`` (the Gemini Developer API's batch mode,
            with an API key: no project, bucket or location; docs/gemini-api.md).
        api_key: the Gemini Developer API's key for ``service="gemini-api"`` (default
            ``GOOGLE_API_KEY``, else ``GEMINI_API_KEY``); never logged or recorded.
        system_instruction: text sent as every request's ``systemInstruction``.
        generation_config: e.g. ``{"temperature": 0.2, "max_output_tokens": 256}``; keys may be
            snake_case or camelCase and are sent as REST camelCase.
        files: Gemini: columns of files to send after each row's text, with their MIME type
            (None: from the extension), e.g. ``{"image": "image/jpeg"}``; cells are ``gs://``
            URIs of objects that exist, local paths or bytes (uploaded to
            ``<staging>/files/`` first).
        files_root: the folder (or list of folders) local file cells may be read from, after
            links are resolved (default: the working directory), so that a file column from
            untrusted data cannot send other files.
        response_schema: a pydantic model class or a JSON Schema dict of an object (Gemini):
            every request asks for JSON of that shape, and each top-level field becomes a typed
            result column (``expand=False``: one ``parsed`` column of dicts). Answers that do not
            fit get the status ``invalid: ...``; ``reask_invalid=True`` asks those rows once
            more.
        expand: with ``response_schema``, one typed column per top-level field (default);
            False: one ``parsed`` column of dicts.
        reask_invalid: with ``response_schema``, ask the rows whose answer did not fit it
            once more, in a follow-up pass.
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
        credentials: google-auth credentials for Vertex AI, Cloud Storage and BigQuery
            (default: application default credentials); never sent to a plain-HTTP endpoint.
        max_requests_per_job: split larger frames into several jobs (service limit 200,000).
        progress: show a progress bar while jobs run (False: none).
        progress_bar_type: the bar, as pandas-gbq spells it: ``"tqdm"`` (text),
            ``"tqdm_notebook"`` (a notebook widget) or None (no bar); ``"auto"`` (default): a
            widget in a notebook with ipywidgets, else text.
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
        A copy of ``df`` with the same index and order plus the columns ``text`` (then a
        response schema's fields), ``status`` ("ok" for an answered row), ``error_code``,
        ``error_message``, ``finish_reason``, ``prompt_tokens``, ``output_tokens``,
        ``thought_tokens``, ``cached_tokens``, ``job`` and ``response`` (unless left out).

    Raises:
        InputError: bad arguments or rows, or a run over ``max_cost``/``max_rows``, before
            anything is uploaded.
        ServiceError: the service could not be reached for ``PDBATCH_RETRY_DEADLINE``
            seconds (default 300) while the run waited; its jobs go on.
        JobError: a job ended FAILED, CANCELLED, EXPIRED or PAUSED (see ``max_retries``);
            its ``.result`` holds the answers written before.

    Examples:
        >>> import pandas as pd, pdbatch
        >>> books = pd.DataFrame({"title": ["Dune", "Emma"], "author": ["Herbert", "Austen"]})
        >>> out = books.gemini.batch_predict(  # doctest: +SKIP
        ...     prompt="Write a two-sentence blurb for {title} by {author}.",
        ...     model="gemini-2.5-flash", staging="gs://my-bucket/pdbatch",
        ...     generation_config={"temperature": 0.2, "max_output_tokens": 256})
        >>> out[["title", "text", "status"]]  # doctest: +SKIP
    """
    arguments = {k: v for k, v in locals().items() if k not in ("df", "credentials", "api_key")}
    options = opts.bind(credentials=credentials, api_key=api_key, **arguments)
    if _is_dask(df):  # a lazy result
        from .runs import dask as on_dask

        return on_dask.batch_predict(df, options)
    return local.start(prepare(df, options)).result()


def submit(df: pd.DataFrame | dd.DataFrame, **options: Any) -> BatchRun:
    """Like ``batch_predict`` (same arguments), but returns as soon as the jobs exist: a
    ``BatchRun`` with ``status()``, ``wait()``, ``result()`` and ``cancel()``.

    The run is recorded in its staging location: ``pdbatch.attach(run.id, staging=...)`` picks
    it up in another process, and the same ``submit`` or ``batch_predict`` call made again
    re-attaches to it. A Dask DataFrame is staged and its jobs created now (on the workers);
    ``result()`` is then the lazy frame. Its arguments are ``batch_predict``'s, all of them
    (``prompt_col``, ``model``, ``staging``, ``max_cost``, ...).

    Returns:
        The run's ``BatchRun`` handle.

    Examples:
        >>> run = df.gemini.submit(prompt_col="prompt",  # doctest: +SKIP
        ...                        staging="gs://my-bucket/pdbatch", max_cost=50)
        >>> run.id  # doctest: +SKIP
        'run-20261121-183000-a1b2c3'
        >>> out = run.result()  # waits with a progress bar  # doctest: +SKIP
    """
    bound = opts.bind(**options)
    if _is_dask(df):
        from .runs import dask as on_dask

        return on_dask.submit(df, bound)
    return local.start(prepare(df, bound))


def estimate(df: pd.DataFrame, *, output_tokens: int | None = None,
             prices: Mapping[str, tuple[float, float]] | None = None,
             count_tokens: bool = True, **options: Any) -> costs.Estimate:
    """What ``batch_predict`` with these ``options`` would send and cost: rows, unique
    requests, input tokens (countTokens on a sample when the API answers and
    ``count_tokens``, else about 4 characters per token), ``output_tokens`` per request
    (default: ``max_output_tokens``, else 256) and the batch cost in USD from a dated price
    table (``pdbatch.costs.PRICES``; ``prices={"model": (input, output)}`` per million
    tokens overrides it). Nothing is uploaded or submitted, and no staging location is needed.
    Besides its own, it takes every argument of ``batch_predict``.

    Args:
        output_tokens: the output tokens to count per request (default: the
            ``max_output_tokens`` of ``generation_config``, else 256).
        prices: ``{"model": (input, output)}`` list prices in USD per million tokens, over
            ``pdbatch.costs.PRICES`` (the batch discount is applied to both).
        count_tokens: ask the service's countTokens for a sample of requests (False, or no
            answer: about 4 characters per token).

    Returns:
        An ``Estimate``: rows, requests, input and output tokens, the cost in USD (None for
        a model without a known price) and how each was found, with the prices' date.

    Examples:
        >>> print(df.gemini.estimate(prompt_col="prompt"))  # doctest: +SKIP
        gemini-2.5-flash: 3 rows, 2 requests, ~4 input and ~512 output tokens, estimated
        batch cost $0.0006 (about 4 characters per token; list prices of ..., batch
        discount 50%)
    """
    prepared = prepare(df, opts.bind(**options), staged=False)
    return costs.estimate(prepared, output_tokens, dict(prices or {}), count_tokens)


def attach(run: str, *, staging: str | None = None, project: str | None = None,
           location: str | None = None, api_endpoint: str | None = None,
           transport: str = "rest", credentials: Credentials | None = None,
           service: str | None = None, api_key: str | None = None) -> BatchRun:
    """The ``BatchRun`` of an earlier ``submit`` or ``batch_predict``, from its run id
    (``run.id``, ``out.attrs["pdbatch_run"]``) and the staging location it was made in
    (default ``PDBATCH_STAGING``; for ``service="gemini-api"`` the local runs folder), or
    from one of its jobs' resource names (the staging location is then read from the job; a
    Developer API batch ``batches/...``: the local runs folder). ``result(df)`` then needs the
    frame it was made from.

    Args:
        run: a run id (``run-...``), a Vertex AI job's resource name
            (``projects/P/locations/L/batchPredictionJobs/N``) or a Developer API batch's
            name (``batches/...``).
        staging: where the run was made (default ``PDBATCH_STAGING``; read from the job when
            ``run`` names one).
        project: override the recorded project (default: the run's own).
        location: override the recorded location (default: the run's own).
        api_endpoint: the Vertex AI endpoint (default as in ``batch_predict``).
        transport: ``"rest"`` (default) or ``"grpc"``.
        credentials: google-auth credentials (default: application default credentials).
        service: ``"vertex"`` or ``"gemini-api"`` (default: ``PDBATCH_SERVICE``, else
            Vertex AI; a ``batches/...`` name means the Developer API).
        api_key: the Gemini Developer API's key (default as in ``batch_predict``).

    Returns:
        The run's ``BatchRun`` (``status()``, ``wait()``, ``result(df)``, ``cancel()``).

    Examples:
        >>> run = pdbatch.attach("run-20261121-183000-a1b2c3",  # doctest: +SKIP
        ...                      staging="gs://my-bucket/pdbatch")
        >>> run.status().summary  # doctest: +SKIP
        'succeeded: 12/12 requests done, 1/1 jobs ended'
    """
    run_id = run
    job_kind = services.kind_of_job(run)
    if job_kind is not None:
        settings = job_kind.job_settings(run, staging, api_endpoint, transport, api_key)
        job = services.open_service(settings, credentials).get(run)
        run_id = _run_of_job(job, run)
        staging = staging or storage.staging_of(job.input_uri, run_id)
        service = job_kind.name
    elif not storage.is_run_id(run):
        raise InputError(f"run={run!r} is neither a pdbatch run id such as "
                         "'run-20261121-183000-a1b2c3' nor a batch prediction job name "
                         "('projects/P/locations/L/batchPredictionJobs/123', 'batches/...').")
    found, where = _stored(run_id, staging, credentials, service)
    options = manifests.options_of(found, credentials, api_key=api_key)
    settings = manifests.settings_of(found, where, project, location, api_endpoint, transport,
                                     api_key)
    run = BatchRun(found, settings, options, _driver(found))
    run.reattached = True
    if run.jobs:
        try:
            run.status()  # its state now, for its repr and notebook view
        except ServiceError as err:  # the handle still works once the service answers
            log.warning("the state of %s is unknown for now: %s", run.id, err)
    return run


def answers(run: str, *, staging: str | None = None,
            credentials: Credentials | None = None, service: str | None = None,
            api_key: str | None = None) -> pd.DataFrame:
    """A finished run's answers without the frame it was made from: one row per answered or
    failed request, keyed by the position of its row in that frame (``row``; for a Dask run,
    ``partition`` and ``row`` within it), with ``status`` ("ok" when answered), ``text``,
    ``finish_reason``, the token counts, ``response`` and ``job``. Rows
    that repeated another row's request, were skipped, or belong to a follow-up pass are not
    in it: ``read_results`` with the frame gives every row.

    Args:
        run: the run id or a job's name, as for ``attach``.
        staging: where the run was made (default ``PDBATCH_STAGING``).
        credentials: google-auth credentials (default: application default credentials).
        service: ``"vertex"`` or ``"gemini-api"``, as for ``attach``.
        api_key: the Gemini Developer API's key, as for ``attach``.

    Returns:
        A pandas frame of one row per answer, sorted by ``row``.

    Raises:
        InputError: the run has not ended yet.

    Examples:
        >>> found = pdbatch.answers("run-20261121-183000-a1b2c3",  # doctest: +SKIP
        ...                         staging="gs://my-bucket/pdbatch")
        >>> found[["row", "status", "text"]]  # doctest: +SKIP
    """
    handle = attach(run, staging=staging, credentials=credentials, service=service,
                    api_key=api_key)
    status = handle.status()
    if not status.finished:
        raise InputError(f"{handle.id} is still {status.state}: its answers are read once it "
                         "has ended.")
    found = output_lines(handle.id, handle.settings, handle.options, handle.manifest.jobs,
                         status.jobs, credentials)
    columns = ["status", *families.resolve(handle.options.request.model).task.fields,
               "response", "job"]
    out = pd.DataFrame({name: pandas_array(found.column(name)) for name in columns})
    out["status"] = out["status"].mask(out["status"] == "", SUCCESS)
    row_keys = found.column("key").to_numpy(zero_copy_only=False).astype(np.int64)
    dask = handle.manifest.dask
    if dask:
        out.insert(0, "partition", pd.array(keys.partition_of(row_keys), dtype="Int64"))
        row_keys = keys.row_of(row_keys)
    out.insert(int(dask), "row", pd.array(row_keys, dtype="Int64"))
    return out.sort_values(list(out.columns[:1 + dask]), ignore_index=True)


def runs(staging: str | None = None, credentials: Credentials | None = None,
         service: str | None = None) -> pd.DataFrame:
    """The runs recorded in a staging location (default ``PDBATCH_STAGING``), newest first:
    run id, creation time (UTC timestamp), state now (one list call per run), model, rows,
    requests, jobs, ``pass`` ("" for a call, ``/retry-1``, ``/reask``, ... for its follow-up
    passes) and ``parent`` (the run a pass follows), whether every job was submitted, and the
    fingerprint. A location with no runs logs a warning. ``pdbatch.attach(run_id,
    staging=...)`` gives a run's handle. ``service="gemini-api"`` (or a local folder as
    ``staging``): the runs of the Gemini Developer API kept in that folder (default
    ``PDBATCH_RUNS_FOLDER``, else ``~/.pdbatch/runs``).

    Args:
        staging: the staging location (or, for the Developer API, the local folder).
        credentials: google-auth credentials (default: application default credentials).
        service: ``"vertex"`` or ``"gemini-api"`` (default ``PDBATCH_SERVICE``, else
            Vertex AI).

    Returns:
        A pandas frame of one row per run, newest first.

    Examples:
        >>> pdbatch.runs("gs://my-bucket/pdbatch")[["run", "state", "rows"]]  # doctest: +SKIP
    """
    where = config.runs_place(staging, service)
    store = storage.open_store(where, credentials)
    found = []
    for run_id in store.run_ids():
        try:
            manifest = store.load(run_id)
            if manifest is not None:
                found.append(Manifest.read(manifest))
        except InputError as err:  # one damaged manifest does not hide the others
            log.warning("%s", err)
    if not found:
        log.warning("no pdbatch runs are recorded in %s: is that the staging location the runs "
                    "were made with?", where)
    opened: dict = {}  # by (service, project, location)

    def state(manifest: Manifest) -> str:
        try:
            settings = manifests.settings_of(manifest, where)
            key = (settings.service, settings.project, settings.location)
            if key not in opened:
                opened[key] = services.open_service(settings, credentials)
            return _state(opened[key], manifest)
        except PdbatchError as err:  # one run the service cannot tell about hides no other
            log.warning("the state of %s is unknown: %s", manifest.run, err)
            return "unknown"

    columns = ["run", "created", "state", "model", "rows", "requests", "jobs", "pass",
               "parent", "submitted", "fingerprint"]
    table = pd.DataFrame([{**m.to_json(), "jobs": len(m.jobs), "state": state(m)}
                          for m in found], columns=columns)
    table["created"] = pd.to_datetime(table["created"], utc=True, format="ISO8601")
    return table.sort_values("created", ascending=False, ignore_index=True)


def _state(batch, manifest: Manifest) -> str:
    """A recorded run's state now (one list call for its jobs where the service lists
    cheaply, else a GET each)."""
    if not manifest.jobs:
        return "no jobs" if manifest.submitted else "submitting"
    names = manifest.job_names
    if not batch.lists_cheaply:
        known = services.look(batch, names, {})
    else:
        infos = {info.name: info for info in batch.labelled(RUN_LABEL, manifest.run)}
        known = [infos[name] for name in names if name in infos]
        if len(known) < len(names):
            return "jobs not found"
    state = summarise(known, manifest.counts).state
    return state if manifest.submitted else f"{state} (submitting)"


def read_results(
    df: pd.DataFrame | dd.DataFrame,
    *,
    run: str,
    staging: str | None = None,
    output: str | None = None,
    model: str | None = None,
    credentials: Credentials | None = None,
    result_prefix: str | None = None,
    include_response: bool | None = None,
    service: str | None = None,
    api_key: str | None = None,
) -> pd.DataFrame | dd.DataFrame:
    """``df`` with the result columns of run ``run`` (``out.attrs["pdbatch_run"]``), read again
    from the run's outputs: no job is created, none is waited for, nothing is paid. The same
    columns and values as the call that made it (its follow-up passes included), from the
    run's manifest in ``staging`` (default: ``output``, else ``PDBATCH_STAGING``). ``df`` must
    be the frame the run was made from (a Dask run: its Dask frame; checked by fingerprint).
    ``model``, when given, must be the run's; ``result_prefix`` and ``include_response``
    default to the run's own.

    Args:
        run: the run id.
        staging: where the run was made (default: ``output``, else ``PDBATCH_STAGING``).
        output: where its jobs wrote, when that is not ``staging``.
        model: the run's model, checked when given.
        credentials: google-auth credentials (default: application default credentials).
        result_prefix: prefix of the result columns (default: the run's).
        include_response: keep the ``response`` column (default: as the run did).
        service: ``"vertex"`` or ``"gemini-api"``, as for ``attach``.
        api_key: the Gemini Developer API's key, as for ``attach``.

    Returns:
        ``df`` with the run's result columns (a lazy frame for a Dask run).

    Examples:
        >>> out = df.gemini.read_results(run=out.attrs["pdbatch_run"],  # doctest: +SKIP
        ...                              staging="gs://my-bucket/pdbatch")
    """
    if not storage.is_run_id(run):
        raise InputError(f"run={run!r} is not a pdbatch run id such as "
                         "'run-20261121-183000-a1b2c3' (see out.attrs['pdbatch_run']).")
    found, where = _stored(run, staging or output, credentials, service)
    if model is not None and (not isinstance(model, str)
                              or found.model != model.rsplit("/", 1)[-1]):
        raise InputError(f"{run} was made with model {found.model!r}, not {model!r}.")
    shown = {name: value for name, value in (("result_prefix", result_prefix),
                                             ("include_response", include_response))
             if value is not None}
    options = manifests.options_of(found, credentials, api_key=api_key, **shown)
    settings = manifests.settings_of(found, where, api_key=api_key)
    handle = BatchRun(found, settings, options, _driver(found, read_only=True))
    return handle.result(df)


def _stored(run_id: str, staging: str | None, credentials, service_name: str | None = None
            ) -> tuple[Manifest, str]:
    """The manifest of ``run_id`` where runs are recorded (``config.runs_place``), and
    where."""
    where = config.runs_place(staging, service_name)
    found = storage.open_store(where, credentials).load(run_id)
    if found is None:
        hint = ("" if storage.local_folder(where) else " (runs of service='gemini-api' are "
                "kept in a local folder: pass service='gemini-api')")
        raise InputError(f"No run {run_id} in {where}: pass staging= where it was made{hint}.")
    return Manifest.read(found), where


def _run_of_job(job, name: str) -> str:
    """The run that made a job, from its run label."""
    run_id = job.labels.get(RUN_LABEL, "")
    if not storage.is_run_id(run_id):
        raise InputError(f"{name} was not made by pdbatch (it has no pdbatch-run label).")
    return run_id


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported here (found without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # its parent package is missing (or blocked)
        return False


def _is_dask(df) -> bool:
    """A Dask DataFrame (told apart without importing Dask)."""
    return hasattr(df, "__dask_graph__") and hasattr(df, "_meta")


def _driver(manifest: Manifest, read_only: bool = False):
    """The driver of a recorded run (the Dask driver is imported only for Dask runs)."""
    if manifest.dask:
        if not _installed("dask.dataframe"):
            raise InputError(f"{manifest.run} was made from a Dask frame, and Dask is not "
                             "installed here: pip install 'pdbatch[dask]'.")
        from .runs import dask as on_dask

        return on_dask.DaskDriver(read_only=read_only)
    return local.PandasDriver(read_only=read_only)

