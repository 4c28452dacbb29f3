"""The emulator's default responder: a deterministic answer derived from the request.

The answer quotes the request's text, so a test can prove that every row got the answer to
its own request (a cross-wired join shows up as a mismatch). When the request asks for JSON
(``responseMimeType: application/json``), the answer is JSON that fits its ``responseSchema``
(OpenAPI subset) or ``responseJsonSchema``, with the echo text in its string fields.
"""

from __future__ import annotations

import json
import urllib.request
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


def count_tokens(request: dict) -> dict:
    """A ``countTokens`` answer: the words of the contents and the system instruction."""
    system = request.get("systemInstruction") or request.get("system_instruction")
    texts = [t for c in request.get("contents") or [] for t in _texts(c)] + _texts(system)
    return {"totalTokens": sum(map(_count_tokens, texts)),
            "totalBillableCharacters": sum(len(t.replace(" ", "")) for t in texts)}


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


#: OpenAI finish reasons as Gemini's.
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY",
           "tool_calls": "STOP"}


class OpenAIForwarder:
    """A responder that asks a real model: any OpenAI-compatible chat endpoint (a local vLLM,
    Ollama or llama.cpp server).

    Gemini requests are translated to a chat completion (system instruction, user text,
    ``temperature``, ``topP``, ``maxOutputTokens``, ``stopSequences``, JSON mode) and the answer
    back to a ``GenerateContentResponse``; OpenAI-format payloads (Llama/MaaS lines) are sent
    as they are and the chat completion returned unchanged.

    >>> stack.service.responder = OpenAIForwarder("http://127.0.0.1:11434/v1", "llama3.2")
    ... # doctest: +SKIP
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 timeout: float = 120.0):
        base = base_url.rstrip("/")
        self.url = base + ("/chat/completions" if base.endswith("/v1") else
                           "/v1/chat/completions")
        self.model, self.api_key, self.timeout = model, api_key, timeout

    def __call__(self, payload: dict) -> dict:
        if "messages" in payload:  # already a chat request (OpenAI-format lines)
            return self._post({**payload, "model": self.model})
        return _gemini_answer(self._post(self._chat(payload)))

    def _chat(self, request: dict) -> dict:
        system = request.get("systemInstruction") or request.get("system_instruction")
        messages = [{"role": "system", "content": " ".join(_texts(system))}] if system else []
        for content in request.get("contents") or []:
            role = "assistant" if content.get("role") == "model" else "user"
            messages.append({"role": role, "content": " ".join(_texts(content))})
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        for gemini, openai in (("temperature", "temperature"), ("topP", "top_p"),
                               ("maxOutputTokens", "max_tokens"), ("stopSequences", "stop")):
            snake = "".join("_" + c.lower() if c.isupper() else c for c in gemini)
            value = _config(request, gemini, snake)
            if value is not None:
                body[openai] = value
        if _config(request, "responseMimeType", "response_mime_type") == "application/json":
            body["response_format"] = {"type": "json_object"}
        return body

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(),
                                         headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:
            return json.loads(answer.read())


def _gemini_answer(completion: dict) -> dict:
    """A chat completion as a GenerateContentResponse."""
    choice = (completion.get("choices") or [{}])[0]
    usage = completion.get("usage") or {}
    return {
        "candidates": [{
            "content": {"role": "model",
                        "parts": [{"text": (choice.get("message") or {}).get("content") or ""}]},
            "finishReason": _FINISH.get(choice.get("finish_reason"), "OTHER"),
        }],
        "modelVersion": completion.get("model", ""),
        "usageMetadata": {"promptTokenCount": usage.get("prompt_tokens", 0),
                          "candidatesTokenCount": usage.get("completion_tokens", 0),
                          "totalTokenCount": usage.get("total_tokens", 0)},
    }
