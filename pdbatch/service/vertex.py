"""Vertex AI batch prediction behind the ``BatchService`` seam.

Built on google-cloud-aiplatform's ``JobServiceClient`` and ``LlmUtilityServiceClient``
(imported lazily: they take about a second). The endpoint and transport come from
:class:`pdbatch.config.Settings`, so the same code talks to Vertex AI or to
``pdbatch.emulator``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping

from ..config import Settings
from .base import JobInfo

log = logging.getLogger(__name__)

_CREATE_ATTEMPTS = 5
_JOB_NAME = re.compile(r"^projects/([^/]+)/locations/([^/]+)/batchPredictionJobs/(\d+)$")


def job_place(name: str) -> tuple[str, str] | None:
    """``(project, location)`` of a job name ``projects/P/locations/L/batchPredictionJobs/N``,
    None when it is not one."""
    match = _JOB_NAME.match(name) if isinstance(name, str) else None
    return (match[1], match[2]) if match else None


def console_link(name: str) -> str:
    """The Cloud console page of a job."""
    match = _JOB_NAME.match(name)
    if not match:
        return ""
    return (f"https://console.cloud.google.com/vertex-ai/locations/{match[2]}/"
            f"batch-predictions/{match[3]}?project={match[1]}")


def credentials_for(settings: Settings, credentials):
    """Explicit credentials, else anonymous for a plain-HTTP (local) endpoint, else ADC.

    Credentials are never sent over plain HTTP: a local emulator gets anonymous ones.
    """
    if credentials is not None:
        return credentials
    if settings.api_endpoint.startswith("http://"):
        from google.auth.credentials import AnonymousCredentials

        return AnonymousCredentials()
    import google.auth

    creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/cloud-platform"])
    return creds


class VertexService:
    """Vertex AI ``batchPredictionJobs`` for one project and location."""

    def __init__(self, settings: Settings, credentials=None):
        from google.api_core import exceptions
        from google.api_core import retry as retries
        from google.api_core.client_options import ClientOptions
        from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

        self.settings = settings
        self._credentials = credentials_for(settings, credentials)
        self._client = JobServiceClient(
            transport=settings.transport, credentials=self._credentials,
            client_options=ClientOptions(api_endpoint=settings.api_endpoint),
        )
        # GETs and lists are idempotent: retry transient failures. A create is retried only
        # after a list shows that it did not happen (``submit``).
        self._transient = (exceptions.TooManyRequests, exceptions.ServiceUnavailable,
                           exceptions.InternalServerError, ConnectionError)
        self._get_retry = retries.Retry(
            predicate=retries.if_exception_type(*self._transient),
            initial=1.0, maximum=30.0, timeout=300.0,
        )

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
        delay = 1.0
        for attempt in range(_CREATE_ATTEMPTS):
            try:
                job = self._client.create_batch_prediction_job(
                    parent=self.settings.parent, batch_prediction_job=body)
                log.info("created %s (%s)", job.name, job.state.name)
                return job.name
            except self._transient as err:
                # The create may have happened with its answer lost: look before asking again,
                # so that a job is never started (and billed) twice.
                found = self.find(display_name, labels.get("pdbatch-run", ""))
                if found:
                    log.info("found %s, created by an earlier attempt", found)
                    return found
                if attempt == _CREATE_ATTEMPTS - 1:
                    raise
                log.warning("creating %s failed (%s); trying again in %.0f s", display_name,
                            err, delay)
                time.sleep(delay)
                delay = min(delay * 2, 30.0)
        raise AssertionError("unreachable")

    def find(self, display_name: str, run_id: str) -> str | None:
        """The job of this run with this display name, if one exists."""
        if not re.match(r"^[\w-]+$", display_name + run_id):
            return None
        jobs = self._client.list_batch_prediction_jobs(
            request={"parent": self.settings.parent,
                     "filter": f'display_name="{display_name}" AND labels.pdbatch-run="{run_id}"'},
            retry=self._get_retry)
        return next((job.name for job in jobs), None)

    def get(self, name: str) -> JobInfo:
        job = self._client.get_batch_prediction_job(name=name, retry=self._get_retry)
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
        )

    def cancel(self, name: str) -> None:
        """Ask the service to cancel a job (it ends CANCELLED, keeping what it wrote)."""
        self._client.cancel_batch_prediction_job(name=name, retry=self._get_retry)
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
