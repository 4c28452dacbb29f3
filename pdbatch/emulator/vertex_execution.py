"""How the emulated ``batchPredictionJobs`` service runs one job once it is kept: the time it
spends in each state, its input read (Cloud Storage or BigQuery), its rows answered by
``runner.py``, its output written, and its outcome recorded."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from . import bigquery, filerefs, runner, storage
from .capacity import Capacity
from .families import family_of
from .faults import JobFaults, reveal_later
from .rest import rfc3339

#: ``partialFailures`` "never exceeds 20 entries" (spec §1.3).
_MAX_PARTIAL_FAILURES = 20


def _location(job: dict) -> str:
    """The job's location (``us-central1``, ``global``), from its name."""
    return job["name"].split("/")[3].lower()


@dataclass
class Timing:
    """How long a job stays in each state before it moves on, and (``output``) how long a
    succeeded job's output stays out of its record after it is SUCCEEDED, in seconds."""

    pending: float = 0.2
    running: float = 0.2
    output: float = 0.0


class JobExecution:
    """``BatchService``'s job runner (``_run`` in a thread per job): a mixin over the
    service's jobs, lock and settings, moving a job on with its ``_advance``, ``_set_state``
    and ``_cancelled``."""

    timing: Timing
    capacity: Capacity
    responder: Callable[[dict], dict] | None
    embedder: Callable | None
    null_injection: bool
    gcs_endpoint: str | None
    bigquery_endpoint: str | None
    _jobs: dict[str, dict]
    _lock: threading.Lock
    _closed: threading.Event
    _faults: Callable[..., JobFaults]
    _advance: Callable[..., bool]
    _set_state: Callable[[dict, str], None]
    _cancelled: Callable[[dict], None]

    def _cancelling(self, name: str) -> bool:
        with self._lock:
            job = self._jobs.get(name)
            return (self._closed.is_set() or job is None
                    or job["state"] == "JOB_STATE_CANCELLING")

    def _run(self, name: str) -> None:
        """Run a job; an unexpected error fails it (code 13) rather than leaving it RUNNING."""
        held: list[bool] = []
        try:
            self._execute(name, held)
        except Exception as exc:
            self._finish(name, error={"code": 13, "message": f"Internal error: {exc!r}"})
            raise
        finally:
            if held:
                self.capacity.release()

    def _slot(self, name: str, held: list[bool]) -> bool:
        """Wait QUEUED for one of the ``capacity``'s running slots (``held`` records it);
        False when the job was cancelled (it is then CANCELLED) or deleted meanwhile."""
        def queued() -> None:
            with self._lock:
                job = self._jobs.get(name)
                if job is not None and job["state"] == "JOB_STATE_PENDING":
                    self._set_state(job, "JOB_STATE_QUEUED")

        if not self.capacity.acquire(lambda: self._cancelling(name), queued):
            self._advance(name, 0)
            return False
        held.append(True)
        return True

    def _execute(self, name: str, held: list[bool]) -> None:
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
        if not self._slot(name, held):
            return
        with self._lock:
            queued = self._jobs.get(name, {}).get("state") == "JOB_STATE_QUEUED"
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
        answerer = family.answerer(self.responder, self.embedder)
        outcome = runner.answer_rows(lines, sink, family, answerer, faults, name, total,
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
            schema = bigquery.output_schema(family.output_keys(keys, table=True), passthrough)
            return bigquery.TableSink(bq, uri, _location(job), job["model"], stamp, schema,
                                      flatten="" if family.payload else family.echo)
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

