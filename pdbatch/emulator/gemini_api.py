"""The Gemini Developer API surface (generativelanguage.googleapis.com, ``v1beta``): its HTTP
routes and its API key check, in front of the Files API (``gemini_files``) and the batches
(``gemini_batches``).

Routes (what google-genai's ``Client(api_key=..., http_options=HttpOptions(base_url=URL))``
sends, or with ``GOOGLE_GEMINI_BASE_URL=URL``):

=======================================================  ======================================
``POST /upload/v1beta/files``                            resumable upload: ``start`` (headers
                                                         ``X-Goog-Upload-*``), then chunks to
                                                         the ``X-Goog-Upload-URL`` it answers
``GET|DELETE /v1beta/files/{id}``, ``GET /v1beta/files``  a File, delete it, list them
``GET /v1beta/files/{id}:download?alt=media`` (and       a generated file's bytes
``/download/v1beta/files/{id}:download``)
``POST /v1beta/models/{model}:batchGenerateContent``     create a batch (an Operation)
``GET /v1beta/batches[/{id}]``, ``POST …/{id}:cancel``,   get, list, cancel, delete
``DELETE /v1beta/batches/{id}``
=======================================================  ======================================

Every call but an upload's chunks (its upload id is its credential) needs an API key
(``x-goog-api-key`` header or ``key=`` query): any non-empty key is accepted, except those in
``rejected_keys``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, quote

from .gemini_batches import EXPIRE_AFTER_SECONDS, MAX_INLINE_BYTES, GeminiBatches
from .gemini_files import MAX_FILE_BYTES, FileStore
from .responder import count_tokens
from .rest import ServiceError
from .service import BatchService

_PREFIXES = ("/v1beta/", "/upload/v1beta/", "/download/v1beta/")
_FILE = re.compile(r"^/(?:download/)?v1beta/files/(?P<id>[a-z0-9-]+)(?P<download>:download)?$")
_CREATE = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):"
                     r"(?P<method>batchGenerateContent|asyncBatchEmbedContent)$")
_BATCH = re.compile(r"^/v1beta/batches(?:/(?P<id>[a-z0-9-]+))?(?P<cancel>:cancel)?$")
_COUNT = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):countTokens$")
_TOKEN = re.compile(r"[0-9]{1,18}")
#: ``files.list``'s page size: "If unspecified, defaults to 10. Maximum pageSize is 100." (the
#: API reference); ``batches.list``'s is "the standard list page size", no more said [I].
FILES_PAGE, BATCHES_PAGE = (10, 100), (50, None)
#: The real service's answers to a call without a key, or with a key it does not know
#: (both observed in public issue reports, see docs/emulator.md).
NO_KEY = ("Method doesn't allow unregistered callers (callers without established identity). "
          "Please use API Key or other form of API consumer identity to call this API.")
BAD_KEY = "API key not valid. Please pass a valid API key."


@dataclass
class Reply:
    """One HTTP answer: a JSON body, raw bytes, or a file's bytes (a ``Path``)."""

    status: int
    body: dict | bytes | Path = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


class _Knob:
    """An attribute of ``GeminiApi`` kept on one of its parts (``files`` or ``batches``)."""

    def __init__(self, part: str):
        self.part = part

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    def __get__(self, api: GeminiApi | None, owner: type | None = None):
        return self if api is None else getattr(getattr(api, self.part), self.name)

    def __set__(self, api: GeminiApi, value) -> None:
        setattr(getattr(api, self.part), self.name, value)


