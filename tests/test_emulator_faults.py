"""The emulator's faults on demand, list filters and restart-proof state, driven through the
unmodified GAPIC REST client (and pdbatch where the client's handling is the point)."""

from __future__ import annotations

import json
import time
import urllib.request

import pandas as pd
import pytest
from google.api_core import exceptions
from helpers import finished, jsonl_job

import pdbatch
from pdbatch import service
from pdbatch.config import Settings
from pdbatch.emulator import BatchService, Timing, VertexEmulator


def _input(fs, staging: str, rows: int) -> str:
    uri = f"{staging}/in-{rows}.jsonl"
    fs.pipe(uri, "".join(json.dumps({"id": i, "request": {"contents": [
        {"role": "user", "parts": [{"text": f"q{i}"}]}]}}) + "\n" for i in range(rows)).encode())
    return uri


def _create(gapic, parent, fs, staging, rows=10, labels=None, display_name="faults"):
    return gapic.create_batch_prediction_job(parent=parent, batch_prediction_job=jsonl_job(
        _input(fs, staging, rows), f"{staging}/out", display_name=display_name,
        labels=labels or {}))


def _lines(fs, path):
    return [json.loads(x) for x in fs.cat(path).splitlines()]


def test_failed_rows_carry_the_services_status_strings(gapic, parent, fs, staging):
    job = finished(gapic, _create(gapic, parent, fs, staging, rows=400,
                               labels={"emulator-row-errors": "429-30_500-10_400-10"}).name)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    lines = _lines(fs, f"{job.output_info.gcs_output_directory}/predictions.jsonl")
    failed = [line for line in lines if line["status"]]
    kinds = {line["status"].split(": {")[0] for line in failed}
    assert kinds == {"Too Many Requests", "Internal Server Error", "Bad Request"}
    assert all("response" not in line for line in failed)
    first = json.loads(failed[0]["status"].split(": ", 1)[1])["error"]
    assert set(first) == {"code", "message", "status"}
    assert 120 <= len(failed) <= 280  # 50 % of 400 rows, drawn per row
    assert job.completion_stats.failed_count == len(failed)
    assert job.completion_stats.successful_count == 400 - len(failed)


def test_malformed_requests_fail_their_rows_as_the_service_does(gapic, parent, fs, staging):
    good = {"contents": [{"role": "user", "parts": [{"text": "fine"}]}]}
    requests = [good, {}, {"contents": "not a list"}, {"contents": [{"role": "user"}]},
                {**good, "fooBar": 1}, {**good, "generationConfig": {"max_tokens": 10}},
                {**good, "generation_config": {"max_output_tokens": 10}}]  # snake_case is fine
    fs.pipe(f"{staging}/odd.jsonl", "".join(
        json.dumps({"n": n, "request": r}) + "\n" for n, r in enumerate(requests)).encode())
    job = finished(gapic, gapic.create_batch_prediction_job(
        parent=parent, batch_prediction_job=jsonl_job(f"{staging}/odd.jsonl",
                                                      f"{staging}/out")).name)
    assert job.state.name == "JOB_STATE_SUCCEEDED"
    lines = sorted(_lines(fs, f"{job.output_info.gcs_output_directory}/predictions.jsonl"),
                   key=lambda line: line["n"])
    assert [line["status"] == "" for line in lines] == [True, False, False, False, False,
                                                        False, True]
    errors = []
    for line in lines[1:6]:
        reason, payload = line["status"].split(": ", 1)
        errors.append(json.loads(payload)["error"])
        assert reason == "Bad Request" and errors[-1]["code"] == 400
        assert errors[-1]["status"] == "INVALID_ARGUMENT" and "response" not in line
    assert 'Unknown name "fooBar"' in errors[3]["message"]
    assert 'Unknown name "max_tokens" at \'generation_config\'' in errors[4]["message"]
    assert job.completion_stats.failed_count == 5


def test_pdbatch_maps_failed_rows_to_codes(staging):
    df = pd.DataFrame({"prompt": [f"q{i}" for i in range(200)]})
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                  labels={"emulator-row-errors": "429-50"})
    failed = out[out["status"] != "ok"]
    assert 50 < len(failed) < 150 and (failed["error_code"] == 429).all()
    assert failed["status"].str.startswith("Too Many Requests: {").all()
    assert (failed["error_message"] ==
            "Online prediction request quota exceeded. Please try again later with backoff.").all()
    assert out.loc[out["status"] == "ok", "text"].notna().all()


