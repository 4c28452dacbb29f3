"""The batch service seam: create, get, find, cancel and count tokens, as ``JobInfo``.

``open_service(settings, credentials)`` gives the implementation for a run's settings: Vertex
AI's ``batchPredictionJobs`` through google-cloud-aiplatform (``service.vertex``). Everything
above this package speaks ``JobInfo`` and the states below, never a client library's types;
``wait`` polls any ``BatchService``.
"""

from __future__ import annotations

from ..config import Settings
from .base import SUCCESS_STATES, TERMINAL_STATES, BatchService, JobInfo, wait
from .vertex import VertexService, console_link, job_place

__all__ = ["SUCCESS_STATES", "TERMINAL_STATES", "BatchService", "JobInfo", "console_link",
           "job_place", "open_service", "wait"]


def open_service(settings: Settings, credentials=None) -> BatchService:
    """The batch service of a run's settings."""
    return VertexService(settings, credentials)
