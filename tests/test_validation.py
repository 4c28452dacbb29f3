"""Bad input fails with a message naming the column/row and the fix, before any upload or job."""

from __future__ import annotations

import pandas as pd
import pytest

import pdbatch


@pytest.fixture
def nothing_happened(uploaded, gapic, parent):
    """Asserts after the test that no object was uploaded and no job was created."""
    jobs_before = len(list(gapic.list_batch_prediction_jobs(parent=parent)))
    yield
    assert uploaded() == []
    assert len(list(gapic.list_batch_prediction_jobs(parent=parent))) == jobs_before


FRAME = pd.DataFrame({"title": ["Dune", "Emma"], "body": ["sand", "matchmaking"]},
                     index=["a", "b"])

CASES = {
    "missing prompt column": (FRAME, dict(prompt_col="prompt"),
                              "prompt_col refers to ['prompt'], which are not columns of the "
                              "frame. The frame has columns: 'title', 'body'."),
    "duplicate column name": (pd.DataFrame([["a", "b"]], columns=["p", "p"]),
                              dict(prompt="{p}"), "refers to ['p'], which the frame has more "
                              "than once; give its columns unique names first."),
    "template field not in frame": (FRAME, dict(prompt="About {title} by {author}"),
                                    "refers to ['author'], which are not columns"),
    "template attribute access": (FRAME, dict(prompt="{title.__class__}"),
                                  "{title.__class__} is not allowed: use plain {column}"),
    "template index access": (FRAME, dict(prompt="{title[0]}"), "{title[0]} is not allowed"),
    "template conversion": (FRAME, dict(prompt="{title!r}"), "{title!r} is not allowed"),
    "positional template field": (FRAME, dict(prompt="{} and {title}"), "{} is not allowed"),
    "malformed template": (FRAME, dict(prompt="{title"), "write literal braces as '{{'"),
    "both prompt arguments": (FRAME, dict(prompt_col="title", prompt="{title}"),
                              "Pass exactly one of prompt_col="),
    "no prompt argument": (FRAME, dict(), "Pass exactly one of prompt_col="),
    "null prompt": (pd.DataFrame({"p": ["ok", None]}, index=[10, 11]), dict(prompt_col="p"),
                    "1 of 2 rows have no usable prompt: row 1 (index 11): column 'p' is null. "
                    "Nothing was uploaded. Fix or drop those rows, or pass on_invalid='skip'"),
    "empty prompt": (pd.DataFrame({"p": ["", "ok", " \n"]}), dict(prompt_col="p"),
                     "2 of 3 rows have no usable prompt: row 0 (index 0): column 'p' is empty; "
                     "row 2 (index 2): column 'p' is empty."),
    "non-string prompt": (pd.DataFrame({"p": ["ok", 3.5]}, dtype=object), dict(prompt_col="p"),
                          "row 1 (index 1): column 'p' is a float, not a string"),
    "lone surrogate": (pd.DataFrame({"p": ["ok", "bad \ud800 text"]}, dtype=object),
                       dict(prompt_col="p"), "row 1 (index 1): column 'p' is not valid Unicode "
                       "text (lone surrogate)"),
    "null template field": (pd.DataFrame({"t": ["x", None]}), dict(prompt="Say {t}"),
                            "row 1 (index 1): template field 't' is null"),
    "many bad rows": (pd.DataFrame({"p": [None] * 8}), dict(prompt_col="p"),
                      "8 of 8 rows have no usable prompt: row 0 (index 0)"),
    "result column clash": (pd.DataFrame({"text": ["hi"]}), dict(prompt_col="text"),
                            "already has column(s) ['text'], which the results would "
                            "overwrite. Rename them, or pass result_prefix='llm_'"),
    "unknown model": (FRAME, dict(prompt_col="title", model="palm-2-text"),
                      "model='palm-2-text' is not a model this version supports. Use a Gemini "
                      "model ('gemini-2.5-flash'"),
    "unknown MaaS publisher": (FRAME, dict(prompt_col="title", model="acme-7b-maas"),
                               "model='acme-7b-maas' is not a model this version supports"),
    "config key a family lacks": (FRAME, dict(prompt_col="title", model="claude-haiku-4-5",
                                              generation_config={"seed": 3}),
                                  "generation_config key 'seed' is not supported for Claude "
                                  "models; use ['max_output_tokens', 'stop_sequences', "
                                  "'temperature', 'top_k', 'top_p']"),
    "unknown Gemini setting": (FRAME, dict(prompt_col="title",
                                           generation_config={"max_output_token": 10}),
                               "generation_config key 'max_output_token' is not a Gemini "
                               "generation setting; did you mean 'max_output_tokens'?"),
    "unknown camelCase Gemini setting": (FRAME, dict(prompt_col="title",
                                                     generation_config={"fooBar": 1}),
                                         "generation_config key 'fooBar' is not a Gemini "
                                         "generation setting; The settings are ["),
    "generation_config not a dict": (FRAME, dict(prompt_col="title", generation_config=[1]),
                                     "generation_config=[1]: pass a dict such as"),
    "generation_config not JSON": (FRAME, dict(prompt_col="title",
                                               generation_config={"temperature": object()}),
                                   "generation_config or safety_settings is not JSON-serialisable"),
    "safety_settings not a list of dicts": (FRAME, dict(prompt_col="title",
                                                        safety_settings={"a": 1}),
                                            "safety_settings={'a': 1}: pass a list of dicts"),
    "safety_settings for Claude": (FRAME, dict(prompt_col="title", model="claude-haiku-4-5",
                                               safety_settings=[{"category": "X"}]),
                                   "safety_settings is for Gemini models"),
    "bad label": (FRAME, dict(prompt_col="title", labels={"Team": "x"}),
                  "label 'Team': 'x' is not a valid Vertex AI label"),
    "bad on_invalid": (FRAME, dict(prompt_col="title", on_invalid="drop"),
                       "on_invalid='drop': choose one of ('raise', 'skip')"),
    "label value ending in a newline": (FRAME, dict(prompt_col="title", labels={"team": "x\n"}),
                                        "label 'team': 'x\\n' is not a valid Vertex AI label"),
    "carried name ending in a newline": (FRAME.assign(**{"n\n": [1, 2]}),
                                         dict(prompt_col="title", carry=["n\n"]),
                                         "carry: column 'n\\n' cannot be carried"),
    "result_prefix not a string": (FRAME, dict(prompt_col="title", result_prefix=5),
                                   "result_prefix=5: pass a string such as 'llm_', not a int"),
    "max_rows a bool": (FRAME, dict(prompt_col="title", max_rows=True),
                        "max_rows=True: pass a whole number, not a bool"),
    "carry a string": (FRAME, dict(prompt_col="title", carry="title"),
                       "carry='title': pass a list of column names, not a str"),
    "lone surrogate in a string[python] column": (
        pd.DataFrame({"p": pd.array(["fine", "bad \ud800 text"], dtype="string[python]")}),
        dict(prompt_col="p"), "row 1 (index 1): column 'p' is not valid Unicode text"),
}


