"""Staging through the Gemini Developer API itself (``service="gemini-api"``): a job's requests
go inline in its create call when they are small, else as a JSONL file uploaded through the
Files API; answers come back as inline responses or as a results file, downloaded and parsed
like Vertex output lines.

A Developer API line is ``{"key": "<row>", "request": {...}}``; its answer
``{"key": "<row>", "response": {...}}`` or ``{"key": "<row>", "error": {code, message,
status}}`` (spec §5.5). Errors become the status text Vertex writes (``"<status>: {"error":
{...}}"``), so that every row's status is read one way.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError
from ..families import lines
from ..families.gemini import ROW_KEY
from ..families.lines import Parser
from ..gemini_client import client
from .gcs import string_bytes

log = logging.getLogger(__name__)

#: Jobs whose request lines are at most this many bytes are sent inline (the service takes
#: up to 20 MB inline; their answers then come back in the batch itself, so keep it small).
INLINE_BYTES = 4_000_000
_VERTEX_KEY = '^\\{"' + ROW_KEY + '":(\\d+),'


def developer_lines(requests: pa.ChunkedArray) -> pa.ChunkedArray:
    """Gemini request lines keyed for the Developer API: ``{"pdbatch_row":7,"request":...``
    becomes ``{"key":"7","request":...``."""
    return pc.replace_substring_regex(requests, _VERTEX_KEY, '{"key":"\\1",', max_replacements=1)


def inlined(requests: pa.ChunkedArray) -> list[dict]:
    """The lines as google-genai ``InlinedRequest`` dicts: contents, the other request fields
    as a ``GenerateContentConfig`` (google-genai accepts their REST camelCase names), and the
    row key as metadata."""
    out = []
    for line in requests.to_pylist():
        found = orjson.loads(line)
        request = found["request"]
        config = dict(request.get("generationConfig") or {})
        for name in ("systemInstruction", "safetySettings"):
            if name in request:
                config[name] = request[name]
        out.append({"contents": request["contents"], "config": config,
                    "metadata": {"key": str(found[ROW_KEY])}})
    return out


#: google.rpc status names of the HTTP codes of row errors (google-genai drops ``status``
#: from inline errors: it is put back, so that a row's status reads the same either way).
_STATUS_NAMES = {400: "INVALID_ARGUMENT", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
                 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


def _status(error: dict | None) -> str:
    """The Vertex status text of an error answer ("" for an answer)."""
    if not error:
        return ""
    status = error.get("status") or _STATUS_NAMES.get(error.get("code"), "ERROR")
    error = {**error, "status": status}
    return f"{status}: {orjson.dumps({'error': error}).decode()}"


class FilesApiLocation:
    """A run's requests and answers on the Developer API (inline or through its Files API)."""

    hosts_files = True  # files= go to the Files API
    tabular = False

    def __init__(self, run_id: str, parser: Parser, base_url: str, api_key: str):
        self.run_id, self.parser = run_id, parser
        self._client = client(base_url, api_key)
        self._uploaded: dict[str, str] = {}  # display name -> file name, as last listed

    def __str__(self) -> str:
        return "the Gemini API's Files API"

    def stage(self, number: int, requests: pa.ChunkedArray) -> dict:
        """Job ``number``'s source: ``{"inlined_requests": [...]}`` or ``{"file_name":
        "files/..."}``."""
        if (pc.sum(pc.binary_length(requests)).as_py() or 0) <= INLINE_BYTES:
            return {"inlined_requests": inlined(requests)}
        return {"file_name": self._upload(f"input-{number:05d}", developer_lines(requests))}

    def upload(self, files: dict[str, tuple[bytes | str, str]]) -> None:
        """Upload local files and bytes sent with ``files=`` as ``files/<id>`` (``id``: their
        content hash, see ``multimodal.file_id``), skipping those the Files API holds already
        (an earlier run's, for the 48 hours it keeps them)."""
        from google.genai import errors

        for file_id, (source, mime) in files.items():
            name = f"files/{file_id}"
            try:
                self._client.files.get(name=name)
                continue
            except errors.ClientError as err:
                if err.code not in (403, 404):  # 403: "... or it may not exist"
                    raise
            data = Path(source).read_bytes() if isinstance(source, str) else bytes(source)
            try:
                self._client.files.upload(file=io.BytesIO(data), config={
                    "name": name, "mime_type": mime, "display_name": f"pdbatch-file-{file_id}"})
            except errors.ClientError as err:
                if err.code != 409:  # 409: another process uploaded it meanwhile
                    raise

    def stage_shard(self, partition: int, index: int, requests: pa.ChunkedArray) -> str:
        """Upload one shard of a Dask partition; its name for ``source``."""
        self._upload(self.shard(partition, index), developer_lines(requests))
        return self.shard(partition, index)

    def shard(self, partition: int, index: int) -> str:
        """The name of a shard (the uploaded file's display name, after the run id)."""
        return f"input-p{partition:06d}-{index:04d}"

    def source(self, names: list[str]) -> dict:
        """The source of a batch reading one staged shard (a batch reads one file, so the
        Dask driver gives each job one shard): the uploaded file, found by its display name."""
        [name] = names
        wanted = f"pdbatch-{self.run_id}-{name}"
        if wanted not in self._uploaded:  # one listing for all the run's shards
            self._uploaded = {found.display_name: found.name for found in
                              self._client.files.list(config={"page_size": 100})}
        if wanted in self._uploaded:
            return {"file_name": self._uploaded[wanted]}
        raise InputError(f"The staged shard {wanted} is not in the Files API (files expire "
                         "after 48 hours): run the same call with force=True.")

    def destination(self, number: int) -> dict:
        return {}

    def collect(self, con, number: int, output_dir: str, response: bool) -> pa.Table:
        """Job ``number``'s answers: ``output_dir`` is the results file (``files/...``), or,
        for inline requests, the batch (``batches/...``) holding the responses."""
        if not output_dir:
            return lines.empty_output(response)
        if output_dir.startswith("batches/"):
            rows = self._inline_answers(output_dir)
        else:
            rows = self._file_answers(con, output_dir)
        return lines.parse_rows(con, self.parser, rows, response)

    def clean_up(self) -> None:
        """Delete the run's uploaded input files (results files stay)."""
        prefix = f"pdbatch-{self.run_id}-input-"
        for found in self._client.files.list(config={"page_size": 100}):
            if (found.display_name or "").startswith(prefix):
                try:
                    self._client.files.delete(name=found.name)
                except Exception as err:  # noqa: BLE001  (the file expires in 48 hours anyway)
                    log.warning("could not delete %s: %s", found.name, err)

    def _upload(self, stem: str, requests: pa.ChunkedArray) -> str:
        data = b"".join(string_bytes(chunk) for chunk in requests.chunks)
        uploaded = self._client.files.upload(file=io.BytesIO(data), config={
            "mime_type": "jsonl", "display_name": f"pdbatch-{self.run_id}-{stem}"})
        return uploaded.name

    def _inline_answers(self, batch: str) -> pa.Table:
        job = self._client.batches.get(name=batch)
        keys, statuses, responses = [], [], []
        for answer in (job.dest.inlined_responses or []) if job.dest else []:
            keys.append((answer.metadata or {}).get("key"))
            error = answer.error.model_dump(mode="json", exclude_none=True) if answer.error \
                else None
            statuses.append(_status(error))
            responses.append(None if answer.response is None else orjson.dumps(
                answer.response.model_dump(mode="json", by_alias=True, exclude_none=True,
                                           exclude={"sdk_http_response"})).decode())
        return pa.table({ROW_KEY: pa.array(keys, pa.string()),
                         "status": pa.array(statuses, pa.string()),
                         "processed_time": pa.array([""] * len(keys), pa.string()),
                         "response": pa.array(responses, pa.string())})

    def _file_answers(self, con, name: str) -> pa.Table:
        data = self._client.files.download(file=name)
        with tempfile.TemporaryDirectory(prefix="pdbatch-") as folder:
            path = os.path.join(folder, "answers.jsonl")
            with open(path, "wb") as out:
                out.write(data)
            return con.sql(
                f"SELECT key AS {ROW_KEY}, CASE WHEN error IS NULL THEN '' ELSE "
                "coalesce(json_extract_string(error, '$.status'), 'ERROR') || ': ' || "
                "json_object('error', error)::VARCHAR END AS status, '' AS processed_time, "
                "response::VARCHAR AS response FROM read_ndjson($path, ignore_errors = true, "
                "maximum_object_size = 67108864, columns = {'key': 'VARCHAR', "
                "'response': 'JSON', 'error': 'JSON'})", params={"path": path}
            ).to_arrow_table()
