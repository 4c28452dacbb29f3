"""The result columns (their names and dtypes are the task's, ``tasks/``): the check that
they clash with no column of the frame, and Arrow columns as pandas nullable arrays (the one
conversion every result column, structured-output fields included, goes through, so a lazy
frame's meta and its computed partitions have the same dtypes)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import InputError

#: The status of an answered row.
SUCCESS = "ok"


def check_no_clash(df: pd.DataFrame, prefix: str, columns: list[str],
                   extra: list[str] = ()) -> None:
    """Refuse, before any work, to overwrite columns the frame already has (the task's result
    ``columns``, and ``extra`` ones such as structured-output fields)."""
    names = [*columns, *extra]
    repeated = sorted({prefix + c for c in extra if names.count(c) > 1})
    if repeated:
        raise InputError(f"response_schema fields {repeated} would be named like other result "
                         "columns; rename the fields or pass expand=False.")
    clash = [prefix + c for c in names if prefix + c in df.columns]
    if clash:
        raise InputError(
            f"The frame already has column(s) {clash}, which the results would overwrite. "
            "Rename them, or pass result_prefix='llm_' to name the result columns llm_text, "
            "llm_status, ..."
        )


_PANDAS_TYPES = {pa.string(): pd.StringDtype("pyarrow"),
                 pa.large_string(): pd.StringDtype("pyarrow"), pa.int64(): pd.Int64Dtype(),
                 pa.float64(): pd.Float64Dtype(), pa.bool_(): pd.BooleanDtype()}


#: JSON Schema types of structured-output fields, as Arrow types (so as pandas dtypes).
SCHEMA_TYPES = {"string": pa.large_string(), "integer": pa.int64(), "number": pa.float64(),
                "boolean": pa.bool_()}


def pandas_array(column) -> pd.api.extensions.ExtensionArray:
    """An Arrow column as a pandas nullable array: ``string``, ``Int64``, ``Float64``,
    ``boolean``; a list (an embedding's vector) as an Arrow-backed ``pd.ArrowDtype``, whose
    values stay one contiguous buffer."""
    return pa.table({"c": column}).to_pandas(types_mapper=_pandas_type)["c"].array


def _pandas_type(kind: pa.DataType):
    if pa.types.is_list(kind) or pa.types.is_fixed_size_list(kind):
        return pd.ArrowDtype(kind)
    return _PANDAS_TYPES.get(kind)


def gathered_vectors(column: pa.ChunkedArray, line: np.ndarray, kind: pa.FixedSizeListType,
                     copies: np.ndarray, originals: np.ndarray) -> pa.Array:
    """Each row's vector (``column[line[row]]``; null where ``line`` is -1, and rows
    ``copies`` take their ``originals``' vectors) as ``kind``, gathered chunk by chunk
    straight into one contiguous float32 buffer: one copy of the vectors, in any line order.
    Vectors not of the call's size go through ``fixed_vectors`` (``vector_block``)."""
    size, rows = kind.list_size, len(line)
    matrix = np.zeros((rows, size), dtype=np.float32)
    valid = np.zeros(rows, dtype=bool)
    row_of_line = np.full(len(column), -1, dtype=np.int64)
    row_of_line[line[line >= 0]] = np.flatnonzero(line >= 0)
    start = 0
    for chunk in column.chunks:
        block, present = vector_block(chunk, kind)
        rows_here = row_of_line[start:start + len(chunk)]
        kept = rows_here >= 0
        if kept.all():  # the usual case: no copy of the block before it is gathered
            matrix[rows_here], valid[rows_here] = block, present
        else:
            matrix[rows_here[kept]], valid[rows_here[kept]] = block[kept], present[kept]
        start += len(chunk)
    if len(copies):
        matrix[copies], valid[copies] = matrix[originals], valid[originals]
    return pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1)), size,
                                             mask=pa.array(~valid))


def vector_block(column: pa.Array, kind: pa.FixedSizeListType
                 ) -> tuple[np.ndarray, np.ndarray]:
    """A list column's vectors as ``(lines, size)`` float32 (zeros where a line has none)
    and which lines have one; vectors not of the call's size go through ``fixed_vectors``
    (a null element inside a vector is NaN)."""
    size = kind.list_size
    present = column.is_valid().to_numpy(zero_copy_only=False)
    extremes = pc.min_max(pc.list_value_length(column))  # of the lines with a vector
    values = column.flatten()
    if values.null_count or (present.any() and (extremes["min"].as_py() != size or
                                                extremes["max"].as_py() != size)):
        fixed = fixed_vectors(column, kind)
        present = fixed.is_valid().to_numpy(zero_copy_only=False)
        values = fixed.values.slice(fixed.offset * size, len(fixed) * size)
        block = values.to_numpy(zero_copy_only=False).astype(np.float32).reshape(-1, size)
        block[~present] = 0
        return block, present
    values = values.to_numpy(zero_copy_only=False).reshape(-1, size)
    if present.all():
        return values, present
    block = np.zeros((len(column), size), dtype=np.float32)
    block[present] = values
    return block, present


def fixed_vectors(column, kind: pa.FixedSizeListType) -> pa.Array:
    """List-of-float vectors as ``kind`` (fixed-size): a vector longer than its size is cut
    and L2-normalised again (the leading part of a Matryoshka vector, as the service does
    when asked for fewer dimensions), a shorter one becomes null, one of its size stays as
    it is."""
    column = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    size = kind.list_size
    lengths = pc.fill_null(pc.list_value_length(column), size).to_numpy(zero_copy_only=False)
    if (lengths == size).all():
        return column.cast(kind)
    rows = []
    for vector, length in zip(column.to_pylist(), lengths.tolist(), strict=True):
        if vector is None or length < size:
            rows.append(None)
            continue
        cut = np.asarray(vector[:size], dtype=np.float32)
        norm = float(np.linalg.norm(cut)) if length > size else 0.0
        rows.append(cut / norm if norm else cut)
    return pa.array(rows, kind)
