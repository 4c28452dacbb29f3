"""The REST pieces both emulated APIs share (Vertex AI's and the Gemini Developer API's): the
error they answer synchronously, a list call's page, and their timestamps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any


class ServiceError(Exception):
    """An error the service answers synchronously, as the google.rpc.Status envelope."""

    def __init__(self, code: int, status: str, message: str):
        super().__init__(message)
        self.code, self.status, self.message = code, status, message

    def envelope(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


def invalid_argument(message: str) -> ServiceError:
    """The 400 ``INVALID_ARGUMENT`` error, the answer to a malformed request."""
    return ServiceError(400, "INVALID_ARGUMENT", message)


def page_of(names: list, start: int, size: int, field: str, show: Callable[[Any], dict]
            ) -> dict:
    """A list call's answer: the ``size`` names from the ``start``-th, each as ``show`` gives
    it, under ``field`` (left out when the page is empty), and ``nextPageToken`` (the next
    page's start) when more follow."""
    page = [show(name) for name in names[start:start + size]]
    out: dict = {field: page} if page else {}
    if start + size < len(names):
        out["nextPageToken"] = str(start + size)
    return out


def rfc3339(t: float) -> str:
    """RFC3339 UTC timestamp with microseconds and ``Z``, as Vertex writes them."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
