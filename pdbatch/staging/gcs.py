"""Cloud Storage staging: write request JSONL, read a job's output directory."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

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


def write_jsonl(fs, uri: str, lines: Sequence[bytes]) -> None:
    """Write lines (each ending in a newline) to one object, joined into large writes."""
    with fs.open(uri, "wb", block_size=_WRITE_BLOCK) as f:
        buffer: list[bytes] = []
        size = 0
        for line in lines:
            buffer.append(line)
            size += len(line)
            if size >= _WRITE_BLOCK:
                f.write(b"".join(buffer))
                buffer, size = [], 0
        f.write(b"".join(buffer))


def output_files(fs, output_dir: str) -> list[str]:
    """The files holding a job's answers.

    ``predictions.jsonl`` when the job wrote it; otherwise (a cancelled or expired job) every
    ``.jsonl`` under the directory, incremental files included: duplicates are resolved by key.
    """
    final = f"{output_dir.rstrip('/')}/predictions.jsonl"
    if fs.exists(final):
        return [final]
    return sorted("gs://" + p for p in fs.find(output_dir) if p.endswith(".jsonl"))


def read_lines(fs, uri: str) -> Iterator[bytes]:
    """The non-empty lines of one object, read sequentially in large blocks."""
    with fs.open(uri, "rb", cache_type="readahead", block_size=_READ_BLOCK) as f:
        rest = b""
        while chunk := f.read(_READ_BLOCK):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            yield from (line for line in lines if line.strip())
        if rest.strip():
            yield rest

