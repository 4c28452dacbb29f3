"""Joining answers onto the frame: resolve the output lines per row, give every row a status
(a ``Kind`` carried beside the human text, so that no code parses the text back), and add the
result columns (structured-output fields included).

The join is positional: a row's key is its position in the frame, so the result keeps the
original index (duplicates included) and order, and no row is ever dropped.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import engine, structured
from .columns import SUCCESS, gathered_vectors, pandas_array
from .errors import JobError
from .families.lines import line_rank
from .prepare import Prepared
from .service import JobInfo
from .tasks import Task
from .vector_sink import VectorSink

log = logging.getLogger(__name__)

#: States after which a run's rows may be asked again (with ``max_retries``); EXPIRED only
#: with ``retry_expired=True``.
_RETRYABLE = {"JOB_STATE_FAILED"}
#: Row failures worth asking again: quota and server errors (a 400 would fail the same way).
TRANSIENT_CODES = frozenset({429, 500, 502, 503, 504})


class Kind(enum.IntEnum):
    """What a row's status says, for code: the text is for people."""

    OK = 0  # answered ("")
    FAILED = 1  # the service failed the row (its status string)
    MISSING = 2  # no answer line ("missing: ...")
    SKIPPED = 3  # not sent ("skipped: ...")
    INVALID = 4  # the answer does not fit the response schema ("invalid: ...")


@dataclass
class Result:
    """A frame with the result columns, and each row's status ``Kind``."""

    frame: pd.DataFrame
    kinds: np.ndarray
    prefix: str = ""

    def retryable(self) -> np.ndarray:
        """Rows worth asking again: no answer, or a transient failure (429, 5xx)."""
        codes = self.frame[self.prefix + "error_code"].to_numpy(dtype=object, na_value=None)
        transient = np.array([c in TRANSIENT_CODES for c in codes], dtype=bool)
        return (self.kinds == Kind.MISSING) | ((self.kinds == Kind.FAILED) & transient)

    def update(self, rows: np.ndarray, other: Result, columns) -> None:
        """Take ``other``'s answers (a run of ``rows`` only) for those rows."""
        for column in columns:
            self.frame.iloc[rows, self.frame.columns.get_loc(column)] = \
                other.frame[column].to_numpy()
        self.kinds[rows] = other.kinds

def parse_status(status: str) -> tuple[int | None, str | None]:
    """``(code, message)`` from a row status such as ``Bad Request: {"error": {...}}``."""
    if not status:
        return None, None
    _, sep, payload = status.partition(": {")
    if sep:
        try:
            error = orjson.loads("{" + payload).get("error") or {}
            code = error.get("code")
            return (code if isinstance(code, int) else None), error.get("message") or status
        except (orjson.JSONDecodeError, AttributeError):
            pass
    return None, status


def _winners(keys: np.ndarray, status: pa.ChunkedArray, processed_time: pa.ChunkedArray
             ) -> np.ndarray:
    """The lines to keep: one per row key, the highest ``line_rank`` of the row's lines."""
    unique, counts = np.unique(keys, return_counts=True)
    if len(unique) == len(keys):
        return np.arange(len(keys))
    log.warning("%d output lines repeated a row; kept one per row", len(keys) - len(unique))
    repeated = np.isin(keys, unique[counts > 1])
    best: dict[int, tuple] = {}
    for line in np.flatnonzero(repeated).tolist():
        rank = line_rank(status[line].as_py(), processed_time[line].as_py(), line)
        best[keys[line]] = max(best.get(keys[line], rank), rank)
    kept = np.flatnonzero(~repeated).tolist() + [rank[-1] for rank in best.values()]
    return np.sort(np.array(kept, dtype=np.int64))


