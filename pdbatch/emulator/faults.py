"""Failures on demand: per job through job labels, per server through ``ApiFaults``.

Job labels (values use the label alphabet: lowercase letters, digits, ``-`` and ``_``):

==========================  ===================================================================
``emulator-fault``          ``job-failed``: FAILED (code 13) after running, no output.
                            ``fail-partway``: FAILED (code 13) after answering about half the
                            rows, which stay in an incremental output file.
                            ``expire``: EXPIRED (code 4) after the queue, no output.
``emulator-row-errors``     failed rows per kind, in percent: ``429-10_500-5_400-2`` fails 10 %
                            with 429, 5 % with 500 and 2 % with 400 (real status strings).
``emulator-queue-ms``       milliseconds in JOB_STATE_QUEUED (create answers QUEUED), then
                            PENDING and RUNNING.
``emulator-incremental``    rows per incremental output file, written while the job runs; the
                            rows are repeated in the final ``predictions.jsonl`` (duplicates).
``emulator-stats``          ``empty``: no ``completionStats``; ``zero``: all counts zero.
``emulator-safety``         percent of Gemini rows answered as safety-blocked (status ``""``):
                            half with ``promptFeedback.blockReason``, half with a candidate
                            whose ``finishReason`` is ``SAFETY``.
==========================  ===================================================================
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

PREFIX = "emulator-"
JOB_FAULTS = ("job-failed", "fail-partway", "expire")
STATS = ("empty", "zero")
#: Row error kinds: HTTP reason phrase and google.rpc.Status of the failed online call (spec §2.2).
ROW_ERRORS = {
    400: ("Bad Request", "INVALID_ARGUMENT",
          "Invalid value at 'contents[0].parts[0]' (text), Starting an object on a scalar field"),
    429: ("Too Many Requests", "RESOURCE_EXHAUSTED",
          "Online prediction request quota exceeded. Please try again later with backoff."),
    500: ("Internal Server Error", "INTERNAL", "Internal error encountered."),
}
#: API errors ``ApiFaults`` can answer with: status and message.
API_ERRORS = {
    429: ("RESOURCE_EXHAUSTED", "Quota exceeded for aiplatform.googleapis.com (emulated)."),
    500: ("INTERNAL", "Internal error encountered (emulated)."),
    503: ("UNAVAILABLE", "The service is currently unavailable (emulated)."),
}
_ROW_ERRORS = re.compile(r"^(\d{3})-(\d{1,3})$")


class FaultError(ValueError):
    """A fault label or setting the emulator does not understand."""


def status_text(reason: str, error: dict) -> str:
    """An output line's ``status``: the HTTP reason phrase, then the google.rpc.Status
    (``Bad Request: {"error": {"code": 400, ...}}``, spec §2.2)."""
    return f"{reason}: " + json.dumps({"error": error})


def row_status(code: int, message: str | None = None) -> str:
    """The output line ``status`` of a row that failed with ``code`` (and ``message``)."""
    reason, status, default = ROW_ERRORS[code]
    return status_text(reason, {"code": code, "message": message or default, "status": status})


@dataclass(frozen=True)
class JobFaults:
    """The faults one job's labels ask for."""

    fault: str | None = None
    row_errors: tuple[tuple[int, float], ...] = ()  # (code, fraction)
    queue_seconds: float = 0.0
    incremental_rows: int = 0
    stats: str | None = None
    blocked: float = 0.0  # fraction of rows answered as safety-blocked

    @classmethod
    def from_labels(cls, labels: dict | None) -> JobFaults:
        """Parse the ``emulator-*`` labels; unknown keys or values raise ``FaultError``."""
        labels = {k: v for k, v in (labels or {}).items() if k.startswith(PREFIX)}
        known = {"emulator-fault", "emulator-row-errors", "emulator-queue-ms",
                 "emulator-incremental", "emulator-stats", "emulator-safety"}
        unknown = sorted(set(labels) - known)
        if unknown:
            raise FaultError(f"Unknown emulator label(s) {unknown}; known: {sorted(known)}.")
        fault = labels.get("emulator-fault")
        if fault is not None and fault not in JOB_FAULTS:
            raise FaultError(f"Unknown emulator-fault {fault!r}; known: {list(JOB_FAULTS)}.")
        stats = labels.get("emulator-stats")
        if stats is not None and stats not in STATS:
            raise FaultError(f"Unknown emulator-stats {stats!r}; known: {list(STATS)}.")
        return cls(
            fault=fault,
            row_errors=_row_errors(labels.get("emulator-row-errors", "")),
            queue_seconds=_count(labels, "emulator-queue-ms") / 1000,
            incremental_rows=_count(labels, "emulator-incremental"),
            stats=stats,
            blocked=min(_count(labels, "emulator-safety"), 100) / 100,
        )

    def failure(self, rng: random.Random) -> int | None:
        """The error code this row fails with, or None: one draw per row."""
        if not self.row_errors:
            return None
        draw = rng.random()
        for code, fraction in self.row_errors:
            if draw < fraction:
                return code
            draw -= fraction
        return None


