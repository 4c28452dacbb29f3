"""What a user sees: the re-attach notice, result columns in reading order with consistent
dtypes, the views of runs, estimates and usage, and the cost guard where no one can answer."""

from __future__ import annotations

import enum
from typing import Literal

import nbformat
import pandas as pd
import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook
from pydantic import BaseModel

import pdbatch

FRAME = pd.DataFrame({"prompt": [f"question {i % 4}" for i in range(10)]})


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Answer(BaseModel):
    colour: Colour
    size: Literal["small", "large"]
    count: int


def test_a_call_that_re_attaches_says_so_and_progress_false_silences_it(staging, capsys):
    out = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging)
    first = capsys.readouterr().err
    assert "request/s" in first and "re-attached" not in first  # the bar counts requests

    again = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging)
    shown = capsys.readouterr().err
    run = out.attrs["pdbatch_run"]
    assert f"pdbatch: re-attached to {run} (succeeded)" in shown
    assert "no new job was created" in shown and "request/s" not in shown  # no bar: done
    pd.testing.assert_frame_equal(again, out)

    FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)
    assert capsys.readouterr().err == ""


def test_progress_bar_type_is_spelled_as_pandas_gbq_spells_it(staging, capsys):
    FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress_bar_type="tqdm")
    assert "request/s" in capsys.readouterr().err
    FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress_bar_type=None,
                               force=True)
    assert capsys.readouterr().err == ""  # no bar (and no re-attach notice: force)
    with pytest.raises(pdbatch.InputError, match="progress_bar_type='bar': choose 'tqdm'"):
        FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging,
                                   progress_bar_type="bar")


def test_result_columns_come_in_reading_order_with_consistent_dtypes(staging):
    out = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                     response_schema=Answer, max_retries=1)
    assert list(out.columns) == [
        "prompt", "text", "colour", "size", "count", "status", "error_code", "error_message",
        "finish_reason", "prompt_tokens", "output_tokens", "thought_tokens", "cached_tokens",
        "attempts", "job", "response"]
    # an Enum field and a Literal field are both strings
    assert str(out["colour"].dtype) == str(out["size"].dtype) == "string"
    assert str(out["count"].dtype) == "Int64"
    assert out["status"].value_counts().to_dict() == {"ok": len(FRAME)}


def test_estimates_runs_and_usage_read_well(staging):
    found = FRAME.gemini.estimate(prompt_col="prompt", staging=staging, count_tokens=False,
                                  prices={"gemini-2.5-flash": (1234.5, 100.0)})
    assert repr(found).startswith("<Estimate gemini-2.5-flash: $")
    assert "0000000" not in repr(found) and "for 4 requests (10 rows)" in repr(found)
    assert "<caption>Estimate</caption>" in found._repr_html_()

    run = FRAME.gemini.submit(prompt_col="prompt", staging=staging, progress=False)
    status = run.wait()
    assert repr(status) == "<RunStatus succeeded: 4/4 requests done, 1/1 jobs ended>"
    assert "<td>succeeded</td><td>4</td><td>0</td>" in status._repr_html_()

    elsewhere = staging + "-retried"  # the same call in one place would re-attach
    retried = FRAME.gemini.batch_predict(prompt_col="prompt", staging=elsewhere,
                                         progress=False, max_retries=2,
                                         labels={"emulator-row-errors": "429-100"})
    table = pdbatch.runs(elsewhere)
    assert str(table["created"].dtype).startswith("datetime64") and table["state"].eq(
        "succeeded").all()
    passes = table[table["pass"] != ""]
    assert len(passes) and (passes["parent"] == retried.attrs["pdbatch_run"]).all()
    assert set(passes["pass"]) <= {"/retry-1", "/retry-2"}

    usage = run.usage(FRAME)
    # 10 rows answered by 4 requests of 2 words: tokens are counted per request sent
    assert usage.rows["answered"] == len(FRAME) and usage.prompt_tokens == 8
    assert usage.cost is not None and usage.estimated_cost is not None
    assert "<svg" in usage._repr_html_() and "<b>Usage</b>" in run._repr_html_()
    assert repr(usage).startswith(f"<Usage {run.id} gemini-2.5-flash: 10 answered;")


def test_runs_of_a_mistyped_staging_location_are_none_with_a_warning(staging, caplog):
    assert pdbatch.runs(staging + "-typo").empty
    assert "no pdbatch runs are recorded in" in caplog.text


def test_the_cost_guard_refuses_in_a_kernel_no_one_can_answer(stack):
    """A scheduled notebook: the kernel has no stdin, so the guard refuses as a script does
    (it used to crash with StdinNotImplementedError)."""
    code = (
        "import os, pandas as pd, pdbatch\n"
        f"os.environ.update({dict(stack.env)!r})\n"
        "try:\n"
        "    pd.DataFrame({'p': ['a', 'b']}).gemini.batch_predict(prompt_col='p', "
        "max_rows=1, progress=False)\n"
        "except pdbatch.InputError as err:\n"
        "    print('refused:', err)\n")
    notebook = new_notebook(cells=[new_code_cell(code)])
    NotebookClient(notebook, timeout=120, kernel_name="python3").execute()
    shown = "".join(o.get("text", "") for o in notebook.cells[0].outputs)
    assert "refused: Not submitted: 2 requests is over max_rows=1" in shown
    assert "StdinNotImplementedError" not in shown


@pytest.fixture(autouse=True)
def _quiet_nbformat():  # nbformat warns about cells without ids in in-memory notebooks
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", nbformat.validator.MissingIDFieldWarning)
        yield
