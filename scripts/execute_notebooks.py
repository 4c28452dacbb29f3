"""Execute the notebooks in notebooks/ in place, so that the documentation site (mkdocs-jupyter,
``execute: false``) shows their outputs.

``make notebooks`` runs it with the project's .venv (the test and local-model extras); re-run it
after changing a notebook and commit the notebooks with their outputs (tests/test_notebooks.py
checks that they have them). ``python scripts/execute_notebooks.py notebooks/quickstart.ipynb``
executes only the notebooks named.

Each notebook starts its own offline ``LocalStack``, so no Cloud account is needed. The kernel
is the one tests/test_notebooks.py uses (``python3``, the notebook's folder as working
directory), with ``ipywidgets`` hidden from it: pdbatch then draws its progress bar as text,
which the static site shows as it is (a widget would need the widget manager's JavaScript from a
CDN, which the site does not load). Variables that would point a notebook at a real service or
an existing runs folder are left out of the kernel's environment, and outputs that name a path
on this machine are refused.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = ROOT / "notebooks"
#: Prefixes of environment variables a notebook must not inherit (project, keys, emulators).
UNSET = ("PDBATCH_", "GOOGLE_", "GEMINI_", "STORAGE_EMULATOR_HOST", "BIGQUERY_EMULATOR_HOST")


def _kernel_env(shim: Path) -> dict[str, str]:
    """This environment without ``UNSET``, with ``shim`` (a failing ``ipywidgets``) first on
    the kernel's path and a temporary folder inside it (removed afterwards)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(UNSET)}
    (shim / "ipywidgets").mkdir()
    (shim / "ipywidgets" / "__init__.py").write_text("raise ImportError('hidden')\n")
    (shim / "tmp").mkdir()
    env["TMPDIR"] = str(shim / "tmp")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shim), env.get("PYTHONPATH")]))
    return env


def _leaks(notebook: nbformat.NotebookNode) -> list[str]:
    """Paths of this machine (home, temporary folder, the checkout) named in outputs."""
    local = {str(Path.home()), tempfile.gettempdir(), str(ROOT)} - {"/"}
    texts = [str(output) for cell in notebook.cells for output in cell.get("outputs", [])]
    return sorted({path for path in local for text in texts if path in text})


def execute(path: Path, env: dict[str, str]) -> None:
    """Run ``path`` top to bottom and write it back with its outputs."""
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3", record_timing=False,
                   store_widget_state=False,
                   resources={"metadata": {"path": str(path.parent)}}).execute(env=env)
    if leaks := _leaks(notebook):
        raise SystemExit(f"{path.name}: outputs name local paths {leaks}; not written")
    nbformat.write(notebook, path)


def main(argv: list[str]) -> None:
    paths = [Path(arg).resolve() for arg in argv] or sorted(NOTEBOOKS.glob("*.ipynb"))
    with tempfile.TemporaryDirectory(prefix="pdbatch-nb-") as shim:
        env = _kernel_env(Path(shim))
        for path in paths:
            print(f"executing {path.relative_to(ROOT)}", flush=True)
            execute(path, env)


if __name__ == "__main__":
    main(sys.argv[1:])
