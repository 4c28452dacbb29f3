"""The notebooks run top to bottom against the offline stack."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOKS = Path(__file__).parent.parent / "notebooks"


def _outputs(cell) -> str:
    return "".join(o.get("text", "") + str(o.get("data", {}).get("text/plain", ""))
                   for o in cell.outputs)


def test_quickstart_notebook_executes():
    notebook = nbformat.read(NOTEBOOKS / "quickstart.ipynb", as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert "[system: You are a bookseller.] echo: Write a two-sentence blurb for Beloved by " \
           "Toni Morrison." in _outputs(code[2])
    assert "3 of 3 rows answered" in _outputs(code[2])
    assert "row 1 (index 1): column 'prompt' is null" in _outputs(code[3])


def test_bigquery_notebook_executes():
    notebook = nbformat.read(NOTEBOOKS / "bigquery.ipynb", as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert "llm_status" in _outputs(code[2]) and "103" in _outputs(code[2])
    assert "103 echo: Classify the sentiment of this review: Great value!" in _outputs(code[3])
    assert _outputs(code[4]).strip() == "True"


def test_local_model_notebook_executes():
    notebook = nbformat.read(NOTEBOOKS / "local_model.ipynb", as_version=4)
    NotebookClient(notebook, timeout=180, kernel_name="python3",
                   resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    code = [c for c in notebook.cells if c.cell_type == "code"]
    blurbs = _outputs(code[1])
    assert "Dune" in blurbs and "echo:" not in blurbs  # the model's words, not an echo
    rated = _outputs(code[2])
    assert "positive" in rated or "negative" in rated
