"""Cloud Storage staging: write request JSONL, fetch a job's output files."""

from __future__ import annotations

import os

import numpy as np
import pyarrow as pa

#: Resumable-upload chunk: few large requests (benchmarks/RESULTS.md: 8 MiB chunks made an 830 MB
#: upload to a local server 3.6x slower than one request; 64 MiB matches it).
_WRITE_BLOCK = 64 * 2**20
_READ_BLOCK = 8 * 2**20


def filesystem():
    """A gcsfs filesystem; honours ``STORAGE_EMULATOR_HOST`` like Google's clients do.

    Against an emulator the core gcsfs class is used: the experimental HNS class would probe a
    gRPC API that local servers lack, and wait a minute on each call.
    """
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        from gcsfs.core import GCSFileSystem

        return GCSFileSystem(endpoint_url=emulator, token="anon", skip_instance_cache=True)
    import gcsfs

    return gcsfs.GCSFileSystem()


def write_jsonl(fs, uri: str, lines: pa.ChunkedArray, metadata: dict | None = None) -> None:
    """Write Arrow string lines (each ending in a newline) to one object with custom
    ``metadata``, straight from the Arrow buffers in large writes."""
    with fs.open(uri, "wb", block_size=_WRITE_BLOCK, metadata=metadata) as f:
        for chunk in lines.chunks:
            body = string_bytes(chunk)
            for start in range(0, len(body), _WRITE_BLOCK):
                f.write(body[start:start + _WRITE_BLOCK])


def string_bytes(chunk: pa.Array) -> memoryview:
    """The concatenated values of an Arrow string array, without copying."""
    if len(chunk) == 0:
        return memoryview(b"")
    width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    offsets = np.frombuffer(chunk.buffers()[1], dtype=width)[chunk.offset:]
    return memoryview(chunk.buffers()[2])[offsets[0]:offsets[len(chunk)]]


def output_files(fs, output_dir: str) -> list[str]:
    """The files holding a job's answers.

    ``predictions.jsonl`` when the job wrote it; otherwise (a cancelled or expired job) every
    ``.jsonl`` under the directory, incremental files included: duplicates are resolved by key.
    """
    final = f"{output_dir.rstrip('/')}/predictions.jsonl"
    if fs.exists(final):
        return [final]
    return sorted("gs://" + p for p in fs.find(output_dir) if p.endswith(".jsonl"))


def download(fs, uri: str, path: str) -> None:
    """Copy one object to a local file, sequentially in large blocks."""
    with fs.open(uri, "rb", cache_type="readahead", block_size=_READ_BLOCK) as src, \
            open(path, "wb") as dst:
        while chunk := src.read(_READ_BLOCK):
            dst.write(chunk)
