"""Parsing output lines and joining them back by row key; reading a job's output directory."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pandas as pd
import pytest

from pdbatch import engine
from pdbatch.families import anthropic, gemini, openai
from pdbatch.families.gemini import model_resource
from pdbatch.families.lines import parse_output
from pdbatch.join import ResultBuilder, parse_status
from pdbatch.tasks.generate import GENERATE

_files = itertools.count()


def parse_lines(lines, folder):
    """parse_output over the lines written to a file, as Vertex AI would have written them."""
    path = folder / f"predictions-{next(_files)}.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    return parse_output(engine.connect(), gemini.PARSER, [str(path)])


def _line(key, status="", time="2026-01-01T00:00:00.000+00:00", text=None, **extra) -> bytes:
    line = {"pdbatch_row": key, "status": status, "processed_time": time, **extra}
    if text is not None:
        line["response"] = {"candidates": [{"content": {"parts": [{"text": text}]},
                                             "finishReason": "STOP"}]}
    return json.dumps(line).encode()


FAILED = ('Too Many Requests: {"error": {"code": 429, "message": "quota", '
          '"status": "RESOURCE_EXHAUSTED"}}')


def test_duplicate_lines_resolve_to_the_success_then_the_latest_whatever_the_order(tmp_path):
    lines = [
        _line(0, status=FAILED),
        _line(0, text="first", time="2026-01-01T00:00:01.000+00:00"),
        _line(0, text="later", time="2026-01-01T00:00:02.000+00:00"),
        _line(1, status=FAILED, time="2026-01-01T00:00:01.000+00:00"),
        _line(1, status=FAILED.replace("quota", "quota again"),
              time="2026-01-01T00:00:03.000+00:00"),
    ]
    outcomes = set()
    for order in ([0, 1, 2, 3, 4], [4, 3, 2, 1, 0], [2, 0, 4, 1, 3]):
        builder = ResultBuilder(2, GENERATE)
        builder.add_job("job-1", np.array([0, 1]), parse_lines([lines[i] for i in order], tmp_path))
        out = builder.join(pd.DataFrame(index=[7, 7]))
        outcomes.add(tuple(out["text"].fillna("-")) + tuple(out["error_message"].fillna("-")))
    assert outcomes == {("later", "-", "-", "quota again")}


def test_rows_without_output_get_a_missing_status_and_stray_lines_are_ignored(tmp_path):
    builder = ResultBuilder(4, GENERATE)
    builder.skip(np.array([3]), np.array(["column 'p' is null"], dtype=object))
    builder.add_job("job-9", np.array([0, 1, 2]),
                    parse_lines([_line(1, text="b"), _line(17, text="stray"),
                                 b'{"status": "", "response": {}}', b'not json'], tmp_path))
    out = builder.join(pd.DataFrame({"p": list("abcd")}, index=list("wxyz")))
    assert out["status"].tolist() == [
        "missing: job job-9 wrote no output line for this row", "ok",
        "missing: job job-9 wrote no output line for this row", "skipped: column 'p' is null",
    ]
    assert out["text"].tolist()[1] == "b"
    assert out["job"].tolist()[:3] == ["job-9"] * 3 and pd.isna(out["job"].iloc[3])
    assert list(out.index) == list("wxyz")


def test_status_strings_parse_into_code_and_message():
    assert parse_status("") == (None, None)
    assert parse_status(FAILED) == (429, "quota")
    assert parse_status('Bad Request: {"error": {"code": 400, "message": "Invalid value", '
                        '"status": "INVALID_ARGUMENT", "details": []}}') == (400, "Invalid value")
    assert parse_status("Something odd happened") == (None, "Something odd happened")
    assert parse_status("Bad Request: {not json") == (None, "Bad Request: {not json")


def test_passthrough_and_non_integer_keys(tmp_path):
    parsed = parse_lines([b'{"pdbatch_row": "3", "status": "", "custom": 1}',
                          b'{"pdbatch_row": true}', b'{"pdbatch_row": 2.5}',
                          b'{"pdbatch_row": 2}', b'{"pdbatch_row": "x"}'], tmp_path)
    # a key that comes back as text is read as well; others are no row's (sorted by key)
    assert parsed.column("key").to_pylist() == [2, 3, None, None, None]


@pytest.mark.parametrize("family", ["gemini", "openai", "anthropic"])
def test_row_keys_come_back_as_numbers_or_as_text_and_no_row_is_lost(family, tmp_path):
    parser = {"gemini": gemini.PARSER, "openai": openai.PARSER,
              "anthropic": anthropic.PARSER}[family]
    lines = []
    for row in range(10):
        key = row if row % 2 else str(row)  # half of the keys as text, half as numbers
        lines.append(json.dumps({parser.key: key, "status": "", "response": {}}).encode())
    path = tmp_path / "predictions.jsonl"
    path.write_bytes(b"".join(line + b"\n" for line in lines))
    parsed = parse_output(engine.connect(), parser, [str(path)])
    assert parsed.column("key").to_pylist() == list(range(10))


def test_no_output_lines_at_all_leave_every_row_missing(tmp_path):
    builder = ResultBuilder(2, GENERATE)
    builder.add_job("job-0", np.array([0, 1]), parse_lines([], tmp_path))
    out = builder.join(pd.DataFrame(index=[0, 1]))
    assert out["status"].str.startswith("missing: job job-0").all()


def test_model_names_normalise():
    assert model_resource("gemini-2.5-flash") == "publishers/google/models/gemini-2.5-flash"
    assert model_resource("models/gemini-2.0-flash-001") == \
        "publishers/google/models/gemini-2.0-flash-001"
    for kept in ("publishers/google/models/gemini-2.5-pro",
                 "projects/p/locations/us-central1/publishers/google/models/gemini-2.5-pro",
                 "projects/123/locations/us-central1/models/456"):
        assert model_resource(kept) == kept


def test_an_output_directory_of_several_files_is_read_whole(fs, staging):
    """A large output may come in several files beside predictions.jsonl; the incremental
    files repeat rows and are left out once the final files exist."""
    from pdbatch.storage.gcs import GcsLocation

    folder = f"{staging}/run/output-00000/prediction-model-2026"
    fs.pipe(f"{folder}/predictions.jsonl", _line(0, text="a") + b"\n" + _line(1, text="b"))
    fs.pipe(f"{folder}/predictions_00001.jsonl", _line(2, text="c") + b"\n")
    fs.pipe(f"{folder}/incremental_predictions/part-1.jsonl", _line(0, text="early") + b"\n")
    location = GcsLocation(staging, "run-20261129-000000-abcdef", gemini.PARSER)
    parsed = location.collect(engine.connect(), 0, folder, False)
    assert parsed.column("key").to_pylist() == [0, 1, 2]
    assert parsed.column("text").to_pylist() == ["a", "b", "c"]

    fs.rm(f"{folder}/predictions.jsonl")  # a cancelled job: no final file, everything is read
    fs.rm(f"{folder}/predictions_00001.jsonl")
    parsed = location.collect(engine.connect(), 0, folder, False)
    assert parsed.column("text").to_pylist() == ["early"]
