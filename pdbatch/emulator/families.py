"""The model families the emulator serves, each with its input line and output line format.

=========  ==========================================  =========================================
family     input line                                  output line
=========  ==========================================  =========================================
gemini     ``{..., "request": GenerateContentRequest}``  ``{..., "status", "processed_time",
           (spec §3.1)                                 "request", "response"}`` (§2.2)
openai     ``{"custom_id", "method": "POST", "url":     ``{"custom_id", ..., "body", "id",
           "/v1/chat/completions", "body": {...}}``    "response": chat.completion}``; method
           (Llama and other MaaS models, §3.4)         and url dropped (§3.4)
anthropic  ``{"custom_id", "request": {"messages",      ``{"custom_id", ..., "status", "request",
           "anthropic_version", "max_tokens"}}`` §3.5  "response": Messages API message}``
=========  ==========================================  =========================================

A failed row has a ``status`` string and no ``response`` in every family. The output shapes of
the OpenAI and Anthropic lines on Cloud Storage are not shown in Google's docs; they follow the
reserved BigQuery output columns (§3.4, §3.5) and are marked [I] there.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass

from . import embeddings
from .responder import deterministic_response

_CHAT = "/v1/chat/completions"


def _user_text(messages) -> str:
    """The text of the chat messages' user turns (string or content-block form)."""
    texts = []
    for message in messages if isinstance(messages, list) else []:
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            texts.append(content)
        elif isinstance(content, list):
            texts += [b["text"] for b in content
                      if isinstance(b, dict) and isinstance(b.get("text"), str)]
    return " ".join(texts)


def _system(payload: dict) -> str | None:
    system = payload.get("system")
    if system is None:  # OpenAI: a system message
        system = " ".join(m["content"] for m in payload.get("messages") or []
                          if isinstance(m, dict) and m.get("role") == "system"
                          and isinstance(m.get("content"), str)) or None
    if isinstance(system, list):
        system = " ".join(b.get("text", "") for b in system if isinstance(b, dict))
    return system


def chat_echo(payload: dict) -> str:
    """The answer text for a chat request: ``[system: S] echo: <user text>``."""
    system = _system(payload)
    return f"[system: {system}] " * bool(system) + f"echo: {_user_text(payload.get('messages'))}"


def _id(prefix: str, payload: dict) -> str:
    return prefix + hashlib.sha256(repr(payload).encode()).hexdigest()[:24]


def openai_response(body: dict) -> dict:
    """A chat.completion object answering ``body``."""
    text = chat_echo(body)
    prompt, completion = len(_user_text(body.get("messages")).split()), len(text.split())
    return {"id": _id("chatcmpl-", body), "object": "chat.completion", "created": 0,
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
                      "total_tokens": prompt + completion}}


def anthropic_response(request: dict) -> dict:
    """A Messages API message answering ``request``."""
    text = chat_echo(request)
    return {"id": _id("msg_vrtx_", request), "type": "message", "role": "assistant",
            "model": request.get("model", "claude"),
            "content": [{"type": "text", "text": text}], "stop_reason": "end_turn",
            "stop_sequence": None,
            "usage": {"input_tokens": len(_user_text(request.get("messages")).split()),
                      "output_tokens": len(text.split())}}


#: GenerateContentRequest's fields (spec §2.2), lowerCamelCase; proto3 JSON also takes the
#: snake_case spelling.
_REQUEST_FIELDS = frozenset({"contents", "systemInstruction", "generationConfig",
                             "safetySettings", "tools", "toolConfig", "labels", "cachedContent",
                             "model"})
#: GenerationConfig's fields (google-cloud-aiplatform 2.7, v1 and v1beta1), lowerCamelCase.
_CONFIG_FIELDS = frozenset({
    "audioTimestamp", "candidateCount", "frequencyPenalty", "imageConfig", "logprobs",
    "maxOutputTokens", "mediaResolution", "modelConfig", "presencePenalty",
    "responseJsonSchema", "responseLogprobs", "responseMimeType", "responseModalities",
    "responseSchema", "routingConfig", "seed", "speechConfig", "stopSequences", "temperature",
    "thinkingConfig", "topK", "topP"})


