"""BigQuery input and output (spec §2.4, §3.2): the emulator reads and writes a local BigQuery
(bqemulator), driven by the unmodified GAPIC REST client; tables checked with
google-cloud-bigquery."""

from __future__ import annotations

import io
import json
import uuid

import pytest
from helpers import MODEL, finished


def _table(bq, table_id: str, rows: list[dict], schema: list[tuple[str, str]]) -> str:
    from google.cloud import bigquery

    config = bigquery.LoadJobConfig(schema=[bigquery.SchemaField(n, t) for n, t in schema],
                                    source_format="NEWLINE_DELIMITED_JSON")
    data = "".join(json.dumps(row) + "\n" for row in rows).encode()
    bq.load_table_from_file(io.BytesIO(data), table_id, job_config=config).result()
    return f"bq://{table_id}"


def _requests(n: int) -> list[dict]:
    return [{"request": {"contents": [{"role": "user", "parts": [{"text": f"q{i}"}]}]},
             "pdbatch_row": i, "label": f"item {i}"} for i in range(n)]


SCHEMA = [("request", "JSON"), ("pdbatch_row", "INTEGER"), ("label", "STRING")]


def _run(gapic, parent, source: dict, destination: dict):
    job = gapic.create_batch_prediction_job(parent=parent, batch_prediction_job={
        "display_name": "bq", "model": MODEL, "input_config": source,
        "output_config": destination})
    return finished(gapic, job.name)


def _bq_in(uri: str) -> dict:
    return {"instances_format": "bigquery", "bigquery_source": {"input_uri": uri}}


def _bq_out(uri: str) -> dict:
    return {"predictions_format": "bigquery", "bigquery_destination": {"output_uri": uri}}


def _rows(bq, job) -> list[dict]:
    # as Google's notebooks read it: job.output_location.replace("bq://", "") is the table id
    table = job.output_info.bigquery_output_table.replace("bq://", "")
    return [dict(r.items()) for r in bq.list_rows(table)]


def test_table_in_table_out_with_pass_through_columns(bq, gapic, parent, stack, dataset):
    source = _table(bq, f"{stack.project}.{dataset}.requests", _requests(50), SCHEMA)
    job = _run(gapic, parent, _bq_in(source), _bq_out(f"bq://{stack.project}.{dataset}"))
    assert job.state.name == "JOB_STATE_SUCCEEDED", job.error.message
    assert job.output_info.bigquery_output_dataset == f"bq://{stack.project}.{dataset}"
    assert job.output_info.bigquery_output_table.startswith(
        f"bq://{stack.project}.{dataset}.predictions_")
    assert job.completion_stats.successful_count == 50

    table = bq.get_table(job.output_info.bigquery_output_table.replace("bq://", ""))
    types = {f.name: f.field_type for f in table.schema}
    assert types == {"pdbatch_row": "INTEGER", "label": "STRING", "status": "STRING",
                     "processed_time": "TIMESTAMP", "request": "JSON", "response": "JSON"}
    rows = _rows(bq, job)
    assert sorted(r["pdbatch_row"] for r in rows) == list(range(50))
    for row in rows:
        assert row["label"] == f"item {row['pdbatch_row']}" and row["status"] == ""
        assert row["response"]["candidates"][0]["content"]["parts"][0]["text"] == \
            f"echo: q{row['pdbatch_row']}"


def test_output_table_naming(bq, gapic, parent, stack, dataset):
    source = _table(bq, f"{stack.project}.{dataset}.requests", _requests(3), SCHEMA)

    project_only = _run(gapic, parent, _bq_in(source), _bq_out(f"bq://{stack.project}"))
    assert project_only.state.name == "JOB_STATE_SUCCEEDED", project_only.error.message
    created = project_only.output_info.bigquery_output_dataset
    assert created.startswith(f"bq://{stack.project}.prediction_gemini_2_5_flash_")
    assert bq.get_dataset(created.removeprefix("bq://")).location == stack.location
    assert len(_rows(bq, project_only)) == 3

    exact = f"bq://{stack.project}.{dataset}.answers"
    named = _run(gapic, parent, _bq_in(source), _bq_out(exact))
    assert named.state.name == "JOB_STATE_SUCCEEDED"
    assert (named.output_info.bigquery_output_dataset,
            named.output_info.bigquery_output_table) == (f"bq://{stack.project}.{dataset}",
                                                          exact)

    again = _run(gapic, parent, _bq_in(source), _bq_out(exact))  # the table exists now
    assert again.state.name == "JOB_STATE_FAILED" and again.error.code == 3
    assert "already exists" in again.error.message


