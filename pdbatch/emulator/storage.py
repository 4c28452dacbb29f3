"""Cloud Storage access for the emulator (through gcsfs, against ``STORAGE_EMULATOR_HOST``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import BinaryIO

_BLOCK = 16 * 2**20
_UPLOAD = 64 * 2**20


def filesystem(endpoint: str | None = None):
    """A gcsfs filesystem for the emulator's own reads and writes.

    ``endpoint`` is the Cloud Storage server (default: ``STORAGE_EMULATOR_HOST``).

    The core class is used directly: gcsfs's experimental HNS class probes a gRPC API that a
    local Cloud Storage emulator does not serve, and each call would wait a minute for it.
    """
    from gcsfs.core import GCSFileSystem

    endpoint = endpoint or os.environ.get("STORAGE_EMULATOR_HOST")
    return GCSFileSystem(
        endpoint_url=endpoint, token="anon" if endpoint else None, skip_instance_cache=True
    )


def expand(fs, uris: list[str]) -> list[str]:
    """Input URIs with wildcards expanded, as ``gs://`` paths, in sorted order."""
    paths: list[str] = []
    for uri in uris:
        if any(ch in uri for ch in "*?["):
            paths.extend(sorted(fs.glob(uri)))
        else:
            paths.append(uri)
    return paths


def read_lines(fs, path: str) -> Iterator[bytes]:
    """The non-empty lines of one object, read in 16 MiB blocks."""
    with fs.open(path, "rb", cache_type="readahead", block_size=_BLOCK) as f:
        rest = b""
        while chunk := f.read(_BLOCK):
            lines = (rest + chunk).split(b"\n")
            rest = lines.pop()
            yield from (line for line in lines if line.strip())
        if rest.strip():
            yield rest


def upload(fs, source: BinaryIO, path: str) -> None:
    """Copy a local binary file object to one object, in 64 MiB upload chunks (small chunks
    are slow on local servers)."""
    with fs.open(path, "wb", block_size=_UPLOAD) as f:
        while chunk := source.read(_UPLOAD):
            f.write(chunk)
