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
from functools import partial

from .. import multimodal, storage
from ..config import VERTEX, Settings, job_settings, retry_deadline
from ..errors import InputError, ServiceError
from ..identifiers import whole
from ..storage import Destination, Location, Staged
from .base import RUN_LABEL, JobInfo, create_once, gone

log = logging.getLogger(__name__)

_WARNED: set[str] = set()  # plain-HTTP endpoints already warned about
_NAME = re.compile(r"[A-Za-z0-9_-]+")
_JOB_NAME = re.compile(r"projects/([a-z0-9.:-]+)/locations/([a-z0-9-]+)/batchPredictionJobs/(\d+)")


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


def input_config(staged: Staged) -> dict:
    """A job's ``input_config`` reading what storage staged."""
    if staged.table:
        return {"instances_format": "bigquery", "bigquery_source": {"input_uri": staged.uris[0]}}
    return {"instances_format": "jsonl", "gcs_source": {"uris": list(staged.uris)}}


def output_config(destination: Destination) -> dict:
    """A job's ``output_config`` writing where storage says."""
    if destination.table:
        return {"predictions_format": "bigquery",
                "bigquery_destination": {"output_uri": destination.uri}}
    return {"predictions_format": "jsonl",
            "gcs_destination": {"output_uri_prefix": destination.uri}}


class VertexService:
    """Vertex AI ``batchPredictionJobs`` for one project and location. Its class attributes
    and static methods are what varies by service (``service.kind``); an instance talks to
    the service."""

    name, title = VERTEX, "Vertex AI"
    lists_cheaply = True  # the service filters by label
    converges = False  # runs are claimed in the staging location, which every machine shares
    openapi_schema = False  # response schemas are sent as JSON Schema

    @staticmethod
    def refuse(options) -> None:
        """Refuse options Vertex AI does not take."""
        if options.api_key is not None:
            raise InputError("api_key= is the Gemini Developer API's: pass service='gemini-api' "
                             "with it (Vertex AI uses credentials= or application default "
                             "credentials).")

    @staticmethod
    def check_model(resource: str) -> None:
        """Every family's models run on Vertex AI."""

    @staticmethod
    def check_locations(settings: Settings, family, model: str, credentials, rows: int) -> None:
        """Refuse staging or output locations the run cannot use, before anything is staged:
        a table location for a family without table input, and (for a frame with rows) a
        bucket or dataset that does not exist or, for a dataset, is in another region."""
        for name, uri in (("staging", settings.staging), ("output", settings.output_location)):
            if name == "output" and uri == settings.staging:
                continue
            if storage.tabular(uri) and not family.table_input:
                raise InputError(f"BigQuery staging and output support Gemini models in this "
                                 f"version; stage {model!r} on Cloud Storage "
                                 "(staging='gs://...').")
            if rows:
                storage.check(uri, name, settings.location, settings.project, credentials)

    @staticmethod
    def locations(run_id: str, settings: Settings, parser, credentials=None, labels=None,
                  carried=()) -> tuple[Location, Location]:
        """Where a run's inputs are staged and where its jobs write (the same object when
        they are the same place)."""
        def location(uri: str) -> Location:
            return storage.open_location(uri, run_id, parser, project=settings.project,
                                         credentials=credentials, labels=labels,
                                         carried=carried)

        inputs = location(settings.staging)
        if settings.output_location == settings.staging:
            return inputs, inputs
        return inputs, location(settings.output_location)

    @staticmethod
    def plan_files(df, files, reasons, roots: list[str], settings: Settings, credentials
                   ) -> multimodal.FilePlan:
        """The checked file columns: ``gs://`` objects as they are, local files uploaded to
        the files folder of the first location that can hold them (staging, else output)."""
        hosts = [u for u in (settings.staging, settings.output_location)
                 if storage.hosts_files(u)]
        plan = multimodal.plan(df, files, reasons,
                               storage.files_folder(hosts[0]) if hosts else "", roots,
                               partial(storage.missing_files, credentials=credentials))
        if plan.local and not hosts:
            raise InputError("Local files and bytes are uploaded to Cloud Storage before the "
                             "run: pass a gs:// staging or output location, or use gs:// URIs.")
        return plan

    @staticmethod
    def fingerprint_place(settings: Settings) -> dict:
        """Where a run goes, as its fingerprint covers it."""
        return {"staging": settings.staging, "output": settings.output_location,
                "project": settings.project, "location": settings.location}

    @staticmethod
    def pinned(options, settings: Settings):
        """``options`` with the service and where the run goes fixed (for Dask workers)."""
        return options.replace(service=settings.service, project=settings.project,
                               location=settings.location, staging=settings.staging)

    @staticmethod
    def attach_call(run_id: str, settings: Settings) -> str:
        """The call that picks a run up in another process."""
        return f"pdbatch.attach({run_id!r}, staging={settings.staging!r})"

    @staticmethod
    def is_job_name(name: object) -> bool:
        """Whether ``name`` is a batch prediction job's resource name."""
        return isinstance(name, str) and job_place(name) is not None

    @staticmethod
    def job_settings(name: str, staging: str | None, api_endpoint: str | None,
                     transport: str, api_key: str | None) -> Settings:
        """The settings that reach job ``name`` (its project and location)."""
        project, location = job_place(name)
        return job_settings(project, location, api_endpoint, transport)

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
        staged: Staged,
        destination: Destination,
        labels: Mapping[str, str],
    ) -> str:
        """Create a batch prediction job reading what storage ``staged`` (JSONL on Cloud
        Storage or a BigQuery table) and writing to ``destination``; its resource name."""
        body = {"display_name": display_name, "model": model,
                "input_config": input_config(staged), "output_config": output_config(destination),
                "labels": dict(labels)}

        def create() -> str:
            job = self._client.create_batch_prediction_job(
                parent=self.settings.parent, batch_prediction_job=body)
            log.info("created %s (%s)", job.name, job.state.name)
            return job.name

        return create_once(create, lambda: self.find(display_name, labels.get(RUN_LABEL, "")),
                           lambda err: isinstance(err, self._transient), _unreachable,
                           display_name)

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
