"""Requests repeated across a Dask frame's partitions: each partition's request hashes
(MD5, 16 bytes each, with the row key: 24 bytes a request) go to buckets in the run's exchange
folder (``exchange.py``); each bucket finds the requests an earlier partition also makes; one
task gathers those *copies*, which are then not sent (the line of the row whose
request is sent answers them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ...options import Options
from ...prepare import Prepared, Sending, prepare, request_hashes
from .. import keys
from .exchange import HASH, Exchange
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


def copies_task(tasks: Tasks, options: Options, run_id: str) -> tuple:
    """The task giving the frame's ``Copies``: each partition's request hashes, bucketed and
    written to the run's exchange folder, then each bucket's repeats (the graph: one task per
    partition, one per bucket and two more, whatever the number of partitions)."""
    buckets = max(1, min(len(tasks.parts), MAX_BUCKETS))
    hashed = [tasks.add("hash", number, _hashes, part.key, number, options, buckets, run_id)
              for number, part in enumerate(tasks.parts)]
    bounds = tasks.add("hashed", 0, _listed, hashed)
    repeats = [tasks.add("repeats", bucket, _repeats, bucket, bounds, run_id, options)
               for bucket in range(buckets)]
    return tasks.add("copies", 0, _gathered, repeats, run_id, options)


def _hashes(part: pd.DataFrame, number: int, options: Options, buckets: int,
            run_id: str) -> np.ndarray:
    """Write the partition's sent requests as ``(hash high, hash low, row key)`` records
    sorted by bucket; returns the buckets' boundaries (in records)."""
    prepared = prepare(part, options)
    high, low = request_hashes(prepared)
    records = np.empty(len(high), HASH)
    records["high"], records["low"] = high, low
    records["key"] = prepared.sent_rows.astype(np.int64) + keys.offset(number)
    bucket = (low % np.uint64(buckets)).astype(np.int64)
    order = np.argsort(bucket, kind="stable")
    Exchange(run_id, options).put_hashes(number, records[order])
    return np.searchsorted(bucket[order], np.arange(buckets + 1))


def _listed(items: list) -> list:
    return items


def _repeats(bucket: int, bounds: list[np.ndarray], run_id: str, options: Options) -> Copies:
    """One bucket's copies: rows whose request hash an earlier row key's also has."""
    records = Exchange(run_id, options).bucket(bucket, bounds)
    high, low, row_keys = records["high"], records["low"], records["key"]
    order = np.lexsort((row_keys, low, high))
    high, low, row_keys = high[order], low[order], row_keys[order]
    first = np.ones(len(row_keys), dtype=bool)
    first[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
    owners = row_keys[np.maximum.accumulate(np.where(first, np.arange(len(row_keys)), 0))]
    return Copies(row_keys[~first], owners[~first])


def _gathered(repeats: list[Copies], run_id: str, options: Options) -> Copies:
    """Every bucket's copies, sorted by owner; the hashes are no longer needed."""
    Exchange(run_id, options).drop_hashes()
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
