"""Batch embeddings (issue 26) through the public API, against the offline stack: the real
clients (GAPIC REST, gcsfs, google-genai's ``batches.create_embeddings``) on the emulator, whose
vectors are deterministic (``pdbatch.emulator.embeddings.vector``) so that every row can be
checked against its own text."""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import pdbatch
from pdbatch import InputError
from pdbatch.emulator.embeddings import vector

WORDS = ["river", "water", "fish", "boat", "credit", "loan", "money", "bank", "shore", "tree"]


def _texts(n: int) -> list:
    """``n`` texts of three words each, with repeats (every 7th row repeats row 0)."""
    return [" ".join(WORDS[(i * k) % len(WORDS)] for k in (1, 3, 7)) + f" n{i % 50}"
            if i % 7 else "river water fish" for i in range(n)]


def _frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"abstract": _texts(n), "title": [f"t{i % 3}" for i in range(n)]},
                        index=pd.RangeIndex(1000, 1000 + n))


def _expected(df: pd.DataFrame, dims: int, title: bool = True) -> np.ndarray:
    return np.stack([vector(f"{t} {a}" if title else a, dims)
                     for a, t in zip(df["abstract"], df["title"], strict=True)])


def _check(out: pd.DataFrame, df: pd.DataFrame, dims: int, title: bool = True) -> None:
    assert out.index.equals(df.index)
    assert out["embedding"].dtype == pd.ArrowDtype(pa.list_(pa.float32(), dims))
    ok = (out["status"] == "ok").to_numpy()
    matrix = pdbatch.vectors(out)
    assert matrix.shape == (len(df), dims) and matrix.dtype == np.float32
    np.testing.assert_allclose(matrix[ok], _expected(df, dims, title)[ok], atol=1e-6)
    assert np.isnan(matrix[~ok]).all()
    assert (out.loc[ok, "token_count"] > 0).all()


def test_gemini_embedding_on_vertex_every_row_gets_its_own_vector(stack, staging):
    df = _frame(300)
    out = df.gemini.embed(text_col="abstract", title_col="title", model="gemini-embedding-001",
                          task_type="RETRIEVAL_DOCUMENT", output_dimensionality=128,
                          staging=staging, progress=False)
    assert (out["status"] == "ok").all()
    _check(out, df, 128)
    assert list(out.columns[2:]) == ["embedding", "status", "error_code", "error_message",
                                     "token_count", "truncated", "job"]
    before = len(stack.service.jobs) if hasattr(stack.service, "jobs") else None
    again = df.gemini.embed(text_col="abstract", title_col="title", model="gemini-embedding-001",
                            task_type="RETRIEVAL_DOCUMENT", output_dimensionality=128,
                            staging=staging, progress=False)
    pd.testing.assert_frame_equal(again, out)  # re-attached: the same jobs, nothing new
    if before is not None:
        assert len(stack.service.jobs) == before
    read = pdbatch.read_results(df, run=out.attrs["pdbatch_run"], staging=staging)
    pd.testing.assert_frame_equal(read, out)


def test_row_faults_are_asked_again_and_every_row_ends_with_its_vector(staging):
    df = _frame(400)
    df.loc[1003, "abstract"] = None
    out = df.gemini.embed(text_col="abstract", model="gemini-embedding-001",
                          output_dimensionality=128, staging=staging, progress=False,
                          on_invalid="skip", max_retries=2,
                          labels={"emulator-row-errors": "429-10_500-5"})
    assert out.loc[1003, "status"].startswith("skipped: ")
    rest = out.drop(index=1003)
    failed = rest["status"] != "ok"  # ~15% per pass: a text failing 3 times is rare
    assert rest.loc[failed, "abstract"].nunique() <= 4 and rest["attempts"].max() > 1
    assert rest.loc[failed, "error_code"].isin([429, 500]).all()
    assert (rest.loc[failed, "attempts"] == 3).all()
    _check(rest, df.drop(index=1003), 128, title=False)


def test_text_embedding_matches_answers_by_the_echoed_instance(staging):
    df = _frame(200)
    out = df.gemini.embed(text_col="abstract", title_col="title", model="text-embedding-005",
                          task_type="RETRIEVAL_DOCUMENT", staging=staging, progress=False)
    assert (out["status"] == "ok").all()
    _check(out, df, 768)
    assert not out["truncated"].any()
    found = pdbatch.answers(out.attrs["pdbatch_run"], staging=staging)
    assert found["row"].isna().all() and found["instance_hash"].notna().all()
    assert len(found) == df[["abstract", "title"]].drop_duplicates().shape[0]