class GeminiApi:
    """The Developer API surface of one emulator, sharing ``vertex``'s models, responder,
    timing and faults (``GeminiBatches``).

    Knobs: ``max_inline_bytes`` (20 MB: a create request's body), ``max_file_bytes`` (2 GB: an
    upload's declared size), ``expire_after`` (48 h, in seconds: an unfinished batch
    expires), ``rejected_keys`` (keys answered "API key not valid"), ``inline_metadata``
    (False: inline responses carry no ``metadata``, as the real service answers; True: they
    carry their request's, as the reference documents), ``processing_seconds`` (0: how long an
    uploaded file stays PROCESSING), ``require_display_name`` (False: a batch without a display
    name is made, as the live API does; True: refused, as its reference reads). With
    ``state_dir`` files and batches are kept in that folder.
    """

    def __init__(self, vertex: BatchService, state_dir: str | os.PathLike | None = None,
                 seed: int | None = None, max_inline_bytes: int = MAX_INLINE_BYTES,
                 max_file_bytes: int = MAX_FILE_BYTES,
                 expire_after: float = EXPIRE_AFTER_SECONDS,
                 rejected_keys: set[str] | None = None, inline_metadata: bool = False,
                 processing_seconds: float = 0.0):
        folder = Path(state_dir) if state_dir is not None else None
        self.files = FileStore(folder / "files" if folder else None, seed, max_file_bytes,
                               processing_seconds)
        self.batches = GeminiBatches(vertex, self.files, folder / "batches" if folder else None,
                                     seed, max_inline_bytes, expire_after, inline_metadata)
        self.rejected_keys: set[str] = set(rejected_keys or ())

    # Knobs kept by the part they govern, settable here at any time.
    max_inline_bytes = _Knob("batches")
    expire_after = _Knob("batches")
    inline_metadata = _Knob("batches")
    require_display_name = _Knob("batches")
    max_file_bytes = _Knob("files")
    processing_seconds = _Knob("files")

    @staticmethod
    def serves(path: str) -> bool:
        """Whether ``path`` is one of this surface's (``/v1beta1/`` is Vertex's)."""
        return path.startswith(_PREFIXES)

    def close(self) -> None:
        self.batches.close()
        self.files.close()

    def route(self, method: str, path: str, query: str, headers: Mapping[str, str],
              body: bytes, base_url: str) -> Reply:
        """Answer one call; ``base_url`` is this server's, for the URIs it hands out."""
        params = {k: v[-1] for k, v in parse_qs(query).items()}
        upload = path == "/upload/v1beta/files"
        try:
            if upload and params.get("upload_id"):
                return self._chunk(params["upload_id"], headers, body, base_url)
            self._check_key(headers.get("x-goog-api-key") or params.get("key") or "")
            if upload and method == "POST":
                return self._start(headers, body, base_url)
            return self._answer(method, path, params, body, base_url)
        except ServiceError as err:
            return Reply(err.code, err.envelope(),
                         {"X-Goog-Upload-Status": "final"} if upload else {})

    def _count_tokens(self, model: str, body: dict) -> dict:
        """``POST models/{model}:countTokens`` of ``contents`` or of a whole
        ``generateContentRequest``: the words, as the Vertex side counts them."""
        if model not in self.batches.models():
            raise ServiceError(404, "NOT_FOUND", f"models/{model} is not found for API version "
                               "v1beta, or is not supported for countTokens. Call ListModels "
                               "to see the list of available models and their supported "
                               "methods.")
        request = body.get("generateContentRequest") or body
        return {"totalTokens": count_tokens(request)["totalTokens"]}

    # ----------------------------------------------------------------- helpers
    def _check_key(self, key: str) -> None:
        if not key.strip():
            raise ServiceError(403, "PERMISSION_DENIED", NO_KEY)
        if key.strip() in self.rejected_keys:
            raise _KeyError()

    def _start(self, headers: Mapping[str, str], body: bytes, base_url: str) -> Reply:
        if (headers.get("X-Goog-Upload-Protocol") or "").lower() != "resumable" or \
                (headers.get("X-Goog-Upload-Command") or "").lower() != "start":
            raise ServiceError(400, "INVALID_ARGUMENT", "The emulator serves the resumable "
                               "upload protocol only (X-Goog-Upload-Protocol: resumable, "
                               "X-Goog-Upload-Command: start).")
        try:
            declared = int(headers.get("X-Goog-Upload-Header-Content-Length") or "")
        except ValueError:
            raise ServiceError(400, "INVALID_ARGUMENT", "X-Goog-Upload-Header-Content-Length "
                               "is required.") from None
        upload_id = self.files.start_upload(_json(body), declared,
                                            headers.get("X-Goog-Upload-Header-Content-Type")
                                            or "")
        return Reply(200, b"", {
            "X-Goog-Upload-URL": f"{base_url}/upload/v1beta/files?upload_id="
                                 f"{quote(upload_id)}&upload_protocol=resumable",
            "X-Goog-Upload-Status": "active",
            "X-Goog-Upload-Chunk-Granularity": str(8 * 2**20)})

    def _chunk(self, upload_id: str, headers: Mapping[str, str], body: bytes,
               base_url: str) -> Reply:
        command = {c.strip().lower() for c in (headers.get("X-Goog-Upload-Command") or "")
                   .split(",")}
        offset = int(headers.get("X-Goog-Upload-Offset") or 0)
        file = self.files.upload_chunk(upload_id, offset, body, "finalize" in command,
                                       base_url)
        if file is None:
            return Reply(200, b"", {"X-Goog-Upload-Status": "active"})
        return Reply(200, {"file": file}, {"X-Goog-Upload-Status": "final"})

    def _answer(self, method: str, path: str, params: dict, body: bytes,
                base_url: str) -> Reply:
        file, create, batch = _FILE.match(path), _CREATE.match(path), _BATCH.match(path)
        count = _COUNT.match(path)
        if count and method == "POST":
            return Reply(200, self._count_tokens(count["model"], _json(body)))
        if file and file["download"] and method == "GET":
            name = f"files/{file['id']}"
            if self.files.describe(name, base_url)["source"] != "GENERATED":
                raise ServiceError(400, "INVALID_ARGUMENT", f"Only generated files can be "
                                   f"downloaded; {name} was uploaded.")
            return Reply(200, self.files.path(name),
                         {"Content-Type": "application/octet-stream"})
        if file and method == "GET":
            return Reply(200, self.files.describe(f"files/{file['id']}", base_url))
        if file and method == "DELETE":
            self.files.delete(f"files/{file['id']}")
            return Reply(200, {})
        if path == "/v1beta/files" and method == "GET":
            return Reply(200, self.files.list(*_page(params, *FILES_PAGE), base_url))
        if create and method == "POST":
            return Reply(200, self.batches.create(create["model"], _json(body), len(body),
                                                  base_url, create["method"]))
        if batch and batch["id"]:
            name = f"batches/{batch['id']}"
            if method == "POST" and batch["cancel"]:
                return Reply(200, self.batches.cancel(name))
            if method == "GET" and not batch["cancel"]:
                return Reply(200, self.batches.get(name))
            if method == "DELETE" and not batch["cancel"]:
                return Reply(200, self.batches.delete(name))
        elif batch and method == "GET" and not batch["cancel"]:
            return Reply(200, self.batches.list(*_page(params, *BATCHES_PAGE)))
        raise ServiceError(404, "NOT_FOUND", f"The URL {path} was not found.")


