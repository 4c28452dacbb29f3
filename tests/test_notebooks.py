"""The notebooks run top to bottom against the offline stack."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest
from helpers import skip_without_local_bigquery, skip_without_local_model
from nbclient import NotebookClient
from nbconvert import HTMLExporter

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


def _outputs(cell) -> str:
    return "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                   for o in cell.outputs)


#: Output that means the user saw noise: a warning, or a text bar that was never cleaned up.
NOISE = ("Warning", "warn(", "Traceback", "IProgress")


def _shows_something(source: str) -> bool:
    """Whether a cell's code prints or ends in an expression, so that executing it gives an
    output (a bare ``x.stop()`` call, which returns None, is no such expression)."""
    body = ast.parse(source).body
    prints = any(isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"
                 for node in ast.walk(ast.Module(body=body, type_ignores=[])))
    last = body[-1] if body else None
    stop = isinstance(last, ast.Expr) and isinstance(last.value, ast.Call) \
        and getattr(last.value.func, "attr", None) == "stop"
    return prints or (isinstance(last, ast.Expr) and not stop)


def unexecuted(notebook) -> list[str]:
    """What shows that a committed notebook was not executed top to bottom (``make
    notebooks``): code cells without execution counts 1, 2, 3, ..., cells that print or end in
    an expression but have no output, and errors or warnings among the outputs."""
    problems = []
    code = [c for c in notebook.cells if c.cell_type == "code"]
    if [c.execution_count for c in code] != list(range(1, len(code) + 1)):
        problems.append(f"execution counts {[c.execution_count for c in code]}")
    for number, cell in enumerate(code):
        if _shows_something(cell.source) and not cell.outputs:
            problems.append(f"code cell {number} has no output: {cell.source[:60]!r}")
        if any(o.output_type == "error" for o in cell.outputs) or \
                [n for n in NOISE if n in _outputs(cell)]:
            problems.append(f"code cell {number} shows an error or a warning")
    return problems


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.name)
def test_the_committed_notebooks_carry_their_outputs(path):
    """The site shows the notebooks as committed (mkdocs-jupyter does not run them)."""
    assert unexecuted(nbformat.read(path, as_version=4)) == []


def test_the_outputs_check_fails_on_a_notebook_without_outputs():
    notebook = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    for cell in notebook.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    problems = unexecuted(notebook)
    assert problems[0].startswith("execution counts [None")
    assert "code cell 3 has no output: 'books = pd.DataFrame(" in "\n".join(problems)
    assert "code cell 8 has no output: 'try:" in "\n".join(problems)  # print(err) in except
    # the %pip cell, the imports and stack.stop() show nothing
    assert not any(f"code cell {n} " in p for p in problems for n in (0, 1, 9))
    assert len(problems) == 1 + 7  # the counts, and the 7 cells that show something


def _executed(name: str, **client_options):
    """Notebook ``name`` executed top to bottom in its folder (``client_options`` for
    nbclient), and its code cells."""
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}, **client_options).execute()
    return notebook, [c for c in notebook.cells if c.cell_type == "code"]


def _progress_outputs(cell) -> int:
    """How many outputs of a cell are progress bars: widget views or text bars."""
    return sum(1 for o in cell.outputs if "application/vnd.jupyter.widget-view+json" in
               o.get("data", {}) or "request/s" in o.get("text", "")
               + o.get("data", {}).get("text/plain", ""))


@pytest.mark.parametrize("widgets", [True, False], ids=["ipywidgets", "no-ipywidgets"])
def test_quickstart_notebook_executes_cleanly_with_and_without_ipywidgets(widgets, tmp_path,
                                                                          monkeypatch):
    if not widgets:  # a kernel where ``import ipywidgets`` fails, as in a plain Jupyter
        blocked = tmp_path / "ipywidgets"
        blocked.mkdir()
        (blocked / "__init__.py").write_text("raise ImportError('not installed here')\n")
        monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    notebook, code = _executed("quickstart.ipynb", store_widget_state=widgets)
    for cell in code:
        assert not [n for n in NOISE if n in _outputs(cell)], (cell.source, _outputs(cell))
        assert _progress_outputs(cell) <= 1, cell.outputs
    first = code[3]
    assert _progress_outputs(first) == 1  # the run's bar, counting requests
    if widgets:
        assert any("application/vnd.jupyter.widget-view+json" in o.get("data", {})
                   for o in first.outputs)
    else:
        assert "3/3 [" in _outputs(first) and "1/1 jobs done, succeeded" in _outputs(first)
    assert "[system: You are a bookseller.] echo: Write a two-sentence blurb for Beloved by " \
           "Toni Morrison." in _outputs(code[4])
    assert "ok" in _outputs(code[4]) and "3" in _outputs(code[4])  # value_counts: ok 3
    notice = _outputs(code[5])
    assert "re-attached to run-" in notice and "no new job was created" in notice
    assert _progress_outputs(code[5]) == 0 and "True" in notice  # no bar for a finished run
    assert "succeeded" in _outputs(code[6])  # runs(): its state
    assert "<b>Usage</b>" in code[7].outputs[0]["data"]["text/html"]
    assert "row 1 (index 1): column 'prompt' is null" in _outputs(code[8])

    page, _ = HTMLExporter().from_notebook_node(notebook)  # what a reader of the page sees
    assert "TqdmWarning" not in page and "3 answered" in page
    assert "re-attached to run-" in page


def test_bigquery_notebook_executes():
    skip_without_local_bigquery()
    _, code = _executed("bigquery.ipynb")
    assert "llm_status" in _outputs(code[3]) and "103" in _outputs(code[3])
    assert "103 echo: Classify the sentiment of this review: Great value!" in _outputs(code[4])
    assert _outputs(code[5]).strip() == "True"


def test_local_model_notebook_executes():
    skip_without_local_model()
    _, code = _executed("local_model.ipynb")
    blurbs = _outputs(code[2])
    assert "Dune" in blurbs and "echo:" not in blurbs  # the model's words, not an echo
    rated = _outputs(code[3])
    assert "positive" in rated or "negative" in rated


def test_gemini_api_notebook_executes(tmp_path, monkeypatch):
    """The Developer API notebook, with the environment its LocalStack exports
    (GOOGLE_GEMINI_BASE_URL, a dummy GEMINI_API_KEY) and its runs in a temporary folder."""
    monkeypatch.setenv("HOME", str(tmp_path))  # the default runs folder would be in here
    for name in ("PDBATCH_SERVICE", "PDBATCH_RUNS_FOLDER", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    _, code = _executed("gemini_api.ipynb")
    for cell in code:
        assert not [n for n in NOISE if n in _outputs(cell)], (cell.source, _outputs(cell))
    exported = _outputs(code[2])
    assert "GOOGLE_GEMINI_BASE_URL" in exported and "GEMINI_API_KEY" in exported
    assert "ok" in _outputs(code[3]) and "STOP" in _outputs(code[3])
    assert "[system: You are a bookseller.] echo: Write a two-sentence blurb for Beloved by " \
           "Toni Morrison." in _outputs(code[4])
    assert "batches/" in _outputs(code[4]) and "'response']" in _outputs(code[4])
    assert "succeeded" in _outputs(code[5])  # runs(service="gemini-api")
    assert "(True, 'succeeded: 3/3 requests done" in _outputs(code[6])  # attach("batches/…")
    assert "'llm_year': Int64Dtype()" in _outputs(code[7]) and "ok" in _outputs(code[7])
    assert "labels= is a Vertex AI option" in _outputs(code[8])
    assert not (tmp_path / ".pdbatch").exists()  # the runs went to the notebook's own folder
