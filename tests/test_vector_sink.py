"""Vectors written into the result while a job's output streams in (``vector_sink``) give the
same result as vectors gathered after the whole output is read (``columns.gathered_vectors``):
for any mix of repeated rows (in one batch or across batches), failed lines, lines of other
jobs, keys out of range, vectors too long (cut), too short or null, and repeated requests."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pdbatch
from pdbatch.join import ResultBuilder
from pdbatch.tasks.embed import EMBED
from pdbatch.vector_sink import VectorSink

SIZE = 4
KIND = pa.list_(pa.float32(), SIZE)

line = st.tuples(
    st.integers(-1, 13),  # the key: -1 none, 12 and 13 outside the frame
    st.sampled_from(["", "", "Internal error", "Quota exceeded"]),  # status
    st.sampled_from(["", "2026-12-06T10:00:00Z", "2026-12-06T11:00:00Z"]),  # processed_time
    st.sampled_from([SIZE, SIZE, SIZE, SIZE + 2, SIZE - 1, None]),  # the vector's length
)


def _parsed(lines: list, seed: int) -> pa.Table:
    rng = np.random.default_rng(seed)
    vectors = [None if length is None else rng.standard_normal(length).astype(np.float32)
               .tolist() for _, _, _, length in lines]
    fields = EMBED.parsed_fields(response=False)
    return pa.table({
        "key": pa.array([None if key < 0 else key for key, _, _, _ in lines], pa.int64()),
        "status": pa.array([status for _, status, _, _ in lines], pa.string()),
        "processed_time": pa.array([time for _, _, time, _ in lines], pa.string()),
        "embedding": pa.array(vectors, fields["embedding"]),
        "token_count": pa.array([3] * len(lines), pa.int64()),
        "truncated": pa.array([None] * len(lines), pa.bool_())})


def _result(jobs, copies, sink: VectorSink | None) -> pd.DataFrame:
    builder = ResultBuilder(12, EMBED, False, {"embedding": KIND}, sink)
    builder.copy_rows(*copies)
    for number, (positions, parsed, cuts) in enumerate(jobs):
        if sink is not None:  # read through the sink, in batches cut at ``cuts``
            take = sink.job(positions).take
            bounds = [0, *sorted(min(cut, parsed.num_rows) for cut in cuts), parsed.num_rows]
            parsed = pa.Table.from_batches(
                [take(batch) for start, end in zip(bounds, bounds[1:], strict=False)
                 for batch in parsed.slice(start, end - start).to_batches()], parsed.schema)
        builder.add_job(f"job-{number}", positions, parsed)
    return builder.join(pd.DataFrame(index=pd.RangeIndex(12)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(line, max_size=30), st.lists(line, max_size=30),
       st.lists(st.integers(0, 30), max_size=4), st.booleans(), st.integers(0, 2**16))
def test_vectors_read_through_the_sink_equal_vectors_gathered_after(first, second, cuts,
                                                                    copied, seed):
    # rows 0-5 in the first job, 6-9 in the second, 10-11 repeat rows 0 and 6 (not sent)
    copies = (np.array([10, 11]), np.array([0, 6])) if copied else \
        (np.array([], np.int64), np.array([], np.int64))
    jobs = [(np.arange(6), _parsed(first, seed), cuts),
            (np.arange(6, 10), _parsed(second, seed + 1), cuts)]
    gathered = _result(jobs, copies, None)
    streamed = _result(jobs, copies, VectorSink(12, "embedding", KIND))
    np.testing.assert_array_equal(pdbatch.vectors(streamed), pdbatch.vectors(gathered))
    assert streamed["embedding"].isna().tolist() == gathered["embedding"].isna().tolist()
    pd.testing.assert_frame_equal(streamed.drop(columns="embedding"),
                                  gathered.drop(columns="embedding"))


def test_a_repeated_row_keeps_the_vector_of_its_success_whatever_the_order():
    sink = VectorSink(2, "embedding", KIND)
    take = sink.job(np.arange(2)).take
    ok = ("", "2026-12-06T10:00:00Z", SIZE)
    failed = ("Internal error", "2026-12-06T11:00:00Z", SIZE)  # later, but failed
    first, second = _parsed([(0, *ok), (1, *failed)], 1), _parsed([(0, *failed), (1, *ok)], 2)
    take(first.to_batches()[0])
    take(second.to_batches()[0])
    column = sink.column(np.array([True, True]), np.array([], np.int64),
                         np.array([], np.int64))
    assert column[0].as_py() == first.column("embedding")[0].as_py()
    assert column[1].as_py() == second.column("embedding")[1].as_py()
