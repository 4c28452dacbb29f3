"""Run ids and fingerprints: the only strings of ours that go into paths and table names,
checked whole before they do."""

from __future__ import annotations

import re
import secrets
from datetime import datetime, timezone

_RUN_ID = re.compile(r"^run-\d{8}-\d{6}-[0-9a-f]{6}$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{32}$")


def new_run_id() -> str:
    """A sortable, unique run id usable in paths, display names and labels."""
    return f"run-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def is_run_id(text) -> bool:
    return isinstance(text, str) and _RUN_ID.match(text) is not None


def checked_run_id(run_id: str) -> str:
    if not is_run_id(run_id):
        raise ValueError(f"{run_id!r} is not a pdbatch run id")
    return run_id


def checked_fingerprint(fingerprint: str) -> str:
    if not (isinstance(fingerprint, str) and _FINGERPRINT.match(fingerprint)):
        raise ValueError(f"{fingerprint!r} is not a pdbatch fingerprint")
    return fingerprint