class ResultBuilder:
    """Per-row results for a frame of ``n`` rows, filled job by job, joined by position."""

    def __init__(self, n: int, task: Task, response: bool = True, types: dict | None = None,
                 sink: VectorSink | None = None):
        self.n, self.task, self.response = n, task, response
        self.types = types or {}  # result columns of a type the call fixes (vectors)
        self.sink = sink  # where the jobs' vectors were written as they were read
        self.line = np.full(n, -1, dtype=np.int64)  # row -> line of the kept output lines
        self.tables: list[pa.Table] = []
        self.lines = 0
        self.status = np.full(n, None, dtype=object)  # for rows without an output line
        self.kinds = np.full(n, Kind.OK, dtype=np.int8)
        self.job = np.full(n, None, dtype=object)
        self.copies = self.originals = np.array([], dtype=np.int64)

    def skip(self, positions: np.ndarray, reasons: np.ndarray) -> None:
        """Rows that were not sent: status ``skipped: <reason>``."""
        self.status[positions] = ["skipped: " + r for r in reasons]
        self.kinds[positions] = Kind.SKIPPED

    def copy_rows(self, copies: np.ndarray, originals: np.ndarray) -> None:
        """Rows not sent because they repeat another row's request get that row's results."""
        self.copies, self.originals = copies, originals

    def add_job(self, job: str, positions: np.ndarray, parsed: pa.Table,
                why_missing: str = "") -> None:
        """Rows sent in ``job`` (``positions``) get their output line from ``parsed`` (the
        task's fields, ``families.lines.parse_output``), or a ``missing`` status (saying
        ``why_missing``, when the job ended early). Jobs may be added in any order."""
        self.job[positions] = job
        keys = pc.fill_null(parsed.column("key"), -1).to_numpy()
        sent = np.zeros(self.n + 1, dtype=bool)  # the extra slot catches every invalid key
        sent[positions] = True
        valid = sent[np.where((keys >= 0) & (keys < self.n), keys, self.n)]
        if not valid.all():
            log.warning("%d output lines had no row key of this job and were ignored",
                        len(keys) - int(valid.sum()))
            parsed, keys = parsed.filter(pa.array(valid)), keys[valid]
        winners = _winners(keys, parsed.column("status"), parsed.column("processed_time"))
        if len(winners) < len(keys):
            parsed, keys = parsed.filter(_mask(len(keys), winners)), keys[winners]
        self.line[keys] = self.lines + np.arange(len(keys))
        self.tables.append(parsed)
        self.lines += len(keys)
        missing = positions[self.line[positions] < 0]
        if len(missing):
            log.warning("%d rows of %s have no output line", len(missing), job)
            self.status[missing] = (f"missing: {why_missing}" if why_missing else
                                    f"missing: job {job} wrote no output line for this row")
            self.kinds[missing] = Kind.MISSING

    def join(self, df: pd.DataFrame, prefix: str = "") -> pd.DataFrame:
        """``df`` (same index and order, not copied) with the result columns added."""
        table = pa.concat_tables(self.tables) if self.tables \
            else self.task.empty_output(self.response)
        self.tables = []
        # vectors are gathered on their own, into one buffer (``gathered_vectors``)
        vectors = {name: (table.column(name), self.line.copy()) for name in self.types}
        table = table.drop_columns(list(vectors))
        lined = np.flatnonzero(self.line >= 0)
        if np.any(np.diff(self.line[lined]) <= 0):  # lines out of row order
            table = table.take(pa.array(self.line[lined]))
            self.line[lined] = np.arange(len(lined))
        status = pc.coalesce(_spread(table.column("status"), self.line),
                             pa.array(self.status, pa.large_string()))
        failed = np.flatnonzero(np.asarray(pc.fill_null(pc.not_equal(status, ""), False)))
        answered = self.line >= 0
        self.kinds[answered] = Kind.OK
        self.kinds[failed[answered[failed]]] = Kind.FAILED
        codes = np.full(self.n, None, dtype=object)
        messages = np.full(self.n, None, dtype=object)
        for row, text in zip(failed.tolist(), status.take(failed).to_pylist(), strict=True):
            codes[row], messages[row] = parse_status(text)
        status = pc.if_else(pc.equal(status, ""), SUCCESS, status)  # null stays null
        columns = {"status": status, "error_code": pa.array(codes, pa.int64()),
                   "error_message": pa.array(messages, pa.large_string()),
                   "job": pa.array(self.job, pa.large_string())}
        out = df.copy(deep=not _copy_on_write())
        source = None
        if len(self.copies):  # repeated requests: each copy takes its original's values
            source = np.arange(self.n)
            source[self.copies] = self.originals
            self.kinds[self.copies] = self.kinds[self.originals]
        for name in self.task.columns(self.response):
            if name in vectors:
                values = self.sink.column(self.line >= 0, self.copies, self.originals) \
                    if self.sink else gathered_vectors(*vectors[name], self.types[name],
                                                       self.copies, self.originals)
                out[prefix + name] = pd.Series(pandas_array(values), index=df.index)
                continue
            values = columns[name] if name in columns else _spread(table.column(name), self.line)
            if source is not None:
                if isinstance(values, pa.ChunkedArray):  # an Array is taken as it is
                    values = values.combine_chunks()
                values = values.take(pa.array(source))
            out[prefix + name] = pd.Series(pandas_array(values), index=df.index)
        return out


def _spread(column: pa.ChunkedArray, line: np.ndarray) -> pa.ChunkedArray:
    """Each row's value: ``column[line[row]]``, null where ``line`` is -1.

    The lines are sorted by row, so ``line`` increases wherever it is set: each chunk fills a
    run of consecutive rows, taken chunk by chunk (``ChunkedArray.take`` would first copy
    all chunks into one). When every row has its own line in order, nothing is copied.
    """
    if len(column) == len(line) and np.array_equal(line, np.arange(len(line))):
        return column
    if len(column) == 0:
        return pa.chunked_array([pa.nulls(len(line), column.type)])
    bounds = np.cumsum([0] + [len(chunk) for chunk in column.chunks])
    carried = np.maximum(np.maximum.accumulate(line), 0)  # rows without a line join the run
    chunk_of_row = np.searchsorted(bounds, carried, side="right") - 1
    cuts = np.searchsorted(chunk_of_row, np.arange(len(column.chunks) + 1))
    pieces = []
    for number, chunk in enumerate(column.chunks):
        rows = line[cuts[number]:cuts[number + 1]]
        pieces.append(chunk.take(pa.array(rows - bounds[number], mask=rows < 0)))
    return pa.chunked_array(pieces, type=column.type)


