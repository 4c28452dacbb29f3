"""Requests whose files cannot be read fail on their own rows, as the services fail them
(``fileData.fileUri`` parts: docs/conformance.md), through the unmodified GAPIC REST client
and google-genai; and the Files API's rules for a name asked for at upload."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.request
import uuid
from urllib.parse import quote

import pytest
from google import genai
from google.genai import errors, types
from helpers import batch_done as _done
from helpers import finished, jsonl_job

from pdbatch.emulator import storage
from pdbatch.emulator.filerefs import VertexFiles

MODEL = "gemini-2.5-flash"


def _asking(uri: str | None, key: str | None = None) -> dict:
    parts = [{"text": f"look at {uri}"}]
    if uri is not None:
        parts.append({"fileData": {"fileUri": uri, "mimeType": "image/png"}})
    line = {"request": {"contents": [{"role": "user", "parts": parts}]}}
    return {**line, "key": key} if key else line


def _status(line: dict) -> tuple[str, dict] | None:
    if not line["status"]:
        return None
    reason, body = line["status"].split(": ", 1)
    return reason, json.loads(body)["error"]


def test_rows_whose_files_cannot_be_read_fail_and_the_others_are_answered(
        stack, gapic, parent, fs, staging):
    there = f"{staging}/img/there.png"
    fs.pipe(there, b"\x89PNG")
    obj = quote(there.removeprefix(f"gs://{stack.bucket}/"), safe="")
    public = f"{stack.gcs.url}/storage/v1/b/{stack.bucket}/o/{obj}"
    asked = {
        "there": there, "none": None, "there-snake": there,
        "missing": f"{staging}/img/gone.png",                 # same folder, no such object
        "no-folder": f"{staging}/nowhere/gone.png",
        "no-bucket": "gs://no-such-bucket-here/a.png",
        "url": f"{public}?alt=media",                         # fetched: answered
        "dead-url": f"{public}-gone?alt=media",               # cannot be fetched
        "youtube": "https://www.youtube.com/watch?v=abc",     # not checked offline
        "ftp": "ftp://example.com/a.png",
    }
    lines = []
    for key, uri in asked.items():
        line = {"key": key, **_asking(uri)}
        if key == "there-snake":
            line["request"]["contents"][0]["parts"][1] = {
                "file_data": {"file_uri": uri, "mime_type": "image/png"}}
        lines.append(line)
    fs.pipe(f"{staging}/in.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode())
    job = finished(gapic, gapic.create_batch_prediction_job(
        parent=parent, batch_prediction_job=jsonl_job(f"{staging}/in.jsonl",
                                                      f"{staging}/out")).name, timeout=60)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    out = {json.loads(x)["key"]: json.loads(x) for x in
           fs.cat(f"{job.output_info.gcs_output_directory}/predictions.jsonl").splitlines()}
    answered = {k for k, line in out.items() if not line["status"]}
    assert answered == {"there", "none", "there-snake", "url", "youtube"}
    assert all("response" in out[k] for k in answered)
    assert _status(out["missing"]) == ("Not Found", {
        "code": 404, "message": f"No such object: {staging.removeprefix('gs://')}/img/gone.png",
        "status": "NOT_FOUND"})
    assert _status(out["no-folder"])[1]["code"] == 404
    assert _status(out["no-bucket"])[1]["message"] == \
        "No such object: no-such-bucket-here/a.png"
    assert _status(out["dead-url"]) == ("Bad Request", {
        "code": 400, "message": "Cannot fetch content from the provided URL.",
        "status": "INVALID_ARGUMENT"})
    assert _status(out["ftp"])[1] == {"code": 400, "status": "INVALID_ARGUMENT",
                                      "message": "Unsupported file uri: ftp://example.com/a.png"}
    assert all("response" not in out[k] for k in set(out) - answered)
    assert job.completion_stats.successful_count == 5
    assert job.completion_stats.failed_count == 5


class _CountingFs:
    """A real gcsfs filesystem that counts its listings."""

    def __init__(self, fs):
        self.fs, self.listings = fs, 0

    def ls(self, *args, **kwargs):
        self.listings += 1
        return self.fs.ls(*args, **kwargs)


def test_each_folder_is_listed_once_per_job_whatever_the_rows(stack, fs, staging):
    fs.pipe(f"{staging}/a/1.png", b"1")
    fs.pipe(f"{staging}/b/2.png", b"2")
    counting = _CountingFs(storage.filesystem(stack.gcs.url))
    check = VertexFiles(lambda: counting)
    uris = [f"{staging}/a/1.png", f"{staging}/a/3.png", f"{staging}/b/2.png", None]
    problems = [check(_asking(uris[i % 4])["request"]) for i in range(20_000)]
    assert counting.listings == 2
    assert [p is None for p in problems[:4]] == [True, False, True, True]
    assert sum(p is not None for p in problems) == 5_000


@pytest.fixture
def client(stack):
    return genai.Client(api_key="test-key",
                        http_options=types.HttpOptions(base_url=stack.gemini_url))


def _named(client, tmp_path, data: bytes, mime: str = "image/png") -> types.File:
    """Upload under a content-addressed name, as pdbatch does: ``files/<40 hex>``."""
    path = tmp_path / "upload.bin"
    path.write_bytes(data)
    name = "files/" + hashlib.sha1(data).hexdigest()
    return client.files.upload(file=str(path), config={"name": name, "mime_type": mime})


def test_lines_whose_files_are_not_active_files_fail_and_the_batch_succeeds(
        client, stack, tmp_path):
    image = _named(client, tmp_path, b"\x89PNG one")
    deleted = _named(client, tmp_path, b"\x89PNG two")
    client.files.delete(name=deleted.name)
    file_id = image.name.removeprefix("files/")
    asked = {
        "uri": image.uri,
        "real-host": f"https://generativelanguage.googleapis.com/v1beta/files/{file_id}",
        "none": None,
        "missing": f"{stack.gemini_url}/v1beta/files/no-such-file",
        "deleted": deleted.uri,
        "gcs": "gs://some-bucket/a.png",
        # A Files API path on another host is just another URL (port 9: nothing answers).
        "other-host": f"http://127.0.0.1:9/v1beta/files/{file_id}",
    }
    path = tmp_path / "requests.jsonl"
    path.write_text("".join(json.dumps(_asking(uri, key)) + "\n" for key, uri in asked.items()))
    src = client.files.upload(file=str(path), config={"mime_type": "jsonl"})
    job = _done(client, client.batches.create(model=MODEL, src=src.name,
                                              config={"display_name": "files"}).name)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    out = {x["key"]: x for x in map(json.loads, client.files.download(
        file=job.dest.file_name).decode().splitlines())}
    assert {k for k, x in out.items() if "response" in x} == {"uri", "real-host", "none"}
    assert out["missing"]["error"] == {
        "code": 403, "status": "PERMISSION_DENIED", "message": "You do not have permission to "
        "access the File no-such-file or it may not exist."}
    assert out["deleted"]["error"]["message"] == (
        f"You do not have permission to access the File "
        f"{deleted.name.removeprefix('files/')} or it may not exist.")
    assert out["gcs"]["error"] == {"code": 400, "status": "INVALID_ARGUMENT",
                                   "message": "Invalid or unsupported file uri: "
                                              "gs://some-bucket/a.png"}
    assert out["other-host"]["error"] == {"code": 400, "status": "INVALID_ARGUMENT",
                                          "message": "Cannot fetch content from the provided "
                                                     "URL."}
    batch = json.loads(_wire(stack, job.name))
    assert batch["metadata"]["batchStats"]["successfulRequestCount"] == "3"
    assert batch["metadata"]["batchStats"]["failedRequestCount"] == "4"


def _wire(stack, name: str) -> bytes:
    request = urllib.request.Request(f"{stack.gemini_url}/v1beta/{name}",
                                     headers={"x-goog-api-key": "k"})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.read()


def test_an_inline_request_with_a_missing_file_gets_its_error(client, stack):
    src = [{"contents": [{"role": "user", "parts": [
               {"text": "hi"}, {"file_data": {"file_uri": f"{stack.gemini_url}/v1beta/files/"
                                              "gone", "mime_type": "image/png"}}]}],
            "metadata": {"key": "gone"}},
           {"contents": [{"role": "user", "parts": [{"text": "fine"}]}],
            "metadata": {"key": "fine"}}]
    job = _done(client, client.batches.create(model=MODEL, src=src,
                                              config={"display_name": "inline files"}).name)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    # No metadata comes back (as on the real service): the two are told apart by their answer.
    fine, gone = sorted(job.dest.inlined_responses, key=lambda r: r.error is not None)
    assert fine.response.text == "echo: fine" and fine.error is None
    assert gone.response is None and gone.error.code == 403


def _inline_asking(uri: str) -> list[dict]:
    return [{"contents": [{"role": "user", "parts": [
        {"text": "look"}, {"file_data": {"file_uri": uri, "mime_type": "video/mp4"}}]}]}]


def test_files_processing_cannot_be_used_until_active(client, stack, tmp_path):
    """With ``processing_seconds`` an upload stays PROCESSING that long: a batch from it is
    refused (400 FAILED_PRECONDITION), a request naming it fails on its line."""
    stack.gemini.processing_seconds = 600
    try:
        video = _named(client, tmp_path, b"\x00\x00\x00\x18ftypmp4 " + uuid.uuid4().bytes,
                       "video/mp4")
        path = tmp_path / "requests.jsonl"
        path.write_text(json.dumps(_asking(None, "a")) + "\n")
        src = client.files.upload(file=str(path), config={"mime_type": "jsonl"})
    finally:
        stack.gemini.processing_seconds = 0
    assert video.state.name == "PROCESSING" and src.state.name == "PROCESSING"
    assert client.files.get(name=video.name).state.name == "PROCESSING"
    with pytest.raises(errors.ClientError) as refused:
        client.batches.create(model=MODEL, src=src.name, config={"display_name": "early"})
    assert refused.value.code == 400 and refused.value.status == "FAILED_PRECONDITION"
    assert refused.value.message == (f"The File {src.name.removeprefix('files/')} is not in "
                                     "an ACTIVE state and usage is not allowed.")
    job = _done(client, client.batches.create(model=MODEL, src=_inline_asking(video.uri),
                                              config={"display_name": "video early"}).name)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    error = job.dest.inlined_responses[0].error
    assert error.code == 400 and "is not in an ACTIVE state" in error.message


def test_a_processing_file_becomes_active(client, stack, tmp_path):
    stack.gemini.processing_seconds = 0.3
    try:
        image = _named(client, tmp_path, uuid.uuid4().bytes)
    finally:
        stack.gemini.processing_seconds = 0
    assert image.state.name == "PROCESSING"
    deadline = time.monotonic() + 60
    while (found := client.files.get(name=image.name)).state.name == "PROCESSING":
        assert time.monotonic() < deadline, "still PROCESSING after 60 s"
        time.sleep(0.05)
    assert found.state.name == "ACTIVE" and found.update_time >= found.create_time
    job = _done(client, client.batches.create(model=MODEL, src=_inline_asking(image.uri),
                                              config={"display_name": "video later"}).name)
    assert job.dest.inlined_responses[0].error is None


def test_an_upload_takes_the_name_asked_for_once(client, tmp_path):
    data = b"content-addressed"
    file = _named(client, tmp_path, data)
    name = "files/" + hashlib.sha1(data).hexdigest()
    assert file.name == name and len(name) == 46 and file.state.name == "ACTIVE"
    assert client.files.get(name=name).size_bytes == len(data)  # what pdbatch asks first
    with pytest.raises(errors.ClientError) as again:
        _named(client, tmp_path, data)
    assert again.value.code == 409 and again.value.status == "ALREADY_EXISTS"
    assert client.files.get(name=name).sha256_hash == file.sha256_hash  # left as it was
    client.files.delete(name=name)
    assert _named(client, tmp_path, data).name == name  # free again once deleted


@pytest.mark.parametrize("name", ["files/" + "a" * 41, "files/-abc", "files/abc-",
                                  "files/ABC", "files/a_b", "files/a.b"])
def test_an_upload_with_an_invalid_name_is_refused(client, tmp_path, name):
    path = tmp_path / "f.txt"
    path.write_text("x")
    with pytest.raises(errors.ClientError) as refused:
        client.files.upload(file=str(path), config={"name": name, "mime_type": "text/plain"})
    assert refused.value.code == 400 and refused.value.status == "INVALID_ARGUMENT"
    assert "CreateFileRequest.file.name" in refused.value.message


def test_names_of_one_to_forty_characters_are_taken(client, tmp_path):
    path = tmp_path / "f.txt"
    path.write_text("x")
    tag = uuid.uuid4().hex[:8]
    for file_id in ("a" + tag, f"0-9-{tag}", tag + "z" * 32):
        assert len(file_id) <= 40
        name = f"files/{file_id}"
        assert client.files.upload(file=str(path), config={
            "name": name, "mime_type": "text/plain"}).name == name
