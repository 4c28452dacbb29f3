"""What a Dask run's tasks hand each other through storage rather than memory, as Dask's own
disk-backed shuffle does: each partition's request hashes by bucket (for ``dedup``) and each
job's answers by partition (for the joins). A task writes its pieces and returns only their
sizes; the tasks that need them read them back. So a worker holds one partition's hashes,
one bucket, one job's answers or one partition's answers at a time, however many rows the
run has, and the graph needs no task per (partition, bucket) or (partition, route) pair.

The folder is ``<staging>/<run>/exchange/`` on Cloud Storage (``storage.exchange_folder``;
a local temporary folder when neither the staging nor the output location is Cloud Storage,
which the workers of one machine share).
"""

from __future__ import annotations

import ctypes
import io
import re

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ... import config, storage
from ...options import Options

#: One request's hash and row key, as stored.
HASH = np.dtype([("high", "<u8"), ("low", "<u8"), ("key", "<i8")])
_JOB = re.compile(r"job-(\d+)\.parquet$")


class Exchange:
    """Run ``run_id``'s exchange folder."""

    def __init__(self, run_id: str, options: Options):
        settings = config.settings_of(options.run, options.api_key)
        self.fs, self.root = storage.exchange_folder(
            (settings.staging, settings.output_location), run_id, options.credentials)

    # -------------------------------------------------------------- hashes by bucket
    def put_hashes(self, number: int, records: np.ndarray) -> None:
        """Partition ``number``'s hash records, sorted by bucket."""
        self._write(f"{self.root}/hashes/part-{number:05d}.bin", records.tobytes())

    def bucket(self, bucket: int, bounds: list[np.ndarray]) -> np.ndarray:
        """Bucket ``bucket``'s records from every partition (``bounds[p]``: partition
        ``p``'s bucket boundaries, in records)."""
        wanted = [(number, int(b[bucket]), int(b[bucket + 1]))
                  for number, b in enumerate(bounds) if b[bucket + 1] > b[bucket]]
        if not wanted:
            return np.empty(0, HASH)
        blobs = self.fs.cat_ranges([f"{self.root}/hashes/part-{n:05d}.bin" for n, _, _ in wanted],
                                   [a * HASH.itemsize for _, a, _ in wanted],
                                   [b * HASH.itemsize for _, _, b in wanted])
        return np.frombuffer(b"".join(blobs), HASH)

    def drop_hashes(self) -> None:
        self._remove(f"{self.root}/hashes")

    # -------------------------------------------------------------- answers by partition
    def put_answers(self, partition: int, job: int, lines: pa.Table) -> None:
        """Job ``job``'s answers to partition ``partition``'s rows."""
        sink = io.BytesIO()
        pq.write_table(lines, sink, compression="zstd")
        self._write(f"{self._answers(partition)}/job-{job:05d}.parquet", sink.getvalue())

    def answers(self, partition: int) -> dict[int, pa.Table]:
        """Partition ``partition``'s answers by job number."""
        folder = self._answers(partition)
        try:
            names = sorted(self.fs.ls(folder, detail=False))
        except FileNotFoundError:
            return {}
        found = {}
        for name in names:
            match = _JOB.search(name)
            if match:
                found[int(match[1])] = pq.read_table(io.BytesIO(self.fs.cat_file(name)))
        return found

    def drop_answers(self, partition: int) -> None:
        self._remove(self._answers(partition))

    # -------------------------------------------------------------- helpers
    def _answers(self, partition: int) -> str:
        return f"{self.root}/answers/part-{partition:05d}"

    def _write(self, path: str, data: bytes) -> None:
        self.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self.fs.pipe_file(path, data)

    def _remove(self, folder: str) -> None:
        try:
            self.fs.rm(folder, recursive=True)
        except FileNotFoundError:
            pass


def give_back() -> None:
    """Return the memory a task freed to the system (Arrow's pool, and glibc's
    ``malloc_trim`` where there is one): otherwise the allocators keep it and each next task's
    peak starts higher, the "unmanaged memory" ``distributed`` warns of."""
    pa.default_memory_pool().release_unused()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass
