"""Embedding: each row's text in, one vector out (float32), with the tokens it took and, where
the service says it, whether the text was truncated (embeddings-spec.md §1, §2)."""

from __future__ import annotations

import dataclasses

import pyarrow as pa

from . import Task

#: The vector's Arrow type as parsed: a list of float32 (the join makes it fixed-size, of the
#: call's dimensionality: ``Family.result_types``).
VECTOR = pa.list_(pa.float32())

EMBED = Task(
    name="embed",
    fields={"embedding": VECTOR, "token_count": pa.int64(), "truncated": pa.bool_()},
    # The vector, how it went, what it cost, where it came from (docs/usage.md, "Embedding
    # result columns"); no raw response: a million vectors as JSON text are ~7 GB.
    result_columns={"embedding": "embedding", "status": "string", "error_code": "Int64",
                    "error_message": "string", "token_count": "Int64", "truncated": "boolean",
                    "job": "string"},
    token_fields=("token_count",),
    default_output_tokens=0,
    # Vertex AI: 1,000,000 rows per Gemini embedding job (spec §1.1); the legacy models'
    # 30,000 is the family's (``Family.max_requests``).
    max_requests_per_job=1_000_000,
    request_type="EmbedContentRequest",
    vector="embedding",
)

#: The text-embedding models on Vertex AI: "up to 30,000 prompts" per request (spec §1.2).
EMBED_LEGACY = dataclasses.replace(EMBED, max_requests_per_job=30_000)