class _KeyError(ServiceError):
    """An API key the emulator was told to reject, answered as the service does."""

    def __init__(self):
        super().__init__(400, "INVALID_ARGUMENT", BAD_KEY)

    def envelope(self) -> dict:
        body = super().envelope()
        body["error"]["details"] = [
            {"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID",
             "domain": "googleapis.com",
             "metadata": {"service": "generativelanguage.googleapis.com"}},
            {"@type": "type.googleapis.com/google.rpc.LocalizedMessage", "locale": "en-US",
             "message": BAD_KEY}]
        return body


def _json(body: bytes) -> dict:
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        raise ServiceError(400, "INVALID_ARGUMENT", "Invalid JSON payload received.") from None
    return value if isinstance(value, dict) else {}


def _page(params: dict, default: int, maximum: int | None) -> tuple[int, int]:
    """A list call's first index and page size from ``pageToken`` and ``pageSize``: 0 or none
    is ``default``, more than ``maximum`` is ``maximum``; a negative or non-integer size, or a
    token this emulator did not hand out, is refused (400)."""
    raw = params.get("pageSize", "")
    try:
        size = int(raw) if raw else 0
    except ValueError:
        raise ServiceError(400, "INVALID_ARGUMENT",
                           f'Invalid value at \'page_size\' (TYPE_INT32), "{raw}"') from None
    if size < 0:
        raise ServiceError(400, "INVALID_ARGUMENT", "page_size must not be negative.")
    size = size or default
    if maximum is not None:
        size = min(size, maximum)
    token = params.get("pageToken", "")
    if token and not _TOKEN.fullmatch(token):
        raise ServiceError(400, "INVALID_ARGUMENT", "Invalid page token.")
    return int(token or 0), size
