"""A real embedding model behind the offline stack: ``LocalStack(embed_model=True)`` answers
embedding requests with WordLlama (the ``embed-model`` extra) instead of the hashed-word
vectors. Its vectors are checked for what only a model gives: texts about the same thing that
share no word are closer than texts that share words but not the topic."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest
from helpers import skip_without_embed_model

import pdbatch
from pdbatch.emulator import LocalStack
from pdbatch.emulator.embeddings import vector

TEXTS = ["The cat slept on the sofa all afternoon.",
         "A kitten napped on the couch.",
         "The bank raised its interest rates.",
         "The cat watched the bank of the river."]


@pytest.fixture(scope="module")
def embed_stack():
    skip_without_embed_model()
    with LocalStack(embed_model=True) as local:
        yield local


@pytest.mark.parametrize(("model", "service", "dims"), [
    ("gemini-embedding-001", "vertex", 256), ("text-embedding-005", "vertex", 768),
    ("gemini-embedding-001", "gemini-api", 128)])
def test_the_local_embedding_model_answers_with_meaningful_vectors(embed_stack, model,
                                                                   service, dims):
    df = pd.DataFrame({"text": TEXTS})
    options = {"staging": f"gs://{embed_stack.bucket}/embed-model"} if service == "vertex" \
        else {"service": "gemini-api"}
    arguments = {"output_dimensionality": dims} if model.startswith("gemini") else {}
    out = df.gemini.embed(text_col="text", model=model, progress=False, **options,
                          **arguments)
    assert (out["status"] == "ok").all(), out["error_message"].tolist()
    matrix = pdbatch.vectors(out)
    assert matrix.shape == (4, dims)
    np.testing.assert_allclose(np.linalg.norm(matrix, axis=1), 1, atol=1e-5)
    hashed = np.stack([vector(t, dims) for t in TEXTS])
    assert not np.allclose(matrix, hashed, atol=1e-3)  # not the emulator's own vectors
    cosine = matrix @ matrix.T
    # cat/kitten share no content word, yet are closer than cat/"cat ... bank"
    assert cosine[0, 1] > cosine[0, 3] and cosine[0, 1] > cosine[0, 2]


def test_loading_the_model_in_a_thread_prints_no_log_lines_of_the_users_thread():
    """Importing wordllama calls ``logging.basicConfig(level=INFO)``; the emulator loads it
    in its own thread while the user's thread logs: no INFO line may reach the console."""
    skip_without_embed_model()
    script = textwrap.dedent("""
        import logging, threading
        from pdbatch.emulator.localembed import WordLlamaEmbedder
        loading = threading.Thread(target=lambda: WordLlamaEmbedder()("warm up", 8))
        loading.start()
        while loading.is_alive():
            logging.getLogger("pdbatch.probe").info("an INFO line of the user's thread")
        loading.join()
        logging.getLogger("pdbatch.probe").info("an INFO line of the user's thread")
        print("root handlers:", logging.getLogger().handlers)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120, check=True)
    assert "INFO" not in done.stderr, done.stderr[-2000:]
    assert "root handlers: []" in done.stdout
