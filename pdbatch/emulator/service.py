"""The emulated ``batchPredictionJobs`` service: job records, validation and the state machine.

Jobs are kept as REST-shaped dicts (lowerCamelCase, enum names, int64 as strings, default values
omitted), exactly what the HTTP layer returns. Each job runs in a background thread:
[QUEUED ->] PENDING -> RUNNING -> SUCCEEDED, or FAILED with error code 3 when its input cannot
be read, or what its fault labels ask for (``faults.py``); ``runner.py`` answers the rows.
"""

from __future__ import annotations

import copy
import os
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from typing import Any

from . import bigquery, filerefs, filters, runner, storage
from .families import SERVED_MODELS, TUNED_MODEL, camel, family_of
from .faults import ApiFaults, FaultError, JobFaults, reveal_later
from .state import JobStore

#: JobState values in number order (spec §1.5), for answers in ``enum-encoding=int``.
JOB_STATES = (
    "JOB_STATE_UNSPECIFIED", "JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING",
    "JOB_STATE_SUCCEEDED", "JOB_STATE_FAILED", "JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED",
    "JOB_STATE_PAUSED", "JOB_STATE_EXPIRED", "JOB_STATE_UPDATING",
    "JOB_STATE_PARTIALLY_SUCCEEDED",
)
TERMINAL = {
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_EXPIRED",
    "JOB_STATE_PARTIALLY_SUCCEEDED",
    "JOB_STATE_PAUSED",
}
_GCS_URI = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$")


#: The fields of a BatchPredictionJob (spec §1.3), input and output-only alike; output-only
#: fields in a create body are ignored, any other name is refused.
_JOB_FIELDS = frozenset({
    "name", "displayName", "model", "modelVersionId", "unmanagedContainerModel", "inputConfig",
    "instanceConfig", "modelParameters", "outputConfig", "dedicatedResources", "serviceAccount",
    "manualBatchTuningParameters", "generateExplanation", "explanationSpec", "outputInfo",
    "state", "error", "partialFailures", "resourcesConsumed", "completionStats", "createTime",
    "startTime", "endTime", "updateTime", "labels", "encryptionSpec", "disableContainerLogging",
    "satisfiesPzs", "satisfiesPzi"})
#: ``partialFailures`` "never exceeds 20 entries" (spec §1.3).
_MAX_PARTIAL_FAILURES = 20
#: Fields whose values are the user's own maps or free JSON: their keys are not field names.
_OPAQUE = {"labels", "modelParameters"}


def _camel_keys(value, opaque: bool = False):
    """Field names in lowerCamelCase, as proto3 JSON reads ``display_name`` and
    ``displayName`` alike (user maps such as ``labels`` keep their keys)."""
    if isinstance(value, dict) and not opaque:
        return {camel(k): _camel_keys(v, camel(k) in _OPAQUE) for k, v in value.items()}
    if isinstance(value, list) and not opaque:
        return [_camel_keys(v) for v in value]
    return value


def _check_labels(labels, bad) -> None:
    """Label rules (spec §1.3): at most 64 labels; keys of 1-63 characters starting with a
    lowercase letter, values of at most 63; lowercase letters (international ones too),
    digits, ``_`` and ``-``."""
    def fits(text) -> bool:
        return isinstance(text, str) and len(text) <= 63 and all(
            c in "_-" or c.isdigit() or (c.isalpha() and c == c.lower()) for c in text)

    if not isinstance(labels, dict) or len(labels) > 64:
        raise bad("labels must be a map of at most 64 entries.")
    for key, value in labels.items():
        if not (fits(key) and key and key[0].isalpha()) or not fits(value):
            raise bad(f"Label {key!r}: {value!r} is invalid: keys start with a lowercase letter; "
                      "keys and values have at most 63 lowercase letters, digits, '_' or '-'.")


def _location(job: dict) -> str:
    return job["name"].split("/")[3].lower()


