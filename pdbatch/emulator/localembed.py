"""A real embedding model for the offline stack: WordLlama's ``l2_supercat_256`` (256-dim
token embeddings pooled per text, MIT; the weights ship inside the ``wordllama`` wheel, 19 MB,
and are loaded from it: nothing is downloaded at run time). ``pip install
"pdbatch[embed-model]"`` installs it; the ``local-model`` extra includes it.

``LocalStack(embed_model=True)`` (or ``local_model=True``, which also serves the local
generate model; ``pdbatch emulator --embed-model`` / ``--local-model``) answers every
embedding request with it instead of the emulator's hashed-word vectors.
"""

from __future__ import annotations

import importlib.util
import threading
from pathlib import Path

import numpy as np

#: The model's own vector size.
DIMS = 256
_INSTALL = 'pip install "pdbatch[embed-model]" (a wheel, installed in seconds)'


def installed() -> bool:
    """Whether wordllama is installed (without importing it)."""
    try:
        return importlib.util.find_spec("wordllama") is not None
    except (ImportError, ValueError):
        return False


def _load():
    """The packaged model. Importing wordllama calls ``logging.basicConfig(level=INFO)``,
    which would print every library's INFO lines (pdbatch's among them) to the user's
    console. ``basicConfig`` does nothing where the root logger has a handler: a
    ``NullHandler`` stands there during the import. (Putting the root's handlers and level
    back afterwards is not enough: the model loads in the emulator's thread, and the user's
    thread logs through the root meanwhile.)"""
    import logging

    root = logging.getLogger()
    placeholder = logging.NullHandler()
    root.addHandler(placeholder)
    try:
        import wordllama
    finally:
        root.removeHandler(placeholder)
    return wordllama.WordLlama.load(cache_dir=Path(wordllama.__file__).parent,
                                    disable_download=True)


class WordLlamaEmbedder:
    """``embedder(text, dims)``: the text's unit vector of ``dims`` floats. Fewer than 256:
    the vector's first ``dims`` values, renormalised (as Google's reduced sizes are); more:
    the 256 values followed by zeros (the same cosines). Loaded at first use, thread-safe."""

    def __init__(self, install: str = _INSTALL):
        if not installed():
            raise RuntimeError(f"The local embedding model needs wordllama: {install}.")
        self._model = None
        self._lock = threading.Lock()

    def _loaded(self):
        with self._lock:
            if self._model is None:
                self._model = _load()
            return self._model

    def __call__(self, text: str, dims: int) -> np.ndarray:
        full = np.asarray(self._loaded().embed([text], norm=True)[0], dtype=np.float32)
        out = np.zeros(dims, dtype=np.float32)
        out[:min(dims, DIMS)] = full[:dims]
        norm = float(np.linalg.norm(out))
        if not norm:
            out[0] = 1.0
            return out
        return out / np.float32(norm)
