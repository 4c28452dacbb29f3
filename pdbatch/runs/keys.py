"""The row key every request line carries, by which answers are joined back: a pandas run's
key is the row's position in the frame; a Dask run's is ``partition << 32 | row`` (the row's
position within its partition)."""

from __future__ import annotations

import numpy as np

ROW_BITS = 32
ROW_MASK = (1 << ROW_BITS) - 1


def offset(partition: int) -> int:
    """What is added to a row's position in partition ``partition`` to make its key."""
    return partition << ROW_BITS


def partition_of(keys: np.ndarray) -> np.ndarray:
    """The partition of each key."""
    return keys >> ROW_BITS


def row_of(keys: np.ndarray) -> np.ndarray:
    """Each key's row within its partition."""
    return keys & ROW_MASK