def _check_io(source: dict, destination: dict) -> None:
    """The input and output configs name a supported format and well-formed URIs."""
    if source.get("instancesFormat") == "jsonl":
        uris = list((source.get("gcsSource") or {}).get("uris") or [])
        if not uris:
            raise ValueError("inputConfig.gcsSource.uris is required for 'jsonl' input.")
    elif source.get("instancesFormat") == "bigquery":
        uris = []
        if bigquery.parse_uri((source.get("bigquerySource") or {}).get("inputUri"))[2] is None:
            raise ValueError("inputConfig.bigquerySource.inputUri must name a table: "
                             "bq://project.dataset.table.")
    else:
        raise ValueError("inputConfig.instancesFormat must be 'jsonl' (with gcsSource.uris) or "
                         "'bigquery' (with bigquerySource.inputUri).")
    if destination.get("predictionsFormat") == "jsonl":
        uris.append((destination.get("gcsDestination") or {}).get("outputUriPrefix", ""))
    elif destination.get("predictionsFormat") == "bigquery":
        bigquery.parse_uri((destination.get("bigqueryDestination") or {}).get("outputUri"))
    else:
        raise ValueError("outputConfig.predictionsFormat must be 'jsonl' (with "
                         "gcsDestination.outputUriPrefix) or 'bigquery' (with "
                         "bigqueryDestination.outputUri).")
    for uri in uris:
        if not _GCS_URI.match(uri):
            raise ValueError(f"Invalid Cloud Storage URI: {uri}")


