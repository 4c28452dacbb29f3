"""Where the emulator keeps its jobs: in memory, and in a folder when given one, so that the
jobs survive a restart of the emulator (a client can be killed and re-attach in tests)."""

from __future__ import annotations

import json
import os
from pathlib import Path


class JobStore:
    """Job records (REST-shaped dicts) by name, mirrored as ``<folder>/<job id>.json``."""

    def __init__(self, folder: str | os.PathLike | None = None):
        self.folder = Path(folder) if folder is not None else None
        self.jobs: dict[str, dict] = {}
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            for path in sorted(self.folder.glob("*.json")):
                job = json.loads(path.read_text())
                self.jobs[job["name"]] = job

    def save(self, job: dict) -> None:
        self.jobs[job["name"]] = job
        if self.folder is not None:
            path = self._path(job["name"])
            temporary = path.with_suffix(".tmp")
            temporary.write_text(json.dumps(job))
            os.replace(temporary, path)  # never a half-written record

    def remove(self, name: str) -> None:
        del self.jobs[name]
        if self.folder is not None:
            self._path(name).unlink(missing_ok=True)

    def _path(self, name: str) -> Path:
        return self.folder / f"{name.rsplit('/', 1)[-1]}.json"
