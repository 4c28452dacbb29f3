"""The emulator answers unmodified Google clients: GAPIC REST (v1, v1beta1) and google-genai."""

from __future__ import annotations

import json
import time

import pytest
from google.api_core import exceptions
from helpers import MODEL, finished, jsonl_job

from pdbatch import service
from pdbatch.config import Settings

LINES = [{"id": i, "request": {"contents": [{"role": "user", "parts": [{"text": f"q{i}"}]}]}}
         for i in range(5)]


@pytest.fixture
def input_uri(fs, staging):
    uri = f"{staging}/in.jsonl"
    fs.pipe(uri, "".join(json.dumps(line) + "\n" for line in LINES).encode())
    return uri


def _job(input_uri: str, staging: str, **extra) -> dict:
    return jsonl_job(input_uri, f"{staging}/out", display_name="conformance", **extra)


def test_gapic_v1_create_get_list_and_output_layout(gapic, parent, input_uri, staging, fs):
    created = gapic.create_batch_prediction_job(parent=parent,
                                                batch_prediction_job=_job(input_uri, staging))
    assert created.name.startswith(f"{parent}/batchPredictionJobs/")
    assert created.name.rsplit("/", 1)[1].isdigit() and len(created.name.rsplit("/", 1)[1]) == 19
    assert created.state.name == "JOB_STATE_PENDING" and created.create_time

    job = finished(gapic, created.name)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    assert job.start_time and job.end_time and job.completion_stats.successful_count == 5
    out_dir = job.output_info.gcs_output_directory
    assert out_dir.startswith(f"{staging}/out/prediction-model-")
    assert out_dir.rsplit("prediction-model-", 1)[1] != created.create_time.isoformat()

    lines = [json.loads(x) for x in fs.cat(f"{out_dir}/predictions.jsonl").splitlines()]
    assert sorted(line["id"] for line in lines) == list(range(5))
    assert [line["id"] for line in lines] != list(range(5)), "output must be shuffled"
    for line in lines:
        assert set(line) == {"id", "status", "processed_time", "request", "response"}
        assert line["status"] == "" and line["processed_time"].endswith("+00:00")
        assert line["request"] == LINES[line["id"]]["request"]
        assert line["response"]["candidates"][0]["content"]["parts"][0]["text"] == \
            f"echo: q{line['id']}"

    names = [j.name for j in gapic.list_batch_prediction_jobs(parent=parent)]
    assert created.name in names


def test_list_pages(gapic, parent, input_uri, staging):
    for _ in range(3):
        gapic.create_batch_prediction_job(parent=parent,
                                          batch_prediction_job=_job(input_uri, staging))
    pager = gapic.list_batch_prediction_jobs(request={"parent": parent, "page_size": 2})
    pages = list(pager.pages)
    assert len(pages) >= 2 and all(len(p.batch_prediction_jobs) <= 2 for p in pages)
    names = [j.name for p in pages for j in p.batch_prediction_jobs]
    assert len(names) == len(set(names)) >= 3


def test_gapic_v1beta1_cancel_and_delete(stack, parent, input_uri, staging):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform_v1beta1 import JobServiceClient

    client = JobServiceClient(transport="rest", credentials=AnonymousCredentials(),
                              client_options=ClientOptions(api_endpoint=stack.vertex.url))
    job = client.create_batch_prediction_job(parent=parent,
                                             batch_prediction_job=_job(input_uri, staging))
    with pytest.raises(exceptions.BadRequest, match="only finished jobs") as err:
        client.delete_batch_prediction_job(name=job.name)
    assert err.value.response.json()["error"]["status"] == "FAILED_PRECONDITION"
    client.cancel_batch_prediction_job(name=job.name)
    cancelled = finished(client, job.name)
    assert cancelled.state.name == "JOB_STATE_CANCELLED"
    with pytest.raises(exceptions.BadRequest, match="Cannot cancel"):
        client.cancel_batch_prediction_job(name=job.name)
    assert client.delete_batch_prediction_job(name=job.name).done()
    with pytest.raises(exceptions.NotFound):
        client.get_batch_prediction_job(name=job.name)


def test_unsupported_model_is_refused_at_create(gapic, parent, input_uri, staging):
    body = _job(input_uri, staging, model="publishers/google/models/palm-9")
    with pytest.raises(exceptions.BadRequest, match="Do not support publisher model palm-9") as err:
        gapic.create_batch_prediction_job(parent=parent, batch_prediction_job=body)
    assert err.value.response.json()["error"]["status"] == "INVALID_ARGUMENT"
    # a Gemini-looking name the service does not serve (a typo) is refused the same way
    body = _job(input_uri, staging, model="publishers/google/models/gemini-2.5-flsh")
    with pytest.raises(exceptions.BadRequest,
                       match="Do not support publisher model gemini-2.5-flsh"):
        gapic.create_batch_prediction_job(parent=parent, batch_prediction_job=body)


