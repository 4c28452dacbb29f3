"""The emulator's embeddings (embeddings-spec.md): deterministic vectors that mean something
(hashed word features, L2-normalised: texts that share words are closer than texts that do
not), the answers of both line formats, and the checks the services make of a request.

``vector(text, dims)`` is public so that a test can check every row got its own vector.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

_WORD = re.compile(r"\w+")
#: Vector sizes: the default and the range each model family takes.
GEMINI_DIMS, LEGACY_DIMS = (3072, 128, 3072), (768, 1, 768)
#: EmbedContentConfig's fields (Vertex REST page), snake_case; proto JSON takes camelCase too.
CONFIG_FIELDS = frozenset({"title", "task_type", "auto_truncate", "output_dimensionality",
                           "document_ocr", "audio_track_extraction"})
TASK_TYPES = frozenset({"TASK_TYPE_UNSPECIFIED", "UNSPECIFIED", "RETRIEVAL_QUERY",
                        "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY", "CLASSIFICATION",
                        "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION",
                        "CODE_RETRIEVAL_QUERY"})
#: A text-embedding instance's fields (``_TextEmbeddingModel`` online instances).
INSTANCE_FIELDS = frozenset({"content", "task_type", "title"})


def _slot(word: str, dims: int) -> tuple[int, float]:
    digest = hashlib.blake2b(word.encode(), digest_size=8).digest()
    number = int.from_bytes(digest, "little")
    return number % dims, (1.0 if number >> 63 else -1.0)


def vector(text: str, dims: int) -> np.ndarray:
    """The emulator's vector of ``text``: each lowercase word adds ±1 at a slot its hash
    picks; the sum is L2-normalised (a text without words gets the first unit vector)."""
    out = np.zeros(dims, dtype=np.float32)
    for word in _WORD.findall(text.lower()):
        slot, sign = _slot(word, dims)
        out[slot] += sign
    norm = float(np.linalg.norm(out))
    if not norm:
        out[0] = 1.0
        return out
    return out / np.float32(norm)


def _snake(key: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in str(key))


def _text(request: dict) -> str:
    content = request.get("content") or {}
    parts = content.get("parts") if isinstance(content, dict) else None
    return " ".join(p["text"] for p in parts or [] if isinstance(p, dict)
                    and isinstance(p.get("text"), str))


def _config(request: dict) -> dict:
    """The request's embed config, wherever it is put (``embed_content_config`` or, as the
    Developer API's file lines do, deprecated fields at the top of the request)."""
    config = request.get("embed_content_config", request.get("embedContentConfig")) or {}
    top = {k: v for k, v in request.items() if _snake(k) in CONFIG_FIELDS}
    return {_snake(k): v for k, v in {**top, **(config if isinstance(config, dict) else {})}
            .items()}


def gemini_problem(request: dict) -> str | None:
    """Why the service answers this Gemini embedding request 400, or None."""
    for key in request:
        if _snake(key) not in {"content", "embed_content_config", "model", *CONFIG_FIELDS}:
            return f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
    raw = request.get("embed_content_config", request.get("embedContentConfig"))
    for key in raw if isinstance(raw, dict) else {}:
        if _snake(key) not in CONFIG_FIELDS:
            return (f'Invalid JSON payload received. Unknown name "{key}" at '
                    "'embed_content_config': Cannot find field.")
    if not _text(request):
        return "Unable to submit request because it has an empty content field."
    config = _config(request)
    task = config.get("task_type")
    if task is not None and task not in TASK_TYPES:
        return f"Invalid value at 'embed_content_config.task_type': \"{task}\""
    return _dims_problem(config.get("output_dimensionality"), GEMINI_DIMS)


def legacy_problem(instance: dict) -> str | None:
    """Why the service answers this text-embedding instance 400, or None."""
    for key in instance:
        if key not in INSTANCE_FIELDS:
            return f'Invalid JSON payload received. Unknown name "{key}": Cannot find field.'
    if not isinstance(instance.get("content"), str) or not instance["content"]:
        return "The instance has no content."
    task = instance.get("task_type")
    if task is not None and task not in TASK_TYPES:
        return f'Invalid value at "task_type": "{task}"'
    return None


def _dims_problem(dims, bounds) -> str | None:
    if dims is None:
        return None
    _, low, high = bounds
    if isinstance(dims, bool) or not isinstance(dims, int) or not low <= dims <= high:
        return (f"output_dimensionality must be between {low} and {high}; got {dims}.")
    return None


def _words(text: str) -> int:
    return len(_WORD.findall(text))


def gemini_response(request: dict) -> dict:
    """An embedding answer (``{"tokenCount": "n", "embedding": {"values": [...]}}``)."""
    config = _config(request)
    text = _text(request)
    title = config.get("title")
    seen = f"{title} {text}" if title else text
    dims = config.get("output_dimensionality") or GEMINI_DIMS[0]
    return {"tokenCount": str(_words(seen)),
            "embedding": {"values": vector(seen, dims).tolist()}}


def legacy_predictions(instance: dict) -> list:
    """A text-embedding answer: ``[{"embeddings": {"statistics", "values"}}]``."""
    text, title = instance.get("content", ""), instance.get("title")
    seen = f"{title} {text}" if title else text
    return [{"embeddings": {"statistics": {"token_count": _words(seen), "truncated": False},
                            "values": vector(seen, LEGACY_DIMS[0]).tolist()}}]
