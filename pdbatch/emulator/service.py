"""The emulated ``batchPredictionJobs`` service: job records, the public operations (create,
get, list, cancel, delete) and the state machine.

Jobs are kept as REST-shaped dicts (lowerCamelCase, enum names, int64 as strings, default values
omitted), exactly what the HTTP layer returns. A create body is checked by
``vertex_validation.py``; each job runs in a background thread (``vertex_execution.py``):
[QUEUED ->] PENDING -> RUNNING -> SUCCEEDED, or FAILED with error code 3 when its input cannot
be read, or what its fault labels ask for (``faults.py``); ``runner.py`` answers the rows.
"""

from __future__ import annotations

import copy
import os
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from . import filters
from .capacity import Capacity
from .families import SERVED_MODELS, TUNED_MODEL
from .faults import ApiFaults, JobFaults
from .rest import ServiceError, page_of, rfc3339
from .state import JobStore
from .vertex_execution import JobExecution, Timing  # Timing: also importable from here
from .vertex_validation import CreateValidation

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





@dataclass
class BatchService(CreateValidation, JobExecution):
    """Holds the jobs of one emulator and runs them.

    ``gcs_endpoint`` and ``bigquery_endpoint`` are the Cloud Storage and BigQuery servers jobs
    read and write (default: ``STORAGE_EMULATOR_HOST``, ``BIGQUERY_EMULATOR_HOST``). With
    ``state_dir`` the jobs are kept in that folder too: a new service on the same folder serves
    them again and resumes the unfinished ones from the start.
    ``capacity`` is the concurrency quota (``capacity.Capacity``: 8 jobs running at once by
    default, the others QUEUED). ``models`` are the publisher models served
    (``families.SERVED_MODELS``; others are refused at create, as the service does).
    ``fault_labels`` switches faults on for every job, as if each carried those
    ``emulator-*`` labels (a job's own labels win), or with ``fault_jobs=N`` for the next N
    jobs created only
    (a job that fails once, then its retry succeeds); ``api_faults.inject(429, 3)`` makes the
    next 3 API calls fail.
    """

    timing: Timing = field(default_factory=Timing)
    capacity: Capacity = field(default_factory=Capacity)  # jobs running at once (quota)
    gcs_endpoint: str | None = None
    responder: Callable[[dict], dict] | None = None  # None: each family's deterministic one
    #: Embedding models' vectors (``embeddings.Embedder``); None: the hashed-word ones.
    embedder: Callable | None = None
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
            if self._faults(job.get("labels"), job["name"]).queue_seconds \
                    or self.capacity.full():
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
