"""Gemini on Vertex AI: request lines ``{"pdbatch_row": n, "request": GenerateContentRequest}``
and the parse of its output lines (spec §2.2, §3.1)."""

from __future__ import annotations

import gc
import re
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

from ..errors import InputError

#: The extra top-level field that carries a row's position; Vertex passes it through (spec §2.3).
ROW_KEY = "pdbatch_row"

_BARE_GEMINI = re.compile(r"^(?:models/)?(gemini-[A-Za-z0-9._-]+)$")
_PUBLISHER = re.compile(r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/google/models/[\w.@-]+$")
_TUNED = re.compile(r"^projects/[^/]+/locations/[^/]+/models/[\w-]+(?:@[\w-]+)?$")
#: Values whose keys are user data (a JSON schema's property names), never renamed.
_OPAQUE = {"responseSchema", "responseJsonSchema"}


def model_resource(model: str) -> str:
    """The job's ``model`` for a Gemini model name.

    ``gemini-2.5-flash`` and ``models/gemini-2.5-flash`` become
    ``publishers/google/models/gemini-2.5-flash``; publisher and tuned-model resource names are
    kept as given.
    """
    if isinstance(model, str):
        bare = _BARE_GEMINI.match(model)
        if bare:
            return f"publishers/google/models/{bare[1]}"
        if _PUBLISHER.match(model) or _TUNED.match(model):
            return model
    raise InputError(
        f"model={model!r} is not a Gemini model this version supports. Use a name like "
        "'gemini-2.5-flash', 'publishers/google/models/gemini-2.5-flash', or a tuned model "
        "'projects/P/locations/L/models/ID'."
    )


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def camel_case(value: Any) -> Any:
    """REST camelCase keys throughout (``max_output_tokens`` -> ``maxOutputTokens``), except
    inside a response schema, whose keys are the user's field names."""
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            name = _camel(str(key))
            out[name] = item if name in _OPAQUE else camel_case(item)
        return out
    if isinstance(value, (list, tuple)):
        return [camel_case(v) for v in value]
    return value


def _shared_fields(system_instruction: str | None, generation_config: Mapping | None) -> bytes:
    """The JSON of the request fields every row shares, as ``,"key":value`` pairs."""
    shared: dict[str, Any] = {}
    if system_instruction is not None:
        if not isinstance(system_instruction, str) or not system_instruction.strip():
            raise InputError("system_instruction must be a non-empty string.")
        shared["systemInstruction"] = {"parts": [{"text": system_instruction}]}
    if generation_config is not None:
        if not isinstance(generation_config, Mapping):
            raise InputError("generation_config must be a dict such as {'temperature': 0.2}; "
                             f"got {type(generation_config).__name__}.")
        shared["generationConfig"] = camel_case(generation_config)
    try:
        encoded = orjson.dumps(shared)
    except TypeError as exc:
        raise InputError(f"generation_config is not JSON-serialisable: {exc}.") from None
    return b"," + encoded[1:-1] if shared else b""


def request_lines(
    prompts: Iterable[str],
    keys: Iterable[int],
    system_instruction: str | None = None,
    generation_config: Mapping | None = None,
) -> list[bytes]:
    """One JSONL line (with newline) per prompt, carrying its row key."""
    tail = _shared_fields(system_instruction, generation_config) + b"}}\n"
    head = (b'{"' + ROW_KEY.encode()
            + b'":%d,"request":{"contents":[{"role":"user","parts":[{"text":')
    return [head % key + orjson.dumps(text) + b"}]}]" + tail
            for text, key in zip(prompts, keys, strict=True)]


def _text_and_reason(response: Mapping) -> tuple[str | None, str | None]:
    """The first candidate's answer text (thought parts left out) and its finish reason.

    A prompt blocked before generation has no candidate: its reason is the
    ``promptFeedback.blockReason`` (e.g. ``SAFETY``).
    """
    candidates = response.get("candidates") or []
    if not candidates:
        feedback = response.get("promptFeedback") or {}
        return None, feedback.get("blockReason")
    first = candidates[0]
    parts = (first.get("content") or {}).get("parts") or []
    texts = [p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought")]
    return ("".join(texts) if texts else None), first.get("finishReason")


#: The fields pdbatch keeps from each output line, in the order ``parse_lines`` returns them.
PARSED_FIELDS = ("key", "status", "processed_time", "text", "finish_reason", "prompt_tokens",
                 "output_tokens", "response")


def _fields(raw: bytes) -> tuple:
    line = orjson.loads(raw)
    key = line.get(ROW_KEY)
    response = line.get("response") or None
    text = reason = prompt_tokens = output_tokens = None
    if isinstance(response, Mapping):
        text, reason = _text_and_reason(response)
        usage = response.get("usageMetadata") or {}
        prompt_tokens = usage.get("promptTokenCount")
        output_tokens = usage.get("candidatesTokenCount")
    return (
        key if isinstance(key, int) and not isinstance(key, bool) else None,
        line.get("status") or "",
        line.get("processed_time") or "",
        text, reason, prompt_tokens, output_tokens, response,
    )


def parse_lines(lines: Iterable[bytes]) -> dict[str, tuple]:
    """The kept fields of every output line, as columns named by ``PARSED_FIELDS``.

    ``key`` is None for a line without an integer row key; ``response`` is the raw dict.
    """
    # The kept response dicts pile up; the cyclic GC would re-walk them again and again (2.5x
    # the parse time, benchmarks/RESULTS.md). Parsed JSON holds no reference cycles, so pausing
    # the collector while parsing frees nothing later than it would have been freed anyway.
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        rows = [_fields(raw) for raw in lines]
    finally:
        if was_enabled:
            gc.enable()
    columns = zip(*rows, strict=True) if rows else ((),) * len(PARSED_FIELDS)
    return dict(zip(PARSED_FIELDS, columns, strict=True))
