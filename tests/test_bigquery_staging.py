"""``staging="bq://project.dataset"``: request tables in, answer tables out, through the real
google-cloud-bigquery against a local BigQuery (bqemulator) and the emulator reading and
writing it."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest

import pdbatch
from pdbatch.emulator.responder import echo_text


def _expected(prompt: str) -> str:
    return echo_text({"contents": [{"parts": [{"text": prompt}]}]})


def _frame(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    return pd.DataFrame({
        "prompt": [f"question {i} about {'x' * (i % 7)}" for i in range(n)],
        "item_id": np.arange(n) * 3,
        "price": rng.random(n),
        "in_stock": np.arange(n) % 2 == 0,
        "sku": pd.array([f"s-{i}" for i in range(n)], dtype="string"),
    }, index=rng.integers(0, n // 2, n))  # duplicate labels


def _tables(bq, project, dataset) -> dict[str, dict]:
    return {t.table_id: bq.get_table(f"{project}.{dataset}.{t.table_id}").labels or {}
            for t in bq.list_tables(f"{project}.{dataset}")}


def test_10k_rows_round_trip_through_tables_with_carried_columns(bq, stack, dataset):
    df = _frame(10_000)
    staging = f"bq://{stack.project}.{dataset}"
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                  carry=["item_id", "price", "in_stock", "sku"])

    pd.testing.assert_frame_equal(out[df.columns], df)
    assert (out["status"] == "ok").all()
    assert out["text"].tolist() == [_expected(p) for p in df["prompt"]]
    run = out.attrs["pdbatch_run"]

    tables = _tables(bq, stack.project, dataset)
    [output] = [t for t in tables if "_output_" in t]
    assert not [t for t in tables if "_input_" in t]  # staged input removed after success
    assert tables[output]["pdbatch-run"] == run
    assert len(tables[output]["pdbatch-fingerprint"]) == 32
    schema = {f.name: f.field_type for f in bq.get_table(f"{stack.project}.{dataset}.{output}")
              .schema}
    assert {k: schema[k] for k in ("pdbatch_row", "item_id", "price", "in_stock", "sku",
                                   "response")} == {
        "pdbatch_row": "INTEGER", "item_id": "INTEGER", "price": "FLOAT", "in_stock": "BOOLEAN",
        "sku": "STRING", "response": "JSON"}
    row = next(iter(bq.query(
        f"SELECT item_id, sku, in_stock FROM `{stack.project}.{dataset}.{output}` "
        "WHERE pdbatch_row = 17").result()))
    assert (row["item_id"], row["sku"], row["in_stock"]) == (51, "s-17", False)

    # The answers can be read again from the output tables: no second job, the same result.
    again = df.gemini.read_results(run=run, output=staging)
    pd.testing.assert_frame_equal(again, out)


def test_keep_staging_keeps_the_labelled_input_tables(bq, stack, dataset):
    out = _frame(10).gemini.batch_predict(prompt_col="prompt", progress=False,
                                          staging=f"bq://{stack.project}.{dataset}",
                                          keep_staging=True, max_requests_per_job=4)
    tables = _tables(bq, stack.project, dataset)
    inputs = sorted(t for t in tables if "_input_" in t)
    assert len(inputs) == 3 and all(tables[t]["pdbatch-run"] == out.attrs["pdbatch_run"]
                                    for t in inputs)
    assert out.groupby("job", sort=False).size().tolist() == [4, 4, 2]


def test_mixed_routes(bq, stack, dataset, staging, fs):
    df = _frame(20)
    table_out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                        output=f"bq://{stack.project}.{dataset}")
    assert table_out["text"].tolist() == [_expected(p) for p in df["prompt"]]
    assert [t for t in _tables(bq, stack.project, dataset) if "_output_" in t]
    assert not [f for f in fs.find(staging) if "/input-" in f]

    files_out = df.gemini.batch_predict(prompt_col="prompt", progress=False,
                                        staging=f"bq://{stack.project}.{dataset}",
                                        output=staging, carry=["sku"])
    assert files_out["text"].tolist() == [_expected(p) for p in df["prompt"]]
    run = files_out.attrs["pdbatch_run"]
    [predictions] = [f for f in fs.find(f"{staging}/{run}") if f.endswith("predictions.jsonl")]
    assert b'"sku":"s-3"' in fs.cat(predictions)
    again = df.gemini.read_results(run=run, staging=f"bq://{stack.project}.{dataset}")
    pd.testing.assert_frame_equal(again, files_out)
    with pytest.raises(pdbatch.InputError, match="pass staging= where it was made"):
        df.gemini.read_results(run=run, output=staging)  # the manifest is in the staging


@pytest.fixture
def nothing_created(bq, stack, gapic, parent):
    datasets = {d.dataset_id for d in bq.list_datasets()}
    jobs = len(list(gapic.list_batch_prediction_jobs(parent=parent)))
    yield
    assert {d.dataset_id for d in bq.list_datasets()} == datasets
    assert len(list(gapic.list_batch_prediction_jobs(parent=parent))) == jobs


def test_checks_before_anything_is_created(bq, stack, dataset, nothing_created):
    from google.cloud import bigquery

    df = _frame(4).assign(nested=[{"a": 1}] * 4, processed_time=["x"] * 4,
                          when=pd.Timestamp("2026-01-01", tz="UTC"))
    good = f"bq://{stack.project}.{dataset}"
    multi = bigquery.Dataset(f"{stack.project}.m_{uuid.uuid4().hex[:8]}")
    multi.location = "US"
    bq.create_dataset(multi)
    cases = [
        (dict(staging=f"bq://{stack.project}.no_such_dataset"),
         "the dataset does not exist. Create it in the job's region first: bq mk "
         f"--location={stack.location} {stack.project}:no_such_dataset"),
        (dict(staging=f"bq://{stack.project}.{multi.dataset_id}"),
         "is in the multi-region US, but batch jobs read and write BigQuery only in their own "
         f"region ({stack.location})"),
        (dict(staging=good, output=f"bq://{stack.project}.{multi.dataset_id}"),
         f"output='bq://{stack.project}.{multi.dataset_id}' is in the multi-region US"),
        (dict(staging=good, carry=["processed_time"]),
         "column 'processed_time' cannot be carried"),
        (dict(staging=good, carry=["nested"]), "column 'nested' has dtype object"),
        (dict(staging=good, carry=["when"]), "column 'when' has dtype datetime64"),
        (dict(staging=good, carry=["nope"]), "carry=['nope'] names no column of the frame"),
        (dict(staging=good, model="claude-haiku-4-5"),
         "BigQuery staging and output support Gemini and text-embedding models in this "
         "version"),
        (dict(staging="bq://Bad_Project.d"), "is not a BigQuery dataset"),
        (dict(staging="bq://my-project.bad-dataset"), "is not a BigQuery dataset"),
    ]
    for kwargs, message in cases:
        with pytest.raises(pdbatch.InputError) as err:
            df.gemini.batch_predict(prompt_col="prompt", progress=False, **kwargs)
        assert message in str(err.value), (kwargs, str(err.value))
    assert not _tables(bq, stack.project, dataset)
    bq.delete_dataset(multi.dataset_id)


def test_a_global_job_reads_and_writes_a_regional_dataset_and_carries_an_id_column(
        bq, stack, dataset):
    # Gemini tables reserve only response, status (and the service's own columns); `id` is
    # reserved for MaaS tables. Jobs on the global endpoint take BigQuery since Dec 2025.
    df = _frame(6).assign(id=np.arange(6) + 100)
    out = df.gemini.batch_predict(prompt_col="prompt", staging=f"bq://{stack.project}.{dataset}",
                                  location="global", carry=["id"], progress=False)
    assert out["text"].tolist() == [_expected(p) for p in df["prompt"]]
    assert out["job"].str.contains("/locations/global/").all()
    [output] = [t for t in _tables(bq, stack.project, dataset) if "_output_" in t]
    ids = [row["id"] for row in bq.list_rows(f"{stack.project}.{dataset}.{output}")]
    assert sorted(ids) == list(range(100, 106))


def test_many_jobs_writing_tables_at_once(bq, stack, dataset):
    # bqemulator shares one DuckDB connection; the local BigQuery must take calls one at a time
    # (pdbatch.emulator.bqserver) for 15 jobs writing while pdbatch reads.
    df = pd.DataFrame({"prompt": [f"q{i}" for i in range(30)]})
    out = df.gemini.batch_predict(prompt_col="prompt", staging=f"bq://{stack.project}.{dataset}",
                                  max_requests_per_job=2, progress=False)
    assert out["job"].nunique() == 15 and (out["status"] == "ok").all()


def test_manifests_are_saved_without_load_jobs(bigquery_server, stack, dataset, monkeypatch):
    """A table takes 1,500 load jobs a day; a run saves its manifest at each job and every
    20 s: only the input tables are loaded, the manifest and index are written with DML."""
    from recording_proxy import RecordingProxy

    df = pd.DataFrame({"prompt": [f"question {i}" for i in range(30)]})
    with RecordingProxy(bigquery_server.url) as proxy:
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", proxy.url)
        out = df.gemini.batch_predict(prompt_col="prompt", staging=f"bq://{stack.project}."
                                      f"{dataset}", progress=False, max_requests_per_job=10)
    assert (out["status"] == "ok").all() and out["job"].nunique() == 3
    loads = [path for method, path, _ in proxy.seen
             if method == "POST" and path.startswith("/upload/")]
    assert len(loads) == 3  # one per input table, none per manifest save
    queries = [path for method, path, _ in proxy.seen if method == "POST"
               and path.split("?")[0].endswith("/jobs") and not path.startswith("/upload/")]
    assert len(queries) >= 4  # the saves went as DML statements (query jobs)
