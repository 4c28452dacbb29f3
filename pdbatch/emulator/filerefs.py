"""Files a Gemini request refers to (``fileData.fileUri`` parts), checked as the services do.

A request whose file cannot be read fails on its own row or line; the job or batch goes on.
Each distinct URI is checked once per job (most requests have none, so the common path is a
few dict look-ups per row):

=====================  ==============================================  =========================
URI                    Vertex AI (``VertexFiles``)                     Developer API
                                                                       (``DeveloperFiles``)
=====================  ==============================================  =========================
``gs://b/o``           404 ``NOT_FOUND`` "No such object: b/o" when    400 ``INVALID_ARGUMENT``
                       absent: one listing per folder of the Cloud     "Invalid or unsupported
                       Storage the job reads from                      file uri: ..."
``…/v1beta/files/ID``  like any other ``https`` URL                    403 ``PERMISSION_DENIED``
                                                                       unless a file of the
                                                                       Files API (the
                                                                       emulator's base URL or
                                                                       the real host); 400
                                                                       ``FAILED_PRECONDITION``
                                                                       while it is PROCESSING
other ``http(s)``      one HEAD each; unreachable: 400                 the same
                       ``INVALID_ARGUMENT`` "Cannot fetch content
                       from the provided URL." (YouTube: not checked)
anything else          400 "Unsupported file uri: ..."                 the same
=====================  ==============================================  =========================

Sources and the parts marked [I] are in docs/conformance.md.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from .faults import status_text

#: HTTP reason phrases of the row ``status`` strings (spec §2.2).
REASONS = {400: "Bad Request", 403: "Forbidden", 404: "Not Found"}
#: The real Files API's URIs; the emulator's own are ``<its base URL>/v1beta/files/<id>``.
REAL_FILES_BASE = "https://generativelanguage.googleapis.com"
_FILE_PATH = re.compile(r"/v1beta/(files/[a-z0-9-]+)")
_YOUTUBE = {"youtube.com", "www.youtube.com", "m.youtube.com", "youtu.be"}
_HEAD_SECONDS = 5.0


@dataclass(frozen=True)
class FileProblem:
    """Why a request's file cannot be read: the google.rpc.Status of the failed call."""

    code: int
    status: str
    message: str

    def error(self) -> dict:
        """The Status object (a Developer API line's ``error``)."""
        return {"code": self.code, "message": self.message, "status": self.status}

    def row_status(self) -> str:
        """A Vertex output line's ``status``: ``Not Found: {"error": {...}}``."""
        return status_text(REASONS[self.code], self.error())


#: A job's file check: the problem with a request's files, or None.
Check = Callable[[dict], "FileProblem | None"]


def file_uris(request: dict) -> Iterator[str]:
    """The ``fileData.fileUri`` values of a request's contents and system instruction (either
    spelling of the field names)."""
    contents = request.get("contents")
    system = request.get("systemInstruction", request.get("system_instruction"))
    for content in [*(contents if isinstance(contents, list) else ()), system]:
        parts = content.get("parts") if isinstance(content, dict) else None
        for part in parts if isinstance(parts, list) else ():
            if not isinstance(part, dict):
                continue
            data = part.get("fileData", part.get("file_data"))
            if isinstance(data, dict):
                uri = data.get("fileUri", data.get("file_uri"))
                if isinstance(uri, str):
                    yield uri


class _Checker:
    """The first problem among a request's files, each distinct URI judged once."""

    def __init__(self):
        self._seen: dict[str, FileProblem | None] = {}

    def __call__(self, request: dict) -> FileProblem | None:
        for uri in file_uris(request):
            if uri not in self._seen:
                self._seen[uri] = self._judge(uri)
            if self._seen[uri] is not None:
                return self._seen[uri]
        return None

    def _judge(self, uri: str) -> FileProblem | None:
        raise NotImplementedError

    @staticmethod
    def _web(uri: str) -> FileProblem | None:
        """An ``http(s)`` URL the service fetches itself; anything else is unsupported."""
        parts = urlsplit(uri)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            return FileProblem(400, "INVALID_ARGUMENT", f"Unsupported file uri: {uri}")
        if (parts.hostname or "") in _YOUTUBE or reachable(uri):
            return None
        return FileProblem(400, "INVALID_ARGUMENT", "Cannot fetch content from the provided URL.")


class VertexFiles(_Checker):
    """Vertex AI: ``gs://`` objects must exist in the Cloud Storage of ``filesystem()`` (made
    on first need), listed once per folder."""

    def __init__(self, filesystem: Callable[[], object]):
        super().__init__()
        self._filesystem, self._fs = filesystem, None
        self._folders: dict[str, set[str]] = {}

    def _judge(self, uri: str) -> FileProblem | None:
        if not uri.startswith("gs://"):
            return self._web(uri)
        path = uri.removeprefix("gs://")
        folder, _, name = path.rpartition("/")
        if not folder or not name or path in self._listing(folder):
            return None if folder and name else FileProblem(
                400, "INVALID_ARGUMENT", f"Unsupported file uri: {uri}")
        return FileProblem(404, "NOT_FOUND", f"No such object: {path}")

    def _listing(self, folder: str) -> set[str]:
        if folder not in self._folders:
            if self._fs is None:
                self._fs = self._filesystem()
            try:
                found = self._fs.ls(folder, detail=True, refresh=True)
            except (FileNotFoundError, OSError):
                found = []
            self._folders[folder] = {item["name"].rstrip("/") for item in found
                                     if item.get("type") == "file"}
        return self._folders[folder]


def not_active(name: str) -> str:
    """The Developer API's message for a file used while it is not ACTIVE [I]."""
    return f"The File {name.removeprefix('files/')} is not in an ACTIVE state and usage is " \
        "not allowed."


class DeveloperFiles(_Checker):
    """The Developer API: Files API URIs (under ``base_url``, the emulator's, or the real
    host) must name a file whose ``state(name)`` is ACTIVE (None: no such file)."""

    def __init__(self, state: Callable[[str], str | None], base_url: str = ""):
        super().__init__()
        self._state = state
        self._bases = tuple(b for b in (base_url.rstrip("/"), REAL_FILES_BASE) if b)

    def _judge(self, uri: str) -> FileProblem | None:
        name = self._files_api_name(uri)
        if name is not None:
            state = self._state(name)
            if state == "ACTIVE":
                return None
            if state is not None:
                return FileProblem(400, "FAILED_PRECONDITION", not_active(name))
            return FileProblem(403, "PERMISSION_DENIED", f"You do not have permission to "
                               f"access the File {name.removeprefix('files/')} or it may "
                               "not exist.")
        if uri.startswith("gs://"):
            return FileProblem(400, "INVALID_ARGUMENT", f"Invalid or unsupported file uri: {uri}")
        return self._web(uri)

    def _files_api_name(self, uri: str) -> str | None:
        """``files/<id>`` of a Files API URI of this service, else None."""
        for base in self._bases:
            match = _FILE_PATH.fullmatch(uri[len(base):]) if uri.startswith(base) else None
            if match:
                return match[1]
        return None


def reachable(url: str) -> bool:
    """Whether a HEAD of ``url`` answers below 400 within a few seconds."""
    request = urllib.request.Request(url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=_HEAD_SECONDS) as answer:
            return answer.status < 400
    except (urllib.error.URLError, OSError, ValueError):
        return False