class ServiceError(Exception):
    """An error the service answers synchronously, as the google.rpc.Status envelope."""

    def __init__(self, code: int, status: str, message: str):
        super().__init__(message)
        self.code, self.status, self.message = code, status, message

    def envelope(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


def page_of(names: list, start: int, size: int, field: str, show: Callable[[Any], dict]
            ) -> dict:
    """A list call's answer: the ``size`` names from the ``start``-th, each as ``show`` gives
    it, under ``field`` (left out when the page is empty), and ``nextPageToken`` (the next
    page's start) when more follow."""
    page = [show(name) for name in names[start:start + size]]
    out: dict = {field: page} if page else {}
    if start + size < len(names):
        out["nextPageToken"] = str(start + size)
    return out


def rfc3339(t: float) -> str:
    """RFC3339 UTC timestamp with microseconds and ``Z``, as Vertex writes them."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass
class Timing:
    """How long a job stays in each state before it moves on, and (``output``) how long a
    succeeded job's output stays out of its record after it is SUCCEEDED, in seconds."""

    pending: float = 0.2
    running: float = 0.2
    output: float = 0.0


@dataclass
class BatchService:
    """Holds the jobs of one emulator and runs them.

    ``gcs_endpoint`` and ``bigquery_endpoint`` are the Cloud Storage and BigQuery servers jobs
    read and write (default: ``STORAGE_EMULATOR_HOST``, ``BIGQUERY_EMULATOR_HOST``). With
    ``state_dir`` the jobs are kept in that folder too: a new service on the same folder serves
    them again and resumes the unfinished ones from the start.
    ``models`` are the publisher models served (``families.SERVED_MODELS``; others are
    refused at create, as the service does). ``fault_labels`` switches faults on for every
    job, as if each carried those ``emulator-*`` labels (a job's own labels win), or with
    ``fault_jobs=N`` for the next N jobs created only
    (a job that fails once, then its retry succeeds); ``api_faults.inject(429, 3)`` makes the
    next 3 API calls fail.
    """

    timing: Timing = field(default_factory=Timing)
    gcs_endpoint: str | None = None
    responder: Callable[[dict], dict] | None = None  # None: each family's deterministic one
    seed: int | None = None  # job ids; None: unpredictable, as on the real service
    state_dir: str | os.PathLike | None = None
    bigquery_endpoint: str | None = None  # default: BIGQUERY_EMULATOR_HOST
    null_injection: bool = True  # echo requests with their siblings' keys as nulls (§3.3)
    fault_labels: dict[str, str] = field(default_factory=dict)  # server-wide emulator-* labels
    fault_jobs: int | None = None  # how many of the next jobs get fault_labels; None: all
    models: set[str] = field(default_factory=lambda: set(SERVED_MODELS))  # short names
    tuned_models: dict[str, str] = field(default_factory=dict)  # resource name -> base model
    _faulted: set[str] = field(default_factory=set)  # jobs that took fault_labels
    api_faults: ApiFaults = field(default_factory=ApiFaults)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _closed: threading.Event = field(default_factory=threading.Event)
    _ids: random.Random = field(init=False)
    _store: JobStore = field(init=False)

    def __post_init__(self) -> None:
        self._ids = random.Random(self.seed)
        self._store = JobStore(self.state_dir)
        self._jobs = self._store.jobs
        for name, job in list(self._jobs.items()):
            if job["state"] == "JOB_STATE_CANCELLING":
                self._cancelled(job)
            elif job["state"] not in TERMINAL:
                threading.Thread(target=self._run, args=(name,), daemon=True).start()

    # ----------------------------------------------------------------- API methods
    def add_tuned_model(self, name: str, base_model: str = "gemini-2.5-flash") -> str:
        """Serve a tuned Gemini model ``projects/P/locations/L/models/ID`` (answered as its
        ``base_model``); its name."""
        found = TUNED_MODEL.fullmatch(name)
        if not found:
            raise ValueError(f"{name!r} is not projects/P/locations/L/models/ID")
        self.tuned_models[found[1]] = base_model
        return name

    def tuned_model(self, name: str) -> dict:
        """The Model resource of a tuned model (what the vertexai SDK reads: a Gemini tuning
        result has ``modelSourceInfo.sourceType`` ``GENIE``); 404 for an unknown one."""
        found = TUNED_MODEL.fullmatch(name)
        base = found[1] if found else name  # any version of an added model is served
        if base not in self.tuned_models:
            raise ServiceError(404, "NOT_FOUND", f"Model {name} not found.")
        return {"name": base, "displayName": base.rsplit("/", 1)[-1],
                "modelSourceInfo": {"sourceType": "GENIE"},
                "baseModelSource": {"genieSource": {
                    "baseModelUri": f"publishers/google/models/{self.tuned_models[base]}"}}}

    def create(self, project: str, location: str, body: dict) -> dict:
        job = self._validated(body)
        job_id = str(self._ids.randrange(10**18, 9 * 10**18))
        now = time.time()
        job.update(
            name=f"projects/{project}/locations/{location}/batchPredictionJobs/{job_id}",
            state="JOB_STATE_PENDING",
            createTime=rfc3339(now),
            updateTime=rfc3339(now),
        )
        with self._lock:
            if self.fault_jobs:
                self.fault_jobs -= 1
                self._faulted.add(job["name"])
            if self._faults(job.get("labels"), job["name"]).queue_seconds:
                job["state"] = "JOB_STATE_QUEUED"  # waiting for capacity from the start
            self._store.save(job)
        threading.Thread(target=self._run, args=(job["name"],), daemon=True).start()
        return copy.deepcopy(job)

    def get(self, name: str) -> dict:
        with self._lock:
            return copy.deepcopy(self._job(name))

    def list(self, parent: str, page_size: int, page_token: str, filter_text: str = "") -> dict:
        try:
            keep = filters.parse(filter_text) if filter_text.strip() else (lambda job: True)
        except filters.FilterError as exc:
            raise ServiceError(400, "INVALID_ARGUMENT", str(exc)) from None
        with self._lock:
            names = sorted((n for n, job in self._jobs.items()
                            if n.startswith(parent + "/") and keep(job)),
                           key=lambda n: (self._jobs[n]["createTime"], n))  # oldest first
            start = int(page_token) if page_token else 0
            size = page_size if page_size > 0 else 100
            return page_of(names, start, size, "batchPredictionJobs",
                           lambda n: copy.deepcopy(self._jobs[n]))

    def cancel(self, name: str) -> None:
        with self._lock:
            job = self._job(name)
            if job["state"] in TERMINAL:
                raise ServiceError(
                    400, "FAILED_PRECONDITION",
                    f"Cannot cancel BatchPredictionJob {name} in state {job['state']}.",
                )
            self._set_state(job, "JOB_STATE_CANCELLING")

    def delete(self, name: str) -> dict:
        with self._lock:
            job = self._job(name)
            if job["state"] not in TERMINAL:
                raise ServiceError(
                    400, "FAILED_PRECONDITION",
                    f"BatchPredictionJob {name} is in state {job['state']}; "
                    "only finished jobs can be deleted.",
                )
            self._store.remove(name)
        return {
            "name": f"{name}/operations/{self._ids.randrange(10**18, 9 * 10**18)}",
            "done": True,
            "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
        }

    def close(self) -> None:
        """Stop running jobs where they are, recording nothing more: as if the process died."""
        self._closed.set()

    def take_fault_labels(self) -> dict[str, str]:
        """The server-wide ``fault_labels`` for a job of another API surface being created
        (the Gemini Developer API's batches): every job's, or one of the next ``fault_jobs``."""
        with self._lock:
            if self.fault_jobs is None:
                return dict(self.fault_labels)
            if self.fault_jobs > 0:
                self.fault_jobs -= 1
                return dict(self.fault_labels)
            return {}

    # ----------------------------------------------------------------- helpers
    def _job(self, name: str) -> dict:
        try:
            return self._jobs[name]
        except KeyError:
            raise ServiceError(404, "NOT_FOUND", f"BatchPredictionJob {name} not found.") from None

    def _set_state(self, job: dict, state: str) -> None:
        now = rfc3339(time.time())
        job["state"] = state
        job["updateTime"] = now
        if state == "JOB_STATE_RUNNING":
            job["startTime"] = now
        if state in TERMINAL:
            job["endTime"] = now
        self._store.save(job)

    def _cancelled(self, job: dict) -> None:
        job["error"] = {"code": 1, "message": "CANCELED"}
        self._set_state(job, "JOB_STATE_CANCELLED")

    def _faults(self, labels: dict | None, name: str = "") -> JobFaults:
        """The job's faults: its own ``emulator-*`` labels over the server-wide ones (when they
        apply to it)."""
        server = self.fault_labels if self.fault_jobs is None or name in self._faulted else {}
        return JobFaults.from_labels({**server, **(labels or {})})

    def _validated(self, body: dict) -> dict:
        def bad(message: str) -> ServiceError:
            return ServiceError(400, "INVALID_ARGUMENT", message)

        if not isinstance(body, dict):
            raise bad("The request body must be a BatchPredictionJob object.")
        body = _camel_keys(body)  # proto3 JSON takes either spelling of a field name
        unknown = sorted(set(body) - _JOB_FIELDS)
        if unknown:
            raise bad(f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
                      "'batch_prediction_job': Cannot find field.")
        for required in ("displayName", "model", "inputConfig", "outputConfig"):
            if not body.get(required):
                raise bad(f"Required field is not set: {required}.")
        if not isinstance(body["displayName"], str) or len(body["displayName"]) > 128:
            raise bad("The display name must be a string of at most 128 characters.")
        _check_labels(body.get("labels") or {}, bad)
        model = body["model"]
        if isinstance(model, str) and TUNED_MODEL.fullmatch(model):
            self.tuned_model(model)  # 404 when there is no such model
        elif not isinstance(model, str) or family_of(model) is None \
                or model.rsplit("/", 1)[-1].split("@")[0] not in self.models:
            raise bad(f"Do not support publisher model {str(model).rsplit('/', 1)[-1]}")
        try:
            if self._faults(body.get("labels")).blocked and \
                    family_of(model).name != "gemini":
                raise FaultError("emulator-safety applies to Gemini models only.")
            _check_io(body["inputConfig"], body["outputConfig"])
        except (FaultError, ValueError) as exc:
            raise bad(str(exc)) from None
        allowed = {
            "displayName", "model", "inputConfig", "outputConfig", "labels",
            "modelParameters", "encryptionSpec", "serviceAccount", "instanceConfig",
        }
        return {k: copy.deepcopy(v) for k, v in body.items() if k in allowed}

    # ----------------------------------------------------------------- execution
    def _advance(self, name: str, wait: float, state: str | None = None) -> bool:
        """Sleep ``wait`` seconds, then move the job to ``state`` (if given).

        Returns False when the job was cancelled (it is then marked CANCELLED) or deleted.
        """
        if self._closed.wait(wait):
            return False
        with self._lock:
            job = self._jobs.get(name)
            if job is None:
                return False
            if job["state"] == "JOB_STATE_CANCELLING":
                self._cancelled(job)
                return False
            if state:
                self._set_state(job, state)
            return True

    def _cancelling(self, name: str) -> bool:
        with self._lock:
            job = self._jobs.get(name)
            return (self._closed.is_set() or job is None
                    or job["state"] == "JOB_STATE_CANCELLING")

    def _run(self, name: str) -> None:
        """Run a job; an unexpected error fails it (code 13) rather than leaving it RUNNING."""
        try:
            self._execute(name)
        except Exception as exc:
            self._finish(name, error={"code": 13, "message": f"Internal error: {exc!r}"})
            raise

    def _execute(self, name: str) -> None:
        with self._lock:
            job = copy.deepcopy(self._jobs[name])
        faults = self._faults(job.get("labels"), name)
        family = family_of(job["model"])
        queued = bool(faults.queue_seconds) and job["state"] in ("JOB_STATE_QUEUED",
                                                                  "JOB_STATE_PENDING")
        if queued and job["state"] != "JOB_STATE_QUEUED":
            if not self._advance(name, 0, "JOB_STATE_QUEUED"):
                return
        if not self._advance(name, faults.queue_seconds):
            return
        if faults.fault == "expire":
            self._finish(name, state="JOB_STATE_EXPIRED", error={
                "code": 4, "message": "The batch prediction job expired before it could run "
                "(injected by the emulator's expire fault)."})
            return
        if queued and not self._advance(name, 0, "JOB_STATE_PENDING"):  # QUEUED -> PENDING
            return
        if not self._advance(name, self.timing.pending, "JOB_STATE_RUNNING"):
            return
        try:
            lines, passthrough = self._input(job, family)
            total, union, keys = runner.check_input(lines, family)
        except runner.ImportFailure as exc:
            self._finish(name, error={"code": 3, "message": f"Failed to import data. {exc}"})
            return
        if faults.fault == "job-failed":
            self._closed.wait(self.timing.running)
            self._finish(name, error={"code": 13, "message": "Internal error (injected by the "
                                      "emulator's job-failed fault)."})
            return
        try:
            sink = self._output(job, family, faults, keys, passthrough)
        except bigquery.OutputError as exc:
            self._finish(name, error={"code": 3, "message": str(exc)})
            return
        outcome = runner.answer_rows(lines, sink, family, self.responder or family.respond,
                                     faults, name, total,
                                     stop=lambda: self._cancelling(name),
                                     union=union if self.null_injection else None,
                                     progress=lambda done: self._progress(name, done, faults),
                                     files=self._file_check(family))
        if outcome.finished:
            self._closed.wait(self.timing.running)
        results = self._results(sink.info(), outcome, faults)
        if faults.fault == "fail-partway":
            self._finish(name, error={"code": 13, "message": "Internal error after part of the "
                                      "rows (injected by the emulator's fail-partway fault)."},
                         **results)
        else:
            self._finish(name, **results)

    def _input(self, job: dict, family) -> tuple[runner.Lines, list]:
        """The job's input lines, and the BigQuery input's pass-through columns (if any)."""
        config = job["inputConfig"]
        if config["instancesFormat"] == "bigquery":
            uri = config["bigquerySource"]["inputUri"]
            bq = self._bigquery(job)
            self._check_location(bq, job, uri, runner.ImportFailure)
            return bigquery.table_lines(bq, uri, family.payload)
        fs = storage.filesystem(self.gcs_endpoint)
        uris = config["gcsSource"]["uris"]
        paths = storage.expand(fs, uris)
        if not paths:
            raise runner.ImportFailure(f"No files match {uris}.")
        readable = [path for path in paths if fs.exists(path)]
        if not readable:
            raise runner.ImportFailure(f"Input file {paths[0]} does not exist.")
        if len(readable) < len(paths):  # the others are read; these are partial failures
            missing = [path for path in paths if path not in readable]
            with self._lock:
                self._jobs[job["name"]]["partialFailures"] = [
                    {"code": 5, "message": f"Input file {path} does not exist."}
                    for path in missing[:_MAX_PARTIAL_FAILURES]]
        return runner.gcs_lines(fs, readable), []

    def _file_check(self, family) -> filerefs.Check | None:
        """A Gemini job's check of its requests' ``fileData`` URIs, against the Cloud Storage
        it reads from (a job's own cache: a file uploaded during a job may not be seen)."""
        if family.name != "gemini":
            return None
        return filerefs.VertexFiles(lambda: storage.filesystem(self.gcs_endpoint))

    def _output(self, job: dict, family, faults: JobFaults, keys: list[str], passthrough: list):
        """Where the job writes: a ``runner.GcsSink`` or a ``bigquery.TableSink``."""
        config = job["outputConfig"]
        stamp = rfc3339(time.time())
        if config["predictionsFormat"] == "bigquery":
            uri = config["bigqueryDestination"]["outputUri"]
            bq = self._bigquery(job)
            if bigquery.parse_uri(uri)[1] is not None:
                self._check_location(bq, job, uri, bigquery.OutputError)
            return bigquery.TableSink(bq, uri, _location(job), job["model"], stamp,
                                      bigquery.output_schema(family.output_keys(keys),
                                                             passthrough))
        prefix = config["gcsDestination"]["outputUriPrefix"].rstrip("/")
        return runner.GcsSink(storage.filesystem(self.gcs_endpoint),
                              f"{prefix}/prediction-model-{stamp}", faults.incremental_rows)

    def _bigquery(self, job: dict):
        return bigquery.client(self.bigquery_endpoint, job["name"].split("/")[1])

    @staticmethod
    def _check_location(bq, job: dict, uri: str, error: type[Exception]) -> None:
        """BigQuery datasets must be in the job's region, never a multi-region (spec §2.4); a
        job on the global endpoint takes a dataset of any location (the docs do not say which
        go with it, spec §8)."""
        from google.api_core.exceptions import NotFound

        project, dataset, _ = bigquery.parse_uri(uri)
        try:
            where = bq.get_dataset(f"{project}.{dataset}").location or ""
        except NotFound:
            raise error(f"BigQuery dataset {project}.{dataset} does not exist.") from None
        if _location(job) != "global" and where.lower() != _location(job):
            raise error(f"BigQuery dataset {project}.{dataset} is in {where}; it must be in the "
                        f"job's region {_location(job)} (multi-regions such as US or EU are not "
                        "allowed).")

    def _progress(self, name: str, outcome: runner.Outcome, faults: JobFaults) -> None:
        """A running job's ``completionStats`` so far."""
        with self._lock:
            job = self._jobs.get(name)
            if job is not None and job["state"] == "JOB_STATE_RUNNING":
                job.update(self._stats(outcome, faults))

    @staticmethod
    def _stats(outcome: runner.Outcome, faults: JobFaults) -> dict:
        """``completionStats`` (int64 as strings, zeros omitted), unless faults leave it out."""
        if faults.stats == "empty":
            return {}
        counts = {"successfulCount": outcome.succeeded, "failedCount": outcome.failed,
                  "incompleteCount": outcome.total - outcome.succeeded - outcome.failed}
        return {"completionStats": {k: str(v) for k, v in counts.items()
                                    if v and faults.stats != "zero"}}

    def _results(self, info: dict, outcome: runner.Outcome, faults: JobFaults) -> dict:
        """``outputInfo`` and ``completionStats``."""
        return {"outputInfo": info, **self._stats(outcome, faults)}

    def _finish(self, name: str, state: str | None = None, **fields) -> None:
        """End a job: SUCCEEDED, or FAILED when ``error`` is given, or ``state``; a job being
        cancelled ends CANCELLED, keeping what it wrote."""
        with self._lock:
            job = self._jobs.get(name)
            if job is None or self._closed.is_set():
                return
            job.update(fields)
            if job["state"] == "JOB_STATE_CANCELLING":
                self._cancelled(job)  # what it wrote stays, as on the real service
                return
            state = state or ("JOB_STATE_FAILED" if "error" in fields else "JOB_STATE_SUCCEEDED")
            if state == "JOB_STATE_SUCCEEDED" and self.timing.output and "outputInfo" in job:
                reveal_later(self.timing.output, self._closed,
                             partial(self._reveal, name, {"outputInfo": job.pop("outputInfo")}))
            self._set_state(job, state)

    def _reveal(self, name: str, fields: dict) -> None:
        """Add a succeeded job's output to its record (``Timing.output`` after it ended)."""
        with self._lock:
            job = self._jobs.get(name)
            if job is not None:
                job.update(fields)
                self._store.save(job)
