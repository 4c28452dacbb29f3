"""Running one job's rows: check the input, answer every line, write the output files.

Streams: input is read in blocks, answers are shuffled in windows of ``WINDOW`` lines and
spooled to a local temporary file, which is then uploaded as ``predictions.jsonl``. Memory is
bounded by the window, not by the job.
"""

from __future__ import annotations

import io
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone

import orjson

from . import storage
from .families import Family
from .faults import JobFaults, row_status

#: Output lines shuffled together: the service writes no particular order (spec §2.3).
WINDOW = 10_000


class ImportFailure(Exception):
    """The job's input cannot be read; the job fails with error code 3."""


@dataclass
class Outcome:
    """What a run wrote: counts, and whether it reached the end (``predictions.jsonl``)."""

    succeeded: int = 0
    failed: int = 0
    total: int = 0
    finished: bool = False


def processed_time(t: float) -> str:
    """The per-line ``processed_time``: ISO-8601 with a ``+00:00`` offset, milliseconds."""
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")


def check_input(fs, paths: list[str], family: Family) -> tuple[int, dict]:
    """Read every input line once, as the service's import does.

    Returns the row count and the union of the requests' keys (the import loads the lines
    into one table, spec §3.3).
    """
    rows, union = 0, {}
    for path in paths:
        for number, line in _lines(fs, path):
            problem = (family.problem(line) if isinstance(line, dict)
                       else "is not a JSON object")
            if problem:
                raise ImportFailure(f"Line {number} of {path} {problem}.")
            union = _merge(union, line[family.payload])
            rows += 1
    return rows, union


def _merge(shape, value):
    """``shape`` grown by the keys of ``value``: dicts by key, lists by their items."""
    if isinstance(value, dict):
        shape = shape if isinstance(shape, dict) else {}
        for key, item in value.items():
            shape[key] = _merge(shape.get(key), item)
    elif isinstance(value, list):
        shape = shape if isinstance(shape, list) else [None]
        for item in value:
            shape[0] = _merge(shape[0], item)
    return shape


def with_nulls(shape, value):
    """``value`` with a null for every key of ``shape`` it lacks, keys in alphabetical order:
    how the service echoes requests whose siblings have more keys (spec §3.3)."""
    if isinstance(value, dict) and isinstance(shape, dict):
        return {key: with_nulls(shape[key], value[key]) if key in value else None
                for key in sorted(shape)}
    if isinstance(value, list) and isinstance(shape, list):
        return [with_nulls(shape[0], item) for item in value]
    return value


def _lines(fs, path: str) -> Iterator[tuple[int, object]]:
    try:
        for number, raw in enumerate(storage.read_lines(fs, path), 1):
            try:
                yield number, orjson.loads(raw)
            except orjson.JSONDecodeError:
                raise ImportFailure(f"Line {number} of {path} is not valid JSON.") from None
    except FileNotFoundError:
        raise ImportFailure(f"Input file {path} does not exist.") from None


def answer_rows(
    fs,
    paths: list[str],
    out_dir: str,
    family: Family,
    responder: Callable[[dict], dict],
    faults: JobFaults,
    seed: str,
    total: int,
    stop: Callable[[], bool],
    union: dict | None = None,
) -> Outcome:
    """Answer every input line into ``out_dir``; with ``union`` (from ``check_input``), the
    echoed requests get its missing keys as nulls.

    Stops early when ``stop()`` turns true (checked every window or incremental file) or, with
    the ``fail-partway`` fault, half way: then the answered rows stay in incremental files and no
    ``predictions.jsonl`` is written.
    """
    rng = random.Random(seed)
    outcome = Outcome(total=total)
    incremental = _Incremental(fs, out_dir, faults.incremental_rows)
    halt_at = max(1, total // 2) if faults.fault == "fail-partway" else None
    check_every = min(WINDOW, faults.incremental_rows or WINDOW)
    with tempfile.TemporaryFile(prefix="pdbatch-emulator-") as spool:
        window: list[bytes] = []
        for path in paths:
            for _, line in _lines(fs, path):
                data = _answer(line, family, responder, faults, rng, outcome, union)
                window.append(data)
                incremental.add(data)
                done = outcome.succeeded + outcome.failed
                halted = done == halt_at
                if done % check_every == 0 or halted:
                    rng.shuffle(window)
                    spool.writelines(window)
                    window = []
                    if halted or stop():
                        incremental.flush(spool)  # what was answered stays in the output
                        return outcome
        rng.shuffle(window)
        spool.writelines(window)
        incremental.flush()
        spool.seek(0)
        storage.upload(fs, spool, f"{out_dir}/predictions.jsonl")
    outcome.finished = True
    return outcome


def _answer(line: dict, family: Family, responder, faults: JobFaults, rng: random.Random,
            outcome: Outcome, union: dict | None) -> bytes:
    payload = line[family.payload]
    result = family.result(line, with_nulls(union, payload) if union else payload,
                           processed_time(time.time()))
    code = faults.failure(rng)
    if code is None:
        try:
            result["response"] = responder(payload)
        except Exception as exc:  # a row-level failure, as the service reports them
            result["status"] = "Internal Server Error: " + orjson.dumps(
                {"error": {"code": 500, "message": str(exc), "status": "INTERNAL"}}).decode()
    else:
        result["status"] = row_status(code)
    if result["status"]:
        outcome.failed += 1
    else:
        outcome.succeeded += 1
    return orjson.dumps(result) + b"\n"


class _Incremental:
    """Incremental output files: every ``rows`` answered lines while running (if ``rows``),
    and, when a run stops early, the answered lines no incremental file holds yet."""

    def __init__(self, fs, out_dir: str, rows: int):
        self.fs, self.out_dir, self.rows = fs, out_dir, rows
        self.lines: list[bytes] = []
        self.files = 0

    def add(self, data: bytes) -> None:
        if self.rows:
            self.lines.append(data)
            if len(self.lines) >= self.rows:
                self.flush()

    def flush(self, spool=None) -> None:
        """Write the pending lines as the next file; with ``spool`` (a run stopping early and
        no periodic files), the spooled lines instead."""
        if spool is not None and not self.rows:
            spool.seek(0)
            self._upload(spool)
        elif self.lines:
            self._upload(io.BytesIO(b"".join(self.lines)))
            self.lines = []

    def _upload(self, source) -> None:
        path = f"{self.out_dir}/incremental_predictions/predictions-{self.files:05d}.jsonl"
        storage.upload(self.fs, source, path)
        self.files += 1
