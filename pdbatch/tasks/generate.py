"""Generating content: each row's prompt in, an answer's text out, with why it stopped and the
tokens it took (prompt, output, thinking, cached)."""

from __future__ import annotations

import pyarrow as pa

from . import Task

TOKEN_FIELDS = ("prompt_tokens", "output_tokens", "thought_tokens", "cached_tokens")

GENERATE = Task(
    name="generate",
    fields={"text": pa.string(), "finish_reason": pa.string(),
            **{name: pa.int64() for name in TOKEN_FIELDS}},
    # The answer (``text``; a response schema's fields come right after it), how it went,
    # what it cost, where it came from, the raw response (docs/usage.md, "Result columns").
    result_columns={"text": "string", "status": "string", "error_code": "Int64",
                    "error_message": "string", "finish_reason": "string",
                    **{name: "Int64" for name in TOKEN_FIELDS},
                    "job": "string", "response": "string"},
    token_fields=TOKEN_FIELDS,
    default_output_tokens=256,
    max_requests_per_job=200_000,
)