def _mask(n: int, kept: np.ndarray) -> pa.Array:
    mask = np.zeros(n, dtype=bool)
    mask[kept] = True
    return pa.array(mask)


def _copy_on_write() -> bool:
    """pandas 3 always copies on write; pandas 2 only when the user enabled it."""
    return int(pd.__version__.split(".")[0]) >= 3 or pd.options.mode.copy_on_write is True


def vector_sink(prepared: Prepared) -> VectorSink | None:
    """Where a call's vectors are written as its jobs' output is read: for a task with a
    vector whose answers carry their row key, when the raw response is not kept."""
    family, options = prepared.family, prepared.options
    kinds = family.result_types(options.request.generation_config)
    if not kinds or not family.keyed or options.result.include_response:
        return None
    [(field, kind)] = kinds.items()
    return VectorSink(len(prepared.df), field, kind)


def joined(prepared: Prepared, answers: list[tuple[JobInfo, np.ndarray, pa.Table]],
           run_id: str, where: str, sink: VectorSink | None = None) -> Result:
    """The prepared frame with the result columns from each job's parsed ``answers`` (its
    info, the positions of its rows and its output lines; their vectors in ``sink`` when
    they were read through it). Raises JobError (with ``.result``) when a job ended without
    results and the call's options do not ask its rows again."""
    options = prepared.options
    prefix = options.result.result_prefix
    family = prepared.family
    results = ResultBuilder(len(prepared.df), family.task, options.result.include_response,
                            family.result_types(options.request.generation_config), sink)
    skipped = np.flatnonzero(prepared.rows.reasons != "")
    results.skip(skipped, prepared.rows.reasons[skipped])
    results.copy_rows(prepared.sending.copies, prepared.sending.originals)
    for info, positions, parsed in answers:
        twice = np.array([], dtype=np.int64)
        if not family.keyed:  # answers matched back by their echoed request
            parsed, twice = _rekeyed(prepared, positions, parsed)
        results.add_job(info.name, positions, parsed, _why_missing(info))
        results.status[twice] = (f"missing: job {info.name} answered this row's text more "
                                 "than once, so which answer is whose cannot be told")
    out = results.join(prepared.df, prefix)
    out.attrs["pdbatch_run"] = run_id  # read_results(run=...) reads these answers again
    result = Result(out, results.kinds, prefix)
    if prepared.schema:
        invalid = structured.add_columns(out, prepared.schema, prefix, options.result.expand,
                                         engine.connect())
        result.kinds[invalid] = Kind.INVALID
    infos = [info for info, _, _ in answers]
    ended = [info for info in infos if not info.succeeded]
    if ended:
        retryable = _RETRYABLE | ({"JOB_STATE_EXPIRED"} if options.run.retry_expired else set())
        if not options.run.max_retries or any(info.state not in retryable for info in ended):
            raise JobError(_ended_message(ended, infos, where), out, result.kinds)
        log.warning("%d of %d jobs of %s ended without results; asking their unanswered rows "
                    "again", len(ended), len(infos), run_id)
    return result


def _rekeyed(prepared: Prepared, positions: np.ndarray, parsed: pa.Table):
    """A job's answers keyed by row, for a family whose answers carry no row key."""
    rows = prepared.rows
    take = pa.array(positions)
    config = rows.row_config.take(take) if rows.row_config is not None else None
    return prepared.family.parser.rekey(engine.connect(), parsed, rows.texts.take(take),
                                        config, positions)


def _why_missing(info: JobInfo) -> str:
    """What a row without an answer line in this job's output is told ("" for the default)."""
    if not info.succeeded:
        return _ended(info)
    if info.partial_failures:
        return (f"job {info.name} could not read part of its input: "
                + "; ".join(info.partial_failures))
    return ""


def _ended(info: JobInfo) -> str:
    error = f": {info.error_message}" if info.error_message else ""
    return f"job {info.name} ended {info.state}{error} before answering this row"


def _ended_message(ended, infos, where: str) -> str:
    lines = [f"{len(ended)} of {len(infos)} batch job(s) ended without results:"]
    for info in ended:
        error = f": {info.error_message} (code {info.error_code})" if info.error_message else ""
        lines.append(f"  {info.name} {info.state}{error}")
    lines.append(f"{where} The answers that were written are in this error's .result; "
                 "max_retries=N asks the other rows again (EXPIRED jobs: with "
                 "retry_expired=True).")
    return "\n".join(lines)
