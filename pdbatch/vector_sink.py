"""Vectors written straight into the result while a job's output streams in.

A million 768-dimension answers are 3 GB of float32: held as parsed lists until the join, then
gathered into the result, they were two copies of every vector and most of the time spent
after parsing. ``VectorSink`` owns the result's ``(rows, size)`` buffer from the start; each
parsed batch of a job's output hands it its vectors (``JobVectors.take``), which go to their
rows at once and leave the batch as nulls. Where a row has several lines, the line the join
keeps (``families.lines.line_rank``: a success, then the latest ``processed_time``, then the
largest status, then the later line) holds the row's vector, so the sink and the join agree
line for line.

Only for answers that carry their row key (the key is the row's position): answers matched
back by their echoed text are keyed after parsing, and go through
``columns.gathered_vectors``. Output files read from Cloud Storage stream batch by batch;
the Developer API's and BigQuery's answers are read whole first (``parse_rows``), then go
through the sink the same way.
"""

from __future__ import annotations

import bisect

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .columns import vector_block
from .families.lines import line_rank


class VectorSink:
    """The ``field`` column of ``rows`` result rows, as ``kind`` (a fixed-size list of
    float32), filled job by job from the jobs' parsed batches."""

    def __init__(self, rows: int, field: str, kind: pa.FixedSizeListType):
        self.field, self.kind = field, kind
        self.matrix = np.zeros((rows, kind.list_size), dtype=np.float32)
        self.valid = np.zeros(rows, dtype=bool)
        self.held = np.full(rows, -1, dtype=np.int64)  # the line holding each row's vector
        self.lines = 0  # lines taken so far, every job's
        self._starts: list[int] = []  # each batch's first line
        self._batches: list[tuple[pa.Array, pa.Array]] = []  # each batch's status and time

    def job(self, positions: np.ndarray) -> JobVectors:
        """What takes the parsed batches of the job that sent rows ``positions``."""
        return JobVectors(self, positions)

    def rank(self, line: int) -> tuple:
        """``line_rank`` of a line taken before."""
        number = bisect.bisect_right(self._starts, line) - 1
        (status, processed_time), at = self._batches[number], line - self._starts[number]
        return line_rank(status[at].as_py(), processed_time[at].as_py(), line)

    def remember(self, batch: pa.RecordBatch) -> np.ndarray:
        """The numbers of ``batch``'s lines (their status and time kept for ``rank``)."""
        self._starts.append(self.lines)
        self._batches.append((batch.column("status"), batch.column("processed_time")))
        self.lines += batch.num_rows
        return np.arange(self.lines - batch.num_rows, self.lines)

    def column(self, answered: np.ndarray, copies: np.ndarray,
               originals: np.ndarray) -> pa.Array:
        """The result column: each ``answered`` row's vector (null elsewhere, and where its
        line had none); rows ``copies`` take their ``originals``' vectors."""
        valid = self.valid & answered  # (a row without a vector is zeros: ``vector_block``)
        if len(copies):
            self.matrix[copies], valid[copies] = self.matrix[originals], valid[originals]
        return pa.FixedSizeListArray.from_arrays(pa.array(self.matrix.reshape(-1)),
                                                 self.kind.list_size, mask=pa.array(~valid))


class JobVectors:
    """One job's share of a ``VectorSink``: ``take(batch)`` places the batch's vectors and
    returns the batch with that column null."""

    def __init__(self, sink: VectorSink, positions: np.ndarray):
        self.sink = sink
        self.sent = np.zeros(len(sink.valid) + 1, dtype=bool)  # the extra slot: other keys
        self.sent[positions] = True

    def take(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Write the vectors of ``batch`` (parsed output lines) to their rows; the batch
        without them."""
        sink, rows = self.sink, len(self.sink.valid)
        at = batch.schema.get_field_index(sink.field)
        block, present = vector_block(batch.column(at), sink.kind)
        # the other columns copied: a buffer of a batch read from DuckDB keeps all of the
        # batch's memory (its vectors too) for as long as it is referenced
        batch = pa.RecordBatch.from_arrays(
            [pa.nulls(batch.num_rows, batch.schema.field(i).type) if i == at else
             pa.concat_arrays([batch.column(i)]) for i in range(batch.num_columns)],
            schema=batch.schema)
        keys = pc.fill_null(batch.column("key"), -1).to_numpy()
        lines = sink.remember(batch)
        mine = self.sent[np.where((keys >= 0) & (keys < rows), keys, rows)]
        if not mine.all():
            keys, lines, block, present = keys[mine], lines[mine], block[mine], present[mine]
        repeated = _repeated(keys, sink.held)
        if len(repeated):  # rare: the line the join keeps holds the row's vector
            again = np.isin(keys, repeated)
            for line, key, vector, has in zip(lines[again].tolist(), keys[again].tolist(),
                                              block[again], present[again], strict=True):
                held = int(sink.held[key])
                if held < 0 or sink.rank(line) > sink.rank(held):
                    sink.matrix[key], sink.valid[key], sink.held[key] = vector, has, line
            keys, lines, block, present = (keys[~again], lines[~again], block[~again],
                                           present[~again])
        sink.matrix[keys], sink.valid[keys], sink.held[keys] = block, present, lines
        return batch


def _repeated(keys: np.ndarray, held: np.ndarray) -> np.ndarray:
    """The keys of a batch that a line has had before, or that several of its lines have."""
    ordered = np.sort(keys)
    twice = ordered[1:][ordered[1:] == ordered[:-1]]
    return np.union1d(keys[held[keys] >= 0], twice)
