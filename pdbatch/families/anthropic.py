"""Claude on Vertex AI: Anthropic Messages lines ``{"custom_id", "request": {...}}`` and their
output lines (spec §3.5)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import orjson

from ..identifiers import whole
from ..tasks.generate import GENERATE
from .lines import Frame, Parser, custom_id_frame, translated_config

ANTHROPIC_VERSION = "vertex-2023-10-16"
#: Claude requires ``max_tokens``; this is used when generation_config gives none.
DEFAULT_MAX_TOKENS = 1024
_MODEL = re.compile(r"(?:(?:projects/[a-z0-9.:-]+/locations/[a-z0-9-]+/)?"
                    r"publishers/anthropic/models/)?"
                    r"(?P<name>claude-[A-Za-z0-9_.-]+(?:@[A-Za-z0-9_]+)?)")
_CONFIG = {"temperature": "temperature", "top_p": "top_p", "top_k": "top_k",
           "max_output_tokens": "max_tokens", "stop_sequences": "stop_sequences"}


def model_resource(model: str) -> str | None:
    """``publishers/anthropic/models/claude-...`` for a Claude model name, or None."""
    match = whole(_MODEL, model)
    if not match:
        return None
    return model if model.startswith(("projects/", "publishers/")) else \
        f"publishers/anthropic/models/{match['name']}"


def frame(system_instruction: str | None, generation_config: Mapping | None,
          safety_settings: None = None, row_config: bool = False, *, resource: str) -> Frame:
    """``{"custom_id": "n", "request": {"anthropic_version", "max_tokens", "system",
    "messages"}}`` (``safety_settings`` and ``row_config`` are refused before, by the
    family's flags)."""
    request = {"anthropic_version": ANTHROPIC_VERSION, "max_tokens": DEFAULT_MAX_TOKENS,
               **translated_config(generation_config, _CONFIG, "Claude")}
    if system_instruction:
        request["system"] = system_instruction
    envelope = '"request":' + orjson.dumps(request).decode()[:-1] + ',"messages":['
    return custom_id_frame(envelope, '{"role":"user","content":', "}]}")


PARSER = Parser(
    key="custom_id",
    key_type="VARCHAR",
    key_expr="TRY_CAST({key} AS BIGINT)",
    response_type=("STRUCT(content STRUCT(type VARCHAR, text VARCHAR)[], stop_reason VARCHAR, "
                   "usage STRUCT(input_tokens BIGINT, output_tokens BIGINT, "
                   "cache_read_input_tokens BIGINT))"),
    answer=", list_filter(r.content, lambda b: b.type = 'text' AND b.text IS NOT NULL) AS blocks",
    task=GENERATE,
    fields=GENERATE.expressions(
        text=("CASE WHEN len(blocks) > 0 THEN array_to_string(list_transform(blocks, "
              "lambda b: b.text), '') END"),
        finish_reason=("CASE r.stop_reason WHEN 'end_turn' THEN 'STOP' "
                       "WHEN 'stop_sequence' THEN 'STOP' WHEN 'max_tokens' THEN 'MAX_TOKENS' "
                       "WHEN 'refusal' THEN 'SAFETY' ELSE upper(r.stop_reason) END"),
        prompt_tokens="r.usage.input_tokens",
        output_tokens="r.usage.output_tokens",  # extended thinking included: not reported apart
        cached_tokens="r.usage.cache_read_input_tokens"
    ),
)