@pytest.mark.parametrize("frame, kwargs, message", CASES.values(), ids=CASES.keys())
def test_bad_input_is_refused_before_anything_is_uploaded(frame, kwargs, message, staging,
                                                          nothing_happened):
    with pytest.raises(pdbatch.InputError) as err:
        frame.gemini.batch_predict(staging=staging, **kwargs)
    assert message in str(err.value)


def test_many_bad_rows_are_summarised():
    with pytest.raises(pdbatch.InputError, match=r"row 4 \(index 4\).*; and 3 more\."):
        pd.DataFrame({"p": [None] * 8}).gemini.batch_predict(prompt_col="p",
                                                              staging="gs://b-x/y")


STAGING = {
    "bq://proj.dataset.table": "staging='bq://proj.dataset.table' is not a BigQuery dataset",
    "s3://bucket/x": "staging='s3://bucket/x' is neither a Cloud Storage nor a BigQuery",
    "gs://": "'' is not a valid bucket name",
    "gs://UPPER/x": "'UPPER' is not a valid bucket name",
    "gs://bucket/../x": "without empty, '.' or '..' segments",
    "gs://bucket/a?b": "use a prefix of letters, digits",
    "gs://bucket/prefix\n": "use a prefix of letters, digits",
    "gs://bucket\n": "is not a valid bucket name",
    "bq://my-project.dataset\n": "is not a BigQuery dataset",
}


@pytest.mark.parametrize("staging_url, message", STAGING.items(), ids=STAGING.keys())
def test_bad_staging_location_is_refused(staging_url, message, nothing_happened):
    with pytest.raises(pdbatch.InputError) as err:
        FRAME.gemini.batch_predict(prompt_col="title", staging=staging_url)
    assert message in str(err.value)