def camel(key: str) -> str:
    """A proto field name in lowerCamelCase (``display_name`` -> ``displayName``)."""
    head, *rest = str(key).split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def gemini_problem(request: dict) -> str | None:
    """Why the service would answer this Gemini request 400 INVALID_ARGUMENT (a row error,
    spec §2.2), or None: unknown fields, no contents, contents or parts that are not lists."""
    for key in request:
        if camel(key) not in _REQUEST_FIELDS:
            return (f'Invalid JSON payload received. Unknown name "{key}": Cannot find '
                    "field.")
    contents = request.get("contents")
    if not isinstance(contents, list) or not contents:
        return "Unable to submit request because it has an empty contents field."
    for index, content in enumerate(contents):
        parts = content.get("parts") if isinstance(content, dict) else None
        if not isinstance(parts, list) or not parts:
            return (f"Unable to submit request because contents[{index}] has no parts; "
                    "each content needs a list of parts.")
    config = request.get("generationConfig", request.get("generation_config"))
    if config is not None:
        if not isinstance(config, dict):
            return "Invalid value at 'generation_config': expected an object."
        for key in config:
            if camel(key) not in _CONFIG_FIELDS:
                return (f'Invalid JSON payload received. Unknown name "{key}" at '
                        "'generation_config': Cannot find field.")
    return None


@dataclass(frozen=True)
class Family:
    """How one model family's lines look (see the module table)."""

    name: str
    model: re.Pattern
    payload: str  # the key holding what the model is asked
    respond: Callable[[dict], dict]  # the default, deterministic responder
    dropped: frozenset  # input keys not copied to the output line
    times: bool = True  # whether output lines carry processed_time
    invalid: Callable[[dict], str | None] = lambda payload: None  # a row's 400, if any
    answer: str = "response"  # the key of the answer in an output line
    generates: bool = True  # False: an embedding model (answered by its own responder)
    echo: str = ""  # for lines that are the payload themselves: the key echoing them

    def payload_of(self, line: dict):
        """What the model is asked: the line's payload key, or the line itself."""
        return line if not self.payload else line.get(self.payload)

    def problem(self, line: dict) -> str | None:
        """Why the import refuses this line, or None."""
        payload = self.payload_of(line)
        if not isinstance(payload, dict):
            return f"has no '{self.payload}' object"
        if self.name == "openai" and (line.get("method", "POST") != "POST"
                                      or line.get("url", _CHAT) != _CHAT
                                      or not isinstance(payload.get("messages"), list)):
            return "is not a POST /v1/chat/completions request with 'messages'"
        if self.name == "anthropic" and not isinstance(payload.get("messages"), list):
            return "has no 'messages' list in its request"
        return None

    def output_keys(self, input_keys: list[str]) -> list[str]:
        """The keys of this family's output lines for input lines with ``input_keys``."""
        if not self.payload:
            return [self.echo, self.answer, "status"]
        passed = [k for k in input_keys if k not in self.dropped and k != self.payload]
        return [*passed, *(["id"] if self.name == "openai" else []), "status",
                *(["processed_time"] if self.times else []), self.payload, self.answer]

    def result(self, line: dict, payload: dict, processed_time: str) -> dict:
        """The output line without its answer: pass-through keys, status, the echoed
        payload."""
        if not self.payload:  # {"instance": ..., "predictions": ..., "status": ""}
            return {self.echo: payload, "status": ""}
        result = {k: v for k, v in line.items() if k not in self.dropped}
        if self.name == "openai":
            result["id"] = _id("batch_req_", line)
        result["status"] = ""
        if self.times:
            result["processed_time"] = processed_time
        result[self.payload] = payload
        return result


