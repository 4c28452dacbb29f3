"""Llama and other open models as a service (MaaS) on Vertex AI: OpenAI chat-completion lines
``{"custom_id", "method", "url", "body"}`` and their output lines (spec §3.4)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import orjson

from ..identifiers import whole
from ..tasks.generate import GENERATE
from .lines import Frame, Parser, custom_id_frame, translated_config

#: Short-name prefixes of MaaS models and their publishers.
_PUBLISHERS = {"llama": "meta", "qwen": "qwen", "deepseek": "deepseek-ai", "gpt-oss": "openai",
               "mistral": "mistralai", "codestral": "mistralai"}
_SHORT = re.compile(r"^(?:(?P<publisher>[a-z0-9-]+)/)?(?P<name>[a-z0-9][A-Za-z0-9_.-]*-maas)$")
_RESOURCE = re.compile(r"(?:projects/[a-z0-9.:-]+/locations/[a-z0-9-]+/)?"
                       r"publishers/(?P<publisher>[a-z0-9-]+)/models/(?P<name>[A-Za-z0-9_.-]+-maas)")
#: generation_config keys (snake_case) and their chat-completion names.
_CONFIG = {"temperature": "temperature", "top_p": "top_p", "max_output_tokens": "max_tokens",
           "stop_sequences": "stop", "seed": "seed", "presence_penalty": "presence_penalty",
           "frequency_penalty": "frequency_penalty"}


def model_resource(model: str) -> str | None:
    """``publishers/<publisher>/models/<name>-maas`` for a MaaS model name, or None.

    ``llama-3.3-70b-instruct-maas`` (publisher from the name), ``meta/llama-...-maas`` and the
    resource name itself are accepted.
    """
    full = whole(_RESOURCE, model)
    if full:
        return model
    short = whole(_SHORT, model)
    if not short:
        return None
    publisher = short["publisher"] or next(
        (p for prefix, p in _PUBLISHERS.items() if short["name"].startswith(prefix)), None)
    return f"publishers/{publisher}/models/{short['name']}" if publisher else None


def frame(system_instruction: str | None, generation_config: Mapping | None,
          safety_settings: None = None, row_config: bool = False, *, resource: str) -> Frame:
    """``{"custom_id": "n", "method": "POST", "url": "/v1/chat/completions", "body": {...}}``
    (``safety_settings`` and ``row_config`` are refused before, by the family's flags)."""
    match = whole(_RESOURCE, resource)
    body = {"model": f"{match['publisher']}/{match['name']}",
            **translated_config(generation_config, _CONFIG, "Llama/MaaS")}
    system = ([orjson.dumps({"role": "system", "content": system_instruction}).decode() + ","]
              if system_instruction else [])
    envelope = ('"method":"POST","url":"/v1/chat/completions","body":'
                + orjson.dumps(body).decode()[:-1] + ',"messages":[')
    return custom_id_frame(envelope, "".join(system) + '{"role":"user","content":', "}]}")


PARSER = Parser(
    key="custom_id",
    key_type="VARCHAR",
    key_expr="TRY_CAST({key} AS BIGINT)",
    response_type=("STRUCT(choices STRUCT(message STRUCT(content VARCHAR), "
                   "finish_reason VARCHAR)[], usage STRUCT(prompt_tokens BIGINT, "
                   "completion_tokens BIGINT, completion_tokens_details STRUCT("
                   "reasoning_tokens BIGINT), prompt_tokens_details STRUCT("
                   "cached_tokens BIGINT)))"),
    thoughts_in_output=True,  # completion_tokens includes reasoning_tokens
    task=GENERATE,
    fields=GENERATE.expressions(
        text="r.choices[1].message.content",
        finish_reason=("CASE r.choices[1].finish_reason WHEN 'stop' THEN 'STOP' "
                       "WHEN 'length' THEN 'MAX_TOKENS' WHEN 'content_filter' THEN 'SAFETY' "
                       "ELSE upper(r.choices[1].finish_reason) END"),
        prompt_tokens="r.usage.prompt_tokens",
        output_tokens="r.usage.completion_tokens",
        thought_tokens="r.usage.completion_tokens_details.reasoning_tokens",
        cached_tokens="r.usage.prompt_tokens_details.cached_tokens"
    ),
)