def test_unreadable_input_fails_the_job_with_code_3(gapic, parent, fs, staging, stack):
    fs.pipe(f"{staging}/bad.jsonl", b'{"request": {"contents": []}}\nnot json\n')
    job = gapic.create_batch_prediction_job(
        parent=parent, batch_prediction_job=_job(f"{staging}/bad.jsonl", staging))
    assert job.state.name == "JOB_STATE_PENDING"  # accepted at create, as the service does

    settings = Settings(stack.project, stack.location, staging, stack.vertex.url, "rest")
    # pdbatch's own poller sees the terminal state
    [info] = service.wait(service.open_service(settings), [job.name])
    assert info.state == "JOB_STATE_FAILED" and not info.succeeded
    assert info.error_code == 3
    assert info.error_message.startswith("Failed to import data. Line 2 of")


def test_unknown_route_gives_the_google_error_envelope(stack):
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"{stack.vertex.url}/v1/projects/p/locations/l/endpoints")
    assert err.value.code == 404
    body = json.loads(err.value.read())
    assert body["error"]["status"] == "NOT_FOUND" and body["error"]["code"] == 404


@pytest.mark.parametrize("api_version", ["v1beta1", "v1"])
def test_google_genai_batches_create_get_list_cancel(stack, input_uri, api_version):
    import google.oauth2.credentials
    from google import genai
    from google.genai import types

    client = genai.Client(
        vertexai=True, project=stack.project, location=stack.location,
        credentials=google.oauth2.credentials.Credentials(token="fake-token"),
        http_options=types.HttpOptions(base_url=stack.vertex.url, api_version=api_version),
    )
    done = client.batches.create(model="gemini-2.5-flash", src=input_uri)
    assert done.state == types.JobState.JOB_STATE_PENDING
    assert done.model == MODEL and done.dest.gcs_uri == input_uri[: -len(".jsonl")] + "/dest"

    for _ in range(200):
        done = client.batches.get(name=done.name)
        if done.done:
            break
        time.sleep(0.05)
    assert done.state == types.JobState.JOB_STATE_SUCCEEDED
    assert done.completion_stats.successful_count == 5
    assert done.output_info.gcs_output_directory.startswith(
        done.dest.gcs_uri + "/prediction-model-")

    other = client.batches.create(model="gemini-2.5-flash", src=input_uri)
    client.batches.cancel(name=other.name)
    for _ in range(200):
        if client.batches.get(name=other.name).done:
            break
        time.sleep(0.05)
    assert client.batches.get(name=other.name).state == types.JobState.JOB_STATE_CANCELLED

    listed = {job.name for job in client.batches.list(config={"page_size": 2})}
    assert {done.name, other.name} <= listed


def _family_job(gapic, parent, fs, staging, model, lines):
    uri = f"{staging}/{model.rsplit('/', 1)[-1]}.jsonl"
    fs.pipe(uri, "".join(json.dumps(line) + "\n" for line in lines).encode())
    job = gapic.create_batch_prediction_job(parent=parent, batch_prediction_job=_job(
        uri, staging, model=model))
    return finished(gapic, job.name)


def test_llama_maas_jobs_take_openai_chat_lines(gapic, parent, fs, staging):
    lines = [{"custom_id": f"r{i}", "method": "POST", "url": "/v1/chat/completions",
              "body": {"model": "meta/llama-3.3-70b-instruct-maas", "max_tokens": 50,
                       "messages": [{"role": "system", "content": "Be brief."},
                                    {"role": "user", "content": f"q{i}"}]}}
             for i in range(3)]
    job = _family_job(gapic, parent, fs, staging,
                      "publishers/meta/models/llama-3.3-70b-instruct-maas", lines)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    out = [json.loads(x) for x in
           fs.cat(f"{job.output_info.gcs_output_directory}/predictions.jsonl").splitlines()]
    assert sorted(line["custom_id"] for line in out) == ["r0", "r1", "r2"]
    for line in out:
        assert set(line) == {"custom_id", "body", "id", "status", "response"}
        assert line["body"] == lines[int(line["custom_id"][1:])]["body"]
        answer = line["response"]
        assert answer["object"] == "chat.completion"
        assert answer["choices"][0]["message"]["content"] == \
            f"[system: Be brief.] echo: {line['custom_id'].replace('r', 'q')}"
        assert answer["choices"][0]["finish_reason"] == "stop"
        assert answer["usage"]["prompt_tokens"] == 1