FAMILIES = (
    Family("gemini-embedding", re.compile(
        r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/google/models/gemini-embedding-"
        r"[\w.-]+$"), "request", embeddings.gemini_response,
        frozenset({"response", "status", "processed_time"}),
        invalid=embeddings.gemini_problem, generates=False),
    Family("text-embedding", re.compile(
        r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/google/models/"
        r"(?:text-embedding|text-multilingual-embedding)-\d{3}(?:@\d+)?$"), "",
        embeddings.legacy_predictions, frozenset(), times=False,
        invalid=embeddings.legacy_problem, answer="predictions", generates=False,
        echo="instance"),
    Family("gemini", re.compile(
        r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/google/models/gemini-[\w.-]+"
        r"(?:@[\w.-]+)?$"
        r"|^projects/[^/]+/locations/[^/]+/models/[^/@:]+(?:@[\w-]+)?$"),  # publisher or tuned
        "request", deterministic_response,
        frozenset({"request", "response", "status", "processed_time"}),
        invalid=gemini_problem),
    Family("openai", re.compile(
        r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/(?:meta|qwen|deepseek-ai|openai|"
        r"mistralai|google)/models/(?!gemini-)[\w.-]+-maas$"),
        "body", openai_response, frozenset({"method", "url", "response", "id", "status"}),
        times=False),
    Family("anthropic", re.compile(
        r"^(?:projects/[^/]+/locations/[^/]+/)?publishers/anthropic/models/claude-[\w.@-]+$"),
        "request", anthropic_response, frozenset({"request", "response", "status"}),
        times=False),
)


#: The publisher models the emulated service serves for batch jobs, as of this date (the
#: service refuses others at create: "Do not support publisher model ..."). Extend it per
#: service (``BatchService(models=...)``, ``stack.service.models.add(name)``) or per command
#: (``pdbatch emulator --model NAME``) to try a newer model. Refreshed from the Developer
#: API's model pages and Vertex AI's batch prediction reference (docs/sources.md), aliases
#: included: the live services batch ``gemini-flash-latest`` though no list names it.
MODELS_DATE = "2026-12-06"
#: A tuned Gemini model's resource name, with a version or not (``...models/ID@2``; served
#: when added: ``BatchService.add_tuned_model``).
TUNED_MODEL = re.compile(r"(projects/[^/]+/locations/[^/]+/models/[^/@:]+)(?:@[\w-]+)?")
SERVED_MODELS = frozenset({
    "gemini-2.0-flash", "gemini-2.0-flash-001", "gemini-2.0-flash-lite",
    "gemini-2.0-flash-lite-001", "gemini-2.5-flash", "gemini-2.5-flash-lite", "gemini-2.5-pro",
    "gemini-2.5-flash-image", "gemini-3-pro-preview", "gemini-3-flash-preview",
    "gemini-3.1-pro-preview", "gemini-3.1-flash-lite", "gemini-3.5-flash",
    "gemini-3.5-flash-lite", "gemini-3.6-flash", "gemini-3.7-flash", "gemini-3.8-flash",
    "gemini-flash-latest", "gemini-flash-lite-latest", "gemini-pro-latest",
    "llama-3.3-70b-instruct-maas", "llama-4-maverick-17b-128e-instruct-maas",
    "llama-4-scout-17b-16e-instruct-maas", "qwen3-235b-a22b-instruct-2507-maas",
    "qwen3-235b-a22b-maas", "deepseek-r1-0528-maas", "deepseek-v3.1-maas",
    "gpt-oss-120b-maas", "gpt-oss-20b-maas",
    "claude-opus-4-1", "claude-opus-4-1@20250805", "claude-sonnet-4-5",
    "claude-sonnet-4-5@20250929", "claude-haiku-4-5", "claude-haiku-4-5@20251001",
    "claude-sonnet-4", "claude-sonnet-4@20250514",
    "gemini-embedding-001", "gemini-embedding-2", "text-embedding-004", "text-embedding-005",
    "text-multilingual-embedding-002",
})


def family_of(model: str) -> Family | None:
    """The family serving ``model``, or None (the service answers 400)."""
    return next((f for f in FAMILIES if f.model.match(model)), None)
