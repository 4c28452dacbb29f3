"""Staging through the Gemini Developer API itself (``service="gemini-api"``): each job's
requests are a JSONL file uploaded through its Files API, and its answers a results file,
downloaded and parsed like Vertex output lines.

A Developer API line is ``{"key": "<row>", "request": {...}}``; its answer
``{"key": "<row>", "response": {...}}`` or ``{"key": "<row>", "error": {code, message,
status}}`` (spec §5.5). Errors become the status text Vertex writes (``"<status>: {"error":
{...}}"``), so that every row's status is read one way.

Requests are never sent inline, small jobs included: the service answers inline requests
without the ``metadata`` that would tell which row an answer belongs to (python-genai #2008,
js-genai #1191) and not in their order (python-genai #1909), so their answers could not be
joined back. Should a batch still answer inline, answers without their key are left out (their
rows get a ``missing`` status), never matched by position.
"""

from __future__ import annotations

import io
import logging
import os
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError, ServiceError
from ..families import lines
from ..families.lines import Parser, PerBatch, string_bytes
from ..gemini_client import client, download, every
from .staged import Destination, Staged

log = logging.getLogger(__name__)


def developer_lines(requests: pa.ChunkedArray, key: str) -> pa.ChunkedArray:
    """Gemini request lines keyed for the Developer API: ``{"<key>":7,"request":...`` (the
    family's row key field) becomes ``{"key":"7","request":...``."""
    return pc.replace_substring_regex(requests, '^\\{"' + key + '":(\\d+),', '{"key":"\\1",',
                                      max_replacements=1)


#: Seconds an upload may stay PROCESSING before pdbatch gives up on it.
ACTIVE_WITHIN = 600.0
#: A file the Files API holds is used again only if it outlives the longest batch (48 hours).
_MIN_LIFETIME = timedelta(hours=47, minutes=30)


