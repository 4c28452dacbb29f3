"""Llama/MaaS (OpenAI chat lines) and Claude (Anthropic lines) through the emulator: the lines
staged, as the spec shows them (§3.4, §3.5), and the answers in the same result columns."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from pdbatch import families

FRAME = pd.DataFrame({"prompt": ["q0", "hello there", "q2"]}, index=["a", "b", "a"])


def _staged(fs, staging: str) -> list[dict]:
    [path] = [p for p in fs.find(staging) if "/input-" in p]
    return [json.loads(line) for line in fs.cat(path).splitlines()]


def test_llama_maas_rows_become_chat_completion_lines(fs, staging, gapic):
    out = FRAME.gemini.batch_predict(
        prompt_col="prompt", model="llama-3.3-70b-instruct-maas", staging=staging,
        system_instruction="Be brief.", keep_staging=True, progress=False,
        generation_config={"temperature": 0.2, "max_output_tokens": 50, "stop_sequences": ["."]})

    assert _staged(fs, staging)[1] == {
        "custom_id": "1", "method": "POST", "url": "/v1/chat/completions",
        "body": {"model": "meta/llama-3.3-70b-instruct-maas", "temperature": 0.2,
                 "max_tokens": 50, "stop": ["."],
                 "messages": [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "hello there"}]}}
    assert out["text"].tolist() == [f"[system: Be brief.] echo: {p}" for p in FRAME["prompt"]]
    assert (out["finish_reason"] == "STOP").all() and (out["status"] == "ok").all()
    assert out["prompt_tokens"].tolist() == [1, 2, 1]
    assert out["output_tokens"].tolist() == [5, 6, 5]
    assert json.loads(out["response"].iloc[0])["object"] == "chat.completion"
    job = gapic.get_batch_prediction_job(name=out["job"].iloc[0])
    assert job.model == "publishers/meta/models/llama-3.3-70b-instruct-maas"


def test_claude_rows_become_anthropic_lines(fs, staging, gapic):
    out = FRAME.gemini.batch_predict(
        prompt_col="prompt", model="claude-sonnet-4-5@20250929", staging=staging,
        system_instruction="Be kind.", keep_staging=True, progress=False,
        generation_config={"temperature": 0.5})

    assert _staged(fs, staging)[1] == {
        "custom_id": "1",
        "request": {"anthropic_version": "vertex-2023-10-16", "max_tokens": 1024,
                    "temperature": 0.5, "system": "Be kind.",
                    "messages": [{"role": "user", "content": "hello there"}]}}
    assert out["text"].tolist() == [f"[system: Be kind.] echo: {p}" for p in FRAME["prompt"]]
    assert (out["finish_reason"] == "STOP").all()
    assert out["prompt_tokens"].tolist() == [1, 2, 1]
    assert json.loads(out["response"].iloc[1])["type"] == "message"
    job = gapic.get_batch_prediction_job(name=out["job"].iloc[0])
    assert job.model == "publishers/anthropic/models/claude-sonnet-4-5@20250929"


def test_failed_rows_of_other_families_map_to_codes(staging):
    out = FRAME.gemini.batch_predict(prompt_col="prompt", model="qwen3-235b-a22b-maas",
                                     staging=staging, progress=False,
                                     labels={"emulator-row-errors": "429-100"})
    assert (out["error_code"] == 429).all() and out["text"].isna().all()


@pytest.mark.parametrize("model, family, resource", [
    ("gemini-2.5-flash", "gemini", "publishers/google/models/gemini-2.5-flash"),
    ("models/gemini-2.0-flash-001", "gemini", "publishers/google/models/gemini-2.0-flash-001"),
    ("projects/p/locations/us-central1/models/123", "gemini",
     "projects/p/locations/us-central1/models/123"),
    ("llama-3.3-70b-instruct-maas", "openai",
     "publishers/meta/models/llama-3.3-70b-instruct-maas"),
    ("meta/llama-4-maverick-17b-128e-instruct-maas", "openai",
     "publishers/meta/models/llama-4-maverick-17b-128e-instruct-maas"),
    ("deepseek-r1-0528-maas", "openai", "publishers/deepseek-ai/models/deepseek-r1-0528-maas"),
    ("publishers/qwen/models/qwen3-235b-a22b-instruct-2507-maas", "openai",
     "publishers/qwen/models/qwen3-235b-a22b-instruct-2507-maas"),
    ("claude-haiku-4-5@20251001", "anthropic",
     "publishers/anthropic/models/claude-haiku-4-5@20251001"),
    ("projects/p/locations/us-east5/publishers/anthropic/models/claude-opus-4-1", "anthropic",
     "projects/p/locations/us-east5/publishers/anthropic/models/claude-opus-4-1"),
])
def test_model_names_resolve_to_their_family(model, family, resource):
    resolved = families.resolve(model)
    assert (resolved.name, resolved.resource) == (family, resource)
