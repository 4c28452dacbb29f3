"""Per-row generation settings from columns (Gemini)."""

from __future__ import annotations

import json

import pandas as pd
import pytest

import pdbatch


def test_settings_from_columns_go_into_each_rows_generation_config(fs, staging):
    df = pd.DataFrame({"prompt": ["a", "b"], "temp": [0.1, 0.9], "budget": [10, 200]})
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                  keep_staging=True, generation_config={"top_p": 0.5},
                                  config_cols={"temperature": "temp",
                                               "maxOutputTokens": "budget"})
    assert (out["status"] == "ok").all()
    [path] = [p for p in fs.find(staging) if "/input-" in p]
    configs = [json.loads(x)["request"]["generationConfig"] for x in fs.cat(path).splitlines()]
    assert configs == [{"topP": 0.5, "temperature": 0.1, "maxOutputTokens": 10},
                       {"topP": 0.5, "temperature": 0.9, "maxOutputTokens": 200}]


def test_settings_from_columns_alone(fs, staging):
    df = pd.DataFrame({"prompt": ["a"], "temp": [0.3]})
    df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                            keep_staging=True, system_instruction="Be brief.",
                            config_cols={"temperature": "temp"})
    [path] = [p for p in fs.find(staging) if "/input-" in p]
    request = json.loads(fs.cat(path))["request"]
    assert request["generationConfig"] == {"temperature": 0.3}
    assert request["systemInstruction"] == {"parts": [{"text": "Be brief."}]}


def test_bad_settings_are_refused_before_anything_is_uploaded(staging, uploaded):
    df = pd.DataFrame({"prompt": ["a", "b", "c"], "temp": [0.2, None, 0.3],
                       "budget": [10, 20.5, 30]})
    cases = [
        (dict(config_cols={"temperature": "temp"}),
         "row 1 (index 1): config column 'temp' (temperature) is not a number"),
        (dict(config_cols={"max_output_tokens": "budget"}),
         "row 1 (index 1): config column 'budget' (max_output_tokens) is not a whole number"),
        (dict(config_cols={"response_mime_type": "temp"}), "cannot be set per row"),
        (dict(config_cols={"temperature": "nope"}), "'nope' is not a column"),
        (dict(config_cols={"temperature": "temp"}, generation_config={"temperature": 1}),
         "pass it once"),
        (dict(config_cols={"temperature": "temp"}, model="claude-haiku-4-5"),
         "config_cols is supported for Gemini models"),
    ]
    for kwargs, message in cases:
        with pytest.raises(pdbatch.InputError) as err:
            df.gemini.batch_predict(prompt_col="prompt", staging=staging, **kwargs)
        assert message in str(err.value), (kwargs, str(err.value))
    assert uploaded() == []