def test_the_developer_api_embeds_through_create_embeddings(stack, tmp_path):
    df = _frame(120)
    out = df.gemini.embed(text_col="abstract", model="gemini-embedding-001",
                          output_dimensionality=256, service="gemini-api",
                          staging=str(tmp_path / "runs"), progress=False)
    assert (out["status"] == "ok").all()
    _check(out, df, 256, title=False)
    assert out["job"].str.startswith("batches/").all()


def test_the_developer_api_embeds_without_google_genais_experimental_warning(stack, tmp_path):
    """google-genai warns at each ``batches.create_embeddings()`` call; the user called
    ``embed``, and sees no such warning even with every warning shown."""
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        out = pd.DataFrame({"text": ["river water"]}).gemini.embed(
            text_col="text", model="gemini-embedding-001", service="gemini-api",
            staging=str(tmp_path / "runs"), progress=False)
    assert out["status"].tolist() == ["ok"]
    assert not [w for w in shown if "experimental" in str(w.message)], \
        [str(w.message) for w in shown]


def test_nearest_neighbours_make_sense(staging):
    df = pd.DataFrame({"text": ["river water fish boat", "fish boat river shore",
                                "credit loan money bank"]})
    matrix = pdbatch.vectors(df.gemini.embed(text_col="text", output_dimensionality=512,
                                             staging=staging, progress=False))
    assert matrix[0] @ matrix[1] > matrix[0] @ matrix[2]


@pytest.mark.parametrize(("arguments", "says"), [
    ({"model": "gemini-embedding-2", "task_type": "RETRIEVAL_DOCUMENT"},
     "takes no task_type or title"),
    ({"model": "gemini-embedding-2", "title_col": "title"}, "takes no task_type or title"),
    ({"output_dimensionality": 5000}, "128 to 3072"),
    ({"task_type": "RETRIEVE"}, "use one of"),
    ({"model": "gemini-2.5-flash"}, "generates text"),
    ({"model": "text-embedding-005", "output_dimensionality": 256}, "job parameter"),
    ({"generation_config": {"temperature": 1}}, "embed takes no"),
])
def test_bad_calls_are_refused_before_anything_is_uploaded(arguments, says, staging, uploaded):
    with pytest.raises(InputError, match=says):
        _frame(3).gemini.embed(text_col="abstract", staging=staging, **arguments)
    assert uploaded() == []


def test_a_null_text_is_named_with_its_row(staging, uploaded):
    df = _frame(3)
    df.loc[1001, "abstract"] = None
    with pytest.raises(InputError, match=r"row 1 \(index 1001\).*null"):
        df.gemini.embed(text_col="abstract", staging=staging)
    assert uploaded() == []


def test_bigquery_is_refused_for_gemini_embedding_models():
    with pytest.raises(InputError, match=r"takes no tables for Gemini embedding models\); "
                       r"stage 'gemini-embedding-001' on Cloud Storage \(staging='gs://"):
        _frame(3).gemini.embed(text_col="abstract", staging="bq://my-project.d",
                               project="my-project", location="us-central1")


def test_text_embedding_models_stage_through_bigquery_tables(bq, stack, dataset):
    """The input table has the instances' columns (content, task_type, title), the output
    table content, title, predictions, status (spec §1.2), through google-cloud-bigquery."""
    df = _frame(500)
    df.loc[1004, "abstract"] = None
    staging = f"bq://{stack.project}.{dataset}"
    out = df.gemini.embed(text_col="abstract", title_col="title", model="text-embedding-005",
                          task_type="RETRIEVAL_DOCUMENT", staging=staging, progress=False,
                          on_invalid="skip", keep_staging=True)
    assert out.loc[1004, "status"].startswith("skipped: ")
    _check(out.drop(index=1004), df.drop(index=1004), 768)
    tables = {t.table_id: t for t in bq.list_tables(f"{stack.project}.{dataset}")}
    [staged] = [t for t in tables if "_input_" in t]
    [output] = [t for t in tables if "_output_" in t]
    fields = {f.name: f.field_type for f in bq.get_table(f"{stack.project}.{dataset}.{staged}")
              .schema}
    assert fields == {"content": "STRING", "task_type": "STRING", "title": "STRING"}
    fields = {f.name: f.field_type for f in bq.get_table(f"{stack.project}.{dataset}.{output}")
              .schema}
    assert fields == {"content": "STRING", "task_type": "STRING", "title": "STRING",
                      "predictions": "JSON", "status": "STRING"}
    again = df.gemini.read_results(run=out.attrs["pdbatch_run"], output=staging)
    pd.testing.assert_frame_equal(again, out)


def test_pandas_and_dask_give_the_same_embeddings(staging):
    import dask.dataframe as dd

    df = _frame(90)
    arguments = {"text_col": "abstract", "title_col": "title", "output_dimensionality": 128,
                 "staging": staging, "progress": False}
    out = df.gemini.embed(**arguments)
    lazy = dd.from_pandas(df, npartitions=3).gemini.embed(**arguments, force=True)
    assert lazy._meta["embedding"].dtype == out["embedding"].dtype
    computed = lazy.compute(scheduler="sync")
    compared = [c for c in out.columns[2:] if c != "job"]  # the result columns
    pd.testing.assert_frame_equal(computed[compared], out[compared])


