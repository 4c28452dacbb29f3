"""Running one job's rows: check the input, answer every line, write the output.

Streams: input lines come from a ``Lines`` source (Cloud Storage files or a BigQuery table),
answers are shuffled in windows of ``WINDOW`` lines and spooled to a local temporary file, which
a sink then writes out (``predictions.jsonl`` or a BigQuery table). Memory is bounded by the
window, not by the job.
"""

from __future__ import annotations

import io
import random
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial

import orjson

from . import storage
from .families import Family
from .faults import JobFaults, blocked_response, row_status
from .filerefs import Check, FileProblem

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


#: A job's input: called once per pass, yields ``(where, line)`` with ``where`` naming the line
#: for error messages (``Line 3 of gs://...``).
Lines = Callable[[], Iterator[tuple[str, object]]]


def gcs_lines(fs, paths: list[str]) -> Lines:
    """The lines of Cloud Storage JSONL files."""

    def lines() -> Iterator[tuple[str, object]]:
        for path in paths:
            for number, line in _lines(fs, path):
                yield f"Line {number} of {path}", line

    return lines


def check_input(lines: Lines, family: Family) -> tuple[int, dict, list[str]]:
    """Read every input line once, as the service's import does.

    Returns the row count, the union of the requests' keys (the import loads the lines into
    one table, spec §3.3) and the top-level keys in order of appearance.
    """
    rows, union, keys = 0, {}, {}
    for where, line in lines():
        problem = family.problem(line) if isinstance(line, dict) else "is not a JSON object"
        if problem:
            raise ImportFailure(f"{where} {problem}.")
        union = _merge(union, family.payload_of(line))
        keys.update(dict.fromkeys(line))
        rows += 1
    return rows, union, list(keys)


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
    lines: Lines,
    sink,
    family: Family,
    responder: Callable[[dict], dict],
    faults: JobFaults,
    seed: str,
    total: int,
    stop: Callable[[], bool],
    union: dict | None = None,
    progress: Callable[[Outcome], None] | None = None,
    files: Check | None = None,
) -> Outcome:
    """Answer every input line into ``sink`` (``GcsSink`` or ``bigquery.TableSink``); with
    ``union`` (from ``check_input``), the echoed requests get its missing keys as nulls;
    ``files`` (``filerefs.VertexFiles``) fails the rows whose files cannot be read.

    ``progress(outcome)`` is told the counts so far after every window or incremental file.
    Stops early when ``stop()`` turns true (checked every window or incremental file) or, with
    the ``fail-partway`` fault, half way: the sink then keeps what was answered
    (``sink.stopped``) instead of writing the whole output (``sink.finished``).
    """
    rng = random.Random(seed)
    outcome = Outcome(total=total)
    halt_at = max(1, total // 2) if faults.fault == "fail-partway" else None
    check_every = min(WINDOW, faults.incremental_rows or WINDOW)
    with tempfile.TemporaryFile(prefix="pdbatch-emulator-") as spool:
        window: list[bytes] = []
        for line, decision, respond in _asked(lines(), family, responder, faults, rng, files):
            data = _answer(line, family, decision, respond, outcome, union)
            window.append(data)
            sink.add(data)
            done = outcome.succeeded + outcome.failed
            halted = done == halt_at
            if done % check_every == 0 or halted:
                shuffle(rng, window)
                spool.writelines(window)
                window = []
                if progress:
                    progress(outcome)
                if halted or stop():
                    sink.stopped(spool)
                    return outcome
        shuffle(rng, window)
        spool.writelines(window)
        sink.finished(spool)
    outcome.finished = True
    return outcome


def _asked(lines: Iterator, family: Family, responder: Callable[[dict], dict],
           faults: JobFaults, rng: random.Random, files: Check | None = None
           ) -> Iterator[tuple[dict, tuple[str, object], Callable[[], dict]]]:
    """Each line, what the service does with it (``decide``, in line order) and how to get
    its answer. A responder with ``concurrency`` > 1 (a forwarder to a model server that
    answers requests in parallel) is asked about that many of the lines it answers at a time,
    ahead of ``_answer``, which takes each answer in line order."""
    concurrency = getattr(responder, "concurrency", 1)
    if concurrency <= 1:
        for _, line in lines:
            payload = family.payload_of(line)
            yield line, decide(payload, family, faults, rng, files), partial(responder, payload)
        return
    pool = ThreadPoolExecutor(concurrency, thread_name_prefix="emulator-model")
    try:
        batch: list = []
        for _, line in lines:
            payload = family.payload_of(line)
            decision = decide(payload, family, faults, rng, files)
            answer = pool.submit(responder, payload) if decision[0] == "answer" else None
            batch.append((line, decision, answer))
            if len(batch) == concurrency * 4:
                yield from ((line, decision, answer and answer.result)
                            for line, decision, answer in batch)
                batch = []
        yield from ((line, decision, answer and answer.result)
                    for line, decision, answer in batch)
    finally:  # a job stopped early does not wait for answers it will not write
        pool.shutdown(wait=False, cancel_futures=True)


def decide(payload: dict, family: Family, faults: JobFaults, rng: random.Random,
           files: Check | None = None) -> tuple[str, object]:
    """What the service does with a request: ``("refuse", message)`` (it is malformed, spec
    §2.2), ``("unreadable", FileProblem)`` (a file it refers to cannot be read, ``files``),
    ``("fail", code)``, ``("block", response)`` or ``("answer", None)``; drawn from the job's
    random stream in line order."""
    code = faults.failure(rng)
    invalid = family.invalid(payload)
    if invalid:
        return "refuse", invalid
    problem = files(payload) if files else None
    if problem:
        return "unreadable", problem
    if code is not None:
        return "fail", code
    if faults.blocked and rng.random() < faults.blocked:
        return "block", blocked_response(rng)
    return "answer", None


def shuffle(rng: random.Random, window: list[bytes]) -> None:
    """Shuffle in place, never leaving two or more lines in input order (clients must not
    rely on order; a small window could otherwise come out unchanged by chance)."""
    before = list(window)
    rng.shuffle(window)
    if len(window) > 1 and window == before:
        window.append(window.pop(0))


def _answer(line: dict, family: Family, decision: tuple[str, object],
            respond: Callable[[], dict] | None, outcome: Outcome, union: dict | None) -> bytes:
    payload = family.payload_of(line)
    result = family.result(line, with_nulls(union, payload) if union else payload,
                           processed_time(time.time()))
    kind, detail = decision
    if kind == "refuse":
        result["status"] = row_status(400, detail)
    elif kind == "unreadable" and isinstance(detail, FileProblem):
        result["status"] = detail.row_status()
    elif kind == "fail":
        result["status"] = row_status(detail)
    elif kind == "block":
        result[family.answer] = detail
    else:
        try:
            result[family.answer] = respond()
        except Exception as exc:  # a row-level failure, as the service reports them
            result["status"] = "Internal Server Error: " + orjson.dumps(
                {"error": {"code": 500, "message": str(exc), "status": "INTERNAL"}}).decode()
    if result["status"]:
        outcome.failed += 1
    else:
        outcome.succeeded += 1
    return orjson.dumps(result) + b"\n"


class GcsSink:
    """Output to ``<out_dir>/predictions.jsonl``, plus incremental files: every ``rows``
    answered lines while running (if ``rows``), and, when a run stops early, the answered
    lines no incremental file holds yet."""

    def __init__(self, fs, out_dir: str, rows: int):
        self.fs, self.out_dir, self.rows = fs, out_dir, rows
        self.lines: list[bytes] = []
        self.files = 0

    def info(self) -> dict:
        """The job's ``outputInfo``."""
        return {"gcsOutputDirectory": self.out_dir}

    def add(self, data: bytes) -> None:
        if self.rows:
            self.lines.append(data)
            if len(self.lines) >= self.rows:
                self._flush()

    def stopped(self, spool) -> None:
        if self.rows:
            self._flush()
        else:
            spool.seek(0)
            self._upload(spool)

    def finished(self, spool) -> None:
        self._flush()
        spool.seek(0)
        storage.upload(self.fs, spool, f"{self.out_dir}/predictions.jsonl")

    def _flush(self) -> None:
        if self.lines:
            self._upload(io.BytesIO(b"".join(self.lines)))
            self.lines = []

    def _upload(self, source) -> None:
        path = f"{self.out_dir}/incremental_predictions/predictions-{self.files:05d}.jsonl"
        storage.upload(self.fs, source, path)
        self.files += 1