def test_fail_partway_keeps_the_answered_rows_in_incremental_files(gapic, parent, fs, staging):
    job = finished(gapic, _create(gapic, parent, fs, staging, rows=40,
                               labels={"emulator-fault": "fail-partway"}).name)
    assert job.state.name == "JOB_STATE_FAILED" and job.error.code == 13
    out_dir = job.output_info.gcs_output_directory
    files = fs.find(out_dir)
    assert files and all("/incremental_predictions/" in f for f in files)
    assert len(_lines(fs, files[0])) == 20
    assert job.completion_stats.successful_count == 20
    assert job.completion_stats.incomplete_count == 20


def test_incremental_files_repeat_rows_that_predictions_jsonl_also_holds(gapic, parent, fs,
                                                                          staging):
    job = finished(gapic, _create(gapic, parent, fs, staging, rows=50,
                               labels={"emulator-incremental": "20"}).name)
    out_dir = job.output_info.gcs_output_directory
    incremental = [f for f in fs.find(out_dir) if "/incremental_predictions/" in f]
    assert len(incremental) == 3  # 20 + 20 + 10 rows
    repeated = [line["id"] for f in incremental for line in _lines(fs, f)]
    final = [line["id"] for line in _lines(fs, f"{out_dir}/predictions.jsonl")]
    assert sorted(repeated) == sorted(final) == list(range(50))


def test_cancel_while_running_keeps_what_was_written(stack, gapic, parent, fs, staging):
    def slow(request):
        time.sleep(0.01)
        return {"candidates": [{"content": {"parts": [{"text": "ok"}]}, "finishReason": "STOP"}]}

    stack.service.responder = slow
    try:
        created = _create(gapic, parent, fs, staging, rows=300,
                          labels={"emulator-incremental": "10"})
        deadline = time.monotonic() + 20
        while not fs.find(f"{staging}/out") and time.monotonic() < deadline:
            time.sleep(0.02)
        gapic.cancel_batch_prediction_job(name=created.name)
        job = finished(gapic, created.name)
    finally:
        stack.service.responder = BatchService.responder
    assert job.state.name == "JOB_STATE_CANCELLED"
    files = fs.find(job.output_info.gcs_output_directory)
    assert files and not any(f.endswith("/predictions.jsonl") for f in files)
    written = sum(len(_lines(fs, f)) for f in files)
    assert 0 < written < 300 and job.completion_stats.incomplete_count == 300 - written


def test_a_queued_job_goes_queued_pending_running_in_that_order(stack, parent, fs, staging):
    # States held long enough (0.4 s each) for every one to be seen by polling, also on a
    # busy machine: the session's stack holds PENDING and RUNNING for 50 ms only.
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform_v1 import JobServiceClient

    vertex = VertexEmulator(BatchService(timing=Timing(pending=0.4, running=0.4),
                                         gcs_endpoint=stack.gcs.url)).start()
    try:
        gapic = JobServiceClient(transport="rest", credentials=AnonymousCredentials(),
                                 client_options=ClientOptions(api_endpoint=vertex.url))
        created = _create(gapic, parent, fs, staging, labels={"emulator-queue-ms": "400"})
        assert created.state.name == "JOB_STATE_QUEUED"  # create answers QUEUED
        states = [created.state.name]
        deadline = time.monotonic() + 20
        while not states[-1].endswith(("SUCCEEDED", "FAILED")) and time.monotonic() < deadline:
            state = gapic.get_batch_prediction_job(name=created.name).state.name
            if state != states[-1]:
                states.append(state)
            time.sleep(0.01)
    finally:
        vertex.stop()
    assert states == ["JOB_STATE_QUEUED", "JOB_STATE_PENDING", "JOB_STATE_RUNNING",
                      "JOB_STATE_SUCCEEDED"]


def test_expire_after_the_queue(gapic, parent, fs, staging, stack):
    seen: set[str] = set()
    job = finished(gapic, _create(gapic, parent, fs, staging, labels={
        "emulator-fault": "expire", "emulator-queue-ms": "300"}).name, seen)
    assert "JOB_STATE_QUEUED" in seen
    assert job.state.name == "JOB_STATE_EXPIRED" and job.error.code == 4
    assert not job.output_info.gcs_output_directory

    with pytest.raises(pdbatch.JobError, match="JOB_STATE_EXPIRED"):
        pd.DataFrame({"p": ["x"]}).gemini.batch_predict(
            prompt_col="p", staging=staging, progress=False,
            labels={"emulator-fault": "expire"})


