"""batch_predict end to end: real gcsfs and JobServiceClient against the local services."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import pdbatch
from pdbatch.emulator.responder import echo_text
from pdbatch.tasks.generate import GENERATE

RESULT_COLUMNS = GENERATE.result_columns


def _frame(n: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    words = np.array(["alpha", "béta", "東京", "😀", '"quoted"', "back\\slash", "new\nline", "z"])
    prompts = [" ".join(rng.choice(words, size=rng.integers(1, 6))) + f" #{i}" for i in range(n)]
    index = rng.integers(0, n // 10 + 1, size=n)  # many duplicate labels, not sorted
    return pd.DataFrame({"prompt": prompts, "n": np.arange(n)}, index=pd.Index(index, name="k"))


def _expected_text(prompt: str, system: str | None = None) -> str:
    request = {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
    if system:
        request["systemInstruction"] = {"parts": [{"text": system}]}
    return echo_text(request)


def test_10k_rows_with_duplicate_index_come_back_each_with_its_own_answer(stack, staging):
    df = _frame(10_000)
    assert df.index.has_duplicates

    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)

    pd.testing.assert_index_equal(out.index, df.index)
    pd.testing.assert_frame_equal(out[df.columns], df)
    assert (out["status"] == "ok").all()
    assert out["text"].tolist() == [_expected_text(p) for p in df["prompt"]]
    assert (out["finish_reason"] == "STOP").all()
    assert out["prompt_tokens"].tolist() == [len(p.split()) for p in df["prompt"]]
    assert (out["output_tokens"] > 0).all()
    assert out["error_code"].isna().all() and out["error_message"].isna().all()
    assert out["job"].str.startswith(f"projects/{stack.project}/locations/").all()
    assert out["job"].nunique() == 1
    assert json.loads(out["response"].iloc[0])["candidates"][0]["content"]["parts"][0]["text"] == \
        out["text"].iloc[0]
    assert {c: str(out[c].dtype) for c in RESULT_COLUMNS} == RESULT_COLUMNS  # the documented dtypes


def test_staged_lines_are_gemini_requests_with_row_keys(fs, staging):
    df = pd.DataFrame({"title": ["Dune", "Emma"], "author": ["Herbert", "Austen"]},
                      index=["x", "y"])
    schema = {"type": "object", "properties": {"blurb_text": {"type": "string"}}}
    out = df.gemini.batch_predict(
        prompt="Blurb for {title} by {author}.", staging=staging, progress=False,
        keep_staging=True, system_instruction="You are a bookseller.",
        generation_config={"temperature": 0.2, "max_output_tokens": 64,
                           "response_mime_type": "application/json", "response_schema": schema},
        safety_settings=[{"category": "HARM_CATEGORY_HATE_SPEECH",
                          "threshold": "BLOCK_ONLY_HIGH"}],
    )

    [input_file] = [p for p in fs.find(staging) if p.endswith("input-00000.jsonl")]
    lines = [json.loads(line) for line in fs.cat(input_file).splitlines()]
    assert lines == [
        {"pdbatch_row": pos, "request": {
            "contents": [{"role": "user", "parts": [{"text": f"Blurb for {t} by {a}."}]}],
            "systemInstruction": {"parts": [{"text": "You are a bookseller."}]},
            "generationConfig": {"temperature": 0.2, "maxOutputTokens": 64,
                                 "responseMimeType": "application/json",
                                 "responseSchema": schema},
            "safetySettings": [{"category": "HARM_CATEGORY_HATE_SPEECH",
                                "threshold": "BLOCK_ONLY_HIGH"}],
        }}
        for pos, (t, a) in enumerate(zip(df["title"], df["author"], strict=True))
    ]
    # Asked for JSON with a schema, the emulator answers JSON of that schema.
    assert json.loads(out.loc["y", "text"]) == {
        "blurb_text": _expected_text("Blurb for Emma by Austen.", "You are a bookseller.")}


def test_a_frame_larger_than_the_job_limit_is_split_into_several_jobs(fs, staging):
    df = _frame(10)
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                  max_requests_per_job=4, keep_staging=True)
    assert out["job"].nunique() == 3
    assert out.groupby("job", sort=False).size().tolist() == [4, 4, 2]
    assert out["text"].tolist() == [_expected_text(p) for p in df["prompt"]]
    inputs = [p for p in fs.find(staging) if "/input-" in p]
    assert len(inputs) == 3
    assert fs.info(inputs[0])["metadata"] == {"pdbatch-run": out.attrs["pdbatch_run"]}


def test_a_shard_whose_escaped_lines_outgrow_the_byte_limit_is_split(fs, staging, monkeypatch):
    # Planned from each prompt's size, these 8 rows fit one 2,000-byte file; with every quote
    # escaped they do not, so the staged shard is split again before upload.
    monkeypatch.setattr(pdbatch.plan, "MAX_BYTES_PER_FILE", 2_000)
    df = pd.DataFrame({"prompt": [f'{i} ' + '"' * 100 for i in range(8)]})
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                  keep_staging=True)
    inputs = [p for p in fs.find(staging) if "/input-" in p]
    assert len(inputs) == out["job"].nunique() > 1
    assert all(fs.size(p) <= 2_000 for p in inputs)
    assert out["text"].tolist() == [_expected_text(p) for p in df["prompt"]]


def test_staged_inputs_are_removed_after_a_successful_run_and_outputs_kept(fs, staging):
    df = pd.DataFrame({"prompt": ["a", "b", "c"]})
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                  max_requests_per_job=2)
    assert (out["status"] == "ok").all() and out["job"].nunique() == 2
    files = fs.find(staging)
    assert not [f for f in files if "/input-" in f]
    assert len([f for f in files if f.endswith("/predictions.jsonl")]) == 2


def test_skipped_rows_come_back_with_a_status_and_are_not_sent(fs, staging):
    df = pd.DataFrame({"prompt": ["one", None, "  ", 42, "five"]}, index=[3, 3, 1, 0, 9])
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, on_invalid="skip",
                                  progress=False, keep_staging=True)
    assert out["status"].tolist() == [
        "ok", "skipped: column 'prompt' is null", "skipped: column 'prompt' is empty",
        "skipped: column 'prompt' is a int, not a string", "ok",
    ]
    assert out["text"].tolist()[::4] == [_expected_text("one"), _expected_text("five")]
    assert out["text"].iloc[1:4].isna().all() and out["job"].iloc[1:4].isna().all()
    [input_file] = [p for p in fs.find(staging) if "/input-" in p]
    assert [json.loads(x)["pdbatch_row"] for x in fs.cat(input_file).splitlines()] == [0, 4]


def test_when_every_row_is_skipped_no_job_is_created(stack, staging, uploaded, gapic, parent):
    before = len(list(gapic.list_batch_prediction_jobs(parent=parent)))
    df = pd.DataFrame({"prompt": [None, ""]})
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, on_invalid="skip")
    assert out["status"].str.startswith("skipped: ").all()
    assert uploaded() == []
    assert len(list(gapic.list_batch_prediction_jobs(parent=parent))) == before


def test_the_response_column_can_be_left_out(staging):
    df = pd.DataFrame({"prompt": ["a", "b"], "response": ["mine", "also mine"]})
    with pytest.raises(pdbatch.InputError, match=r"\['response'\]"):
        df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                  include_response=False)
    assert out["response"].tolist() == ["mine", "also mine"]
    assert out["text"].tolist() == [_expected_text("a"), _expected_text("b")]
    assert list(out.columns[:2]) == ["prompt", "response"] and "job" in out.columns


def test_result_prefix_keeps_existing_columns(staging):
    df = pd.DataFrame({"text": ["hello there"]})
    out = df.gemini.batch_predict(prompt_col="text", staging=staging, result_prefix="llm_",
                                  progress=False)
    assert out["text"].tolist() == ["hello there"]
    assert out["llm_text"].tolist() == [_expected_text("hello there")]
    assert out["llm_status"].tolist() == ["ok"]


def test_empty_frame_returns_empty_result_columns(staging, uploaded):
    out = pd.DataFrame({"prompt": pd.Series([], dtype=str)}).gemini.batch_predict(
        prompt_col="prompt", staging=staging)
    assert len(out) == 0 and uploaded() == []
    assert {c: str(out[c].dtype) for c in RESULT_COLUMNS} == RESULT_COLUMNS


@pytest.fixture
def custom_responder(stack):
    """Switch the emulator to a responder that blocks, thinks or fails on cue."""

    def respond(request: dict) -> dict:
        text = request["contents"][0]["parts"][0]["text"]
        if text == "fail":
            raise RuntimeError("the model server fell over")
        if text == "block":
            return {"promptFeedback": {"blockReason": "SAFETY"},
                    "usageMetadata": {"promptTokenCount": 1}}
        parts = [{"text": "pondering...", "thought": True}, {"text": "Four"}, {"text": "."}]
        return {"candidates": [{"content": {"role": "model", "parts": parts},
                                "finishReason": "MAX_TOKENS"}],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2,
                                  "thoughtsTokenCount": 7, "cachedContentTokenCount": 1}}

    original = stack.service.responder
    stack.service.responder = respond
    yield
    stack.service.responder = original


def test_failed_blocked_and_thinking_rows_map_to_columns(staging, custom_responder):
    df = pd.DataFrame({"prompt": ["fail", "block", "2+2?"]})
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)

    failed, blocked, thought = (out.iloc[i] for i in range(3))
    assert failed["status"].startswith("Internal Server Error: {")
    assert failed["error_code"] == 500
    assert failed["error_message"] == "the model server fell over"
    assert pd.isna(failed["text"]) and pd.isna(failed["response"])

    assert blocked["status"] == "ok" and pd.isna(blocked["text"])
    assert blocked["finish_reason"] == "SAFETY" and blocked["prompt_tokens"] == 1

    assert thought["text"] == "Four." and thought["finish_reason"] == "MAX_TOKENS"
    assert (thought["prompt_tokens"], thought["output_tokens"]) == (3, 2)
    # thinking and cached tokens, billed apart, have columns of their own
    assert (thought["thought_tokens"], thought["cached_tokens"]) == (7, 1)
    assert pd.isna(blocked["thought_tokens"]) and str(out["cached_tokens"].dtype) == "Int64"


def test_a_failed_job_raises_with_the_jobs_error(staging):
    df = pd.DataFrame({"prompt": ["a", "b"]})
    with pytest.raises(pdbatch.JobError) as err:
        df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                labels={"emulator-fault": "job-failed"})
    message = str(err.value)
    assert "1 of 1 batch job(s) ended without results" in message
    assert "JOB_STATE_FAILED: Internal error (injected by the emulator's job-failed fault)" \
        in message and "(code 13)" in message
    assert staging in message


def test_identical_requests_are_sent_once_and_answered_for_every_row(fs, staging):
    df = pd.DataFrame({"prompt": ["same", "other", "same", None, "other", "same"]},
                      index=[1, 1, 2, 3, 4, 5])
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                  on_invalid="skip", keep_staging=True)
    [input_file] = [p for p in fs.find(staging) if "/input-" in p]
    staged = [json.loads(x)["pdbatch_row"] for x in fs.cat(input_file).splitlines()]
    assert staged == [0, 1]
    assert out["text"].tolist()[:3] == [_expected_text("same"), _expected_text("other"),
                                         _expected_text("same")]
    assert pd.isna(out["text"].iloc[3]) and out["status"].iloc[3].startswith("skipped: ")
    assert out["text"].tolist()[4:] == [_expected_text("other"), _expected_text("same")]
    assert out["job"].iloc[[0, 1, 2, 4, 5]].nunique() == 1

    every = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                    on_invalid="skip", keep_staging=True, dedup=False)
    assert every["text"].equals(out["text"])
    inputs = [p for p in fs.find(staging) if "/input-" in p and p != input_file]
    assert len(fs.cat(inputs[0]).splitlines()) == 5


def test_a_repeated_request_that_failed_fails_for_every_row_that_asked_it(staging):
    df = pd.DataFrame({"prompt": ["x", "x", "y"]})
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                  labels={"emulator-row-errors": "500-100"})
    assert out["error_code"].tolist() == [500, 500, 500]
    assert out["status"].str.startswith("Internal Server Error: ").all()