def test_a_dask_frame_with_a_text_embedding_model_is_refused(staging):
    import dask.dataframe as dd

    with pytest.raises(InputError, match="no row key"):
        dd.from_pandas(_frame(4), npartitions=2).gemini.embed(
            text_col="abstract", model="text-embedding-005", staging=staging)


def test_an_estimate_prices_the_embedding_tokens(staging):
    estimate = pdbatch.estimate_embed(_frame(50), text_col="abstract", staging=staging,
                                      count_tokens=False)
    assert estimate.requests == 43 and estimate.output_tokens == 0  # repeats sent once
    assert estimate.cost == pytest.approx(estimate.input_tokens * 0.15 / 1e6 * 0.5)


def _uploaded_lines(stack) -> list[dict]:
    """The request lines of the JSONL files uploaded to the emulated Files API."""
    import json

    return [json.loads(line) for blob in sorted(stack.gemini.files.blobs.glob("*"))
            for line in blob.read_text().splitlines()
            if line.startswith('{"key"')]


def test_the_developer_api_lines_carry_their_settings_at_the_top_of_the_request(stack,
                                                                                  tmp_path):
    df = _frame(20)
    run = pdbatch.submit_embed(df, text_col="abstract", title_col="title",
                               model="gemini-embedding-001", task_type="RETRIEVAL_DOCUMENT",
                               output_dimensionality=128, service="gemini-api",
                               staging=str(tmp_path / "runs"), progress=False)
    lines = _uploaded_lines(stack)  # before the run's input file is removed
    _check(run.result(), df, 128)
    assert lines, "no line with the settings at the top of its request"
    assert all(set(line["request"]) == {"content", "output_dimensionality", "task_type",
                                        "title"} for line in lines)
    with pytest.raises(InputError, match="auto_truncate= is a Vertex AI option"):
        df.gemini.embed(text_col="abstract", auto_truncate=False, service="gemini-api",
                        staging=str(tmp_path / "runs"))


def test_the_emulated_developer_api_refuses_vertex_only_settings(stack, tmp_path):
    """The Developer API's EmbedContentRequest has no autoTruncate (google-genai refuses it
    outside Vertex AI): a line with it fails, one with the documented fields is answered."""
    from google import genai
    from google.genai import types

    client = genai.Client(api_key="test-key",
                          http_options=types.HttpOptions(base_url=stack.gemini_url))
    path = tmp_path / "lines.jsonl"
    content = {"parts": [{"text": "river water"}]}
    path.write_text("\n".join([
        f'{{"key":"a","request":{{"content":{json.dumps(content)},"auto_truncate":true}}}}',
        f'{{"key":"b","request":{{"content":{json.dumps(content)},'
        '"embed_content_config":{"auto_truncate":true}}}',
        f'{{"key":"c","request":{{"content":{json.dumps(content)},"taskType":"CLUSTERING",'
        '"outputDimensionality":128}}'
        f'',
        f'{{"key":"d","request":{{"content":{json.dumps(content)},'
        '"embedContentConfig":{"outputDimensionality":128}}}']) + "\n")
    uploaded = client.files.upload(file=str(path), config={"mime_type": "jsonl"})
    with pytest.warns(Warning):
        batch = client.batches.create_embeddings(model="gemini-embedding-001",
                                                 src={"file_name": uploaded.name})
    for _ in range(200):
        batch = client.batches.get(name=batch.name)
        if batch.done:
            break
        time.sleep(0.05)
    text = client.files.download(file=batch.dest.file_name).decode()
    answers = {a["key"]: a for a in map(json.loads, text.splitlines())}
    assert 'Unknown name "auto_truncate"' in answers["a"]["error"]["message"]
    assert 'Unknown name "auto_truncate" at' in answers["b"]["error"]["message"]
    for key in "cd":
        assert len(answers[key]["response"]["embedding"]["values"]) == 128


