"""Splitting the sent rows into jobs within the service limits, and building each job's request
lines (one job at a time, so that only one job's lines are in memory)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from . import engine, multimodal
from .errors import InputError
from .families import lines
from .families.lines import Frame
from .options import MAX_REQUESTS_PER_JOB
from .prepare import Prepared, of_rows

__all__ = ["MAX_BYTES_PER_FILE", "MAX_REQUESTS_PER_JOB", "job_inputs", "jobs_of", "pack",
           "plan"]

#: Service limit of bytes per input file (spec §4); requests per job: MAX_REQUESTS_PER_JOB.
MAX_BYTES_PER_FILE = 1_000_000_000


def plan(sizes: np.ndarray, rows: np.ndarray, max_requests: int, max_bytes: int
         ) -> list[slice]:
    """Consecutive slices of the lines (of ``sizes`` bytes, for frame ``rows``) within the
    per-job request and byte limits."""
    too_big = np.flatnonzero(sizes > max_bytes)
    if len(too_big):
        row = int(rows[too_big[0]])
        raise InputError(f"The request for row {row} is at least {int(sizes[too_big[0]])} bytes, "
                         f"over the {max_bytes}-byte input file limit; shorten its prompt.")
    ends = np.cumsum(sizes)
    shards, start = [], 0
    while start < len(sizes):
        budget = (ends[start - 1] if start else 0) + max_bytes
        stop = min(start + max_requests, int(np.searchsorted(ends, budget, side="right")))
        shards.append(slice(start, stop))
        start = stop
    return shards


def job_inputs(texts: pa.ChunkedArray, send: np.ndarray, frame: Frame, max_requests: int,
               carried: pa.Table | None = None, file_plan: multimodal.FilePlan | None = None,
               row_config: pa.ChunkedArray | None = None, key_offset: int = 0
               ) -> Iterator[tuple[np.ndarray, pa.ChunkedArray]]:
    """Each job's row positions and request lines for the rows ``send`` marks (with the
    ``carried`` columns, the file parts and the ``row_config`` items of those rows), built one
    job at a time. A line's row key is its position plus ``key_offset``.

    Jobs are planned from a lower bound of each line's size (a line over the limit is refused
    before the first job is built); a job whose escaped lines turn out larger than the byte
    limit is split again.
    """
    sent = np.flatnonzero(send)
    sending = of_rows(texts, send)
    parts = file_plan.json_parts(sent) if file_plan else None
    config = of_rows(row_config, send) if row_config is not None else None
    floor = lines.min_line_sizes(pc.binary_length(sending).to_numpy(), frame)
    for extra in (parts, config):
        if extra is not None:
            floor = floor + pc.binary_length(extra).to_numpy()
    shards = plan(floor, sent, max_requests, MAX_BYTES_PER_FILE)
    con = engine.connect()
    for shard in shards:
        positions = sent[shard]
        requests = lines.request_lines(
            con, sending[shard], positions + key_offset, frame,
            carried.take(pa.array(positions)) if carried is not None else None,
            parts[shard] if parts is not None else None,
            config[shard] if config is not None else None)
        sizes = pc.binary_length(requests).to_numpy()
        for piece in plan(sizes, positions, max_requests, MAX_BYTES_PER_FILE):
            yield positions[piece], requests.slice(piece.start, piece.stop - piece.start)


def jobs_of(prepared: Prepared, key_offset: int = 0
            ) -> Iterator[tuple[np.ndarray, pa.ChunkedArray]]:
    """``job_inputs`` of a prepared call: each job's row positions and request lines."""
    rows = prepared.rows
    per_job = min(prepared.options.request.max_requests_per_job,
                  prepared.family.task.max_requests_per_job)
    return job_inputs(rows.texts, prepared.sending.send, prepared.frame, per_job,
                      prepared.carried_values(),
                      rows.files, rows.row_config, key_offset)


def pack(sizes: list[tuple[int, int]], max_requests: int, max_bytes: int,
         max_shards: int | None = None) -> list[list[int]]:
    """Consecutive shards (``(requests, bytes)`` each, within both limits already) grouped
    into jobs of at most ``max_requests`` requests, ``max_bytes`` bytes and ``max_shards``
    shards."""
    jobs: list[list[int]] = []
    requests = size = 0
    for index, (count, nbytes) in enumerate(sizes):
        if not jobs or requests + count > max_requests or size + nbytes > max_bytes \
                or len(jobs[-1]) == max_shards:
            jobs.append([])
            requests = size = 0
        jobs[-1].append(index)
        requests += count
        size += nbytes
    return jobs
