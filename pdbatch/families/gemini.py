"""Gemini on Vertex AI: request lines ``{"pdbatch_row": n, "request": GenerateContentRequest}``
and the parse of its output lines (spec §2.2, §3.1)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

import orjson

from ..errors import InputError
from ..identifiers import whole
from ..tasks.generate import GENERATE
from .lines import Frame, Parser, camel_key, snake_key

#: The extra top-level field that carries a row's position; Vertex passes it through (spec §2.3).
ROW_KEY = "pdbatch_row"

_BARE_GEMINI = re.compile(r"^(?:models/)?(gemini-[A-Za-z0-9._-]+)$")
_PLACE = r"projects/[a-z0-9.:-]+/locations/[a-z0-9-]+/"
_PUBLISHER = re.compile(rf"(?:{_PLACE})?publishers/google/models/gemini-[A-Za-z0-9_.@-]+")
_TUNED = re.compile(rf"{_PLACE}models/[A-Za-z0-9_-]+(?:@[A-Za-z0-9_-]+)?")
#: The fields of Vertex AI's GenerationConfig (google-cloud-aiplatform 2.7:
#: ``aiplatform_v1.types.GenerationConfig``, plus ``model_config`` of v1beta1), snake_case.
CONFIG_FIELDS = frozenset({
    "audio_timestamp", "candidate_count", "frequency_penalty", "image_config", "logprobs",
    "max_output_tokens", "media_resolution", "model_config", "presence_penalty",
    "response_json_schema", "response_logprobs", "response_mime_type", "response_modalities",
    "response_schema", "routing_config", "seed", "speech_config", "stop_sequences",
    "temperature", "thinking_config", "top_k", "top_p"})
#: Values whose keys are user data (a JSON schema's property names), never renamed.
_OPAQUE = {"responseSchema", "responseJsonSchema"}


def model_resource(model: str) -> str | None:
    """The job's ``model`` for a Gemini model name, or None if it is not one.

    ``gemini-2.5-flash`` and ``models/gemini-2.5-flash`` become
    ``publishers/google/models/gemini-2.5-flash``; publisher and tuned-model resource names are
    kept as given.
    """
    bare = whole(_BARE_GEMINI, model)
    if bare:
        return f"publishers/google/models/{bare[1]}"
    if whole(_PUBLISHER, model) or whole(_TUNED, model):
        return model
    return None


def camel_case(value: Any) -> Any:
    """REST camelCase keys throughout (``max_output_tokens`` -> ``maxOutputTokens``), except
    inside a response schema, whose keys are the user's field names."""
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            name = camel_key(str(key))
            out[name] = item if name in _OPAQUE else camel_case(item)
        return out
    if isinstance(value, (list, tuple)):
        return [camel_case(v) for v in value]
    return value


def check_config_keys(generation_config: Mapping) -> None:
    """Refuse a ``generation_config`` key that is not a GenerationConfig field (the service
    would fail every row), with the nearest field names."""
    for key in generation_config:
        name = snake_key(str(key))
        if name not in CONFIG_FIELDS:
            near = difflib.get_close_matches(name, sorted(CONFIG_FIELDS), n=2)
            hint = f"did you mean {' or '.join(repr(n) for n in near)}? " if near else ""
            raise InputError(f"generation_config key {key!r} is not a Gemini generation "
                             f"setting; {hint}The settings are {sorted(CONFIG_FIELDS)}.")


def shared_fields(system_instruction: str | None, generation_config: Mapping | None,
                  safety_settings: list | None = None) -> str:
    """The request fields every row shares, as JSON text of ``,"key":value`` pairs ("" if none)."""
    shared: dict[str, Any] = {}
    if system_instruction is not None:
        shared["systemInstruction"] = {"parts": [{"text": system_instruction}]}
    if generation_config is not None:
        check_config_keys(generation_config)
        shared["generationConfig"] = camel_case(generation_config)
    if safety_settings is not None:
        if not (isinstance(safety_settings, (list, tuple))
                and all(isinstance(s, Mapping) for s in safety_settings)):
            raise InputError("safety_settings must be a list of dicts such as [{'category': "
                             "'HARM_CATEGORY_HATE_SPEECH', 'threshold': 'BLOCK_ONLY_HIGH'}].")
        shared["safetySettings"] = camel_case(list(safety_settings))
    try:
        encoded = orjson.dumps(shared).decode()
    except TypeError as exc:
        raise InputError(f"generation_config or safety_settings is not JSON-serialisable: "
                         f"{exc}.") from None
    return "," + encoded[1:-1] if shared else ""


def frame(system_instruction: str | None, generation_config: Mapping | None,
          safety_settings: list | None = None, row_config: bool = False) -> Frame:
    """``{"pdbatch_row": n, "request": {"contents": [...], <shared fields>}}`` around each
    prompt; with ``row_config``, ``generationConfig`` comes last and is left open for each
    row's own items."""
    head = '{"' + ROW_KEY + '":'
    mid = ',"request":{"contents":[{"role":"user","parts":[{"text":'
    if not row_config:
        return Frame(head, mid, close_part="}", tail="]}]" + shared_fields(
            system_instruction, generation_config, safety_settings) + "}")
    config = shared_fields(None, generation_config or {})  # ,"generationConfig":{...}
    return Frame(head, mid, close_part="}",
                 tail="]}]" + shared_fields(system_instruction, None, safety_settings)
                 + config[:-1],
                 config_tail="}}")


#: Only what the friendly columns need is typed; the rest of a response stays JSON text.
PARSER = Parser(
    key=ROW_KEY,
    key_type="JSON",
    # A pass-through field may come back as a number or as text: both are read.
    key_expr=("CASE WHEN json_type({key}) IN ('UBIGINT', 'BIGINT') THEN {key}::BIGINT "
              "WHEN json_type({key}) = 'VARCHAR' "
              "THEN TRY_CAST(json_extract_string({key}, '$') AS BIGINT) END"),
    response_type=(
        "STRUCT(candidates STRUCT(content STRUCT(parts STRUCT(text VARCHAR, thought BOOLEAN)[]), "
        "finishReason VARCHAR)[], promptFeedback STRUCT(blockReason VARCHAR), "
        "usageMetadata STRUCT(promptTokenCount BIGINT, candidatesTokenCount BIGINT, "
        "thoughtsTokenCount BIGINT, cachedContentTokenCount BIGINT))"),
    # The first candidate's text parts, thought parts left out.
    answer=(", list_filter(r.candidates[1].content.parts, lambda p: p.text IS NOT NULL "
            "AND NOT coalesce(p.thought, false)) AS parts"),
    task=GENERATE,
    fields=GENERATE.expressions(
        text=("CASE WHEN len(parts) > 0 THEN array_to_string(list_transform(parts, "
              "lambda p: p.text), '') END"),
        # A prompt blocked before generation has no candidate, only promptFeedback.
        finish_reason=("CASE WHEN len(r.candidates) > 0 THEN r.candidates[1].finishReason "
                       "ELSE r.promptFeedback.blockReason END"),
        prompt_tokens="r.usageMetadata.promptTokenCount",
        output_tokens="r.usageMetadata.candidatesTokenCount",
        thought_tokens="r.usageMetadata.thoughtsTokenCount",
        cached_tokens="r.usageMetadata.cachedContentTokenCount"
    ),
)
