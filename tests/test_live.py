"""A tiny real run on Google Cloud, for someone with a project: the same code as every other
test, against Vertex AI, Cloud Storage and BigQuery themselves. Marked ``live`` and skipped
unless ``PDBATCH_LIVE_PROJECT`` and ``PDBATCH_LIVE_BUCKET`` (and, for the BigQuery routes,
``PDBATCH_LIVE_DATASET``) are set; see docs/usage.md, "The live suite"."""

from __future__ import annotations

import os

import pandas as pd
import pytest

import pdbatch

PROJECT = os.environ.get("PDBATCH_LIVE_PROJECT")
BUCKET = os.environ.get("PDBATCH_LIVE_BUCKET")
DATASET = os.environ.get("PDBATCH_LIVE_DATASET")
LOCATION = os.environ.get("PDBATCH_LIVE_LOCATION", "us-central1")
MODEL = os.environ.get("PDBATCH_LIVE_MODEL", "gemini-2.5-flash-lite")

pytestmark = [pytest.mark.live, pytest.mark.skipif(
    not (PROJECT and BUCKET), reason="a live run needs PDBATCH_LIVE_PROJECT and "
    "PDBATCH_LIVE_BUCKET (and PDBATCH_LIVE_DATASET for BigQuery): see docs/usage.md")]

ROUTES = {"gcs": ("gs", "gs"), "bigquery": ("bq", "bq"), "gcs-to-bigquery": ("gs", "bq")}


@pytest.fixture
def google_cloud(monkeypatch):
    """The real services: whatever local stack an earlier test pointed the clients at is
    forgotten for this test."""
    for name in ("STORAGE_EMULATOR_HOST", "GOOGLE_VERTEX_BASE_URL", "BIGQUERY_EMULATOR_HOST",
                 "PDBATCH_STAGING", "GOOGLE_CLOUD_PROJECT", "GOOGLE_CLOUD_LOCATION"):
        monkeypatch.delenv(name, raising=False)


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
