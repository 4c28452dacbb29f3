"""The emulator's Gemini Developer API surface, driven by the unmodified google-genai client
(``Client(api_key=..., http_options=HttpOptions(base_url=...))`` and ``GOOGLE_GEMINI_BASE_URL``):
Files API uploads and downloads, batches from a file and inline, get/list/cancel/delete, the
limits and the faults (docs/emulator.md, "The Gemini Developer API surface")."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
from google import genai
from google.genai import errors, types
from helpers import batch_done as _done

from pdbatch.emulator.stack import export_lines, read_exports

MODEL = "gemini-2.5-flash"


@pytest.fixture
def client(stack):
    return genai.Client(api_key="test-key",
                        http_options=types.HttpOptions(base_url=stack.gemini_url))


def _request(text: str) -> dict:
    return {"contents": [{"role": "user", "parts": [{"text": text}]}]}


def _jsonl(tmp_path, lines: list) -> str:
    path = tmp_path / "requests.jsonl"
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n"
                            for line in lines))
    return str(path)


def _upload(client, path: str) -> types.File:
    return client.files.upload(file=path, config={"mime_type": "jsonl",
                                                  "display_name": "requests"})


def _raw(stack, path: str, key: str | None = "test-key", method: str = "GET") -> dict:
    """The wire JSON of a call, as the service sends it."""
    request = urllib.request.Request(f"{stack.gemini_url}/v1beta/{path}", method=method,
                                     headers={"x-goog-api-key": key} if key else {})
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def _refused(stack, path: str) -> dict:
    """The wire error of a call the service refuses."""
    with pytest.raises(urllib.error.HTTPError) as refused:
        _raw(stack, path)
    return json.loads(refused.value.read())["error"]


def _file_count(stack) -> int:
    count, token = 0, ""
    while True:
        page = _raw(stack, f"files?pageSize=100{token}")
        count += len(page.get("files", []))
        if "nextPageToken" not in page:
            return count
        token = f"&pageToken={page['nextPageToken']}"


def _inline(texts: dict[str, str]) -> list[dict]:
    return [{"contents": [{"role": "user", "parts": [{"text": text}]}],
             "metadata": {"key": key}} for key, text in texts.items()]


def _text(response) -> str:
    return response["candidates"][0]["content"]["parts"][0]["text"]


def test_upload_get_and_delete_a_file(client, stack, tmp_path):
    path = _jsonl(tmp_path, [{"key": "a", "request": _request("hi")}])
    file = _upload(client, path)
    assert file.name.startswith("files/") and file.state == types.FileState.ACTIVE
    assert file.size_bytes == (tmp_path / "requests.jsonl").stat().st_size
    assert file.mime_type == "jsonl" and file.display_name == "requests"
    assert file.uri == f"{stack.gemini_url}/v1beta/{file.name}"
    assert file.source == types.FileSource.UPLOADED and file.download_uri is None
    assert client.files.get(name=file.name) == file
    with pytest.raises(errors.ClientError) as refused:  # only generated files download
        client.files.download(file=file.name)
    assert refused.value.code == 400
    client.files.delete(name=file.name)
    with pytest.raises(errors.ClientError) as gone:
        client.files.get(name=file.name)
    assert gone.value.code == 403 and gone.value.status == "PERMISSION_DENIED"
    assert "or it may not exist" in gone.value.message


def test_a_file_batch_answers_every_key_once_in_shuffled_order(client, stack, tmp_path):
    keys = [f"row-{i:03d}" for i in range(40)]
    lines = [{"key": key, "request": _request(f"question {key}")} for key in keys]
    lines += ["not json", {"key": "bad-field", "request": {**_request("x"), "bogus": 1}},
              {"key": "no-request"}]
    file = _upload(client, _jsonl(tmp_path, lines))
    # Held PENDING 0.5 s, so that the GET below sees it before it starts on a busy machine.
    job = client.batches.create(model=MODEL, src=file.name,
                                config={"display_name": "file emulator-queue-ms=500"})
    assert job.state == types.JobState.JOB_STATE_PENDING and job.name.startswith("batches/")
    assert job.model == f"models/{MODEL}"
    created = _raw(stack, job.name)
    assert created["metadata"]["inputConfig"] == {"fileName": file.name}
    assert created["metadata"]["batchStats"] == {"requestCount": "43",
                                                 "pendingRequestCount": "43"}
    assert "done" not in created

    job = _done(client, job.name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    assert job.dest.file_name == f"files/batch-{job.name.removeprefix('batches/')}"
    wire = _raw(stack, job.name)
    assert wire["done"] is True and wire["metadata"]["state"] == "BATCH_STATE_SUCCEEDED"
    assert wire["metadata"]["batchStats"] == {"requestCount": "43",
                                              "successfulRequestCount": "40",
                                              "failedRequestCount": "3"}
    assert wire["response"] == {"@type": "type.googleapis.com/google.ai.generativelanguage."
                                         "v1main.GenerateContentBatchOutput",
                                "responsesFile": job.dest.file_name}
    results = client.files.get(name=job.dest.file_name)
    assert results.source == types.FileSource.GENERATED and results.download_uri

    output = [json.loads(line) for line in
              client.files.download(file=job.dest.file_name).decode().splitlines()]
    answered = {line["key"]: _text(line["response"]) for line in output if "response" in line}
    assert answered == {key: f"echo: question {key}" for key in keys}
    assert len(output) == 43 and [line.get("key") for line in output][:40] != keys
    errors_ = [line for line in output if "error" in line]
    assert sorted(str(line.get("key")) for line in errors_) == ["None", "bad-field",
                                                               "no-request"]
    assert all(line["error"]["code"] == 400 and line["error"]["status"] == "INVALID_ARGUMENT"
               for line in errors_)
    assert 'Unknown name "bogus"' in next(line for line in errors_
                                          if line.get("key") == "bad-field")["error"]["message"]


def test_inline_responses_carry_no_metadata_by_default(client, stack):
    """As the real service answers (python-genai #2008, js-genai #1191): no request metadata
    on inline responses, and not in request order (python-genai #1909)."""
    assert stack.gemini.inline_metadata is False
    texts = {f"k{i}": f"plain {i:02d}" for i in range(12)}
    job = _done(client, client.batches.create(model=MODEL, src=_inline(texts),
                                              config={"display_name": "inline plain"}).name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    responses = job.dest.inlined_responses
    assert all(r.metadata is None for r in responses)
    wire = _raw(stack, job.name)["response"]["inlinedResponses"]["inlinedResponses"]
    assert all(set(r) == {"response"} for r in wire)
    got = [r.response.text for r in responses]
    assert sorted(got) == sorted(f"echo: {t}" for t in texts.values())
    assert got != [f"echo: {t}" for t in texts.values()]  # not in input order


def test_an_inline_batch_answers_in_inlined_responses(client, stack):
    """With ``inline_metadata`` the responses carry their request's metadata, as the API
    reference's ``InlinedResponse`` documents."""
    stack.gemini.inline_metadata = True
    try:  # fixed when the batch is created
        job = client.batches.create(model=MODEL, src=_inline(
            texts := {f"k{i}": f"inline {i}" for i in range(12)}),
            config={"display_name": "inline"})
    finally:
        stack.gemini.inline_metadata = False
    assert "inputConfig" not in _raw(stack, job.name)["metadata"]
    job = _done(client, job.name)
    assert job.state == types.JobState.JOB_STATE_SUCCEEDED
    responses = job.dest.inlined_responses
    got = {r.metadata["key"]: r.response.text for r in responses}
    assert got == {key: f"echo: {text}" for key, text in texts.items()}
    assert [r.metadata["key"] for r in responses] != list(texts)  # not in input order
    wire = _raw(stack, job.name)
    assert wire["response"]["inlinedResponses"]["inlinedResponses"] == \
        wire["metadata"]["output"]["inlinedResponses"]["inlinedResponses"]
    assert wire["metadata"]["batchStats"] == {"requestCount": "12",
                                              "successfulRequestCount": "12"}


def test_list_pages_and_delete(client, stack):
    names = [client.batches.create(model=MODEL, src=_inline({"a": f"list {i}"}),
                                   config={"display_name": f"list-{i}"}).name
             for i in range(3)]
    pager = client.batches.list(config={"page_size": 2})
    assert len(pager.page) == 2 and pager.page_size == 2
    first = _raw(stack, "batches?pageSize=2")
    assert len(first["operations"]) == 2 and first["nextPageToken"]
    assert [op["name"] for op in first["operations"]] == names[::-1][:2]  # newest first
    listed = [job.name for job in pager]
    assert set(names) <= set(listed) and len(listed) == len(set(listed))
    for name in names:
        assert client.batches.delete(name=name).error is None
        with pytest.raises(errors.ClientError) as gone:
            client.batches.get(name=name)
        assert gone.value.code == 404 and gone.value.status == "NOT_FOUND"
    assert not set(names) & {job.name for job in client.batches.list()}


@pytest.mark.parametrize("collection", ["files", "batches"])
def test_bad_page_tokens_and_sizes_are_refused(client, stack, collection):
    for query, message in [("pageToken=abc", "Invalid page token."),
                           ("pageToken=-1", "Invalid page token."),
                           ("pageSize=-1", "page_size must not be negative."),
                           ("pageSize=ten", "Invalid value at 'page_size' (TYPE_INT32), "
                                            '"ten"')]:
        assert _refused(stack, f"{collection}?{query}") == {
            "code": 400, "message": message, "status": "INVALID_ARGUMENT"}
    with pytest.raises(errors.ClientError) as refused:  # what google-genai makes of it
        getattr(client, collection).list(config={"page_token": "abc"})
    assert refused.value.code == 400


def test_file_pages_are_ten_by_default_and_at_most_a_hundred(client, stack, tmp_path):
    path = _jsonl(tmp_path, [{"key": "a", "request": _request("x")}])
    for _ in range(101 - _file_count(stack)):
        _upload(client, path)
    for query, size in [("", 10), ("?pageSize=0", 10), ("?pageSize=3", 3),
                        ("?pageSize=1000", 100)]:
        page = _raw(stack, f"files{query}")
        assert len(page["files"]) == size and page["nextPageToken"] == str(size)
    second = _raw(stack, "files?pageSize=3&pageToken=3")["files"]
    assert [f["name"] for f in second] == \
        [f["name"] for f in _raw(stack, "files?pageSize=6")["files"][3:]]


def test_cancel_a_pending_batch_then_cancel_of_a_finished_one_is_refused(client, stack):
    # Held PENDING 60 s: a busy machine cannot let it run before the cancel.
    job = client.batches.create(model=MODEL, src=_inline({"a": "wait"}),
                                config={"display_name": "slow emulator-queue-ms=60000"})
    client.batches.cancel(name=job.name)
    job = client.batches.get(name=job.name)
    assert job.state == types.JobState.JOB_STATE_CANCELLED and job.dest is None
    wire = _raw(stack, job.name)
    assert wire["done"] is True and wire["error"]["code"] == 1
    assert wire["metadata"]["state"] == "BATCH_STATE_CANCELLED"
    with pytest.raises(errors.ClientError) as refused:
        client.batches.cancel(name=job.name)
    assert refused.value.code == 400 and refused.value.status == "FAILED_PRECONDITION"

    finished = _done(client, client.batches.create(
        model=MODEL, src=_inline({"a": "done"}), config={"display_name": "done"}).name)
    with pytest.raises(errors.ClientError) as refused:
        client.batches.cancel(name=finished.name)
    assert refused.value.status == "FAILED_PRECONDITION"
    assert "BATCH_STATE_SUCCEEDED" in refused.value.message


def test_a_running_batch_can_be_deleted(client, stack):
    job = client.batches.create(model=MODEL, src=_inline({"a": "x"}),
                                config={"display_name": "slow emulator-queue-ms=60000"})
    assert client.batches.get(name=job.name).state == types.JobState.JOB_STATE_PENDING
    client.batches.delete(name=job.name)
    with pytest.raises(errors.ClientError) as gone:
        client.batches.get(name=job.name)
    assert gone.value.code == 404


def test_inline_requests_over_20_mb_are_refused(client, stack):
    assert stack.gemini.max_inline_bytes == 20 * 2**20
    big = {f"k{i}": "word " * (1_500_000) for i in range(3)}  # 3 x 7.5 MB of text
    with pytest.raises(errors.ClientError) as refused:
        client.batches.create(model=MODEL, src=_inline(big), config={"display_name": "big"})
    assert refused.value.code == 400 and refused.value.status == "INVALID_ARGUMENT"
    assert refused.value.message == "Request payload size exceeds the limit: 20971520 bytes."


def test_uploads_over_the_file_size_limit_are_refused_at_start(client, stack, tmp_path):
    assert stack.gemini.max_file_bytes == 2 * 2**30
    path = _jsonl(tmp_path, [{"key": f"k{i}", "request": _request("x" * 50)}
                             for i in range(5)])
    stack.gemini.max_file_bytes = 200
    try:
        with pytest.raises(errors.ClientError) as refused:
            _upload(client, path)
    finally:
        stack.gemini.max_file_bytes = 2 * 2**30
    assert refused.value.code == 400 and "exceeds the maximum of 200 bytes" in \
        refused.value.message
    assert _upload(client, path).state == types.FileState.ACTIVE


def test_an_unknown_model_is_not_found(client):
    with pytest.raises(errors.ClientError) as refused:
        client.batches.create(model="gemini-2.5-flsh", src=_inline({"a": "x"}),
                              config={"display_name": "typo"})
    assert refused.value.code == 404 and refused.value.status == "NOT_FOUND"
    assert refused.value.message.startswith("models/gemini-2.5-flsh is not found for API "
                                            "version v1beta")


def test_a_rejected_key_and_a_missing_key(stack):
    stack.gemini.rejected_keys.add("revoked-key")
    try:
        bad = genai.Client(api_key="revoked-key",
                           http_options=types.HttpOptions(base_url=stack.gemini_url))
        with pytest.raises(errors.ClientError) as refused:
            bad.batches.list()
    finally:
        stack.gemini.rejected_keys.discard("revoked-key")
    assert refused.value.code == 400 and refused.value.status == "INVALID_ARGUMENT"
    assert refused.value.message == "API key not valid. Please pass a valid API key."
    assert refused.value.details["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    with pytest.raises(urllib.error.HTTPError) as missing:
        _raw(stack, "batches", key=None)
    assert missing.value.code == 403
    body = json.loads(missing.value.read())["error"]
    assert body["status"] == "PERMISSION_DENIED" and "unregistered callers" in body["message"]


def test_expiry_as_a_fault_and_after_the_expiry_time(client, stack):
    job = _done(client, client.batches.create(
        model=MODEL, src=_inline({"a": "x"}),
        config={"display_name": "old emulator-fault=expire"}).name)
    assert job.state == types.JobState.JOB_STATE_EXPIRED and job.dest is None
    assert _raw(stack, job.name)["error"]["code"] == 4

    stack.gemini.expire_after = 0.01  # stands for the 48 hours
    try:
        job = _done(client, client.batches.create(
            model=MODEL, src=_inline({"a": "x"}), config={"display_name": "late"}).name)
    finally:
        stack.gemini.expire_after = 48 * 3600
    assert job.state == types.JobState.JOB_STATE_EXPIRED
    assert "48" not in _raw(stack, job.name)["error"]["message"]


def test_job_and_row_faults_are_the_vertex_sides(client, stack):
    job = _done(client, client.batches.create(
        model=MODEL, src=_inline({"a": "x"}),
        config={"display_name": "emulator-fault=job-failed"}).name)
    assert job.state == types.JobState.JOB_STATE_FAILED
    assert _raw(stack, job.name)["error"]["code"] == 13
    with pytest.raises(errors.ClientError) as refused:
        client.batches.create(model=MODEL, src=_inline({"a": "x"}),
                              config={"display_name": "emulator-fault=typo"})
    assert refused.value.code == 400 and "emulator-fault" in refused.value.message

    stack.service.fault_labels = {"emulator-row-errors": "429-100"}
    stack.service.fault_jobs = 1  # server-wide faults, for the next job of either surface
    try:
        failed = _done(client, client.batches.create(
            model=MODEL, src=_inline({"a": "x", "b": "y"}),
            config={"display_name": "rows"}).name)
        clean = _done(client, client.batches.create(
            model=MODEL, src=_inline({"a": "x"}), config={"display_name": "rows"}).name)
    finally:
        stack.service.fault_labels, stack.service.fault_jobs = {}, None
    assert [r.error.code for r in failed.dest.inlined_responses] == [429, 429]
    assert _raw(stack, failed.name)["metadata"]["batchStats"]["failedRequestCount"] == "2"
    assert clean.dest.inlined_responses[0].response.text == "echo: x"


def test_the_environment_route(stack, monkeypatch):
    env = read_exports(export_lines(stack.env))
    assert env["GOOGLE_GEMINI_BASE_URL"] == stack.gemini_url and env["GEMINI_API_KEY"]
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.delenv("GOOGLE_GENAI_USE_VERTEXAI", raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    client = genai.Client()  # base URL and key from the environment only
    job = _done(client, client.batches.create(model=MODEL, src=_inline({"a": "from env"}),
                                              config={"display_name": "env"}).name)
    assert job.dest.inlined_responses[0].response.text == "echo: from env"


def test_files_and_batches_survive_a_restart_with_a_state_dir(tmp_path):
    from pdbatch.emulator import BatchService, Timing, VertexEmulator

    def start() -> VertexEmulator:
        return VertexEmulator(BatchService(timing=Timing(0.05, 0.05),
                                           state_dir=tmp_path / "state")).start()

    emulator = start()
    client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=emulator.url))
    file = _upload(client, _jsonl(tmp_path, [{"key": "a", "request": _request("kept")}]))
    job = client.batches.create(model=MODEL, src=file.name,
                                config={"display_name": "emulator-queue-ms=1000"})
    emulator.stop()  # before the batch ran

    emulator = start()
    try:
        client = genai.Client(api_key="k",
                              http_options=types.HttpOptions(base_url=emulator.url))
        assert client.files.get(name=file.name).size_bytes == file.size_bytes
        job = _done(client, job.name)  # it runs again after the restart
        assert job.state == types.JobState.JOB_STATE_SUCCEEDED
        line = json.loads(client.files.download(file=job.dest.file_name))
        assert line["key"] == "a" and _text(line["response"]) == "echo: kept"
    finally:
        emulator.stop()
