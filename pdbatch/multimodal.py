"""Multimodal rows: file columns become ``fileData`` parts after each row's text.

A cell may hold a ``gs://`` URI of an object that exists (sent as it is), a local file path
under ``files_root`` (links resolved; a regular file), or bytes. Local paths and
bytes are uploaded once to the location's files folder (``<staging>/files/<sha256><ext>``; on
the Gemini Developer API, its Files API as ``files/<sha256>``), named by content, so that the
URI is known before the run and shared by runs sending the same file, and sent as that URI.
Every cell is checked before anything is uploaded: URIs are well formed, paths exist, and each
part has a MIME type (given per column, or told by the file's extension).
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa

from . import storage
from .errors import InputError
from .identifiers import whole

#: MIME types Gemini reads, by file extension.
MIME_TYPES = {
    "jpg": "image/jpeg", "jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp",
    "heic": "image/heic", "heif": "image/heif", "gif": "image/gif", "pdf": "application/pdf",
    "txt": "text/plain", "mp3": "audio/mpeg", "wav": "audio/wav", "flac": "audio/flac",
    "aac": "audio/aac", "ogg": "audio/ogg", "m4a": "audio/mp4", "mp4": "video/mp4",
    "mov": "video/quicktime", "mpeg": "video/mpeg", "webm": "video/webm", "avi": "video/x-msvideo",
}
_SUFFIX = re.compile(r"\.[a-z0-9]{1,10}")
_MIME = re.compile(r"^[a-z]+/[a-z0-9.+-]+$")


@dataclass(frozen=True)
class FilePlan:
    """The checked file cells of a frame: per row, ``(URI, mime type)`` of each part;
    ``uploads``: the local files and bytes to upload first, by object name in ``folder``,
    with their MIME type."""

    parts: list[list[tuple[str, str]]]
    folder: str  # where local files are uploaded (``storage.files_folder``)
    #: object name -> (path or bytes, MIME type)
    uploads: dict[str, tuple[object, str]] = field(default_factory=dict)

    @property
    def local(self) -> bool:
        return bool(self.uploads)

    def json_parts(self, positions: np.ndarray) -> pa.ChunkedArray:
        """Per row, its ``,{"fileData": ...}`` parts as JSON text (empty for none)."""
        texts = []
        for row in positions.tolist():
            pieces = []
            for uri, mime in self.parts[row]:
                pieces.append(orjson.dumps({"fileData": {"fileUri": uri, "mimeType": mime}}))
            texts.append("".join("," + p.decode() for p in pieces))
        return pa.chunked_array([pa.array(texts, pa.large_string())])


def plan(df: pd.DataFrame, files: Mapping[str, str | None], reasons: np.ndarray,
         folder: str, roots: list[str], missing: Callable[[set[str]], set[str]],
         name: Callable[[object], str] | None = None, gs_uris: bool = True) -> FilePlan:
    """Check every file cell; a bad cell gives its row a reason (like an invalid prompt).
    Local files must be regular files under one of ``roots`` (links resolved); ``missing``
    tells which ``gs://`` objects do not exist (one call for all of them). Local files and bytes
    will be uploaded to ``folder`` as ``<folder>/<name(source)>`` (default
    ``object_name``). ``gs_uris=False``: ``gs://`` cells are refused (a service that does not
    read Cloud Storage)."""
    name_of = name or object_name
    if not isinstance(files, Mapping):
        raise InputError("files must be a dict of column -> MIME type (or None to tell it from "
                         "the extension), e.g. files={'image_uri': 'image/jpeg'}.")
    unknown = [c for c in files if c not in df.columns]
    if unknown:
        raise InputError(f"files refers to {unknown}, which are not columns of the frame.")
    for column, mime in files.items():
        if mime is not None and not (whole(_MIME, mime)):
            raise InputError(f"files[{column!r}] = {mime!r} is not a MIME type such as "
                             "'image/jpeg'.")
    roots = [os.path.realpath(root) for root in roots]
    result = FilePlan([[] for _ in range(len(df))], folder)
    objects: list[tuple[int, str, str]] = []  # row, column, gs:// URI
    for column, mime in files.items():
        for row, value in enumerate(df[column].to_numpy(dtype=object, na_value=None)):
            if value is None or (isinstance(value, float) and np.isnan(value)):
                continue
            part, problem = _part(value, mime, roots)
            if problem:
                reasons[row] = reasons[row] or f"files column {column!r}: {problem}"
                continue
            if isinstance(value, str) and storage.is_file_uri(value):
                if not gs_uris:
                    reasons[row] = reasons[row] or (
                        f"files column {column!r}: {value} is in Cloud Storage, which the "
                        "Gemini Developer API does not read: send a local file or bytes, or "
                        "use service='vertex'")
                    continue
                result.parts[row].append(part)
                objects.append((row, column, value))
            else:
                source = os.path.realpath(value) if isinstance(value, str) else value
                try:  # the file that was checked is the one read and uploaded
                    uploaded = name_of(source)
                except OSError as err:
                    reasons[row] = reasons[row] or (f"files column {column!r}: {value!r} "
                                                    f"cannot be read ({err.strerror})")
                    continue
                result.uploads[uploaded] = (source, part[1])
                result.parts[row].append((f"{folder}/{uploaded}", part[1]))
    absent = missing({uri for _, _, uri in objects}) if objects else set()
    for row, column, uri in objects:
        if uri in absent:
            reasons[row] = reasons[row] or (f"files column {column!r}: {uri} does not exist "
                                            "(or cannot be read with these credentials)")
    return result


def _part(value, mime: str | None, roots: list[str]
          ) -> tuple[tuple[object, str] | None, str]:
    """``((source, mime type), "")`` for a good cell, ``(None, why)`` for a bad one."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        if mime is None:
            return None, "bytes need a MIME type: pass files={column: 'image/png'}"
        return (bytes(value), mime), ""
    if not isinstance(value, str):
        return None, f"a {type(value).__name__} is neither a gs:// URI, a path nor bytes"
    if storage.is_file_uri(value):
        if not storage.valid_file_uri(value):
            return None, f"{value!r} is not a Cloud Storage object URI (gs://bucket/object)"
    elif "://" in value:
        return None, f"{value!r}: only gs:// URIs, local paths and bytes can be sent"
    else:
        real = os.path.realpath(value)
        if not any(real == root or real.startswith(root.rstrip(os.sep) + os.sep)
                   for root in roots):
            return None, (f"{value!r} is outside files_root ({', '.join(roots)}); pass "
                          "files_root= naming the folder(s) files may be read from")
        if not (os.path.exists(real) and stat.S_ISREG(os.stat(real).st_mode)):
            return None, f"{value!r} is not a file"
    if mime is None:
        extension = value.rsplit(".", 1)[-1].lower() if "." in value.rsplit("/", 1)[-1] else ""
        mime = MIME_TYPES.get(extension)
        if mime is None:
            return None, (f"cannot tell the MIME type of {value!r} from its extension; pass "
                          "files={column: 'mime/type'}")
    return (value, mime), ""


def _content(source) -> bytes:
    return Path(source).read_bytes() if isinstance(source, str) else bytes(source)


def object_name(source) -> str:
    """A content-addressed name for a local file or bytes (the path's extension kept when it
    is a plain one, such as ``.png``)."""
    suffix = Path(source).suffix.lower() if isinstance(source, str) else ""
    return (hashlib.sha256(_content(source)).hexdigest()[:32]
            + (suffix if whole(_SUFFIX, suffix) else ""))


def file_id(source) -> str:
    """A content-addressed Files API id for a local file or bytes (ids are at most 40
    lowercase letters, digits and dashes)."""
    return hashlib.sha256(_content(source)).hexdigest()[:40]