def _lasts_a_batch(file) -> bool:
    """Whether a file the Files API holds will outlive a batch made now."""
    expires = file.expiration_time
    return expires is None or expires - datetime.now(timezone.utc) > _MIN_LIFETIME


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
    """A run's requests and answers on the Developer API: JSONL files through its Files API."""

    hosts_files = True  # files= go to the Files API
    tabular = False
    one_source = True  # a batch reads one file

    def __init__(self, run_id: str, parser: Parser, base_url: str, api_key: str):
        self.run_id, self.parser = run_id, parser
        self._base_url, self._api_key = base_url, api_key
        self._client = client(base_url, api_key)
        self._uploaded: dict[str, str] = {}  # display name -> file name, as last listed

    def __str__(self) -> str:
        return "the Gemini API's Files API"

    def stage(self, number: int, requests: pa.ChunkedArray) -> Staged:
        """Upload job ``number``'s requests; the uploaded file (``files/...``)."""
        lines = developer_lines(requests, self.parser.key)
        return Staged((self._upload(f"input-{number:05d}", lines),))

    def upload(self, files: dict[str, tuple[bytes | str, str]]) -> None:
        """Upload local files and bytes sent with ``files=`` as ``files/<id>`` (``id``: their
        content hash, see ``multimodal.file_id``), skipping those the Files API holds already
        (an earlier run's, for the 48 hours it keeps them)."""
        from google.genai import errors

        for file_id, (source, mime) in files.items():
            name = f"files/{file_id}"
            try:
                held = self._client.files.get(name=name)
            except errors.ClientError as err:
                if err.code not in (403, 404):  # 403: "... or it may not exist"
                    raise
                held = None
            if held is not None and _lasts_a_batch(held):
                self._active(held)
                continue
            if held is not None:  # it would expire while the batch may run: upload afresh
                self._client.files.delete(name=name)
            data = Path(source).read_bytes() if isinstance(source, str) else bytes(source)
            try:
                self._active(self._client.files.upload(file=io.BytesIO(data), config={
                    "name": name, "mime_type": mime, "display_name": f"pdbatch-file-{file_id}"}))
            except errors.ClientError as err:
                if err.code != 409:  # 409: another process uploaded it meanwhile
                    raise
                self._active(self._client.files.get(name=name))

    def stage_shard(self, partition: int, index: int, requests: pa.ChunkedArray) -> str:
        """Upload one shard of a Dask partition; its name for ``source``."""
        self._upload(self.shard(partition, index), developer_lines(requests, self.parser.key))
        return self.shard(partition, index)

    def shard(self, partition: int, index: int) -> str:
        """The name of a shard (the uploaded file's display name, after the run id)."""
        return f"input-p{partition:06d}-{index:04d}"

    def source(self, names: list[str]) -> Staged:
        """The source of a batch reading one staged shard (a batch reads one file, so the
        Dask driver gives each job one shard): the uploaded file, found by its display name."""
        [name] = names
        wanted = f"pdbatch-{self.run_id}-{name}"
        if wanted not in self._uploaded:  # one listing for all the run's shards
            self._uploaded = {found.display_name: found.name for found in
                              every(self._client.files.list(config={"page_size": 100}))}
        if wanted in self._uploaded:
            return Staged((self._uploaded[wanted],))
        raise InputError(f"The staged shard {wanted} is not in the Files API (files expire "
                         "after 48 hours): run the same call with force=True.")

    def destination(self, number: int) -> Destination:
        """Nowhere of the run's: a batch's answers stay with the service."""
        return Destination()

    def collect(self, con, number: int, output_dir: str, response: bool,
                per_batch: PerBatch | None = None) -> pa.Table:
        """Job ``number``'s answers: ``output_dir`` is the results file (``files/...``), or,
        for inline requests, the batch (``batches/...``) holding the responses."""
        if not output_dir:
            return self.parser.empty(response)
        if output_dir.startswith("batches/"):
            rows = self._inline_answers(output_dir)
        else:
            rows = self._file_answers(con, output_dir)
        return lines.parse_rows(con, self.parser, rows, response, per_batch)

    def clean_up(self) -> None:
        """Delete the run's uploaded input files (results files stay)."""
        prefix = f"pdbatch-{self.run_id}-input-"
        listed = every(self._client.files.list(config={"page_size": 100}))  # before a delete
        for found in listed:
            if (found.display_name or "").startswith(prefix):
                try:
                    self._client.files.delete(name=found.name)
                except Exception as err:  # noqa: BLE001  (the file expires in 48 hours anyway)
                    log.warning("could not delete %s: %s", found.name, err)

    def _upload(self, stem: str, requests: pa.ChunkedArray) -> str:
        data = b"".join(string_bytes(chunk) for chunk in requests.chunks)
        uploaded = self._client.files.upload(file=io.BytesIO(data), config={
            "mime_type": "jsonl", "display_name": f"pdbatch-{self.run_id}-{stem}"})
        return self._active(uploaded).name

    def _active(self, file):
        """``file`` once the Files API has processed it (a batch cannot use it before)."""
        deadline, delay = time.monotonic() + ACTIVE_WITHIN, 0.5
        while file.state is not None and file.state.name == "PROCESSING":
            if time.monotonic() > deadline:
                raise ServiceError(f"{file.name} was still being processed by the Files API "
                                   f"after {ACTIVE_WITHIN:.0f} s.")
            time.sleep(delay)
            delay = min(delay * 1.5, 10.0)
            file = self._client.files.get(name=file.name)
        if file.state is not None and file.state.name == "FAILED":
            raise ServiceError(f"The Files API could not process {file.name}: {file.error}")
        return file

    def _inline_answers(self, batch: str) -> pa.Table:
        job = self._client.batches.get(name=batch)
        answers = (job.dest.inlined_responses or []) if job.dest else []
        keyless = sum(not (answer.metadata or {}).get("key") for answer in answers)
        if keyless:
            log.warning("%s answered %d requests inline without their keys (python-genai "
                        "#2008): their rows cannot be told and are left without an answer",
                        batch, keyless)
        keys, statuses, responses = [], [], []
        for answer in answers:
            keys.append((answer.metadata or {}).get("key"))
            error = answer.error.model_dump(mode="json", exclude_none=True) if answer.error \
                else None
            statuses.append(_status(error))
            responses.append(None if answer.response is None else orjson.dumps(
                answer.response.model_dump(mode="json", by_alias=True, exclude_none=True,
                                           exclude={"sdk_http_response"})).decode())
        return pa.table({self.parser.key: pa.array(keys, pa.string()),
                         "status": pa.array(statuses, pa.string()),
                         "processed_time": pa.array([""] * len(keys), pa.string()),
                         "response": pa.array(responses, pa.string())})

    def _file_answers(self, con, name: str) -> pa.Table:
        with tempfile.TemporaryDirectory(prefix="pdbatch-") as folder:
            path = os.path.join(folder, "answers.jsonl")
            download(self._base_url, self._api_key, name, path)
            lines = con.sql(
                f"SELECT key AS {self.parser.key}, error::VARCHAR AS error, '' AS processed_time, "
                "response::VARCHAR AS response FROM read_ndjson($path, ignore_errors = true, "
                "maximum_object_size = 67108864, columns = {'key': 'VARCHAR', "
                "'response': 'JSON', 'error': 'JSON'})", params={"path": path}
            ).to_arrow_table()
        error = lines.column("error")
        failed = np.flatnonzero(pc.is_valid(error).to_numpy(zero_copy_only=False))
        statuses = np.full(len(error), "", dtype=object)  # answers: no status
        statuses[failed] = [_status(orjson.loads(text))
                            for text in error.take(pa.array(failed)).to_pylist()]
        return lines.drop_columns("error").append_column("status",
                                                         pa.array(statuses, pa.string()))