def test_request_as_a_string_column(bq, gapic, parent, stack, dataset):
    rows = [{**r, "request": json.dumps(r["request"])} for r in _requests(3)]
    source = _table(bq, f"{stack.project}.{dataset}.strings", rows,
                    [("request", "STRING"), ("pdbatch_row", "INTEGER"), ("label", "STRING")])
    job = _run(gapic, parent, _bq_in(source), _bq_out(f"bq://{stack.project}.{dataset}"))
    assert job.state.name == "JOB_STATE_SUCCEEDED", job.error.message
    assert {r["response"]["candidates"][0]["content"]["parts"][0]["text"]
            for r in _rows(bq, job)} == {"echo: q0", "echo: q1", "echo: q2"}


@pytest.mark.parametrize("column", ["status", "response", "_vertex_row_id"])
def test_reserved_input_columns_fail_the_import(bq, gapic, parent, stack, dataset, column):
    rows = [{**r, column: "x"} for r in _requests(2)]
    source = _table(bq, f"{stack.project}.{dataset}.reserved", rows, [*SCHEMA, (column, "STRING")])
    job = _run(gapic, parent, _bq_in(source), _bq_out(f"bq://{stack.project}.{dataset}"))
    assert job.state.name == "JOB_STATE_FAILED" and job.error.code == 3
    assert f"reserved column(s) ['{column}']" in job.error.message


def test_datasets_outside_the_jobs_region_are_refused(bq, gapic, parent, stack):
    from google.cloud import bigquery

    multi = bigquery.Dataset(f"{stack.project}.us_{uuid.uuid4().hex[:8]}")
    multi.location = "US"
    bq.create_dataset(multi)
    source = _table(bq, f"{multi.project}.{multi.dataset_id}.requests", _requests(2), SCHEMA)
    job = _run(gapic, parent, _bq_in(source),
               _bq_out(f"bq://{multi.project}.{multi.dataset_id}"))
    assert job.state.name == "JOB_STATE_FAILED" and job.error.code == 3
    assert "multi-regions such as US or EU are not allowed" in job.error.message


