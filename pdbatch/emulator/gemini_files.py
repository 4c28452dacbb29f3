"""The Gemini Developer API's Files API, emulated: resumable uploads, File records, downloads.

Uploaded and generated files (a batch's responses file) live in a folder: the emulator's
state folder when it has one (so they survive a restart), else a temporary folder removed on
``close``. Records are REST-shaped ``File`` dicts (lowerCamelCase, int64 as strings); keys
starting with ``_`` are the emulator's own and never sent. An uploaded file stays PROCESSING
for ``processing_seconds`` after its upload (0: ACTIVE at once), as the real API may keep it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import re
import shutil
import string
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from .families import camel
from .rest import ServiceError, page_of, rfc3339
from .state import JobStore

#: The Files API's limit per file (https://ai.google.dev/gemini-api/docs/files: 2 GB).
MAX_FILE_BYTES = 2 * 2**30
#: Files are kept 48 hours (same page).
FILE_TTL_SECONDS = 48 * 3600
_ID_CHARS = string.ascii_lowercase + string.digits
_FILE_ID = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,38}[a-z0-9])?")


def missing_file(file_id: str) -> ServiceError:
    """What the Files API answers for a file that does not exist (or is another key's)."""
    return ServiceError(403, "PERMISSION_DENIED", f"You do not have permission to access the "
                        f"File {file_id} or it may not exist.")


@dataclass
class _Upload:
    """An upload session between its start and its finalize."""

    record: dict
    declared: int
    received: int = 0


class FileStore:
    """Files by name (``files/<id>``), their bytes in ``folder``."""

    def __init__(self, folder: str | os.PathLike | None = None, seed: int | None = None,
                 max_file_bytes: int = MAX_FILE_BYTES, processing_seconds: float = 0.0):
        self._temporary = folder is None
        self.folder = Path(tempfile.mkdtemp(prefix="pdbatch-gemini-files-")) \
            if folder is None else Path(folder)
        self.blobs = self.folder / "blobs"
        self.blobs.mkdir(parents=True, exist_ok=True)
        self._records = JobStore(self.folder / "records")
        self.max_file_bytes = max_file_bytes
        self.processing_seconds = processing_seconds
        self._uploads: dict[str, _Upload] = {}
        self._ids = random.Random(seed)
        self._lock = threading.Lock()

    # ----------------------------------------------------------------- uploads
    def start_upload(self, body: dict, declared: int, mime_type: str) -> str:
        """Open a resumable upload of ``declared`` bytes; its upload id."""
        file = {camel(k): v for k, v in (body.get("file") or {}).items()} \
            if isinstance(body, dict) else {}
        if declared > self.max_file_bytes:
            raise ServiceError(400, "INVALID_ARGUMENT",
                               f"File size {declared} bytes exceeds the maximum of "
                               f"{self.max_file_bytes} bytes per file.")
        name = str(file.get("name") or f"files/{self._new_id(12)}")
        if not name.startswith("files/"):
            name = f"files/{name}"
        _check_name(name)
        now = time.time()
        record = {"name": name, "mimeType": file.get("mimeType") or mime_type or
                  "application/octet-stream", "sizeBytes": str(declared),
                  "createTime": rfc3339(now), "updateTime": rfc3339(now),
                  "expirationTime": rfc3339(now + FILE_TTL_SECONDS), "state": "ACTIVE",
                  "source": "UPLOADED"}
        if file.get("displayName"):
            record["displayName"] = str(file["displayName"])
        upload_id = self._new_id(32)
        with self._lock:
            if name in self._records.jobs:
                raise _exists(name)
            self._uploads[upload_id] = _Upload(record, declared)
        self._blob(upload_id, partial=True).write_bytes(b"")
        return upload_id

    def upload_chunk(self, upload_id: str, offset: int, data: bytes, finalize: bool,
                     base_url: str) -> dict | None:
        """Append one chunk; on ``finalize`` the File record, else None."""
        with self._lock:
            upload = self._uploads.get(upload_id)
        if upload is None:
            raise ServiceError(404, "NOT_FOUND", "No upload session with this id.")
        if offset != upload.received:
            raise ServiceError(400, "INVALID_ARGUMENT", f"Upload offset {offset} does not "
                               f"match the {upload.received} bytes received.")
        if upload.received + len(data) > min(upload.declared, self.max_file_bytes):
            self._abandon(upload_id)
            raise ServiceError(400, "INVALID_ARGUMENT", "The upload is larger than the "
                               f"{upload.declared} bytes declared at its start.")
        with self._blob(upload_id, partial=True).open("ab") as out:
            out.write(data)
        upload.received += len(data)
        if not finalize:
            return None
        record = upload.record
        with self._lock:
            self._uploads.pop(upload_id, None)
            taken = record["name"] in self._records.jobs  # by an upload started meanwhile
        if taken:
            self._blob(upload_id, partial=True).unlink(missing_ok=True)
            raise _exists(record["name"])
        path = self._blob(record["name"])
        os.replace(self._blob(upload_id, partial=True), path)
        record["sizeBytes"] = str(upload.received)
        record["sha256Hash"] = _sha256(path)
        if self.processing_seconds > 0:
            record.update(state="PROCESSING", _readyAt=time.time() + self.processing_seconds)
        with self._lock:
            self._records.save(record)
        return self.describe(record["name"], base_url)

    # ----------------------------------------------------------------- records
    def add_generated(self, name: str, source: Path, mime_type: str) -> None:
        """Keep ``source`` (moved) as the generated file ``name`` (a batch's responses)."""
        path = self._blob(name)
        shutil.move(source, path)
        now = time.time()
        with self._lock:
            self._records.save({"name": name, "mimeType": mime_type,
                                "sizeBytes": str(path.stat().st_size),
                                "createTime": rfc3339(now), "updateTime": rfc3339(now),
                                "expirationTime": rfc3339(now + FILE_TTL_SECONDS),
                                "sha256Hash": _sha256(path), "state": "ACTIVE",
                                "source": "GENERATED"})

    def describe(self, name: str, base_url: str) -> dict:
        """The ``File`` resource, with its ``uri`` (and ``downloadUri`` if generated)."""
        record = self._current(name)
        if record is None:
            raise missing_file(name.removeprefix("files/"))
        out = {k: v for k, v in record.items() if not k.startswith("_")}
        out["uri"] = f"{base_url}/v1beta/{name}"
        if record["source"] == "GENERATED":
            out["downloadUri"] = f"{base_url}/download/v1beta/{name}:download?alt=media"
        return out

    def exists(self, name: str) -> bool:
        with self._lock:
            return name in self._records.jobs

    def state(self, name: str) -> str | None:
        """``name``'s state (``ACTIVE``, ``PROCESSING``); None when there is no such file or it
        is past its expiration."""
        record = self._current(name)
        if record is None or record.get("expirationTime", "9") <= rfc3339(time.time()):
            return None
        return record.get("state")

    def active(self, name: str) -> bool:
        """Whether ``name`` is a file requests can use: ACTIVE and not past its expiration."""
        return self.state(name) == "ACTIVE"

    def path(self, name: str) -> Path:
        """Where the bytes of ``name`` are (403 if there is no such file)."""
        if not self.exists(name):
            raise missing_file(name.removeprefix("files/"))
        return self._blob(name)

    def delete(self, name: str) -> None:
        with self._lock:
            if name not in self._records.jobs:
                raise missing_file(name.removeprefix("files/"))
            self._records.remove(name)
        self._blob(name).unlink(missing_ok=True)

    def list(self, start: int, size: int, base_url: str) -> dict:
        """The page of ``size`` files from the ``start``-th, newest first [I]."""
        with self._lock:
            names = sorted(self._records.jobs, key=lambda n: self._records.jobs[n]["createTime"],
                           reverse=True)
        return page_of(names, start, size, "files", lambda name: self.describe(name, base_url))

    def close(self) -> None:
        """Remove the temporary folder (a state folder stays)."""
        if self._temporary:
            shutil.rmtree(self.folder, ignore_errors=True)

    # ----------------------------------------------------------------- helpers
    def _current(self, name: str) -> dict | None:
        """``name``'s record, a PROCESSING file whose time has come made ACTIVE."""
        with self._lock:
            record = self._records.jobs.get(name)
            if record is not None and record.get("state") == "PROCESSING" and \
                    time.time() >= record.get("_readyAt", 0):
                ready = record.pop("_readyAt", time.time())
                record.update(state="ACTIVE", updateTime=rfc3339(ready))
                self._records.save(record)
            return record

    def _new_id(self, length: int) -> str:
        return "".join(self._ids.choice(_ID_CHARS) for _ in range(length))

    def _blob(self, name: str, partial: bool = False) -> Path:
        return self.blobs / (name.removeprefix("files/") + (".part" if partial else ""))

    def _abandon(self, upload_id: str) -> None:
        with self._lock:
            self._uploads.pop(upload_id, None)
        self._blob(upload_id, partial=True).unlink(missing_ok=True)


def _check_name(name: str) -> None:
    """A name asked for at upload: ``files/`` and an id of at most 40 lowercase letters,
    digits or dashes, not starting or ending with a dash (the API reference, ``File.name``)."""
    file_id = name.removeprefix("files/")
    if len(file_id) > 40:
        raise ServiceError(400, "INVALID_ARGUMENT", "* CreateFileRequest.file.name: File ID "
                           "(name excluding 'files/') cannot be more than 40 characters.\n")
    if not _FILE_ID.fullmatch(file_id):
        raise ServiceError(400, "INVALID_ARGUMENT", f"* CreateFileRequest.file.name: File ID "
                           f"{file_id!r} may contain only lowercase letters, digits and dashes, "
                           "and cannot start or end with a dash.\n")


def _exists(name: str) -> ServiceError:
    return ServiceError(409, "ALREADY_EXISTS", f"File {name} already exists.")


def _sha256(path: Path) -> str:
    """The ``sha256Hash`` field: base64 of the hex SHA-256 digest [I]."""
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(2**20):
            digest.update(chunk)
    return base64.b64encode(digest.hexdigest().encode()).decode()
