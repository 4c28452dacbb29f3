"""Batch embeddings (issue 26) through the public API, against the offline stack: the real
clients (GAPIC REST, gcsfs, google-genai's ``batches.create_embeddings``) on the emulator, whose
vectors are deterministic (``pdbatch.emulator.embeddings.vector``) so that every row can be
checked against its own text."""

from __future__ import annotations

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


def test_the_developer_api_embeds_through_create_embeddings(stack, tmp_path):
    df = _frame(120)
    out = df.gemini.embed(text_col="abstract", model="gemini-embedding-001",
                          output_dimensionality=256, service="gemini-api",
                          staging=str(tmp_path / "runs"), progress=False)
    assert (out["status"] == "ok").all()
    _check(out, df, 256, title=False)
    assert out["job"].str.startswith("batches/").all()


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
    with pytest.raises(InputError):
        _frame(3).gemini.embed(text_col="abstract", staging="bq://p.d", project="p",
                               location="us-central1")


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