@pytest.mark.parametrize("stats", ["empty", "zero"])
def test_missing_completion_stats_do_not_matter_to_pdbatch(staging, stats):
    df = pd.DataFrame({"p": ["a", "b", "c"]})
    out = df.gemini.batch_predict(prompt_col="p", staging=staging, progress=False,
                                  labels={"emulator-stats": stats})
    assert (out["status"] == "ok").all() and out["text"].notna().all()


def test_unknown_fault_labels_are_refused_at_create(gapic, parent, fs, staging):
    for labels, message in (({"emulator-fault": "explode"}, "Unknown emulator-fault"),
                            ({"emulator-row-errors": "418-5"}, "CODE-PERCENT"),
                            ({"emulator-everything": "x"}, "Unknown emulator label")):
        with pytest.raises(exceptions.BadRequest, match=message):
            _create(gapic, parent, fs, staging, labels=labels)


def test_api_errors_for_the_next_calls(stack, gapic, parent, fs, staging):
    name = _create(gapic, parent, fs, staging).name
    request = urllib.request.Request(f"{stack.vertex.url}/emulator/faults", method="POST",
                                     data=json.dumps({"code": 503, "count": 2}).encode())
    urllib.request.urlopen(request).close()
    with pytest.raises(exceptions.ServiceUnavailable):
        gapic.get_batch_prediction_job(name=name)

    # pdbatch's GETs retry through google-api-core: the second 503, then an answer.
    stack.service.api_faults.inject(429, 1)
    settings = Settings(stack.project, stack.location, staging, stack.vertex.url, "rest")
    assert service.open_service(settings).get(name).name == name
    assert gapic.get_batch_prediction_job(name=name).name == name


def test_list_filters(gapic, parent, fs, staging):
    tag = staging.rsplit("/", 1)[-1]
    a = finished(gapic, _create(gapic, parent, fs, staging, display_name=f"{tag}-a",
                             labels={"suite": tag, "team": "red"}).name)
    b = finished(gapic, _create(gapic, parent, fs, staging, display_name=f"{tag}-b",
                             labels={"suite": tag, "team": "blue"}).name)
    c = finished(gapic, _create(gapic, parent, fs, staging, display_name=f"{tag}-c",
                             labels={"suite": tag, "emulator-fault": "expire"}).name)

    def names(text):
        return {j.name for j in gapic.list_batch_prediction_jobs(
            request={"parent": parent, "filter": f'labels.suite="{tag}" AND ({text})'})}

    assert names('state="JOB_STATE_SUCCEEDED"') == {a.name, b.name}
    assert names("labels.team=red OR labels.team=blue") == {a.name, b.name}
    assert names("NOT labels.team:*") == {c.name}
    assert names(f'display_name:"{tag}-*" AND state!="JOB_STATE_EXPIRED"') == {a.name, b.name}
    assert names(f'display_name="{tag}-b"') == {b.name}
    assert names(f'create_time>="{a.create_time.isoformat()}"') == {a.name, b.name, c.name}
    assert names('create_time<"2000-01-01T00:00:00Z"') == set()
    with pytest.raises(exceptions.BadRequest, match="Unsupported filter field"):
        names("colour=red")


def test_jobs_survive_an_emulator_restart(stack, fs, staging, tmp_path):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform_v1 import JobServiceClient

    def serve(port=0):
        service = BatchService(timing=Timing(pending=0.3, running=0.05),
                               gcs_endpoint=stack.gcs.url, state_dir=tmp_path / "state")
        return VertexEmulator(service, port=port).start()

    def client(vertex):
        return JobServiceClient(transport="rest", credentials=AnonymousCredentials(),
                                client_options=ClientOptions(api_endpoint=vertex.url))

    parent = f"projects/{stack.project}/locations/{stack.location}"
    first = serve()
    created = _create(client(first), parent, fs, staging, rows=5)
    port = int(first.url.rsplit(":", 1)[1])
    first.stop()  # while the job is still PENDING

    second = serve(port)
    try:
        job = finished(client(second), created.name)
        assert job.state.name == "JOB_STATE_SUCCEEDED"
        assert job.create_time == created.create_time
        assert job.completion_stats.successful_count == 5
    finally:
        second.stop()
    third = serve(port)
    try:
        assert client(third).get_batch_prediction_job(name=created.name).state.name == \
            "JOB_STATE_SUCCEEDED"
    finally:
        third.stop()


