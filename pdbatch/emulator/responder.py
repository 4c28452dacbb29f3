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


#: OpenAI finish reasons as Gemini's, and as Anthropic's stop reasons.
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "content_filter": "SAFETY",
           "tool_calls": "STOP"}
_STOP_REASON = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}
#: Gemini generationConfig fields and their chat-completion names (``top_k`` and ``seed`` are
#: extensions that llama.cpp, vLLM and Ollama's OpenAI APIs accept).
_GEMINI_CONFIG = (("temperature", "temperature"), ("topP", "top_p"), ("topK", "top_k"),
                  ("maxOutputTokens", "max_tokens"), ("stopSequences", "stop"),
                  ("seed", "seed"))
_ANTHROPIC_CONFIG = (("temperature", "temperature"), ("top_p", "top_p"), ("top_k", "top_k"),
                     ("max_tokens", "max_tokens"), ("stop_sequences", "stop"))


class OpenAIForwarder:
    """A responder that asks a real model: any OpenAI-compatible chat endpoint (a local vLLM,
    Ollama or llama.cpp server).

    Gemini requests are translated to a chat completion (system instruction, user text,
    ``temperature``, ``topP``, ``topK``, ``maxOutputTokens``, ``stopSequences``, ``seed``, and
    JSON answers: ``responseJsonSchema`` or ``responseSchema`` as a JSON-schema response
    format, which llama.cpp enforces with a grammar) and the answer back to a
    ``GenerateContentResponse``; Claude requests (Anthropic Messages, ``anthropic_version``)
    likewise, answered as a Messages API message; OpenAI-format payloads (Llama/MaaS lines) are
    sent as they are and the chat completion returned unchanged. Token counts and finish
    reasons are the model's own. ``concurrency``: how many of a job's requests to have in
    flight at once (for servers that answer in parallel, such as vLLM or Ollama with
    ``OLLAMA_NUM_PARALLEL``; llama-cpp-python's server answers one at a time).
    ``schema_format``: how a response schema is sent, ``"json_schema"`` (OpenAI's format: vLLM,
    Ollama) or ``"json_object"`` (``{"type": "json_object", "schema": ...}``:
    llama-cpp-python's server).

    Examples:
        >>> stack.service.responder = OpenAIForwarder("http://127.0.0.1:11434/v1", "llama3.2")
        ... # doctest: +SKIP
    """

    def __init__(self, base_url: str, model: str, api_key: str | None = None,
                 timeout: float = 120.0, concurrency: int = 1,
                 schema_format: str = "json_schema"):
        base = base_url.rstrip("/")
        self.url = base + ("/chat/completions" if base.endswith("/v1") else
                           "/v1/chat/completions")
        self.model, self.api_key, self.timeout = model, api_key, timeout
        self.concurrency = concurrency  # requests of a job in flight at once
        if schema_format not in ("json_schema", "json_object"):
            raise ValueError(f"schema_format={schema_format!r}: 'json_schema' or 'json_object'")
        self.schema_format = schema_format

    def __call__(self, payload: dict) -> dict:
        if "anthropic_version" in payload:
            return _anthropic_answer(self._post(self._from_anthropic(payload)))
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
        for gemini, openai in _GEMINI_CONFIG:
            value = _config(request, gemini, _snake(gemini))
            if value is not None:
                body[openai] = value
        if _config(request, "responseMimeType", "response_mime_type") == "application/json":
            schema = _config(request, "responseJsonSchema", "response_json_schema")
            if schema is None and _config(request, "responseSchema", "response_schema"):
                schema = _json_schema(_config(request, "responseSchema", "response_schema"))
            body["response_format"] = self._response_format(schema)
        return body

    def _response_format(self, schema: Any) -> dict:
        """JSON answers, of ``schema`` when there is one: OpenAI's ``json_schema`` format, or
        llama-cpp-python's ``json_object`` with a ``schema``."""
        if not isinstance(schema, dict):
            return {"type": "json_object"}
        if self.schema_format == "json_object":
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}

    def _from_anthropic(self, request: dict) -> dict:
        system = request.get("system")
        if isinstance(system, list):
            system = " ".join(block.get("text", "") for block in system
                              if isinstance(block, dict))
        messages = [{"role": "system", "content": system}] if system else []
        for message in request.get("messages") or []:
            content = message.get("content")
            if isinstance(content, list):
                content = " ".join(block.get("text", "") for block in content
                                   if isinstance(block, dict))
            messages.append({"role": message.get("role", "user"), "content": content or ""})
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        for anthropic, openai in _ANTHROPIC_CONFIG:
            if request.get(anthropic) is not None:
                body[openai] = request[anthropic]
        return body

    def _post(self, body: dict) -> dict:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(body).encode(),
                                         headers=headers, method="POST")
        with urllib.request.urlopen(request, timeout=self.timeout) as answer:
            return json.loads(answer.read())


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name)


def _json_schema(schema: Any) -> Any:
    """A Gemini ``responseSchema`` (OpenAPI subset: ``STRING``, ``nullable``, ...) as JSON
    Schema."""
    if isinstance(schema, list):
        return [_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _json_schema(value) for key, value in schema.items()
           if key not in ("nullable", "propertyOrdering", "property_ordering")}
    if isinstance(out.get("type"), str):
        out["type"] = out["type"].lower()
        if schema.get("nullable"):
            out["type"] = [out["type"], "null"]
    if isinstance(schema.get("properties"), dict):
        out["properties"] = {name: _json_schema(sub)
                             for name, sub in schema["properties"].items()}
    return out


def _choice(completion: dict) -> tuple[str, str | None, dict]:
    """A chat completion's text, finish reason and usage."""
    choice = (completion.get("choices") or [{}])[0]
    text = (choice.get("message") or {}).get("content") or ""
    return text, choice.get("finish_reason"), completion.get("usage") or {}


def _gemini_answer(completion: dict) -> dict:
    """A chat completion as a GenerateContentResponse."""
    text, finish, usage = _choice(completion)
    return {
        "candidates": [{
            "content": {"role": "model", "parts": [{"text": text}]},
            "finishReason": _FINISH.get(finish, "OTHER"),
        }],
        "modelVersion": completion.get("model", ""),
        "usageMetadata": {"promptTokenCount": usage.get("prompt_tokens", 0),
                          "candidatesTokenCount": usage.get("completion_tokens", 0),
                          "totalTokenCount": usage.get("total_tokens", 0)},
    }


def _anthropic_answer(completion: dict) -> dict:
    """A chat completion as an Anthropic Messages API message."""
    text, finish, usage = _choice(completion)
    return {"id": completion.get("id", ""), "type": "message", "role": "assistant",
            "model": completion.get("model", ""),
            "content": [{"type": "text", "text": text}],
            "stop_reason": _STOP_REASON.get(finish, "end_turn"), "stop_sequence": None,
            "usage": {"input_tokens": usage.get("prompt_tokens", 0),
                      "output_tokens": usage.get("completion_tokens", 0)}}