def test_claude_jobs_take_anthropic_lines(gapic, parent, fs, staging):
    lines = [{"custom_id": f"c{i}", "request": {
        "anthropic_version": "vertex-2023-10-16", "max_tokens": 50, "system": "Be kind.",
        "messages": [{"role": "user", "content": [{"type": "text", "text": f"hello {i}"}]}]}}
        for i in range(2)]
    job = _family_job(gapic, parent, fs, staging,
                      "publishers/anthropic/models/claude-sonnet-4-5@20250929", lines)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    out = {x["custom_id"]: x for x in map(json.loads, fs.cat(
        f"{job.output_info.gcs_output_directory}/predictions.jsonl").splitlines())}
    assert set(out) == {"c0", "c1"}
    assert set(out["c1"]) == {"custom_id", "status", "request", "response"}
    assert out["c1"]["status"] == "" and out["c1"]["request"] == lines[1]["request"]
    answer = out["c1"]["response"]
    assert answer["type"] == "message" and answer["stop_reason"] == "end_turn"
    assert answer["content"] == [{"type": "text", "text": "[system: Be kind.] echo: hello 1"}]
    assert answer["usage"] == {"input_tokens": 2, "output_tokens": 6}


def test_a_line_of_the_wrong_family_fails_the_import(gapic, parent, fs, staging):
    job = _family_job(gapic, parent, fs, staging,
                      "publishers/meta/models/llama-3.3-70b-instruct-maas", LINES[:1])
    assert job.state.name == "JOB_STATE_FAILED" and job.error.code == 3
    assert job.error.message.endswith("Line 1 of " + f"{staging}/llama-3.3-70b-instruct-maas"
                                      ".jsonl has no 'body' object.")


def test_enum_numbers_only_when_asked(stack, gapic, parent, input_uri, staging):
    import urllib.request

    name = gapic.create_batch_prediction_job(parent=parent,
                                             batch_prediction_job=_job(input_uri, staging)).name
    finished(gapic, name)  # GAPIC asks for numbers and reads them

    def state(query=""):
        with urllib.request.urlopen(f"{stack.vertex.url}/v1/{name}{query}") as answer:
            return json.loads(answer.read())["state"]

    assert state() == "JOB_STATE_SUCCEEDED"
    assert state("?%24alt=json%3Benum-encoding%3Dint") == 4


def _rest_create(stack, parent: str, body: dict):
    """A create as any REST client sends it (proto3 JSON, either spelling of field names)."""
    import requests

    return requests.post(f"{stack.vertex.url}/v1/{parent}/batchPredictionJobs", json=body,
                         timeout=30)


def test_create_takes_either_spelling_and_refuses_what_the_service_refuses(
        stack, parent, input_uri, staging):
    snake = _job(input_uri, staging, labels={"team": "a"})  # display_name, input_config, ...
    created = _rest_create(stack, parent, snake)
    assert created.status_code == 200, created.text
    assert created.json()["displayName"] == "conformance"
    assert created.json()["inputConfig"]["gcsSource"]["uris"] == [input_uri]

    refused = {
        "unknown field": ({**snake, "colour": "red"},
                          'Invalid JSON payload received. Unknown name "colour" at '
                          "'batch_prediction_job': Cannot find field."),
        "long display name": ({**snake, "display_name": "x" * 129},
                              "display name must be a string of at most 128 characters"),
        "upper-case label value": ({**snake, "labels": {"team": "Data"}},
                                   "Label 'team': 'Data' is invalid"),
        "long label value": ({**snake, "labels": {"team": "a" * 100}}, "is invalid"),
        "label key not starting with a letter": ({**snake, "labels": {"1team": "a"}},
                                                 "Label '1team'"),
    }
    for case, (body, message) in refused.items():
        answer = _rest_create(stack, parent, body)
        assert answer.status_code == 400, case
        error = answer.json()["error"]
        assert error["status"] == "INVALID_ARGUMENT" and message in error["message"], case
    accepted = _rest_create(stack, parent, {**snake, "display_name": "é" * 128,
                                            "labels": {"équipe": "données", "k": ""}})
    assert accepted.status_code == 200, accepted.text  # international lowercase, empty value


def test_list_gives_jobs_in_the_order_they_were_created(gapic, parent, input_uri, staging):
    tag = f"order-{time.time_ns()}"
    names = [gapic.create_batch_prediction_job(
        parent=parent, batch_prediction_job=jsonl_job(
            input_uri, f"{staging}/out-{i}", display_name=tag)).name for i in range(5)]
    listed = [job.name for job in gapic.list_batch_prediction_jobs(
        request={"parent": parent, "filter": f'display_name="{tag}"'})]
    assert listed == names  # not the order of their random ids
