"""Requests repeated across a Dask frame's partitions: each partition's request hashes
(MD5, 16 bytes each) go to buckets; each bucket finds the requests an earlier partition also
makes; one task gathers those *copies*, which are then not sent (the line of the row whose
request is sent answers them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...options import Options
from ...prepare import Prepared, Sending, prepare, request_hashes
from .. import keys
from .graph import Tasks

#: At most this many dedup buckets (fewer for frames of fewer partitions).
MAX_BUCKETS = 64


@dataclass(frozen=True)
class Copies:
    """Requests repeated across partitions: row ``copy[i]`` (a row key) is answered by the
    line of row ``owner[i]`` (the first partition's row with that request), sorted by owner."""

    copy: np.ndarray
    owner: np.ndarray

    def of(self, partition: int) -> tuple[np.ndarray, np.ndarray]:
        """The partition's copies: their rows in the partition and their owners' keys."""
        mine = keys.partition_of(self.copy) == partition
        return keys.row_of(self.copy[mine]), self.owner[mine]


NO_COPIES = Copies(np.array([], dtype=np.int64), np.array([], dtype=np.int64))


def copies_task(tasks: Tasks, options: Options) -> tuple:
    """The task giving the frame's ``Copies``: each partition's request hashes, bucketed,
    then each bucket's repeats."""
    buckets = max(1, min(len(tasks.parts), MAX_BUCKETS))
    hashed = [tasks.pieces("hashed", tasks.add("hash", number, _hashes, part.key, number,
                                               options, buckets), buckets)
              for number, part in enumerate(tasks.parts)]
    repeats = [tasks.add("repeats", bucket, _repeats, [pieces[bucket] for pieces in hashed])
               for bucket in range(buckets)]
    return tasks.add("copies", 0, _gathered, repeats)


def _hashes(part: pd.DataFrame, number: int, options: Options, buckets: int) -> tuple:
    """The partition's sent requests as ``(hash high, hash low, row key)`` per bucket."""
    prepared = prepare(part, options)
    high, low = request_hashes(prepared)
    row_keys = prepared.sent_rows.astype(np.int64) + keys.offset(number)
    bucket = (low % np.uint64(buckets)).astype(np.int64)
    order = np.argsort(bucket, kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(buckets + 1))
    return tuple((high[order[a:b]], low[order[a:b]], row_keys[order[a:b]])
                 for a, b in zip(bounds[:-1], bounds[1:], strict=True))


def _repeats(pieces: list[tuple]) -> Copies:
    """One bucket's copies: rows whose request hash an earlier row key's also has."""
    high, low, row_keys = (np.concatenate([piece[i] for piece in pieces]) for i in range(3))
    order = np.lexsort((row_keys, low, high))
    high, low, row_keys = high[order], low[order], row_keys[order]
    first = np.ones(len(row_keys), dtype=bool)
    first[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
    owners = row_keys[np.maximum.accumulate(np.where(first, np.arange(len(row_keys)), 0))]
    return Copies(row_keys[~first], owners[~first])


def _gathered(repeats: list[Copies]) -> Copies:
    copy = np.concatenate([c.copy for c in repeats] + [NO_COPIES.copy])
    owner = np.concatenate([c.owner for c in repeats] + [NO_COPIES.owner])
    order = np.argsort(owner, kind="stable")
    return Copies(copy[order], owner[order])


def without_copies(prepared: Prepared, number: int, copies: Copies) -> Prepared:
    """The partition's call with its copies not sent (their owners' lines answer them)."""
    rows, _ = copies.of(number)
    if not len(rows):
        return prepared
    send = prepared.sending.send.copy()
    send[rows] = False
    sending = Sending(send, prepared.sending.copies, prepared.sending.originals)
    return dataclasses.replace(prepared, sending=sending)
