"""The Gemini Developer API's batch mode, emulated: ``models/{model}:batchGenerateContent`` and
the ``batches/{id}`` long-running operations (get, list, cancel, delete).

A batch is answered by the Vertex side's machinery (``runner.decide``, the responder, the job
faults and ``Timing`` of the ``BatchService`` it is given), so both surfaces answer a Gemini
request alike; only the line formats differ. States on the wire are ``BATCH_STATE_*``:
PENDING -> RUNNING -> SUCCEEDED, or FAILED / CANCELLED / EXPIRED. A file input's answers go
to a generated file ``files/batch-<id>`` (lines ``{"response" | "error", "key"}``), inline
requests' to ``inlinedResponses`` (``{"response" | "error"}``: the real service drops the
requests' ``metadata``; with ``inline_metadata`` it is kept, as the API reference documents),
both shuffled in windows as on the Vertex side. This module keeps the batches and moves them
through their states; ``gemini_validation.py`` checks a create body, ``gemini_answers.py``
answers a batch's requests.
"""

from __future__ import annotations

import copy
import os
import random
import string
import threading
import time

from .families import family_of
from .faults import JobFaults, reveal_later
from .gemini_answers import BatchAnswers
from .gemini_files import FileStore
from .gemini_validation import BatchValidation
from .rest import ServiceError, invalid_argument, page_of, rfc3339
from .service import BatchService
from .state import JobStore

BATCH_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1main.GenerateContentBatch"
OUTPUT_TYPE = ("type.googleapis.com/google.ai.generativelanguage.v1main."
               "GenerateContentBatchOutput")
#: Inline requests: "keep the total request size under 20MB"
#: (https://ai.google.dev/gemini-api/docs/batch-api).
MAX_INLINE_BYTES = 20 * 2**20
#: Batches not finished after 48 hours expire (same page).
EXPIRE_AFTER_SECONDS = 48 * 3600.0
TERMINAL = frozenset({"BATCH_STATE_SUCCEEDED", "BATCH_STATE_FAILED", "BATCH_STATE_CANCELLED",
                      "BATCH_STATE_EXPIRED"})
#: Model aliases of the Developer API, served beside the ``gemini-*`` names of the shared list.
MODEL_ALIASES = frozenset({"gemini-flash-latest", "gemini-flash-lite-latest",
                           "gemini-pro-latest"})
_ID_CHARS = string.ascii_lowercase + string.digits


