"""The Gemini Developer API's batch mode, emulated: ``models/{model}:batchGenerateContent`` and
the ``batches/{id}`` long-running operations (get, list, cancel, delete).

A batch is answered by the Vertex side's machinery (``runner.decide``, the responder, the job
faults and ``Timing`` of the ``BatchService`` it is given), so both surfaces answer a Gemini
request alike; only the line formats differ. States on the wire are ``BATCH_STATE_*``:
PENDING -> RUNNING -> SUCCEEDED, or FAILED / CANCELLED / EXPIRED. A file input's answers go
to a generated file ``files/batch-<id>`` (lines ``{"response" | "error", "key"}``), inline
requests' to ``inlinedResponses`` (``{"response" | "error"}``: the real service drops the
requests' ``metadata``; with ``inline_metadata`` it is kept, as the API reference documents),
both shuffled in windows as on the Vertex side.
"""

from __future__ import annotations

import copy
import os
import random
import re
import string
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson

from . import filerefs, runner
from .families import camel, family_of
from .faults import ROW_ERRORS, FaultError, JobFaults, reveal_later
from .gemini_files import FileStore, missing_file
from .service import BatchService, ServiceError, page_of, rfc3339
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
#: GenerateContentBatch's fields (https://ai.google.dev/api/batch-api); output-only ones in a
#: create body are ignored, others refused.
_BATCH_FIELDS = frozenset({"model", "name", "displayName", "inputConfig", "output",
                           "createTime", "endTime", "updateTime", "batchStats", "state",
                           "priority", "webhookConfig"})
_FAULT = re.compile(r"(emulator-[a-z]+(?:-[a-z]+)*)=([A-Za-z0-9_-]+)")
_ID_CHARS = string.ascii_lowercase + string.digits
_GEMINI = family_of("publishers/google/models/gemini-2.5-flash")


def _status(code: int, message: str, status: str) -> dict:
    return {"code": code, "message": message, "status": status}


def _bad(message: str) -> ServiceError:
    return ServiceError(400, "INVALID_ARGUMENT", message)


