"""The neutral values a ``Location`` hands out: what a job reads and where it writes. Each
batch service turns them into its own request (``service/``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Staged:
    """What a job reads, as storage knows it (each service turns it into its own request):
    staged JSONL objects or an uploaded file (``uris``), or one table (``table``)."""

    uris: tuple[str, ...]
    table: bool = False


@dataclass(frozen=True)
class Destination:
    """Where a job writes: a Cloud Storage prefix or a table (``table``); "" where the
    service keeps its answers itself."""

    uri: str = ""
    table: bool = False
