"""Request lines and job planning (pure functions over Arrow and DuckDB, no services)."""

from __future__ import annotations

import json

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest

from pdbatch import engine, prompts
from pdbatch.errors import InputError
from pdbatch.families import gemini
from pdbatch.families.lines import min_line_sizes, request_lines
from pdbatch.plan import plan

TRICKY = [
    "".join(chr(i) for i in range(0x20)) + "\x7f\x9f",  # every control character
    'quotes " and \\ backslashes / slash \u2028 \u2029 \ufeff',
    "é ü 東京 😀 🚀 \U0001f9ea",
    "plain text",
]


def _expected(row: int, text: str) -> dict:
    return {"pdbatch_row": row, "request": {
        "contents": [{"role": "user", "parts": [{"text": text}]}],
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "generationConfig": {"temperature": 0.5, "maxOutputTokens": 10}}}


def test_request_lines_are_the_json_of_each_request_whatever_the_characters():
    rows = np.array([3, 0, 7, 1])
    frame = gemini.frame("Be brief.", {"temperature": 0.5, "max_output_tokens": 10})
    texts = pa.chunked_array([pa.array(TRICKY, pa.large_string())])

    lines = request_lines(engine.connect(), texts, rows, frame).to_pylist()

    assert all(line.endswith("}\n") and line.count("\n") == 1 for line in lines)
    assert [json.loads(line) for line in lines] == [
        _expected(int(r), t) for r, t in zip(rows, TRICKY, strict=True)]
    # Byte for byte what orjson writes, but for the hex case of control-character escapes.
    for line, row, text in zip(lines[1:], rows[1:], TRICKY[1:], strict=True):
        assert line.encode() == orjson.dumps(_expected(int(row), text)) + b"\n"


def test_the_size_floor_never_exceeds_the_real_line():
    frame = gemini.frame(None, {"temperature": 0.5})
    texts = pa.chunked_array([pa.array(TRICKY, pa.large_string())])
    rows = np.array([0, 10, 999, 123456])
    real = [len(line.encode()) for line in
            request_lines(engine.connect(), texts, rows, frame).to_pylist()]
    floor = min_line_sizes(np.array([len(t.encode()) for t in TRICKY]), frame)
    assert (floor <= real).all()
    assert floor[-1] >= real[-1] - 5  # plain text: only the row number's digits are unknown


def test_plan_keeps_every_shard_within_both_limits():
    sizes = np.array([40, 40, 40, 90, 10, 10, 10, 10])
    shards = plan(sizes, np.arange(100, 108), max_requests=3, max_bytes=100)
    assert [(s.start, s.stop) for s in shards] == [(0, 2), (2, 3), (3, 5), (5, 8)]
    with pytest.raises(InputError, match=r"row 105 is at least 101 bytes, over the 100-byte"):
        plan(np.array([1, 1, 1, 1, 1, 101]), np.arange(100, 106), 10, 100)
    assert plan(np.array([], dtype=np.int64), np.array([], dtype=np.int64), 3, 100) == []


def test_template_fields_of_any_type_render_as_text():
    df = pd.DataFrame({"n": [3, 40], "x": [1.5, 2.0], "s": pd.array(["a", "b"], dtype="string"),
                       "o": pd.Series([{"k": 1}, "z"], dtype=object)})
    texts, reasons = prompts.render(df, None, "{n}|{x}|{s}|{o} {{literal}}")
    assert texts.to_pylist() == ["3|1.5|a|{'k': 1} {literal}", "40|2.0|b|z {literal}"]
    assert reasons.tolist() == ["", ""]
