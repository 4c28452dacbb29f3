"""A local folder as a run store (``file:///absolute/path``): where runs of the Gemini
Developer API are remembered, since that service has no bucket of the user's to keep them in
(its requests are staged through its Files API, ``storage.files_api``).

Manifests are ``<folder>/<run>/manifest.json``; the fingerprint index is
``<folder>/fingerprints/<fingerprint>``, claimed by an exclusive create.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from ..errors import InputError
from .runids import checked_fingerprint, checked_run_id, claimed_by, is_run_id, manifest_of

SCHEME = "file://"
#: ``files=`` cannot be uploaded here: the Developer API reads them from its Files API.
HOSTS_FILES = False
TABULAR = False


def checked(uri: str, name: str) -> str:
    """``file://`` + an absolute path, without a trailing slash."""
    path = uri[len(SCHEME):]
    if not os.path.isabs(path) or "\n" in path or "\r" in path:
        raise InputError(f"{name}={uri!r}: pass an absolute local folder.")
    return SCHEME + (path.rstrip("/") or "/")


def check(uri: str, name: str, region: str, project: str | None = None,
          credentials=None) -> None:
    """Any folder this process can create will do."""


def staging_of(input_uri: str, run_id: str) -> str | None:
    """Jobs read nothing from a local folder."""
    return None


class FolderStore:
    """Manifests and the fingerprint index in a local folder."""

    def __init__(self, root: str):
        self.root = Path(root[len(SCHEME):])

    def __str__(self) -> str:
        return str(self.root)

    def save(self, manifest: dict) -> None:
        _write(self._manifest(manifest["run"]), json.dumps(manifest, indent=1))

    def load(self, run_id: str) -> dict | None:
        path = self._manifest(run_id)
        try:
            return manifest_of(path.read_bytes(), str(path))
        except FileNotFoundError:
            return None

    def delete(self, run_id: str) -> None:
        self._manifest(run_id).unlink(missing_ok=True)

    def link(self, fingerprint: str, run_id: str) -> None:
        _write(self._index(fingerprint), checked_run_id(run_id))

    def claim(self, fingerprint: str, run_id: str) -> str:
        index = self._index(fingerprint)
        index.parent.mkdir(parents=True, exist_ok=True)
        written = index.with_name(f".{checked_run_id(run_id)}-{fingerprint}")
        written.write_text(run_id)
        try:
            os.link(written, index)  # atomic, and refused when the index exists: one claim wins
            return run_id
        except FileExistsError:
            owner = self.find(fingerprint)
        finally:
            written.unlink(missing_ok=True)
        return claimed_by(owner, str(index))

    def find(self, fingerprint: str) -> str | None:
        try:
            run_id = self._index(fingerprint).read_text()
        except FileNotFoundError:
            return None
        return run_id if is_run_id(run_id) else None

    def run_ids(self) -> list[str]:
        found = (path.parent.name for path in self.root.glob("run-*/manifest.json"))
        return sorted(name for name in found if is_run_id(name))

    def _manifest(self, run_id: str) -> Path:
        return self.root / checked_run_id(run_id) / "manifest.json"

    def _index(self, fingerprint: str) -> Path:
        return self.root / "fingerprints" / checked_fingerprint(fingerprint)


def _write(path: Path, text: str) -> None:
    """Write ``path`` whole: readers see the old text or the new, never a part (each writer
    has its own temporary file, renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w") as out:
            out.write(text)
        os.replace(partial, path)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
