"""The emulator's default responder: a deterministic answer derived from the request.

The answer quotes the request's text, so a test can prove that every row got the answer to
its own request (a cross-wired join shows up as a mismatch). When the request asks for JSON
(``responseMimeType: application/json``), the answer is JSON that fits its ``responseSchema``
(OpenAPI subset) or ``responseJsonSchema``, with the echo text in its string fields.
"""

from __future__ import annotations

import json
from typing import Any

MODEL_VERSION = "pdbatch-emulator-1"


def _texts(content: Any) -> list[str]:
    """The text parts of one Content (camelCase or snake_case keys both accepted)."""
    if not isinstance(content, dict):
        return []
    parts = content.get("parts") or []
    return [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]


def echo_text(request: dict) -> str:
    """The answer text for a Gemini request: ``[system: S] echo: <user text>``."""
    system = request.get("systemInstruction") or request.get("system_instruction")
    user = [t for c in request.get("contents") or [] for t in _texts(c)]
    prefix = f"[system: {' '.join(_texts(system))}] " if system else ""
    return f"{prefix}echo: {' '.join(user)}"


def _count_tokens(text: str) -> int:
    return len(text.split())


def _config(request: dict, camel: str, snake: str) -> Any:
    config = request.get("generationConfig") or request.get("generation_config") or {}
    return config.get(camel, config.get(snake))


def json_answer(request: dict, echo: str) -> str | None:
    """JSON fitting the request's response schema, or None when it does not ask for JSON."""
    if _config(request, "responseMimeType", "response_mime_type") != "application/json":
        return None
    schema = (_config(request, "responseJsonSchema", "response_json_schema")
              or _config(request, "responseSchema", "response_schema"))
    if not isinstance(schema, dict):
        return json.dumps({"text": echo}, ensure_ascii=False)
    return json.dumps(_instance(schema, schema, echo, len(echo.split())), ensure_ascii=False)


def _instance(schema: dict, root: dict, echo: str, number: int) -> Any:
    """A deterministic value of ``schema``: every property, one array item, the first enum
    value or ``anyOf``/``oneOf`` option, strings holding the echo text."""
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target = root
        for key in ref[2:].split("/"):
            target = target[key]
        return _instance(target, root, echo, number)
    if schema.get("enum"):
        return schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = [o for o in schema.get(key) or [] if str(o.get("type")).lower() != "null"]
        if options:
            return _instance(options[0], root, echo, number)
    kind = schema.get("type", "object" if "properties" in schema else "string")
    if isinstance(kind, list):
        kind = next((k for k in kind if str(k).lower() != "null"), "string")
    kind = str(kind).lower()
    if kind == "object":
        return {name: _instance(sub, root, echo, number)
                for name, sub in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [_instance(schema.get("items") or {}, root, echo, number)]
    return {"integer": number, "number": number + 0.5, "boolean": True,
            "null": None}.get(kind, echo)


def deterministic_response(request: dict) -> dict:
    """A GenerateContentResponse (REST camelCase) answering ``request``."""
    echo = echo_text(request)
    text = json_answer(request, echo) or echo
    prompt_tokens = sum(
        _count_tokens(t) for c in request.get("contents") or [] for t in _texts(c)
    )
    output_tokens = _count_tokens(text)
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": "STOP",
                "avgLogprobs": -0.05,
            }
        ],
        "modelVersion": MODEL_VERSION,
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt_tokens + output_tokens,
        },
    }
