"""A tiny real run on Google Cloud, for someone with a project or an API key: the same code as
every other test, against Vertex AI, Cloud Storage and BigQuery themselves, and the Gemini
Developer API. Marked ``live``; the Vertex AI tests are skipped unless
``PDBATCH_LIVE_PROJECT`` and ``PDBATCH_LIVE_BUCKET`` (and, for the BigQuery routes,
``PDBATCH_LIVE_DATASET``) are set, the Developer API's unless ``PDBATCH_LIVE_API_KEY`` is; see
docs/usage.md, "The live suite"."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest

import pdbatch

PROJECT = os.environ.get("PDBATCH_LIVE_PROJECT")
BUCKET = os.environ.get("PDBATCH_LIVE_BUCKET")
DATASET = os.environ.get("PDBATCH_LIVE_DATASET")
LOCATION = os.environ.get("PDBATCH_LIVE_LOCATION", "us-central1")
MODEL = os.environ.get("PDBATCH_LIVE_MODEL", "gemini-2.5-flash-lite")
API_KEY = os.environ.get("PDBATCH_LIVE_API_KEY")

pytestmark = pytest.mark.live
vertex = pytest.mark.skipif(
    not (PROJECT and BUCKET), reason="a live run needs PDBATCH_LIVE_PROJECT and "
    "PDBATCH_LIVE_BUCKET (and PDBATCH_LIVE_DATASET for BigQuery): see docs/usage.md")
developer_api = pytest.mark.skipif(
    not API_KEY, reason="a live Developer API run needs PDBATCH_LIVE_API_KEY (a Gemini API "
    "key): see docs/usage.md")
TEXTS = pd.DataFrame({"text": ["The cat sat on the mat.", "A kitten slept on the rug.",
                               "Interest rates rose again.", "The cat sat on the mat."]})

ROUTES = {"gcs": ("gs", "gs"), "bigquery": ("bq", "bq"), "gcs-to-bigquery": ("gs", "bq")}


@pytest.fixture
def google_cloud(monkeypatch):
    """The real services: whatever local stack an earlier test pointed the clients at is
    forgotten for this test."""
    for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_VERTEX_BASE_URL", "BIGQUERY_EMULATOR_HOST",
                 "PDBATCH_STAGING", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION",
                 "GOOGLE_GEMINI_BASE_URL", "GEMINI_API_KEY", "GOOGLE_API_KEY",
                 "PDBATCH_SERVICE", "PDBATCH_RUNS_FOLDER"):
        monkeypatch.delenv(name, raising=False)


@vertex
@pytest.mark.parametrize("route", list(ROUTES))
def test_a_few_rows_are_answered_by_the_real_service(route, google_cloud):
    staging_kind, output_kind = ROUTES[route]
    if "bq" in ROUTES[route] and not DATASET:
        pytest.skip("set PDBATCH_LIVE_DATASET (a dataset in PDBATCH_LIVE_LOCATION)")
    where = {"gs": f"gs://{BUCKET}/pdbatch-live", "bq": f"bq://{PROJECT}.{DATASET}"}
    df = pd.DataFrame({"prompt": ["Say OK.", "Name a colour.", "Say OK."]})
    out = df.gemini.batch_predict(prompt_col="prompt", model=MODEL, project=PROJECT,
                                  location=LOCATION, staging=where[staging_kind],
                                  output=where[output_kind], force=True,
                                  generation_config={"max_output_tokens": 16})
    assert (out["status"] == "ok").all(), out["status"].tolist()
    assert out["text"].str.len().gt(0).all() and out["output_tokens"].gt(0).all()
    assert out["text"].iloc[0] == out["text"].iloc[2]  # one request for the repeated prompt
    runs = pdbatch.runs(where[staging_kind])
    assert runs.loc[runs["run"] == out.attrs["pdbatch_run"], "requests"].item() == 2


def _embedded(out: pd.DataFrame, dims: int) -> None:
    """Every row has a vector of the asked size, the repeated text the same one."""
    assert (out["status"] == "ok").all(), out["error_message"].tolist()
    matrix = pdbatch.vectors(out)
    assert matrix.shape == (len(TEXTS), dims) and np.isfinite(matrix).all()
    assert out["token_count"].gt(0).all()
    np.testing.assert_array_equal(matrix[0], matrix[3])
    unit = matrix / np.linalg.norm(matrix, axis=1, keepdims=True)
    assert unit[0] @ unit[1] > unit[0] @ unit[2]  # cat/kitten closer than cat/rates


@vertex
@pytest.mark.parametrize(("model", "dims", "staging_kind"), [
    ("gemini-embedding-001", 768, "gs"), ("text-embedding-005", 768, "gs"),
    ("text-embedding-005", 768, "bq")])
def test_a_few_texts_are_embedded_by_vertex_ai(model, dims, staging_kind, google_cloud):
    if staging_kind == "bq" and not DATASET:
        pytest.skip("set PDBATCH_LIVE_DATASET (a dataset in PDBATCH_LIVE_LOCATION)")
    where = {"gs": f"gs://{BUCKET}/pdbatch-live", "bq": f"bq://{PROJECT}.{DATASET}"}
    settings = {"output_dimensionality": dims} if model.startswith("gemini") else {}
    out = TEXTS.gemini.embed(text_col="text", model=model, project=PROJECT,
                             location=LOCATION, staging=where[staging_kind], force=True,
                             **settings)
    _embedded(out, dims)


@developer_api
def test_a_few_rows_are_answered_by_the_developer_api(google_cloud, tmp_path):
    df = pd.DataFrame({"prompt": ["Say OK.", "Name a colour.", "Say OK."]})
    out = df.gemini.batch_predict(prompt_col="prompt", model=MODEL, service="gemini-api",
                                  api_key=API_KEY, staging=str(tmp_path / "runs"),
                                  generation_config={"max_output_tokens": 16})
    assert (out["status"] == "ok").all(), out["status"].tolist()
    assert out["text"].str.len().gt(0).all() and out["job"].str.startswith("batches/").all()


@developer_api
def test_a_few_texts_are_embedded_by_the_developer_api(google_cloud, tmp_path):
    out = TEXTS.gemini.embed(text_col="text", model="gemini-embedding-001",
                             output_dimensionality=128, task_type="SEMANTIC_SIMILARITY",
                             service="gemini-api", api_key=API_KEY,
                             staging=str(tmp_path / "runs"))
    _embedded(out, 128)
