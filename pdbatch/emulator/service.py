"""The emulated ``batchPredictionJobs`` service: job records, validation and execution.

Jobs are kept as REST-shaped dicts (lowerCamelCase, enum names, int64 as strings, default values
omitted), exactly what the HTTP layer returns. Each job runs in a background thread:
PENDING -> RUNNING -> SUCCEEDED (or FAILED with error code 3 when its input cannot be read).
"""

from __future__ import annotations

import copy
import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from . import storage
from .responder import deterministic_response

TERMINAL = {
    "JOB_STATE_SUCCEEDED",
    "JOB_STATE_FAILED",
    "JOB_STATE_CANCELLED",
    "JOB_STATE_EXPIRED",
    "JOB_STATE_PARTIALLY_SUCCEEDED",
    "JOB_STATE_PAUSED",
}
GEMINI_MODEL = re.compile(
    r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/google/models/(gemini-[\w.-]+)$"
)
_GCS_URI = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9](/.*)?$")
_RESERVED_KEYS = {"request", "response", "status", "processed_time"}
#: Job label that switches on a fault for that job: ``{"emulator-fault": "job-failed"}`` makes
#: the job end FAILED (error code 13) after running, with no output written.
FAULT_LABEL = "emulator-fault"
FAULTS = {"job-failed"}


