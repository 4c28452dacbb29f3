"""Structured output: a response schema in every request, answers in typed columns."""

from __future__ import annotations

import json
import re

import pandas as pd
import pytest
from pydantic import BaseModel

import pdbatch
from pdbatch.emulator import BatchService


class Review(BaseModel):
    sentiment: str
    stars: int
    score: float | None = None
    tags: list[str]


FRAME = pd.DataFrame({"text": ["Great value!", "Arrived broken.", "Fine."]}, index=[5, 5, 2])


def test_a_pydantic_model_becomes_typed_columns(fs, staging):
    out = FRAME.gemini.batch_predict(prompt="Review: {text}", response_schema=Review,
                                     staging=staging, keep_staging=True, progress=False,
                                     result_prefix="llm_")
    [path] = [p for p in fs.find(staging) if "/input-" in p]
    config = json.loads(fs.cat(path).splitlines()[0])["request"]["generationConfig"]
    assert config == {"responseMimeType": "application/json",
                      "responseJsonSchema": Review.model_json_schema()}
    assert (out["llm_status"] == "ok").all()
    # The emulator answers schema-shaped JSON with the echo text in string fields.
    assert out["llm_sentiment"].tolist() == [f"echo: Review: {t}" for t in FRAME["text"]]
    assert out["llm_stars"].tolist() == [4, 4, 3]  # the echo's word count
    assert out["llm_score"].tolist() == [4.5, 4.5, 3.5]
    assert out["llm_tags"].tolist() == [[s] for s in out["llm_sentiment"]]
    assert {c: str(out[c].dtype) for c in ("llm_sentiment", "llm_stars", "llm_score")} == {
        "llm_sentiment": "string", "llm_stars": "Int64", "llm_score": "Float64"}


def test_expand_false_gives_one_column_of_dicts(staging):
    schema = {"type": "object", "properties": {"label": {"type": "string"}},
              "required": ["label"]}
    out = FRAME.gemini.batch_predict(prompt="Review: {text}", response_schema=schema,
                                     expand=False, staging=staging, progress=False,
                                     result_prefix="llm_")
    assert out["llm_parsed"].tolist() == [{"label": f"echo: Review: {t}"} for t in FRAME["text"]]


@pytest.fixture
def sloppy_model(stack):
    """A model that answers the first ask of "Fine." badly and everything else well."""
    seen = set()

    def respond(request):
        text = request["contents"][0]["parts"][0]["text"]
        answer = {"sentiment": "ok", "stars": 4, "tags": []}
        if text.endswith("Fine.") and text not in seen:
            seen.add(text)
            answer = {"sentiment": "ok", "stars": "four", "tags": []}
        if text.endswith("broken."):
            answer = "not json at all"
        body = answer if isinstance(answer, str) else json.dumps(answer)
        return {"candidates": [{"content": {"parts": [{"text": body}]}, "finishReason": "STOP"}]}

    stack.service.responder = respond
    yield seen
    stack.service.responder = BatchService.responder


def test_answers_that_do_not_fit_get_a_status_and_can_be_asked_again(staging, sloppy_model):
    out = FRAME.gemini.batch_predict(prompt="Review: {text}", response_schema=Review,
                                     staging=staging, progress=False, result_prefix="llm_")
    assert out["llm_status"].tolist() == [
        "ok", "invalid: the answer is not JSON (response_schema)",
        "invalid: field 'stars' is not an integer (response_schema)"]
    assert out["llm_stars"].isna().tolist() == [False, True, True]

    # The same call re-attaches to the first run (its answers are not paid for twice) and
    # asks the invalid rows again; "Fine." is answered well the second time.
    again = FRAME.gemini.batch_predict(prompt="Review: {text}", response_schema=Review,
                                       staging=staging, progress=False, result_prefix="llm_",
                                       reask_invalid=True)
    assert again["llm_status"].tolist() == [
        "ok", "invalid: the answer is not JSON (response_schema)", "ok"]
    assert again["llm_stars"].tolist()[2] == 4
    assert again["llm_job"].iloc[2] != again["llm_job"].iloc[0]  # answered by a second job
    assert again["llm_job"].iloc[1] == again["llm_job"].iloc[2]  # both were asked again


