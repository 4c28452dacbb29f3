"""The batch service seam: what varies by service, and create, get, find, cancel and count
tokens, as ``JobInfo``.

``kind(settings)`` is the service a run's settings chose, as an object that answers everything
that varies by service (the options it refuses, its schema dialect, where its inputs are
staged, its job names, how a run is attached): Vertex AI's ``batchPredictionJobs`` through
google-cloud-aiplatform (``service.vertex``), or the Gemini Developer API's batches through
google-genai (``service.gemini_api``). ``open_service(settings, credentials)`` connects to it.
Everything above this package speaks ``JobInfo`` and the states below, never a client
library's types, and never compares service names; ``wait`` polls any ``BatchService``.
"""

from __future__ import annotations

from ..config import Settings, service_of
from .base import (
    RUN_LABEL,
    SUCCESS_STATES,
    TERMINAL_STATES,
    BatchService,
    JobInfo,
    ServiceKind,
    look,
    wait,
)
from .gemini_api import GeminiApiService
from .vertex import VertexService, console_link, job_place

__all__ = ["RUN_LABEL", "SUCCESS_STATES", "TERMINAL_STATES", "BatchService", "JobInfo",
           "ServiceKind", "console_link", "is_job_name", "job_place", "kind", "kind_of_job",
           "look", "open_service", "wait"]

_KINDS: tuple[type, ...] = (VertexService, GeminiApiService)


def kind(settings: Settings | str | None) -> ServiceKind:
    """The service of a run's settings (or of a service name, or ``PDBATCH_SERVICE``)."""
    name = settings.service if isinstance(settings, Settings) else service_of(settings)
    return next(found for found in _KINDS if found.name == name)


def kind_of_job(name: object) -> ServiceKind | None:
    """The service whose job names look like ``name``, if any."""
    return next((found for found in _KINDS if found.is_job_name(name)), None)


def open_service(settings: Settings, credentials=None) -> BatchService:
    """The batch service of a run's settings, connected."""
    return kind(settings)(settings, credentials)


def is_job_name(name: object) -> bool:
    """Whether ``name`` is a job's resource name on either service."""
    return kind_of_job(name) is not None
