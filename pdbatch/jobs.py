"""The Vertex AI job client: submit, poll with backoff, report terminal states.

Built on google-cloud-aiplatform's ``JobServiceClient`` (imported lazily: it takes about a
second). The endpoint and transport come from :class:`pdbatch.config.Settings`, so the same code
talks to Vertex AI or to ``pdbatch.emulator``.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .config import Settings

log = logging.getLogger(__name__)

SUCCESS_STATES = {"JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"}
#: Terminal states. PAUSED is listed because a paused job does nothing until someone resumes it.
TERMINAL_STATES = SUCCESS_STATES | {
    "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED", "JOB_STATE_PAUSED",
}
_FIRST_POLL, _MAX_POLL, _GROWTH = 0.25, 30.0, 1.5
_CREATE_ATTEMPTS = 5


@dataclass(frozen=True)
class JobInfo:
    """What pdbatch needs to know of a job after a GET."""

    name: str
    state: str
    output_dir: str
    error_code: int
    error_message: str
    successful: int
    failed: int
    labels: Mapping[str, str] = field(default_factory=dict)
    input_uri: str = ""  # the first input file, or the input table

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state in SUCCESS_STATES


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


class JobClient:
    """Vertex AI ``batchPredictionJobs`` for one project and location."""

    def __init__(self, settings: Settings, credentials=None):
        from google.api_core import exceptions
        from google.api_core import retry as retries
        from google.api_core.client_options import ClientOptions
        from google.cloud.aiplatform_v1.services.job_service import JobServiceClient

        self.settings = settings
        self._client = JobServiceClient(
            transport=settings.transport,
            credentials=credentials_for(settings, credentials),
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

    def submit(
        self,
        display_name: str,
        model: str,
        input_config: Mapping,
        output_config: Mapping,
        labels: Mapping[str, str],
    ) -> str:
        """Create a batch prediction job; returns its resource name. The configs come from
        ``pdbatch.locations`` (JSONL on Cloud Storage or a BigQuery table)."""
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

    def wait(
        self,
        names: list[str],
        on_poll: Callable[[list[JobInfo]], None] | None = None,
        timeout: float | None = None,
        running_at_most: int | None = None,
    ) -> list[JobInfo]:
        """Poll jobs with exponential backoff (0.25 s growing to 30 s) until every one is
        terminal (or, with ``running_at_most``, until no more than that many are not);
        ``on_poll`` sees each round's infos. TimeoutError after ``timeout`` seconds (the jobs
        keep running)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = _FIRST_POLL
        infos: dict[str, JobInfo] = {}
        while True:
            for name in names:
                if name not in infos or not infos[name].done:
                    info = self.get(name)
                    if name not in infos or infos[name].state != info.state:
                        log.info("%s is %s", name, info.state)
                    infos[name] = info
            ordered = [infos[name] for name in names]
            if on_poll:
                on_poll(ordered)
            if sum(not info.done for info in ordered) <= (running_at_most or 0):
                return ordered
            if deadline is not None and time.monotonic() + delay > deadline:
                raise TimeoutError(f"{sum(not i.done for i in ordered)} of {len(names)} jobs "
                                   f"still running after {timeout} s")
            time.sleep(delay)
            delay = min(delay * _GROWTH, _MAX_POLL)
