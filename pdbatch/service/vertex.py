"""Vertex AI batch prediction behind the ``BatchService`` seam.

Built on google-cloud-aiplatform's ``JobServiceClient`` and ``LlmUtilityServiceClient``
(imported lazily: they take about a second). The endpoint and transport come from
:class:`pdbatch.config.Settings`, so the same code talks to Vertex AI or to
``pdbatch.emulator``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping

from ..config import RETRY_DEADLINE, Settings, retry_deadline
from ..errors import ServiceError
from ..identifiers import whole
from .base import RUN_LABEL, JobInfo, create_once, gone

log = logging.getLogger(__name__)

_CREATE_ATTEMPTS = 5
_WARNED: set[str] = set()  # plain-HTTP endpoints already warned about
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_JOB_NAME = re.compile(r"projects/([a-z0-9.:-]+)/locations/([a-z0-9-]+)/batchPredictionJobs/(\d+)")
__all__ = ["RETRY_DEADLINE", "VertexService", "console_link", "credentials_for", "job_place",
           "retry_deadline"]


def _unreachable(err: Exception) -> ServiceError:
    return ServiceError(f"Vertex AI did not answer, or kept failing, for {retry_deadline():.0f} "
                        f"s ({getattr(err, 'cause', None) or err}).")


def job_place(name: str) -> tuple[str, str] | None:
    """``(project, location)`` of a job name ``projects/P/locations/L/batchPredictionJobs/N``,
    None when it is not one."""
    match = whole(_JOB_NAME, name)
    return (match[1], match[2]) if match else None


def console_link(name: str) -> str:
    """The Cloud console page of a job."""
    match = whole(_JOB_NAME, name)
    if not match:
        return ""
    return (f"https://console.cloud.google.com/vertex-ai/locations/{match[2]}/"
            f"batch-predictions/{match[3]}?project={match[1]}")


def credentials_for(settings: Settings, credentials):
    """Anonymous credentials for a plain-HTTP (local) endpoint, whatever was passed; else the
    explicit credentials; else application default credentials.

    Credentials are never sent over plain HTTP, where anyone on the way could read them.
    """
    if settings.api_endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        if credentials is not None and settings.api_endpoint not in _WARNED:
            _WARNED.add(settings.api_endpoint)
            log.warning("api_endpoint %s is plain HTTP: the credentials given are not sent "
                        "there (anonymous requests instead)", settings.api_endpoint)
        return AnonymousCredentials()
    if credentials is not None:
        return credentials
    import google.auth

    creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return creds


class VertexService:
    """Vertex AI ``batchPredictionJobs`` for one project and location."""

    lists_cheaply = True  # the service filters by label

    def __init__(self, settings: Settings, credentials=None):
        import requests
        from google.api_core import exceptions
        from google.api_core import retry as retries
        from google.api_core.client_options import ClientOptions
        from google.auth.exceptions import TransportError
        from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

        self.settings = settings
        self._credentials = credentials_for(settings, credentials)
        self._client = JobServiceClient(
            transport=settings.transport, credentials=self._credentials,
            client_options=ClientOptions(api_endpoint=settings.api_endpoint),
        )
        # GETs and lists are idempotent: retry transient failures (429, 5xx, a refused, reset
        # or timed-out connection: the REST transport raises requests' own exceptions) for up
        # to RETRY_DEADLINE seconds. A create is retried only after a list shows that it did
        # not happen (``create``).
        self._transient = (exceptions.TooManyRequests, exceptions.ServiceUnavailable,
                           exceptions.InternalServerError, exceptions.BadGateway,
                           exceptions.GatewayTimeout, ConnectionError,
                           requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                           TransportError)
        self._deadline = retry_deadline()
        self._get_retry = retries.Retry(
            predicate=retries.if_exception_type(*self._transient),
            initial=1.0, maximum=30.0, timeout=self._deadline,
        )
        self._gave_up = (exceptions.RetryError, *self._transient)
        # A job of another project is "denied", one that was deleted "not found".
        self._missing = (exceptions.NotFound, exceptions.PermissionDenied)

    def create(
        self,
        display_name: str,
        model: str,
        input_config: Mapping,
        output_config: Mapping,
        labels: Mapping[str, str],
    ) -> str:
        """Create a batch prediction job; returns its resource name. The configs come from
        a ``storage.Location`` (JSONL on Cloud Storage or a BigQuery table)."""
        body = {"display_name": display_name, "model": model,
                "input_config": dict(input_config), "output_config": dict(output_config),
                "labels": dict(labels)}

        def create() -> str:
            job = self._client.create_batch_prediction_job(
                parent=self.settings.parent, batch_prediction_job=body)
            log.info("created %s (%s)", job.name, job.state.name)
            return job.name

        return create_once(create, lambda: self.find(display_name, labels.get(RUN_LABEL, "")),
                           lambda err: isinstance(err, self._transient), _unreachable,
                           display_name, _CREATE_ATTEMPTS)

    def find(self, display_name: str, run_id: str) -> str | None:
        """The job of this run with this display name, if one exists."""
        if not whole(_NAME, display_name + run_id):
            return None
        jobs = self._list(f'display_name="{display_name}" AND labels.pdbatch-run="{run_id}"')
        return next((job.name for job in jobs), None)

    def labelled(self, key: str, value: str) -> list[JobInfo]:
        """Every job carrying the label ``key=value``, oldest first."""
        if not (whole(_NAME, key) and whole(_NAME, value)):
            return []
        jobs = sorted(self._list(f'labels.{key}="{value}"'), key=lambda job: job.create_time)
        return [self._info(job) for job in jobs]

    def _list(self, filter_: str) -> list:
        try:
            return list(self._client.list_batch_prediction_jobs(
                request={"parent": self.settings.parent, "filter": filter_},
                retry=self._get_retry))
        except self._gave_up as err:
            raise _unreachable(err) from err

    def get(self, name: str) -> JobInfo:
        try:
            job = self._client.get_batch_prediction_job(name=name, retry=self._get_retry)
        except self._gave_up as err:
            raise _unreachable(err) from err
        except self._missing as err:
            raise gone(name, f"Vertex AI ({self.settings.parent})") from err
        return self._info(job)

    @staticmethod
    def _info(job) -> JobInfo:
        stats = job.completion_stats
        return JobInfo(
            name=job.name,
            state=job.state.name,
            output_dir=job.output_info.gcs_output_directory,
            error_code=job.error.code,
            error_message=job.error.message,
            successful=stats.successful_count,
            failed=stats.failed_count,
            labels=dict(job.labels),
            input_uri=(list(job.input_config.gcs_source.uris) or [""])[0]
            or job.input_config.bigquery_source.input_uri,
            display_name=job.display_name,
            partial_failures=tuple(status.message for status in job.partial_failures),
            end_time=job.end_time.isoformat() if job.end_time else "",
        )

    def cancel(self, name: str) -> None:
        """Ask the service to cancel a job (it ends CANCELLED, keeping what it wrote)."""
        try:
            self._client.cancel_batch_prediction_job(name=name, retry=self._get_retry)
        except self._gave_up as err:
            raise _unreachable(err) from err
        log.info("asked to cancel %s", name)

    def count_tokens(self, model: str, texts: list[str], system: str) -> int:
        """Input tokens of ``texts`` (each with the ``system`` instruction, if any) for
        ``model`` (a publisher model resource), by the countTokens API."""
        from google.api_core.client_options import ClientOptions
        from google.cloud.aiplatform_v1 import LlmUtilityServiceClient

        client = LlmUtilityServiceClient(
            transport=self.settings.transport, credentials=self._credentials,
            client_options=ClientOptions(api_endpoint=self.settings.api_endpoint))
        endpoint = f"{self.settings.parent}/{model}"
        total = 0
        for text in texts:
            request = {"endpoint": endpoint, "model": endpoint,
                       "contents": [{"role": "user", "parts": [{"text": text}]}]}
            if system:
                request["system_instruction"] = {"parts": [{"text": system}]}
            total += client.count_tokens(request=request, timeout=20).total_tokens
        return total