def test_mixed_routes(bq, gapic, parent, stack, dataset, fs, staging):
    lines = [{"pdbatch_row": i, "request": r["request"]} for i, r in enumerate(_requests(4))]
    fs.pipe(f"{staging}/in.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode())
    gcs_to_table = _run(gapic, parent,
                        {"instances_format": "jsonl",
                         "gcs_source": {"uris": [f"{staging}/in.jsonl"]}},
                        _bq_out(f"bq://{stack.project}.{dataset}"))
    assert gcs_to_table.state.name == "JOB_STATE_SUCCEEDED", gcs_to_table.error.message
    assert sorted(r["pdbatch_row"] for r in _rows(bq, gcs_to_table)) == [0, 1, 2, 3]

    source = _table(bq, f"{stack.project}.{dataset}.requests", _requests(4), SCHEMA)
    table_to_gcs = _run(gapic, parent, _bq_in(source),
                        {"predictions_format": "jsonl",
                         "gcs_destination": {"output_uri_prefix": f"{staging}/out"}})
    assert table_to_gcs.state.name == "JOB_STATE_SUCCEEDED"
    out = [json.loads(x) for x in fs.cat(
        f"{table_to_gcs.output_info.gcs_output_directory}/predictions.jsonl").splitlines()]
    assert sorted(line["pdbatch_row"] for line in out) == [0, 1, 2, 3]
    assert {line["label"] for line in out} == {"item 0", "item 1", "item 2", "item 3"}


def test_malformed_bigquery_uris_are_refused_at_create(gapic, parent):
    from google.api_core import exceptions

    with pytest.raises(exceptions.BadRequest, match="must name a table"):
        _run(gapic, parent, _bq_in("bq://my-project.only_dataset"), _bq_out("bq://my-project"))
    with pytest.raises(exceptions.BadRequest, match="Invalid BigQuery URI"):
        _run(gapic, parent, _bq_in("bq://my-project.d.t"), _bq_out("bq://x.y;drop"))


def _batch_prediction_job():
    """The seed notebook's ``vertexai.batch_prediction.BatchPredictionJob``: public from
    google-cloud-aiplatform 1.71 (before, only ``vertexai.preview.batch_prediction``)."""
    try:
        from vertexai.batch_prediction import BatchPredictionJob
    except ImportError:
        from google.cloud.aiplatform import __version__

        if tuple(int(part) for part in __version__.split(".")[:2]) >= (1, 71):
            raise
        pytest.skip("vertexai.batch_prediction.BatchPredictionJob is public from "
                    f"google-cloud-aiplatform 1.71 (this is {__version__})")
    return BatchPredictionJob


@pytest.mark.parametrize("route", ["gcs", "bigquery"])
def test_the_seed_notebooks_vertexai_flow_runs_unchanged(route, request, stack, fs, staging):
    """Google's batch notebook, step by step: ``vertexai.init``, ``BatchPredictionJob.submit``,
    ``refresh`` until ``has_ended``, ``output_location``, then the answers read with pandas
    (Cloud Storage) or the BigQuery client (a ``bq://`` table id)."""
    import time

    import pandas as pd
    import vertexai
    from google.auth.credentials import AnonymousCredentials

    BatchPredictionJob = _batch_prediction_job()
    vertexai.init(project=stack.project, location=stack.location,
                  credentials=AnonymousCredentials(), api_endpoint=stack.vertex.url,
                  api_transport="rest")
    if route == "gcs":
        source = f"{staging}/seed.jsonl"
        fs.pipe(source, "".join(json.dumps({"request": r["request"]}) + "\n"
                                for r in _requests(3)).encode())
        destination = f"{staging}/seed-out"
    else:
        bq, dataset = request.getfixturevalue("bq"), request.getfixturevalue("dataset")
        source = _table(bq, f"{stack.project}.{dataset}.seed", _requests(3), SCHEMA)
        destination = f"bq://{stack.project}.{dataset}"
    job = BatchPredictionJob.submit(source_model="gemini-2.5-flash", input_dataset=source,
                                    output_uri_prefix=destination)
    deadline = time.monotonic() + 60
    while not job.has_ended and time.monotonic() < deadline:
        time.sleep(0.2)
        job.refresh()
    assert job.has_succeeded, job.error
    if route == "gcs":
        answers = pd.read_json(f"{job.output_location}/predictions.jsonl", lines=True,
                               storage_options={"token": "anon",
                                                "endpoint_url": stack.gcs.url})
        texts = [r["candidates"][0]["content"]["parts"][0]["text"] for r in answers["response"]]
    else:
        assert job.output_location.startswith(f"bq://{stack.project}.{dataset}.predictions_")
        rows = bq.list_rows(job.output_location.replace("bq://", ""))
        texts = [r["response"]["candidates"][0]["content"]["parts"][0]["text"] for r in rows]
    assert sorted(texts) == [f"echo: q{i}" for i in range(3)]


def test_a_tuned_model_runs_through_the_vertexai_sdk_and_pdbatch(stack, fs, staging):
    """The SDK looks a tuned model up (a Gemini tuning result: ``sourceType`` GENIE) before it
    submits; pdbatch sends the resource name as given. An unknown tuned model is refused."""
    import time

    import pandas as pd
    import vertexai
    from google.api_core import exceptions
    from google.auth.credentials import AnonymousCredentials

    import pdbatch  # noqa: F401  (registers df.gemini)

    BatchPredictionJob = _batch_prediction_job()

    tuned = stack.service.add_tuned_model(f"projects/123/locations/{stack.location}/models/456")
    vertexai.init(project=stack.project, location=stack.location,
                  credentials=AnonymousCredentials(), api_endpoint=stack.vertex.url,
                  api_transport="rest")
    source = f"{staging}/tuned.jsonl"
    fs.pipe(source, json.dumps({"request": _requests(1)[0]["request"]}).encode() + b"\n")
    job = BatchPredictionJob.submit(source_model=tuned, input_dataset=source,
                                    output_uri_prefix=f"{staging}/tuned-out")
    deadline = time.monotonic() + 60
    while not job.has_ended and time.monotonic() < deadline:
        time.sleep(0.2)
        job.refresh()
    assert job.has_succeeded and job.model_name == tuned

    for model in (tuned, tuned + "@1", "publishers/google/models/gemini-2.5-flash@001"):
        out = pd.DataFrame({"prompt": ["hello"]}).gemini.batch_predict(
            prompt_col="prompt", model=model, staging=staging, progress=False)
        assert out["status"].tolist() == ["ok"] and out["text"].tolist() == ["echo: hello"]

    with pytest.raises(exceptions.NotFound, match="models/789 not found"):
        BatchPredictionJob.submit(source_model=f"projects/123/locations/{stack.location}"
                                  "/models/789", input_dataset=source)
