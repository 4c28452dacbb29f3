"""The emulator's default responder: a deterministic answer derived from the request.

The answer quotes the request's text, so a test can prove that every row got the answer to
its own request (a cross-wired join shows up as a mismatch).
"""

from __future__ import annotations

from typing import Any

MODEL_VERSION = "pdbatch-emulator-1"


def _texts(content: Any) -> list[str]:
    """The text parts of one Content (camelCase or snake_case keys both accepted)."""
    if not isinstance(content, dict):
        return []
    parts = content.get("parts") or []
    return [p["text"] for p in parts if isinstance(p, dict) and isinstance(p.get("text"), str)]


def echo_text(request: dict) -> str:
    """The answer text for a Gemini request: ``[system: S] echo: <user text>``."""
    system = request.get("systemInstruction") or request.get("system_instruction")
    user = [t for c in request.get("contents") or [] for t in _texts(c)]
    prefix = f"[system: {' '.join(_texts(system))}] " if system else ""
    return f"{prefix}echo: {' '.join(user)}"


def _count_tokens(text: str) -> int:
    return len(text.split())


def deterministic_response(request: dict) -> dict:
    """A GenerateContentResponse (REST camelCase) answering ``request``."""
    text = echo_text(request)
    prompt_tokens = sum(
        _count_tokens(t) for c in request.get("contents") or [] for t in _texts(c)
    )
    output_tokens = _count_tokens(text)
    return {
        "candidates": [
            {
                "content": {"role": "model", "parts": [{"text": text}]},
                "finishReason": "STOP",
                "avgLogprobs": -0.05,
            }
        ],
        "modelVersion": MODEL_VERSION,
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt_tokens + output_tokens,
        },
    }