def blocked_response(rng: random.Random) -> dict:
    """A safety-blocked GenerateContentResponse: blocked before generation, or stopped."""
    usage = {"promptTokenCount": 1, "totalTokenCount": 1}
    ratings = [{"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH",
                "blocked": True}]
    if rng.random() < 0.5:
        return {"promptFeedback": {"blockReason": "SAFETY", "safetyRatings": ratings},
                "usageMetadata": usage}
    return {"candidates": [{"finishReason": "SAFETY", "safetyRatings": ratings}],
            "usageMetadata": usage}


def _count(labels: dict, key: str) -> int:
    value = labels.get(key, "0")
    if not value.isdigit():
        raise FaultError(f"{key} must be a whole number, got {value!r}.")
    return int(value)


def _row_errors(value: str) -> tuple[tuple[int, float], ...]:
    pairs = []
    for item in filter(None, value.split("_")):
        match = _ROW_ERRORS.match(item)
        if not match or int(match[1]) not in ROW_ERRORS:
            raise FaultError(f"emulator-row-errors item {item!r}: write CODE-PERCENT with CODE "
                             f"in {sorted(ROW_ERRORS)}, e.g. '429-10_500-5'.")
        pairs.append((int(match[1]), int(match[2]) / 100))
    if sum(fraction for _, fraction in pairs) > 1:
        raise FaultError("emulator-row-errors percentages add up to more than 100.")
    return tuple(pairs)


@dataclass
class ApiFaults:
    """Server-wide: answer the next ``count`` API calls with an HTTP error; with
    ``lost=True`` the calls are carried out first and only their answers are lost (a create
    that happened although the client saw an error). ``outage(seconds)`` answers every call
    with 503 for that long."""

    _pending: list[tuple[int, bool]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _outage: tuple[int, float] = (503, 0.0)  # code, and until when (time.monotonic())

    def inject(self, code: int, count: int = 1, lost: bool = False) -> None:
        _check(code)
        with self._lock:
            self._pending.extend([(code, lost)] * count)

    def outage(self, seconds: float, code: int = 503) -> None:
        """Answer every API call with ``code`` for the next ``seconds`` (an outage)."""
        _check(code)
        with self._lock:
            self._outage = (code, time.monotonic() + seconds)

    def next_error(self) -> tuple[tuple[int, str, str], bool] | None:
        """``((code, status, message), lost)`` for this call if a fault is queued (or an
        outage lasts), else None."""
        with self._lock:
            code, until = self._outage
            if time.monotonic() < until:
                return (code, *API_ERRORS[code]), False
            if not self._pending:
                return None
            code, lost = self._pending.pop(0)
        return (code, *API_ERRORS[code]), lost


def _check(code: int) -> None:
    if code not in API_ERRORS:
        raise FaultError(f"API error code {code} is not one of {sorted(API_ERRORS)}.")


def reveal_later(delay: float, closed: threading.Event, reveal: Callable[[], None]) -> None:
    """Call ``reveal()`` ``delay`` seconds from now, unless the emulator is ``closed`` first:
    a succeeded job's output shown after its SUCCEEDED state (``Timing.output``), as the
    Developer API may report ``BATCH_STATE_SUCCEEDED`` before ``responsesFile`` is set."""
    def later() -> None:
        if not closed.wait(delay):
            reveal()

    threading.Thread(target=later, name="emulator-late-output", daemon=True).start()
