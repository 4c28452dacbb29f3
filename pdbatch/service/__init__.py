"""The batch service seam: create, get, find, cancel and count tokens, as ``JobInfo``.

``open_service(settings, credentials)`` gives the implementation for a run's settings: Vertex
AI's ``batchPredictionJobs`` through google-cloud-aiplatform (``service.vertex``), or the
Gemini Developer API's batches through google-genai (``service.gemini_api``). Everything
above this package speaks ``JobInfo`` and the states below, never a client library's types;
``wait`` polls any ``BatchService``.
"""

from __future__ import annotations

from ..config import GEMINI_API, Settings
from .base import RUN_LABEL, SUCCESS_STATES, TERMINAL_STATES, BatchService, JobInfo, look, wait
from .gemini_api import GeminiApiService, is_batch_name
from .vertex import VertexService, console_link, job_place

__all__ = ["RUN_LABEL", "SUCCESS_STATES", "TERMINAL_STATES", "BatchService", "JobInfo",
           "console_link", "is_job_name", "job_place", "look", "open_service", "wait"]


def open_service(settings: Settings, credentials=None) -> BatchService:
    """The batch service of a run's settings."""
    if settings.service == GEMINI_API:
        return GeminiApiService(settings)
    return VertexService(settings, credentials)


def is_job_name(name: object) -> bool:
    """Whether ``name`` is a job's resource name on either service."""
    return is_batch_name(name) or (isinstance(name, str) and job_place(name) is not None)
