"""Gemini on Vertex AI: request lines ``{"pdbatch_row": n, "request": GenerateContentRequest}``
and the parse of its output lines (spec §2.2, §3.1)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson
import pyarrow as pa

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


def shared_fields(system_instruction: str | None, generation_config: Mapping | None) -> str:
    """The request fields every row shares, as JSON text of ``,"key":value`` pairs ("" if none)."""
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
        encoded = orjson.dumps(shared).decode()
    except TypeError as exc:
        raise InputError(f"generation_config is not JSON-serialisable: {exc}.") from None
    return "," + encoded[1:-1] if shared else ""


_HEAD = '{"' + ROW_KEY + '":'
_CONTENTS = ',"request":{"contents":[{"role":"user","parts":[{"text":'
_CLOSE = "}]}]"


def min_line_sizes(prompt_bytes: np.ndarray, shared: str) -> np.ndarray:
    """A lower bound of each request line's size from its prompt's UTF-8 size (escaping only
    adds bytes), for planning jobs before the lines exist."""
    fixed = len((_HEAD + _CONTENTS + _CLOSE + shared).encode()) + len('""}}\n') + 1
    return prompt_bytes + fixed


def request_lines(con, prompts: pa.ChunkedArray, keys: np.ndarray, shared: str,
                  carried: pa.Table | None = None) -> pa.ChunkedArray:
    """One JSONL line (newline included) per prompt, carrying its row key and, with
    ``carried``, that table's columns as further top-level fields; ``shared`` from
    ``shared_fields``. Built in DuckDB: the same JSON as ``orjson.dumps`` of each request, byte
    for byte except the hex case of control-character escapes (``\\u001B``)."""
    con.register("pdbatch_requests", pa.table({"row": pa.array(keys, pa.int64()),
                                               "prompt": prompts}))
    request = "$head || r.row::VARCHAR || $contents || to_json(r.prompt)::VARCHAR || $tail"
    if carried is None or carried.num_columns == 0:
        sql = f"SELECT {request} || '}}' || chr(10) AS line FROM pdbatch_requests r"
    else:  # the carried row as a JSON object without its opening brace: "a":1,"b":"x"}
        con.register("pdbatch_carried", carried)
        sql = (f"SELECT {request} || ',' || substr(to_json(c)::VARCHAR, 2) || chr(10) AS line "
               "FROM pdbatch_requests r POSITIONAL JOIN pdbatch_carried c")
    try:
        return con.sql(sql, params={"head": _HEAD, "contents": _CONTENTS,
                                    "tail": _CLOSE + shared + "}"}).to_arrow_table().column("line")
    finally:
        for name in ("pdbatch_requests", "pdbatch_carried"):
            con.unregister(name)


#: The columns ``parse_output`` returns, in order.
PARSED_FIELDS = ("key", "status", "processed_time", "text", "finish_reason", "prompt_tokens",
                 "output_tokens", "response")

#: Only what the friendly columns need is typed; the rest of a response stays JSON text.
_RESPONSE_TYPE = (
    "STRUCT(candidates STRUCT(content STRUCT(parts STRUCT(text VARCHAR, thought BOOLEAN)[]), "
    "finishReason VARCHAR)[], promptFeedback STRUCT(blockReason VARCHAR), "
    "usageMetadata STRUCT(promptTokenCount BIGINT, candidatesTokenCount BIGINT))"
)
#: Where output lines come from: JSONL files (``$paths``) or a table of BigQuery output rows
#: registered as ``pdbatch_answers``. Either gives ``key, status, processed_time, response``.
_FILE_LINES = f"""
    SELECT CASE WHEN json_type({ROW_KEY}) IN ('UBIGINT', 'BIGINT') THEN {ROW_KEY}::BIGINT
           END AS key, status, processed_time, response
    FROM read_ndjson($paths, ignore_errors = true, maximum_object_size = 67108864,
                     columns = {{'{ROW_KEY}': 'JSON', 'status': 'VARCHAR',
                                 'processed_time': 'VARCHAR', 'response': 'JSON'}})
"""
_TABLE_LINES = f"""
    SELECT {ROW_KEY}::BIGINT AS key, status, CAST(processed_time AS VARCHAR) AS processed_time,
           try_cast(response AS JSON) AS response
    FROM pdbatch_answers
"""
_PARSE = f"""
WITH line AS ({{lines}}), typed AS (
    SELECT *, try_cast(response AS {_RESPONSE_TYPE}) AS r FROM line
), answer AS (
    SELECT *, list_filter(r.candidates[1].content.parts,
                          lambda p: p.text IS NOT NULL AND NOT coalesce(p.thought, false)) AS parts
    FROM typed
)
SELECT key,
       coalesce(status, '') AS status,
       coalesce(processed_time, '') AS processed_time,
       CASE WHEN len(parts) > 0 THEN array_to_string(list_transform(parts, lambda p: p.text), '')
       END AS text,
       CASE WHEN len(r.candidates) > 0 THEN r.candidates[1].finishReason
            ELSE r.promptFeedback.blockReason END AS finish_reason,
       r.usageMetadata.promptTokenCount AS prompt_tokens,
       r.usageMetadata.candidatesTokenCount AS output_tokens{{response}}
FROM answer
ORDER BY key
"""


def _sql(lines: str, response: bool) -> str:
    return _PARSE.replace("{lines}", lines).replace(
        "{response}", ", response::VARCHAR AS response" if response else "")


def parse_output(con, paths: list[str], response: bool = True) -> pa.Table:
    """The kept fields of every line of the output files at local ``paths``, as the columns
    ``PARSED_FIELDS`` (without ``response`` when ``response`` is false), sorted by key.

    ``text`` joins the first candidate's text parts, thought parts left out; ``finish_reason``
    is its ``finishReason``, or ``promptFeedback.blockReason`` for a prompt blocked before any
    candidate; ``response`` is the raw JSON text. ``key`` is null for a line without an integer
    row key, and a line that is not JSON becomes a row of nulls.
    """
    if not paths:
        return empty_output(response)
    return con.sql(_sql(_FILE_LINES, response), params={"paths": paths}).to_arrow_table()


def parse_rows(con, rows: pa.Table, response: bool = True) -> pa.Table:
    """``parse_output`` for BigQuery output rows (``pdbatch_row``, ``status``,
    ``processed_time``, ``response`` as JSON text)."""
    con.register("pdbatch_answers", rows)
    try:
        return con.sql(_sql(_TABLE_LINES, response)).to_arrow_table()
    finally:
        con.unregister("pdbatch_answers")


def empty_output(response: bool = True) -> pa.Table:
    """``parse_output``'s table for a job with no output lines."""
    return pa.table({name: pa.array([], pa.int64() if name in ("key", "prompt_tokens",
                                                               "output_tokens") else pa.string())
                     for name in PARSED_FIELDS if response or name != "response"})