class ServiceError(Exception):
    """An error the service answers synchronously, as the google.rpc.Status envelope."""

    def __init__(self, code: int, status: str, message: str):
        super().__init__(message)
        self.code, self.status, self.message = code, status, message

    def envelope(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


def rfc3339(t: float) -> str:
    """RFC3339 UTC timestamp with microseconds and ``Z``, as Vertex writes them."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _processed_time(t: float) -> str:
    """The per-line ``processed_time``: ISO-8601 with a ``+00:00`` offset, milliseconds."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


@dataclass
class Timing:
    """How long a job stays in each state before it moves on, in seconds."""

    pending: float = 0.2
    running: float = 0.2


@dataclass
class BatchService:
    """Holds the jobs of one emulator and runs them.

    ``gcs_endpoint`` is the Cloud Storage server jobs read and write (default:
    ``STORAGE_EMULATOR_HOST``).
    """

    timing: Timing = field(default_factory=Timing)
    gcs_endpoint: str | None = None
    responder: Callable[[dict], dict] = deterministic_response
    seed: int | None = None  # job ids; None: unpredictable, as on the real service
    _jobs: dict[str, dict] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self._ids = random.Random(self.seed)

    # ----------------------------------------------------------------- API methods
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
            self._jobs[job["name"]] = job
        threading.Thread(target=self._run, args=(job["name"],), daemon=True).start()
        return copy.deepcopy(job)

    def get(self, name: str) -> dict:
        with self._lock:
            return copy.deepcopy(self._job(name))

    def list(self, parent: str, page_size: int, page_token: str) -> dict:
        with self._lock:
            names = sorted(n for n in self._jobs if n.startswith(parent + "/"))
            start = int(page_token) if page_token else 0
            size = page_size if page_size > 0 else 100
            page = [copy.deepcopy(self._jobs[n]) for n in names[start : start + size]]
        out: dict = {"batchPredictionJobs": page} if page else {}
        if start + size < len(names):
            out["nextPageToken"] = str(start + size)
        return out

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
            del self._jobs[name]
        return {
            "name": f"{name}/operations/{self._ids.randrange(10**18, 9 * 10**18)}",
            "done": True,
            "response": {"@type": "type.googleapis.com/google.protobuf.Empty"},
        }

    # ----------------------------------------------------------------- helpers
    def _job(self, name: str) -> dict:
        try:
            return self._jobs[name]
        except KeyError:
            raise ServiceError(404, "NOT_FOUND", f"BatchPredictionJob {name} not found.") from None

    @staticmethod
    def _set_state(job: dict, state: str) -> None:
        now = rfc3339(time.time())
        job["state"] = state
        job["updateTime"] = now
        if state == "JOB_STATE_RUNNING":
            job["startTime"] = now
        if state in TERMINAL:
            job["endTime"] = now

    @staticmethod
    def _validated(body: dict) -> dict:
        def bad(message: str) -> ServiceError:
            return ServiceError(400, "INVALID_ARGUMENT", message)

        if not isinstance(body, dict):
            raise bad("The request body must be a BatchPredictionJob object.")
        for required in ("displayName", "model", "inputConfig", "outputConfig"):
            if not body.get(required):
                raise bad(f"Required field is not set: {required}.")
        model = body["model"]
        if not GEMINI_MODEL.match(model):
            raise bad(f"Do not support publisher model {model.rsplit('/', 1)[-1]}")
        source = (body["inputConfig"].get("gcsSource") or {}).get("uris") or []
        if body["inputConfig"].get("instancesFormat") != "jsonl" or not source:
            raise bad("inputConfig must have instancesFormat 'jsonl' and gcsSource.uris.")
        prefix = (body["outputConfig"].get("gcsDestination") or {}).get("outputUriPrefix", "")
        if body["outputConfig"].get("predictionsFormat") != "jsonl" or not prefix:
            raise bad("outputConfig must have predictionsFormat 'jsonl' and "
                      "gcsDestination.outputUriPrefix.")
        fault = (body.get("labels") or {}).get(FAULT_LABEL)
        if fault is not None and fault not in FAULTS:
            raise bad(f"Unknown {FAULT_LABEL} label value {fault!r}; known: {sorted(FAULTS)}.")
        for uri in [*source, prefix]:
            if not _GCS_URI.match(uri):
                raise bad(f"Invalid Cloud Storage URI: {uri}")
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
        time.sleep(wait)
        with self._lock:
            job = self._jobs.get(name)
            if job is None:
                return False
            if job["state"] == "JOB_STATE_CANCELLING":
                self._set_state(job, "JOB_STATE_CANCELLED")
                job["error"] = {"code": 1, "message": "CANCELED"}
                return False
            if state:
                self._set_state(job, state)
            return True

    def _run(self, name: str) -> None:
        """Run a job; an unexpected error fails it (code 13) rather than leaving it RUNNING."""
        try:
            self._execute(name)
        except Exception as exc:
            self._finish(name, error={"code": 13, "message": f"Internal error: {exc!r}"})
            raise

    def _execute(self, name: str) -> None:
        if not self._advance(name, self.timing.pending, "JOB_STATE_RUNNING"):
            return
        with self._lock:
            job = copy.deepcopy(self._jobs[name])
        fs = storage.filesystem(self.gcs_endpoint)
        try:
            lines, failed = self._predict(fs, job)
        except _ImportFailure as exc:
            self._finish(name, error={"code": 3, "message": f"Failed to import data. {exc}"})
            return
        if not self._advance(name, self.timing.running):
            return
        if (job.get("labels") or {}).get(FAULT_LABEL) == "job-failed":
            self._finish(name, error={"code": 13, "message": "Internal error (injected by the "
                                      "emulator's job-failed fault)."})
            return
        prefix = job["outputConfig"]["gcsDestination"]["outputUriPrefix"].rstrip("/")
        out_dir = f"{prefix}/prediction-model-{rfc3339(time.time())}"
        random.Random(name).shuffle(lines)
        storage.write_bytes(fs, f"{out_dir}/predictions.jsonl", b"".join(lines))
        stats = {"successfulCount": str(len(lines) - failed)}
        if failed:
            stats["failedCount"] = str(failed)
        self._finish(name, outputInfo={"gcsOutputDirectory": out_dir}, completionStats=stats)

    def _finish(self, name: str, **fields) -> None:
        with self._lock:
            job = self._jobs.get(name)
            if job is None:
                return
            job.update(fields)
            state = "JOB_STATE_FAILED" if "error" in fields else "JOB_STATE_SUCCEEDED"
            if job["state"] == "JOB_STATE_CANCELLING":
                state = "JOB_STATE_CANCELLED"
            self._set_state(job, state)

    def _predict(self, fs, job: dict) -> tuple[list[bytes], int]:
        """Answer every input line; returns the output lines and how many rows failed."""
        uris = job["inputConfig"]["gcsSource"]["uris"]
        paths = storage.expand(fs, uris)
        if not paths:
            raise _ImportFailure(f"No files match {uris}.")
        out: list[bytes] = []
        failed = 0
        for path in paths:
            try:
                raw_lines = list(storage.read_lines(fs, path))
            except FileNotFoundError:
                raise _ImportFailure(f"Input file {path} does not exist.") from None
            for number, raw in enumerate(raw_lines, 1):
                try:
                    line = json.loads(raw)
                except ValueError:
                    raise _ImportFailure(f"Line {number} of {path} is not valid JSON.") from None
                if not isinstance(line, dict) or not isinstance(line.get("request"), dict):
                    raise _ImportFailure(
                        f"Line {number} of {path} has no 'request' object."
                    ) from None
                result = {k: v for k, v in line.items() if k not in _RESERVED_KEYS}
                result["status"] = ""
                result["processed_time"] = _processed_time(time.time())
                result["request"] = line["request"]
                try:
                    result["response"] = self.responder(line["request"])
                except Exception as exc:  # a row-level failure, as the service reports them
                    failed += 1
                    error = {"code": 500, "message": str(exc), "status": "INTERNAL"}
                    result["status"] = "Internal Server Error: " + json.dumps({"error": error})
                out.append(json.dumps(result, ensure_ascii=False).encode() + b"\n")
        return out, failed


class _ImportFailure(Exception):
    """The job's input cannot be read; the job fails with error code 3."""
