"""service="gemini-api": the Gemini Developer API's batch mode, with an API key and no Cloud
project, through google-genai against the emulator's Developer API surface."""

from __future__ import annotations

import pandas as pd
import pytest

import pdbatch
from pdbatch import InputError


def _frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"prompt": [f"question {i}" for i in range(n)]},
                        index=pd.RangeIndex(100, 100 + n))


def test_a_missing_key_is_refused_before_anything_is_sent(monkeypatch, tmp_path):
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InputError, match="No Gemini API key: pass api_key="):
        _frame(2).gemini.batch_predict(prompt_col="prompt", service="gemini-api",
                                       staging=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("option", "value", "says"), [
    ("project", "my-project", "project= is a Vertex AI option"),
    ("location", "us-central1", "location= is a Vertex AI option"),
    ("labels", {"team": "a"}, "labels= is a Vertex AI option"),
    ("carry", ["prompt"], "carry= is a Vertex AI option"),
    ("output", "bq://p.d", "output= is a Vertex AI option"),
    ("staging", "bq://p.d", "keeps no runs in Cloud Storage or BigQuery"),
    ("staging", "gs://bucket/x", "keeps no runs in Cloud Storage or BigQuery"),
    ("transport", "grpc", "transport= is a Vertex AI option"),
    ("model", "llama-3.3-70b-instruct-maas", "not served by the Gemini Developer API"),
    ("files", {"prompt": None}, "files= is not supported on the Gemini Developer API"),
])
def test_vertex_only_options_are_refused_naming_the_vertex_way(option, value, says, tmp_path):
    arguments = {"staging": str(tmp_path), option: value}
    with pytest.raises(InputError, match=says):
        _frame(2).gemini.batch_predict(prompt_col="prompt", service="gemini-api",
                                       api_key="k", **arguments)
    assert list(tmp_path.iterdir()) == []


def test_a_key_alone_never_chooses_the_developer_api(monkeypatch):
    """Vertex AI stays the default: a user with a key and no project is told how to choose
    the Developer API rather than switched to it (the two bill differently)."""
    for name in ("GOOGLE_CLOUD_PROJECT", "PDBATCH_SERVICE", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    monkeypatch.setenv("PDBATCH_STAGING", "gs://bucket/x")
    monkeypatch.setenv("CLOUDSDK_CONFIG", "/nonexistent")  # no gcloud project either
    with pytest.raises(InputError, match="pass service='gemini-api' or set PDBATCH_SERVICE"):
        _frame(2).gemini.batch_predict(prompt_col="prompt", location="us-central1")


def test_an_unknown_service_is_refused():
    with pytest.raises(InputError, match="service='openai': choose 'vertex'"):
        _frame(2).gemini.batch_predict(prompt_col="prompt", service="openai")
