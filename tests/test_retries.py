"""Failed rows asked again (max_retries), through the emulator's row-error faults."""

from __future__ import annotations

import pandas as pd

FRAME = pd.DataFrame({"prompt": [f"question {i}" for i in range(60)]})


def test_transient_failures_are_asked_again_until_answered(staging):
    once = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                      labels={"emulator-row-errors": "429-30_500-10"})
    failed_once = int((once["status"] != "ok").sum())
    assert failed_once > 5 and "attempts" not in once.columns

    out = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                     labels={"emulator-row-errors": "429-30_500-10"},
                                     max_retries=6)
    failed = out["status"] != "ok"
    assert failed.sum() <= 3 < failed_once  # each pass is a new job, which fails other rows
    answered = out[~failed]
    assert answered["text"].tolist() == [f"echo: {p}" for p in answered["prompt"]]
    assert out["attempts"].min() == 1 and out["attempts"].max() > 1
    assert (out.loc[out["attempts"] > 1, "job"] != out["job"].mode()[0]).all()


def test_retries_stop_when_a_pass_answers_nothing(staging):
    out = FRAME.iloc[:5].gemini.batch_predict(prompt_col="prompt", staging=staging,
                                              progress=False, max_retries=5,
                                              labels={"emulator-row-errors": "500-100"})
    assert (out["error_code"] == 500).all()
    assert out["attempts"].tolist() == [2] * 5  # one retry pass, then no progress: stop


def test_bad_requests_are_not_asked_again(staging):
    out = FRAME.iloc[:4].gemini.batch_predict(prompt_col="prompt", staging=staging,
                                              progress=False, max_retries=3,
                                              labels={"emulator-row-errors": "400-100"})
    assert (out["error_code"] == 400).all() and out["attempts"].tolist() == [1] * 4