def test_a_missing_bucket_is_refused_before_anything_is_uploaded(stack, nothing_happened):
    with pytest.raises(pdbatch.InputError, match=r"staging='gs://no-such-bucket-x/runs': the "
                       r"bucket 'no-such-bucket-x' does not exist .*gcloud storage buckets "
                       r"create gs://no-such-bucket-x --location=us-central1"):
        FRAME.gemini.batch_predict(prompt_col="title", staging="gs://no-such-bucket-x/runs")
    with pytest.raises(pdbatch.InputError, match="output='gs://no-such-bucket-x'"):
        FRAME.gemini.batch_predict(prompt_col="title", staging=f"gs://{stack.bucket}/t",
                                   output="gs://no-such-bucket-x")


@pytest.mark.parametrize("variable, message", [
    ("GOOGLE_CLOUD_PROJECT", "No Google Cloud project: pass project='my-project', set "
                             "GOOGLE_CLOUD_PROJECT, or sign in with application default "
                             "credentials that carry one"),
    ("GOOGLE_CLOUD_LOCATION", "No location: pass location='us-central1'"),
    ("PDBATCH_STAGING", "No staging location: pass staging='gs://my-bucket/prefix'"),
])
def test_missing_settings_are_refused(variable, message, monkeypatch, nothing_happened):
    monkeypatch.delenv(variable)
    kwargs = {} if variable == "PDBATCH_STAGING" else {"staging": "gs://b-x/y"}
    with pytest.raises(pdbatch.InputError) as err:
        FRAME.gemini.batch_predict(prompt_col="title", **kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize("kwargs, message", [
    (dict(project="bad project/../x"), "is not a valid Google Cloud project id"),
    (dict(project="my-project\n"), "is not a valid Google Cloud project id"),
    (dict(location="us-central1\n"), "is not a valid location"),
    (dict(location="us-central1/../x"), "is not a valid location"),
    (dict(api_endpoint="evil.com/path?x"), "must be a host[:port]"),
    (dict(transport="carrier-pigeon"), "choose one of ('rest', 'grpc')"),
])
def test_values_that_go_into_urls_are_checked(kwargs, message, staging, nothing_happened):
    with pytest.raises(pdbatch.InputError) as err:
        FRAME.gemini.batch_predict(prompt_col="title", staging=staging, **kwargs)
    assert message in str(err.value)


def test_the_project_of_application_default_credentials_is_used_when_none_is_given(
        staging, tmp_path, monkeypatch):
    """As in Colab Enterprise or with a service account key: no project= and no
    GOOGLE_CLOUD_PROJECT, yet the credentials name the project. (Against the local stack's
    plain-HTTP endpoints the credentials themselves are never sent.)"""
    import json

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()).decode()
    account = {"type": "service_account", "project_id": "adc-project-1", "private_key_id": "1",
               "private_key": key, "client_email": "pdbatch@adc-project-1.iam.gserviceaccount.com",
               "client_id": "1", "token_uri": "https://oauth2.googleapis.com/token"}
    (tmp_path / "key.json").write_text(json.dumps(account))
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "key.json"))
    monkeypatch.delenv("GOOGLE_CLOUD_PROJECT")
    run = FRAME.gemini.submit(prompt_col="title", staging=staging, progress=False)
    assert run.manifest.project == "adc-project-1"
    assert run.jobs[0].startswith("projects/adc-project-1/locations/")
    assert run.wait().state == "succeeded"


def test_a_mistyped_model_is_refused_with_a_did_you_mean_before_anything_is_uploaded(
        staging, nothing_happened):
    for typo, meant in (("gemini-2.5-flsh", "gemini-2.5-flash"),
                        ("claude-sonet-4-5", "claude-sonnet-4-5")):
        with pytest.raises(pdbatch.InputError, match=f"did you mean '{meant}'"):
            FRAME.gemini.batch_predict(prompt_col="title", staging=staging, model=typo)


def test_a_model_newer_than_pdbatchs_list_goes_through_with_a_warning(stack, staging, caplog,
                                                                       monkeypatch):
    # a service that serves a model pdbatch does not know of yet
    monkeypatch.setattr(stack.service, "models", stack.service.models | {"gemini-2.6-flash"})
    out = FRAME.gemini.batch_predict(prompt_col="title", staging=staging, progress=False,
                                     model="gemini-2.6-flash")
    assert (out["status"] == "ok").all()
    assert "model='gemini-2.6-flash' is not in pdbatch's list of batch models" in caplog.text
