"""How a Developer API batch's requests are answered, in the Vertex side's terms
(``runner.decide``, the responder, the job faults): each request's output line, and the whole
batch's, spooled to a responses file or kept inline, shuffled in windows as on Vertex."""

from __future__ import annotations

import os
import random
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson

from . import filerefs, runner
from .families import family_of
from .faults import ROW_ERRORS, JobFaults
from .gemini_files import FileStore
from .service import BatchService

_GEMINI = family_of("publishers/google/models/gemini-2.5-flash")


class BatchAnswers:
    """``GeminiBatches``' answering of a batch (``_answer``): a mixin over its ``vertex`` (the
    responder), its ``files`` and its ``_progress``."""

    vertex: BatchService
    files: FileStore
    _progress: Callable[[str, int, list[int]], bool]

    def _answer(self, name: str, record: dict, faults: JobFaults):
        """Answer every request: ``(output, (succeeded, failed), complete)`` with output the
        responses file's path (file input) or the inlined responses; None when the batch was
        cancelled, deleted, expired or the emulator stopped meanwhile."""
        rng = random.Random(name)
        family = family_of("publishers/google/" + record["model"]) or _GEMINI
        responder = (self.vertex.responder if family.generates else None) or family.respond
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
                answer = _respond(item, inline, faults, rng, responder, files, keep, family)
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


def _status(code: int, message: str, status: str) -> dict:
    return {"code": code, "message": message, "status": status}


def _file_lines(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        yield from (line for line in source if line.strip())


def _respond(item, inline: bool, faults: JobFaults, rng: random.Random, responder,
             files: filerefs.Check | None = None, metadata: bool = False,
             family=_GEMINI) -> dict:
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
    kind, detail = runner.decide(request, family, faults, rng, files)
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