class GeminiBatches(BatchValidation, BatchAnswers):
    """The batches of one emulator's Developer API surface.

    ``vertex`` lends its ``timing``, ``responder``, ``models`` (the ``gemini-*`` ones, plus
    ``MODEL_ALIASES``) and server-wide ``fault_labels``/``fault_jobs``; a batch's own faults
    are ``emulator-*=value`` words in its display name (the API has no labels).
    ``max_inline_bytes`` caps a create request's body, ``expire_after`` (seconds) is how long
    a batch may stay unfinished before it expires, ``inline_metadata`` whether inline
    responses carry their request's ``metadata`` (fixed when a batch is created),
    ``require_display_name`` whether a create without ``displayName`` is refused (False: it is
    accepted, as the live API does although its reference marks the field required). With
    ``state_dir`` the batches are kept in that folder and unfinished ones run again after a
    restart.
    """

    def __init__(self, vertex: BatchService, files: FileStore,
                 state_dir: str | os.PathLike | None = None, seed: int | None = None,
                 max_inline_bytes: int = MAX_INLINE_BYTES,
                 expire_after: float = EXPIRE_AFTER_SECONDS, inline_metadata: bool = False,
                 require_display_name: bool = False):
        self.vertex, self.files = vertex, files
        self.max_inline_bytes, self.expire_after = max_inline_bytes, expire_after
        self.inline_metadata = inline_metadata
        self.require_display_name = require_display_name
        self._store = JobStore(state_dir)
        self._ids = random.Random(seed)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        for name, record in list(self._store.jobs.items()):
            if record["state"] not in TERMINAL:
                self._start(name)

    # ----------------------------------------------------------------- API methods
    def models(self) -> set[str]:
        """The model ids served (``gemini-2.5-flash``, ...)."""
        return {m for m in self.vertex.models if m.startswith("gemini-")} | MODEL_ALIASES

    def create(self, model: str, body: dict, size: int, base_url: str = "",
               method: str = "batchGenerateContent") -> dict:
        """``POST models/{model}:batchGenerateContent``: the new batch's Operation;
        ``base_url`` is the emulator's as the caller reached it (its Files API URIs)."""
        if size > self.max_inline_bytes:
            raise invalid_argument(
                f"Request payload size exceeds the limit: {self.max_inline_bytes} bytes.")
        if model not in self.models():
            raise ServiceError(404, "NOT_FOUND", f"models/{model} is not found for API version "
                               "v1beta, or is not supported for batchGenerateContent. Call "
                               "ListModels to see the list of available models and their "
                               "supported methods.")
        family = family_of(f"publishers/google/models/{model}")
        embeds = family is not None and not family.generates
        if embeds != (method == "asyncBatchEmbedContent"):
            raise ServiceError(400, "INVALID_ARGUMENT", f"models/{model} does not support "
                               f"{method}; use "
                               f"{'asyncBatchEmbedContent' if embeds else 'batchGenerateContent'}.")
        record, own = self._validated(body)
        record.update(model=f"models/{model}", _faults={**self.vertex.take_fault_labels(),
                                                        **own},
                      _base=base_url, _inlineMetadata=self.inline_metadata)
        now = time.time()
        batch_id = "".join(self._ids.choice(_ID_CHARS) for _ in range(36))
        record.update(name=f"batches/{batch_id}", state="BATCH_STATE_PENDING",
                      createTime=rfc3339(now), updateTime=rfc3339(now), _created=now,
                      batchStats={"requestCount": str(record["_total"]),
                                  "pendingRequestCount": str(record["_total"])})
        with self._lock:
            self._store.save(record)
            answer = _operation(record)
        self._start(record["name"])
        return answer

    def get(self, name: str) -> dict:
        with self._lock:
            return _operation(self._record(name))

    def list(self, start: int, size: int) -> dict:
        """The page of ``size`` batches from the ``start``-th, newest first [I]."""
        with self._lock:
            records = sorted(self._store.jobs.values(),
                             key=lambda r: (r["_created"], r["name"]), reverse=True)
            return page_of(records, start, size, "operations", _operation)

    def cancel(self, name: str) -> dict:
        with self._lock:
            record = self._record(name)
            if record["state"] in TERMINAL:
                raise ServiceError(400, "FAILED_PRECONDITION", f"Batch {name} is in state "
                                   f"{record['state']} and can no longer be cancelled.")
            self._end(record, "BATCH_STATE_CANCELLED", error={"code": 1,
                                                              "message": "CANCELLED"})
        return {}

    def delete(self, name: str) -> dict:
        """Forget a batch, finished or not (the API reference: delete "does not cancel the
        operation"; it is gone for get and list)."""
        with self._lock:
            self._record(name)
            self._store.remove(name)
        return {}

    def close(self) -> None:
        """Stop running batches where they are, as if the process died."""
        self._closed.set()

    # ----------------------------------------------------------------- execution
    def _start(self, name: str) -> None:
        threading.Thread(target=self._run, args=(name,), daemon=True).start()

    def _run(self, name: str) -> None:
        """Run a batch; an unexpected error fails it (code 13). It waits PENDING for one of
        the emulator's running slots (``BatchService.capacity``, shared with Vertex jobs)."""
        held: list[bool] = []
        try:
            self._execute(name, held)
        except Exception as exc:
            if self._closed.is_set():  # the emulator stopped under it (its folder went away)
                return
            self._finish(name, "BATCH_STATE_FAILED",
                         error={"code": 13, "message": f"Internal error: {exc!r}"})
            raise
        finally:
            if held:
                self.vertex.capacity.release()

    def _execute(self, name: str, held: list[bool]) -> None:
        with self._lock:
            record = copy.deepcopy(self._store.jobs[name])
        faults = JobFaults.from_labels(record["_faults"])
        if not self._wait(name, faults.queue_seconds + self.vertex.timing.pending):
            return
        if faults.fault == "expire":
            self._expire(name, "injected by the emulator's expire fault")
            return
        if not self.vertex.capacity.acquire(lambda: not self._wait(name, 0)):
            return
        held.append(True)
        if not self._advance(name, "BATCH_STATE_RUNNING"):
            return
        if faults.fault == "job-failed":
            if self._wait(name, self.vertex.timing.running):
                self._finish(name, "BATCH_STATE_FAILED", error={
                    "code": 13, "message": "Internal error (injected by the emulator's "
                    "job-failed fault)."})
            return
        answered = self._answer(name, record, faults)
        if answered is None or not self._wait(name, self.vertex.timing.running):
            return
        output, counts, complete = answered
        stats = _stats(record["_total"], *counts)
        if not complete:  # the fail-partway fault
            self._finish(name, "BATCH_STATE_FAILED", batchStats=stats, error={
                "code": 13, "message": "Internal error after part of the requests (injected "
                "by the emulator's fail-partway fault)."})
            return
        if "inputConfig" in record:
            file_name = f"files/batch-{name.removeprefix('batches/')}"
            self.files.add_generated(file_name, output, "application/jsonl")
            output = {"responsesFile": file_name}
        else:
            output = {"inlinedResponses": {"inlinedResponses": output}}
        late = self.vertex.timing.output
        if late:  # SUCCEEDED before its responses are set, as the real service can answer
            reveal_later(late, self._closed, lambda: self._reveal(name, output))
        self._finish(name, "BATCH_STATE_SUCCEEDED", batchStats=stats,
                     **({} if late else {"output": output}))

    # ----------------------------------------------------------------- state
    def _record(self, name: str) -> dict:
        try:
            return self._store.jobs[name]
        except KeyError:
            raise ServiceError(404, "NOT_FOUND", "Requested entity was not found.") from None

    def _live(self, name: str) -> dict | None:
        """The batch's record if it is still to be worked on (call under the lock); expires it
        when it has waited ``expire_after`` seconds."""
        record = self._store.jobs.get(name)
        if record is None or record["state"] in TERMINAL or self._closed.is_set():
            return None
        if time.time() - record["_created"] >= self.expire_after:
            self._end(record, "BATCH_STATE_EXPIRED", error={
                "code": 4, "message": "The batch expired: it was not finished within "
                f"{self.expire_after / 3600:g} hours."})
            return None
        return record

    def _wait(self, name: str, seconds: float) -> bool:
        """Sleep, then whether the batch is still to be worked on."""
        if self._closed.wait(seconds):
            return False
        with self._lock:
            return self._live(name) is not None

    def _advance(self, name: str, state: str) -> bool:
        with self._lock:
            record = self._live(name)
            if record is None:
                return False
            record.update(state=state, updateTime=rfc3339(time.time()))
            self._store.save(record)
            return True

    def _progress(self, name: str, total: int, counts: list[int]) -> bool:
        """Record the counts so far; whether the batch goes on."""
        with self._lock:
            record = self._live(name)
            if record is None:
                return False
            record["batchStats"] = _stats(total, *counts)
            return True

    def _expire(self, name: str, why: str) -> None:
        with self._lock:
            record = self._live(name)
            if record is not None:
                self._end(record, "BATCH_STATE_EXPIRED", error={
                    "code": 4, "message": f"The batch expired before it could run ({why})."})

    def _finish(self, name: str, state: str, **fields) -> None:
        with self._lock:
            record = self._live(name)
            if record is not None:
                self._end(record, state, **fields)

    def _reveal(self, name: str, output: dict) -> None:
        """Set a succeeded batch's output (``Timing.output`` after it ended)."""
        with self._lock:
            record = self._store.jobs.get(name)
            if record is not None:
                record["output"] = output
                self._store.save(record)

    def _end(self, record: dict, state: str, **fields) -> None:
        """Move a batch to a final ``state`` (call under the lock)."""
        now = rfc3339(time.time())
        record.update(fields, state=state, updateTime=now, endTime=now)
        record.pop("_requests", None)  # no longer needed; keeps the record small
        self._store.save(record)