def test_json_answers_fit_the_requested_schema(gapic, parent, fs, staging):
    schema = {"type": "OBJECT", "properties": {
        "title": {"type": "STRING"}, "score": {"type": "INTEGER"},
        "tags": {"type": "ARRAY", "items": {"type": "STRING", "enum": ["a", "b"]}},
        "ok": {"type": "BOOLEAN"}}}
    json_schema = {"$defs": {"Item": {"type": "object", "properties": {
        "name": {"type": "string"}, "size": {"anyOf": [{"type": "null"}, {"type": "number"}]}}}},
        "type": "object", "properties": {"items": {"type": "array",
                                                    "items": {"$ref": "#/$defs/Item"}}}}
    lines = [{"request": {"contents": [{"role": "user", "parts": [{"text": "two words"}]}],
                          "generationConfig": {"responseMimeType": "application/json", **extra}}}
             for extra in ({"responseSchema": schema}, {"responseJsonSchema": json_schema}, {})]
    fs.pipe(f"{staging}/json.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode())
    job = finished(gapic, gapic.create_batch_prediction_job(
        parent=parent,
        batch_prediction_job=jsonl_job(f"{staging}/json.jsonl", f"{staging}/out")).name)
    answers = sorted(
        (json.loads(line["response"]["candidates"][0]["content"]["parts"][0]["text"])
         for line in _lines(fs, f"{job.output_info.gcs_output_directory}/predictions.jsonl")),
        key=lambda a: sorted(a))
    assert answers == sorted([
        {"title": "echo: two words", "score": 3, "tags": ["a"], "ok": True},
        {"items": [{"name": "echo: two words", "size": 3.5}]},
        {"text": "echo: two words"},
    ], key=lambda a: sorted(a))


def test_echoed_requests_get_their_siblings_keys_as_nulls(stack, gapic, parent, fs, staging):
    image = {"file_data": {"file_uri": "gs://b/cat.jpg", "mime_type": "image/jpeg"}}
    requests = [{"contents": [{"role": "user", "parts": [{"text": "what is it?"}, image]}]},
                {"contents": [{"role": "user", "parts": [{"text": "hello"}]}],
                 "generationConfig": {"temperature": 0.1}}]
    fs.pipe(f"{staging}/mixed.jsonl",
            "".join(json.dumps({"id": i, "request": r}) + "\n"
                    for i, r in enumerate(requests)).encode())

    def echoed():
        job = finished(gapic, gapic.create_batch_prediction_job(
            parent=parent,
            batch_prediction_job=jsonl_job(f"{staging}/mixed.jsonl", f"{staging}/out")).name)
        lines = _lines(fs, f"{job.output_info.gcs_output_directory}/predictions.jsonl")
        return {line["id"]: line["request"] for line in lines}

    union_part = {"file_data": None, "text": None}
    assert echoed() == {
        0: {"contents": [{"parts": [{**union_part, "text": "what is it?"},
                                    {**union_part, **image}], "role": "user"}],
            "generationConfig": None},
        1: {"contents": [{"parts": [{**union_part, "text": "hello"}], "role": "user"}],
            "generationConfig": {"temperature": 0.1}},
    }
    stack.service.null_injection = False
    try:
        assert echoed() == dict(enumerate(requests))
    finally:
        stack.service.null_injection = True


def test_safety_blocked_rows_are_answers_not_failures(staging, gapic, parent, fs):
    df = pd.DataFrame({"prompt": [f"q{i}" for i in range(200)]})
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                  labels={"emulator-safety": "40"})
    blocked = out[out["finish_reason"] == "SAFETY"]
    assert 40 < len(blocked) < 120 and (blocked["status"] == "ok").all()
    assert blocked["text"].isna().all() and blocked["error_code"].isna().all()
    kinds = {("promptFeedback" in json.loads(r)) for r in blocked["response"]}
    assert kinds == {True, False}  # blocked before generation, and stopped mid-answer
    assert out.loc[out["finish_reason"] == "STOP", "text"].notna().all()

    with pytest.raises(exceptions.BadRequest, match="Gemini models only"):
        gapic.create_batch_prediction_job(parent=parent, batch_prediction_job=jsonl_job(
            _input(fs, staging, 1), f"{staging}/o",
            model="publishers/anthropic/models/claude-sonnet-4-5",
            labels={"emulator-safety": "5"}))