def test_schema_checks_before_anything_is_uploaded(staging, uploaded):
    cases = [
        (dict(response_schema=[1]), "response_schema must be a pydantic model class"),
        (dict(response_schema={"type": "array"}), "must describe a JSON object with properties"),
        (dict(response_schema=Review, generation_config={"response_mime_type": "text/plain"}),
         "pass the schema once, as response_schema="),
        (dict(response_schema=Review, model="claude-haiku-4-5"),
         "response_schema is supported for Gemini models in this version"),
        (dict(response_schema={"type": "object", "properties": {"status": {"type": "string"}}}),
         "response_schema fields ['llm_status'] would be named like other result columns"),
        (dict(response_schema={"type": "object", "properties": {"prompt": {"type": "string"}}},
              expand=True), "The frame already has column(s) ['llm_prompt']"),
    ]
    for kwargs, message in cases:
        with pytest.raises(pdbatch.InputError, match=re.escape(message)):
            FRAME.assign(llm_prompt="x").gemini.batch_predict(
                prompt="{text}", staging=staging, progress=False, result_prefix="llm_", **kwargs)
    assert uploaded() == []


def test_answers_are_validated_against_the_whole_schema(staging):
    # The emulator answers an integer field with the echo's word count (3 here) and a string
    # field with the echo text: a maximum of 2 and a pattern both fail, the enum passes.
    schema = {"type": "object", "required": ["label", "count", "tag"],
              "properties": {"label": {"type": "string", "enum": ["a", "b"]},
                             "count": {"type": "integer", "maximum": 2},
                             "tag": {"type": "string"}}}
    df = pd.DataFrame({"prompt": ["one two", "three"]})
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                  response_schema=schema)
    assert out["status"].tolist() == [
        "invalid: field 'count': 3 is greater than the maximum of 2 (response_schema)", "ok"]
    assert out["label"].tolist()[1] == "a" and pd.isna(out["count"].iloc[0])

    patterned = {**schema, "properties": {**schema["properties"],
                                         "count": {"type": "integer"},
                                         "tag": {"type": "string", "pattern": "^x+$"}}}
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                  response_schema=patterned)
    assert out["status"].str.startswith("invalid: field 'tag': ").all()
    assert out["status"].str.contains("does not match '^x+$'", regex=False).all()


def test_the_developer_api_gets_the_schema_in_its_openapi_form():
    """On service="gemini-api" the schema goes as responseSchema (the batch mode mishandles
    responseJsonSchema, ruby_llm #894): references inlined, null options as nullable."""
    from enum import Enum
    from typing import Literal

    from pdbatch.structured import generation_config, openapi_schema, schema_of

    class Colour(str, Enum):
        red = "red"
        blue = "blue"

    class Part(BaseModel):
        name: str
        weight: float | None = None

    class Answer(BaseModel):
        colour: Colour
        kind: Literal["a"]
        parts: list[Part]
        count: int

    converted = openapi_schema(Answer.model_json_schema())
    assert converted == {
        "title": "Answer", "required": ["colour", "kind", "parts", "count"], "type": "OBJECT",
        "properties": {
            "colour": {"title": "Colour", "enum": ["red", "blue"], "type": "STRING"},
            "kind": {"title": "Kind", "type": "STRING", "enum": ["a"]},
            "parts": {"title": "Parts", "type": "ARRAY", "items": {
                "title": "Part", "required": ["name"], "type": "OBJECT",
                "properties": {"name": {"title": "Name", "type": "STRING"},
                               "weight": {"title": "Weight", "default": None,
                                          "type": "NUMBER", "nullable": True}},
                "propertyOrdering": ["name", "weight"]}},
            "count": {"title": "Count", "type": "INTEGER"}},
        "propertyOrdering": ["colour", "kind", "parts", "count"]}
    config = generation_config({"temperature": 0}, schema_of(Answer), openapi=True)
    assert config["response_schema"] == converted and "response_json_schema" not in config

    class Tree(BaseModel):
        children: list[Tree]

    with pytest.raises(pdbatch.InputError, match="refers to itself"):
        openapi_schema(Tree.model_json_schema())
