"""The public functions that start a run: ``batch_predict``, ``submit`` and ``estimate``. Each
binds its arguments into typed ``Options`` once, then hands the call to the pandas driver
(``runs.local``) or the Dask driver (``runs.dask``). Finding a recorded run (``attach``,
``answers``, ``runs``, ``read_results``) is ``recorded``'s."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd

from . import costs
from . import options as opts
from .options import MAX_REQUESTS_PER_JOB
from .prepare import prepare
from .runs import local
from .runs.handle import BatchRun

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
    if is_dask(df):  # a lazy result
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
    if is_dask(df):
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


def is_dask(df: Any) -> bool:
    """A Dask DataFrame (told apart without importing Dask)."""
    return hasattr(df, "__dask_graph__") and hasattr(df, "_meta")