def test_server_wide_faults_apply_to_every_job_unless_a_job_says_otherwise(stack, staging):
    stack.service.fault_labels = {"emulator-row-errors": "500-100"}
    try:
        df = pd.DataFrame({"prompt": ["a", "b"]})
        failing = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)
        assert (failing["error_code"] == 500).all()
        own = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                      labels={"emulator-row-errors": ""}, force=True)
        assert (own["status"] == "ok").all()
    finally:
        stack.service.fault_labels = {}


def _run_jobs(gapic, parent, run_id: str) -> list[str]:
    return [j.name for j in gapic.list_batch_prediction_jobs(
        request={"parent": parent, "filter": f'labels.pdbatch-run="{run_id}"'})]


def test_a_run_survives_api_errors_and_creates_each_job_once(stack, staging, gapic, parent):
    df = pd.DataFrame({"prompt": ["a", "b", "c"]})
    stack.service.api_faults.inject(503, 2)  # the first create and the look-up after it
    refused = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)
    assert (refused["status"] == "ok").all()
    assert len(_run_jobs(gapic, parent, refused.attrs["pdbatch_run"])) == 1

    # A create that happened although its answer was lost is found, not made again.
    stack.service.api_faults.inject(429, 1, lost=True)
    lost = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                   force=True)
    assert (lost["status"] == "ok").all()
    assert len(_run_jobs(gapic, parent, lost.attrs["pdbatch_run"])) == 1


def test_an_unreadable_input_file_among_several_is_a_partial_failure(gapic, parent, fs,
                                                                     staging):
    line = {"request": {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}}
    fs.pipe(f"{staging}/a.jsonl", (json.dumps(line) + "\n").encode() * 3)
    body = jsonl_job(f"{staging}/a.jsonl", f"{staging}/out")
    body["input_config"]["gcs_source"]["uris"].append(f"{staging}/gone.jsonl")
    job = finished(gapic, gapic.create_batch_prediction_job(
        parent=parent, batch_prediction_job=body).name)
    assert job.state.name == "JOB_STATE_SUCCEEDED"  # the readable file is answered
    assert job.completion_stats.successful_count == 3
    [failure] = job.partial_failures
    assert failure.code == 5
    assert failure.message == f"Input file {staging}/gone.jsonl does not exist."


def test_rows_of_an_unreadable_shard_say_why(stack, fs, staging):
    import dask.dataframe as dd

    frame = pd.DataFrame({"p": [f"question {i}" for i in range(12)]})
    options = dict(prompt_col="p", staging=staging, progress=False,
                   labels={"emulator-queue-ms": "1500"})  # time to remove a shard first
    run = dd.from_pandas(frame, npartitions=2).gemini.submit(**options)
    [shard] = [p for p in fs.find(f"{staging}/{run.id}/shards") if "part-00001" in p]
    fs.rm(shard)
    out = run.result().compute(scheduler="threads")
    assert (out["status"].iloc[:6] == "ok").all()
    assert out["status"].iloc[6:].str.startswith(
        f"missing: job {run.jobs[0]} could not read part of its input: Input file "
        f"gs://{shard} does not exist.").all()


def test_a_run_survives_a_restart_of_the_whole_stack_with_a_state_dir(tmp_path):
    from pdbatch.emulator import LocalStack

    frame = pd.DataFrame({"p": ["a", "b", "c"]})
    with LocalStack(state_dir=tmp_path, timing=Timing(pending=0.05, running=0.05)):
        first = frame.gemini.batch_predict(prompt_col="p", progress=False)
    with LocalStack(state_dir=tmp_path, timing=Timing(pending=0.05, running=0.05)):
        [run] = pdbatch.runs().to_dict("records")  # the manifest is still in Cloud Storage
        again = frame.gemini.batch_predict(prompt_col="p", progress=False)  # re-attached
        assert run["run"] == first.attrs["pdbatch_run"] == again.attrs["pdbatch_run"]
        pd.testing.assert_frame_equal(again, first)
        assert len(pdbatch.runs()) == 1