def test_a_text_over_the_models_input_limit_is_named_or_skipped_or_cut(staging, uploaded):
    df = _frame(4)
    df.loc[1002, "abstract"] = "river " * 1700  # 10,200 characters: ~2,550 tokens > 2,048
    with pytest.raises(InputError, match=r"row 2 \(index 1002\): column 'abstract' is about "
                       r"2,550 tokens .*2,048-token input limit.*auto_truncate=True"):
        df.gemini.embed(text_col="abstract", staging=staging)
    assert uploaded() == []
    skipped = df.gemini.embed(text_col="abstract", staging=staging, on_invalid="skip",
                              output_dimensionality=128, progress=False)
    assert skipped.loc[1002, "status"].startswith("skipped: column 'abstract' is about")
    assert (skipped.drop(index=1002)["status"] == "ok").all()
    # 2,100 one-letter words: ~1,050 tokens by characters, so sent; the service counts 2,100,
    # cuts the text and says so
    df.loc[1002, "abstract"] = "a " * 2100
    cut = df.gemini.embed(text_col="abstract", model="text-embedding-005", staging=staging,
                          progress=False)
    assert (cut["status"] == "ok").all()
    assert cut["truncated"].tolist() == [False, False, True, False]
    assert cut.loc[1002, "token_count"] == 2048
    df.loc[1002, "abstract"] = "river " * 1700
    # gemini-embedding-2 reads 8,192 tokens: the same text goes
    two = df.gemini.embed(text_col="abstract", model="gemini-embedding-2",
                          output_dimensionality=128, staging=staging, progress=False)
    assert (two["status"] == "ok").all()


def test_the_emulator_reports_truncated_text_embedding_inputs():
    from pdbatch.emulator.embeddings import legacy_predictions

    [long] = legacy_predictions({"content": "river fish " * 1100})
    [short] = legacy_predictions({"content": "river fish"})
    assert long["embeddings"]["statistics"] == {"token_count": 2048, "truncated": True}
    assert short["embeddings"]["statistics"] == {"token_count": 2, "truncated": False}


@pytest.mark.parametrize(("model", "limit"), [("text-embedding-005", 30_000),
                                              ("gemini-embedding-001", 1_000_000)])
def test_the_emulator_refuses_a_job_over_the_models_row_limit(model, limit):
    from pdbatch.emulator.families import family_of
    from pdbatch.emulator.runner import ImportFailure, check_input

    family = family_of(f"publishers/google/models/{model}")
    line = {"content": "x"} if model.startswith("text") else \
        {"key": "1", "request": {"content": {"parts": [{"text": "x"}]}}}
    assert family.max_rows == limit
    assert check_input(lambda: ((i, line) for i in range(3)), family)[0] == 3
    with pytest.raises(ImportFailure, match=f"more than {limit:,} rows"):
        check_input(lambda: ((i, line) for i in range(limit + 1)), family)


def test_the_cli_lists_and_shows_embedding_runs(staging, capsys):
    from helpers import listed_and_shown

    out = _frame(30).gemini.embed(text_col="abstract", model="text-embedding-005",
                                  staging=staging, progress=False)
    run = out.attrs["pdbatch_run"]
    listed, shown = listed_and_shown(run, staging, capsys)
    assert run in listed and "succeeded" in listed and "text-embedding-005" in listed
    sent = out["abstract"].nunique()
    assert f"succeeded: {sent}/{sent} requests done" in shown and f"{sent} answered" in shown


def test_vectors_are_gathered_into_row_order_with_copies_nulls_and_longer_vectors():
    from pdbatch.columns import gathered_vectors

    kind = pa.list_(pa.float32(), 2)
    lines = pa.chunked_array([pa.array([[3, 4], None], pa.list_(pa.float32())),
                              pa.array([[1, 0]], pa.list_(pa.float32()))])
    # rows 0..4: row 0 <- line 2, row 1 <- line 0, row 2 <- line 1 (null), row 3 none,
    # row 4 copies row 1
    line = np.array([2, 0, 1, -1, -1])
    out = gathered_vectors(lines, line, kind, np.array([4]), np.array([1]))
    assert out.type == kind
    assert out.to_pylist() == [[1, 0], [3, 4], None, None, [3, 4]]
    longer = pa.chunked_array([pa.array([[3, 4, 12], [1, 0, 0]], pa.list_(pa.float32()))])
    cut = gathered_vectors(longer, np.array([1, 0]), kind, np.array([], int), np.array([], int))
    np.testing.assert_allclose(cut.to_pylist(), [[1, 0], [0.6, 0.8]])  # cut, renormalised


def test_the_usage_of_an_embedding_run_counts_its_tokens_at_embedding_prices(staging):
    df = _frame(40)
    run = pdbatch.submit_embed(df, text_col="abstract", model="gemini-embedding-001",
                               staging=staging, progress=False)
    out = run.result(df)
    usage = run.usage(df)
    assert usage.rows["answered"] == len(df) and usage.output_tokens == 0
    sent = out.drop_duplicates("abstract")  # identical texts are embedded (and billed) once
    assert usage.prompt_tokens == int(sent["token_count"].sum()) > 0
    price = pdbatch.costs.EMBEDDING_PRICES["gemini-embedding-001"][0]
    assert usage.cost == pytest.approx(usage.prompt_tokens * price / 1e6 * 0.5)
    assert "list prices of" in usage.prices and not usage.output_histogram
