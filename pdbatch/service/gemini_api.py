"""The Gemini Developer API's batch mode behind the ``BatchService`` seam
(``service="gemini-api"``): ``models/{model}:batchGenerateContent`` and ``batches/{id}``
through google-genai's ``Client(api_key=...)`` (spec §5.5).

The Developer API has no labels: a batch's display name carries them, as
``<display name> [key=value;...]`` (label keys and values are lowercase letters, digits,
``_`` and ``-``), so that a run's batches are found by run and by fingerprint as on Vertex.
google-genai gives no completion counts for Developer API batches: progress is shown from
their states.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Mapping

from .. import families, multimodal, storage
from ..config import GEMINI_API, Settings, resolve
from ..errors import InputError, ServiceError
from ..gemini_client import client, every, transient
from ..identifiers import whole
from ..storage import Destination, Location, Staged
from ..storage.files_api import FilesApiLocation
from .base import RUN_LABEL, JobInfo, create_once, gone

log = logging.getLogger(__name__)
#: What google-genai warns at every ``batches.create_embeddings()`` call; the user called
#: ``embed``, not it (docs/usage.md names the status), so that warning alone is hidden there.
_EXPERIMENTAL = r"batches\.create_embeddings\(\) is experimental"

_ENDED_BADLY = ("JOB_STATE_FAILED", "JOB_STATE_EXPIRED")
#: What a failed batch says: google-genai drops the Developer API operation's error.
_NO_REASON = ("the reason is not given: google-genai does not pass on the Developer API's "
              "error for batches")

_LABELLED = re.compile(r"^(.*) \[((?:[a-z][a-z0-9_-]*=[a-z0-9_-]*;?)*)\]$")
_BATCH_NAME = re.compile(r"^batches/[A-Za-z0-9_-]+$")
_RUN_ID = re.compile(r"run-\d{8}-\d{6}-[0-9a-f]{6}")  # as storage.new_run_id makes them
_PUBLISHER_MODEL = re.compile(r"^publishers/google/models/([a-z0-9][a-z0-9.-]*)$")


def is_batch_name(name: object) -> bool:
    """Whether ``name`` is a Developer API batch name such as ``batches/abc123``."""
    return isinstance(name, str) and whole(_BATCH_NAME, name) is not None


def labelled_name(display_name: str, labels: Mapping[str, str]) -> str:
    """The display name that carries ``labels`` (the run label is not repeated when the name
    holds the run id already, as pdbatch's job names do: the name stays short)."""
    shown = {k: v for k, v in labels.items() if not (k == RUN_LABEL and v in display_name)}
    return f"{display_name} [{';'.join(f'{k}={v}' for k, v in sorted(shown.items()))}]"


def labels_of(display_name: str) -> tuple[str, dict[str, str]]:
    """The display name and labels of a ``labelled_name`` (no labels for any other name)."""
    match = whole(_LABELLED, display_name or "")
    if not match:
        return display_name or "", {}
    labels = dict(item.split("=", 1) for item in match[2].split(";") if item)
    run = _RUN_ID.search(match[1])
    if run and RUN_LABEL not in labels:
        labels[RUN_LABEL] = run[0]
    return match[1], labels


def model_name(resource: str) -> str:
    """``models/<id>`` for a Gemini publisher model; InputError for a model the Developer API
    does not serve (tuned models, other publishers)."""
    match = whole(_PUBLISHER_MODEL, resource)
    if not match:
        raise InputError(f"model {resource!r} is not served by the Gemini Developer API, which "
                         "serves Google's Gemini models by id (e.g. 'gemini-2.5-flash'); use "
                         "service='vertex' for tuned models, Llama or Claude.")
    return f"models/{match[1]}"


#: Options that exist only on Vertex AI, and what to do instead on the Gemini Developer API.
_VERTEX_ONLY = {
    "project": "the Developer API bills the project of the API key",
    "location": "the Developer API chooses where batches run",
    "output": "answers come back from the service; write them on with out.to_gbq(...) or "
              "out.to_parquet(...)",
    "labels": "the Developer API has no labels (pdbatch keeps its own in display names)",
    "carry": "answers are joined back onto every row of the frame by its key",
}


class GeminiApiService:
    """The Gemini Developer API's batches for one API key. Its class attributes and static
    methods are what varies by service (``service.kind``); an instance talks to the service."""

    name, title = GEMINI_API, "the Gemini API"
    #: A list call returns every batch of the key (no filter), with inline answers: waiting
    #: looks at each batch by itself instead.
    lists_cheaply = False
    #: Runs are remembered per machine (a local folder), so two machines making the same call
    #: at the same moment both create its batches: each creator, after a create, keeps the
    #: earliest batch of that job number and cancels its own if it is not (``runs.jobs``).
    converges = True
    #: Response schemas go as the OpenAPI-subset ``responseSchema``: the batch mode answers
    #: ``responseJsonSchema`` with JSON of the wrong shape (ruby_llm #894).
    openapi_schema = True
    #: Embedding settings at the top of each request, as the documented file lines and
    #: google-genai's own requests have them (spec §2.3).
    embed_config_at_top = True

    @staticmethod
    def refuse(options) -> None:
        """Refuse an option that exists only on Vertex AI, naming the Vertex alternative."""
        given = options.flat()
        for name, instead in _VERTEX_ONLY.items():
            if given[name]:
                raise InputError(f"{name}= is a Vertex AI option ({instead}); drop it, or pass "
                                 "service='vertex' to run on Vertex AI with it.")
        if options.run.transport != "rest":
            raise InputError("transport= is a Vertex AI option: the Gemini Developer API is "
                             "reached over REST; drop it, or pass service='vertex'.")
        if options.credentials is not None:
            raise InputError("credentials= are for Vertex AI; the Gemini Developer API takes an "
                             "API key (api_key= or GEMINI_API_KEY).")
        if "auto_truncate" in (options.request.generation_config or {}):
            raise InputError("auto_truncate= is a Vertex AI option (the Developer API's "
                             "embedding requests have no such field); drop it, or pass "
                             "service='vertex'.")

    @staticmethod
    def check_model(resource: str) -> None:
        """A Gemini model the Developer API serves (InputError otherwise)."""
        model_name(resource)

    @staticmethod
    def check_locations(settings: Settings, family, model: str, credentials, rows: int) -> None:
        """Nothing to check: requests are staged through the service's own Files API."""

    @staticmethod
    def locations(run_id: str, settings: Settings, parser, credentials=None, labels=None,
                  carried=()) -> tuple[Location, Location]:
        """The Files API, for a run's inputs and its answers alike."""
        both = FilesApiLocation(run_id, parser, settings.api_endpoint, settings.api_key)
        return both, both

    @staticmethod
    def plan_files(df, files, reasons, roots: list[str], settings: Settings, credentials
                   ) -> multimodal.FilePlan:
        """The checked file columns, uploaded through the Files API (``gs://`` cells are
        refused: the Developer API does not read Cloud Storage)."""
        return multimodal.plan(df, files, reasons, f"{settings.api_endpoint}/v1beta/files",
                               roots, lambda uris: set(), name=multimodal.file_id,
                               gs_uris=False)

    @staticmethod
    def fingerprint_place(settings: Settings) -> dict:
        """Where a run goes, as its fingerprint covers it: the service alone (the runs folder
        only keeps the record, so the same call from another folder or machine finds its
        batches by their display names)."""
        return {"service": settings.service, "staging": "", "output": "", "project": "",
                "location": ""}

    @staticmethod
    def pinned(options, settings: Settings):
        """``options`` with the service, base URL and runs folder fixed (for Dask workers)."""
        return options.replace(service=settings.service, api_endpoint=settings.api_endpoint,
                               staging=storage.local_path(settings.staging))

    @staticmethod
    def attach_call(run_id: str, settings: Settings) -> str:
        """The call that picks a run up in another process."""
        return (f"pdbatch.attach({run_id!r}, service='gemini-api', "
                f"staging={storage.local_path(settings.staging)!r})")

    @staticmethod
    def is_job_name(name: object) -> bool:
        """Whether ``name`` is a batch's name (``batches/...``)."""
        return is_batch_name(name)

    @staticmethod
    def job_settings(name: str, staging: str | None, api_endpoint: str | None,
                     transport: str, api_key: str | None) -> Settings:
        """The settings that reach batch ``name``: the key's, with runs in ``staging``."""
        return resolve(None, None, staging, api_endpoint, service=GEMINI_API, api_key=api_key)

    def __init__(self, settings: Settings, credentials=None):
        self.settings = settings  # (credentials are Vertex AI's: refused before this)
        self._client = client(settings.api_endpoint, settings.api_key)
        self._once = client(settings.api_endpoint, settings.api_key, retry=False)

    def create(self, display_name: str, model: str, staged: Staged,
               destination: Destination, labels: Mapping[str, str]) -> str:
        """Create a batch reading the file ``storage.files_api`` uploaded; its name (its
        answers stay with the service: ``destination`` says nothing). A create whose answer
        was lost is looked for before it is tried again, so that a batch is never made (and
        paid) twice."""
        [src] = staged.uris
        config = {"display_name": labelled_name(display_name, labels)}
        embeds = families.resolve(model).task.request_type == "EmbedContentRequest"
        model = model_name(model)
        def create() -> str:
            try:
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", message=_EXPERIMENTAL)
                    batch = (self._once.batches.create_embeddings(
                        model=model, src={"file_name": src}, config=config) if embeds else
                        self._once.batches.create(model=model, src=src, config=config))
            except Exception as err:
                raise err if transient(err) else _refused(err) from err
            log.info("created %s (%s)", batch.name, batch.state)
            return batch.name

        return create_once(create, lambda: self.find(display_name, labels.get(RUN_LABEL, "")),
                           transient, _unreachable, display_name)

    def find(self, display_name: str, run_id: str) -> str | None:
        """The batch of this run with this display name, if one exists."""
        return next((info.name for info in self.labelled(RUN_LABEL, run_id)
                     if info.display_name == display_name), None)

    def labelled(self, key: str, value: str) -> list[JobInfo]:
        """Every batch whose display name carries the label ``key=value``, oldest first (by
        create time, then name: every reader orders them alike)."""
        try:
            batches = every(self._client.batches.list(config={"page_size": 100}))
        except Exception as err:
            raise _failed(err, "the list of batches") from err
        found = [batch for batch in batches
                 if labels_of(batch.display_name or "")[1].get(key) == value]
        found.sort(key=lambda batch: (batch.create_time is None, batch.create_time, batch.name))
        return [self._info(batch) for batch in found]

    def get(self, name: str) -> JobInfo:
        """The batch's state now."""
        try:
            return self._info(self._client.batches.get(name=name))
        except Exception as err:
            if getattr(err, "code", None) == 404:
                raise gone(name, f"the Gemini API at {self.settings.api_endpoint}") from err
            raise _failed(err, f"the state of {name}") from err

    @staticmethod
    def _info(batch) -> JobInfo:
        display_name, labels = labels_of(batch.display_name or "")
        state = batch.state.name if hasattr(batch.state, "name") else str(batch.state or "")
        dest = batch.dest
        output = (dest.file_name or "") if dest else ""
        if dest and dest.inlined_responses:
            output = batch.name  # its responses are read from the batch itself
        return JobInfo(
            name=batch.name, state=state, output_dir=output,
            error_code=batch.error.code or 0 if batch.error else 0,
            error_message=(batch.error.message or "" if batch.error else "") or (
                _NO_REASON if state in _ENDED_BADLY else ""),
            successful=0, failed=0, labels=labels,
            display_name=display_name,
            end_time=batch.end_time.isoformat() if batch.end_time else "",
        )

    def cancel(self, name: str) -> None:
        """Ask the service to cancel a batch (one that has just ended is left as it is)."""
        try:
            self._client.batches.cancel(name=name)
        except Exception as err:
            if getattr(err, "status", "") == "FAILED_PRECONDITION":
                log.info("%s had ended already: %s", name, err)
                return
            raise _failed(err, f"cancelling {name}") from err
        log.info("asked to cancel %s", name)

    def count_tokens(self, model: str, texts: list[str], system: str) -> int:
        """Input tokens of ``texts`` (each with the ``system`` instruction, if any), by the
        countTokens API."""
        total = 0
        for text in texts:
            contents = [{"role": "user", "parts": [{"text": text}]}]
            if system:
                contents.insert(0, {"role": "user", "parts": [{"text": system}]})
            total += self._client.models.count_tokens(
                model=model_name(model), contents=contents).total_tokens or 0
        return total


def _refused(err: Exception) -> Exception:
    """The service's refusal of a create, for people."""
    message = getattr(err, "message", None) or str(err)
    return InputError(f"The Gemini API refused the batch: {message}")


def _unreachable(err: Exception) -> ServiceError:
    return ServiceError(f"The Gemini API did not answer, or kept failing ({err}).")


def _failed(err: Exception, what: str) -> Exception:
    if transient(err):
        return _unreachable(err)
    return InputError(f"The Gemini API refused {what}: "
                      f"{getattr(err, 'message', None) or err}")