class GeminiBatches:
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
        self.require_display_name = require_display_name
        self.max_inline_bytes, self.expire_after = max_inline_bytes, expire_after
        self.inline_metadata = inline_metadata
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

    def create(self, model: str, body: dict, size: int, base_url: str = "") -> dict:
        """``POST models/{model}:batchGenerateContent``: the new batch's Operation;
        ``base_url`` is the emulator's as the caller reached it (its Files API URIs)."""
        if size > self.max_inline_bytes:
            raise _bad(f"Request payload size exceeds the limit: {self.max_inline_bytes} bytes.")
        if model not in self.models():
            raise ServiceError(404, "NOT_FOUND", f"models/{model} is not found for API version "
                               "v1beta, or is not supported for batchGenerateContent. Call "
                               "ListModels to see the list of available models and their "
                               "supported methods.")
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

    # ----------------------------------------------------------------- validation
    def _validated(self, body: dict) -> tuple[dict, dict]:
        """The new record from a create body, and the batch's own fault labels."""
        batch = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(batch, dict):
            raise _bad("Required field batch is not set.")
        batch = {camel(k): v for k, v in batch.items()}
        unknown = sorted(set(batch) - _BATCH_FIELDS)
        if unknown:
            raise _bad(f'Invalid JSON payload received. Unknown name "{unknown[0]}" at '
                       "'batch': Cannot find field.")
        display = batch.get("displayName")
        if display is not None and not isinstance(display, str):
            raise _bad("batch.display_name must be a string.")
        if not display and self.require_display_name:  # the reference's reading
            raise _bad("batch.display_name is required.")
        own = dict(_FAULT.findall(display or ""))
        try:
            JobFaults.from_labels(own)
        except FaultError as exc:
            raise _bad(str(exc)) from None
        config = {camel(k): v for k, v in (batch.get("inputConfig") or {}).items()} \
            if isinstance(batch.get("inputConfig"), dict) else {}
        record: dict = {"displayName": display} if display else {}
        if batch.get("priority") not in (None, 0, "0"):
            record["priority"] = str(int(batch["priority"]))
        if bool(config.get("fileName")) == bool(config.get("requests")):
            raise _bad("batch.input_config needs exactly one of file_name and requests.")
        if config.get("fileName"):
            name = str(config["fileName"])
            if not self.files.exists(name):
                raise missing_file(name.removeprefix("files/"))
            if self.files.state(name) == "PROCESSING":
                raise ServiceError(400, "FAILED_PRECONDITION", filerefs.not_active(name))
            total = _count_lines(self.files.path(name))
            if not total:
                raise _bad(f"The input file {name} has no requests.")
            record.update(inputConfig={"fileName": name}, _total=total)
        else:
            requests = (config["requests"] or {}).get("requests") \
                if isinstance(config["requests"], dict) else None
            if not isinstance(requests, list) or not requests or not all(
                    isinstance(r, dict) and isinstance(r.get("request"), dict)
                    for r in requests):
                raise _bad("batch.input_config.requests.requests must be a non-empty list of "
                           "{request, metadata} objects.")
            record.update(_requests=requests, _total=len(requests))
        return record, own

    # ----------------------------------------------------------------- execution
    def _start(self, name: str) -> None:
        threading.Thread(target=self._run, args=(name,), daemon=True).start()

    def _run(self, name: str) -> None:
        """Run a batch; an unexpected error fails it (code 13)."""
        try:
            self._execute(name)
        except Exception as exc:
            if self._closed.is_set():  # the emulator stopped under it (its folder went away)
                return
            self._finish(name, "BATCH_STATE_FAILED",
                         error={"code": 13, "message": f"Internal error: {exc!r}"})
            raise

    def _execute(self, name: str) -> None:
        with self._lock:
            record = copy.deepcopy(self._store.jobs[name])
        faults = JobFaults.from_labels(record["_faults"])
        if not self._wait(name, faults.queue_seconds + self.vertex.timing.pending):
            return
        if faults.fault == "expire":
            self._expire(name, "injected by the emulator's expire fault")
            return
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

    def _answer(self, name: str, record: dict, faults: JobFaults):
        """Answer every request: ``(output, (succeeded, failed), complete)`` with output the
        responses file's path (file input) or the inlined responses; None when the batch was
        cancelled, deleted, expired or the emulator stopped meanwhile."""
        rng = random.Random(name)
        responder = self.vertex.responder or _GEMINI.respond
        inline = "_requests" in record
        total = record["_total"]
        halt_at = max(1, total // 2) if faults.fault == "fail-partway" else None
        counts = [0, 0]
        results: list = []
        spool = None if inline else tempfile.NamedTemporaryFile(
            dir=self.files.folder, prefix="responses-", delete=False)
        window: list = []
        files = filerefs.DeveloperFiles(self.files.state, record.get("_base", ""))
        keep = bool(record.get("_inlineMetadata"))
        try:
            items = iter(record["_requests"]) if inline else \
                _file_lines(self.files.path(record["inputConfig"]["fileName"]))
            for item in items:
                answer = _respond(item, inline, faults, rng, responder, files, keep)
                counts[0 if "response" in answer else 1] += 1
                window.append(answer if inline else orjson.dumps(answer) + b"\n")
                done = sum(counts)
                if len(window) >= runner.WINDOW or done == total or done == halt_at:
                    runner.shuffle(rng, window)
                    if inline:
                        results += window
                    else:
                        spool.writelines(window)
                    window = []
                    if not self._progress(name, total, counts):
                        return None
                if done == halt_at:
                    return results, tuple(counts), False
            if spool is not None:
                spool.close()
                results = Path(spool.name)
                spool = None
            return results, tuple(counts), True
        finally:
            if spool is not None:
                spool.close()
                os.unlink(spool.name)

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


def _count_lines(path: Path) -> int:
    with path.open("rb") as source:
        return sum(1 for line in source if line.strip())


def _file_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        yield from (line for line in source if line.strip())


def _respond(item, inline: bool, faults: JobFaults, rng: random.Random, responder,
             files: filerefs.Check | None = None, metadata: bool = False) -> dict:
    """One request's output: ``{"response" | "error"}`` for an inline request (and its
    ``metadata`` if ``metadata``), ``{"response" | "error", "key"}`` for a line of a file (a
    line that is not a JSON object with a ``request`` object gets an ``error`` [I]; so does a
    request whose ``files`` cannot be read)."""
    if inline:
        line, tail = item, ({"metadata": item["metadata"]} if metadata and "metadata" in item
                            else {})
    else:
        try:
            line = orjson.loads(item)
        except orjson.JSONDecodeError:
            return {"error": _status(400, "Invalid JSON payload received. The line is not "
                                     "valid JSON.", "INVALID_ARGUMENT")}
        tail = {"key": line["key"]} if isinstance(line, dict) and "key" in line else {}
        if not isinstance(line, dict) or not isinstance(line.get("request"), dict):
            return {"error": _status(400, "Invalid JSON payload received. Each line needs a "
                                     "'request' object.", "INVALID_ARGUMENT"), **tail}
    request = line["request"]
    kind, detail = runner.decide(request, _GEMINI, faults, rng, files)
    if kind == "refuse":
        return {"error": _status(400, detail, "INVALID_ARGUMENT"), **tail}
    if kind == "unreadable" and isinstance(detail, filerefs.FileProblem):
        return {"error": detail.error(), **tail}
    if kind == "fail":
        _, status, message = ROW_ERRORS[detail]
        return {"error": _status(detail, message, status), **tail}
    if kind == "block":
        return {"response": detail, **tail}
    try:
        return {"response": responder(request), **tail}
    except Exception as exc:  # a row-level failure, as on the Vertex side
        return {"error": _status(500, str(exc), "INTERNAL"), **tail}
