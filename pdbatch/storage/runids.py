"""Run ids and fingerprints, the only strings of ours that go into paths and table names,
checked whole before they do; and a stored manifest's text, checked before it is trusted."""

from __future__ import annotations

import json
import re
import secrets
from datetime import datetime, timezone

from ..errors import InputError
from ..identifiers import whole

_RUN_ID = re.compile(r"^run-\d{8}-\d{6}-[0-9a-f]{6}$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{32}$")


def new_run_id() -> str:
    """A sortable, unique run id usable in paths, display names and labels."""
    return f"run-{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"


def is_run_id(text) -> bool:
    return whole(_RUN_ID, text) is not None


def checked_run_id(run_id: str) -> str:
    if not is_run_id(run_id):
        raise ValueError(f"{run_id!r} is not a pdbatch run id")
    return run_id


def checked_fingerprint(fingerprint: str) -> str:
    if not (whole(_FINGERPRINT, fingerprint)):
        raise ValueError(f"{fingerprint!r} is not a pdbatch fingerprint")
    return fingerprint


def manifest_of(text: bytes | str, where: str) -> dict:
    """A stored manifest; InputError naming ``where`` and the way out when it is not one."""
    try:
        manifest = json.loads(text)
    except ValueError:
        manifest = None
    if not (isinstance(manifest, dict) and is_run_id(manifest.get("run"))
            and isinstance(manifest.get("fingerprint"), str)
            and isinstance(manifest.get("jobs"), list)):
        raise InputError(f"The run manifest {where} is damaged (not a pdbatch manifest, or "
                         "cut short). Remove it: the same call then rebuilds it from its jobs' "
                         "labels; or pass force=True to start a new run (paid again).")
    return manifest


def claimed_by(owner: str | None, index: str) -> str:
    """The run a lost claim found in ``index``; InputError when the index names none."""
    if owner is None:
        raise InputError(f"The run index {index} exists but names no run: remove it, or pass "
                         "force=True.")
    return owner