def _operation(record: dict) -> dict:
    """The Operation the API answers for a batch: the GenerateContentBatch as its metadata,
    ``done``, and the output as its ``response`` (or its ``error``)."""
    metadata = {"@type": BATCH_TYPE}
    for key in ("model", "displayName", "inputConfig", "output", "createTime", "updateTime",
                "endTime", "batchStats", "state", "name", "priority"):
        if key in record:
            metadata[key] = copy.deepcopy(record[key])
    faults = JobFaults.from_labels(record["_faults"])
    if faults.stats == "empty":
        metadata.pop("batchStats", None)
    elif faults.stats == "zero":
        metadata["batchStats"] = {}
    answer = {"name": record["name"], "metadata": metadata}
    if record["state"] in TERMINAL:
        answer["done"] = True
    if "output" in record:
        answer["response"] = {"@type": OUTPUT_TYPE, **copy.deepcopy(record["output"])}
    if "error" in record:
        answer["error"] = dict(record["error"])
    return answer


def _stats(total: int, succeeded: int, failed: int) -> dict:
    """``batchStats``: int64 counts as strings, zeros omitted."""
    counts = {"requestCount": total, "successfulRequestCount": succeeded,
              "failedRequestCount": failed, "pendingRequestCount": total - succeeded - failed}
    return {key: str(value) for key, value in counts.items() if value}
