"""Cloud Storage access for the emulator (through gcsfs, against ``STORAGE_EMULATOR_HOST``)."""

from __future__ import annotations

import os
from collections.abc import Iterator


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
    """The non-empty lines of one object."""
    with fs.open(path, "rb", cache_type="readahead", block_size=16 * 2**20) as f:
        for line in f.read().splitlines():
            if line.strip():
                yield line


def write_bytes(fs, path: str, data: bytes) -> None:
    """Write one object in 64 MiB upload chunks (small chunks are slow on local servers)."""
    with fs.open(path, "wb", block_size=64 * 2**20) as f:
        f.write(data)
