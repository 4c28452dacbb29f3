"""Where a run goes: project, location, staging location (Cloud Storage or BigQuery), where
the jobs write, and the Vertex endpoint.

Arguments come first, then the environment (``GOOGLE_CLOUD_PROJECT``, ``GOOGLE_CLOUD_LOCATION``,
``PDBATCH_STAGING``, ``GOOGLE_VERTEX_BASE_URL``), then a clear error. Every value is checked
before it is put into a resource name or URL.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from . import storage
from .errors import InputError
from .identifiers import whole

_PROJECT = re.compile(r"^(?:[a-z0-9.-]+:)?[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_LOCATION = re.compile(r"^[a-z][a-z0-9-]{0,62}[a-z0-9]$")
_ENDPOINT = re.compile(r"^(?:https?://)?[A-Za-z0-9.-]+(?::\d{1,5})?/?$")
TRANSPORTS = ("rest", "grpc")


@dataclass(frozen=True)
class Settings:
    project: str
    location: str
    staging: str  # "gs://bucket/prefix" (no trailing slash) or "bq://project.dataset"
    api_endpoint: str
    transport: str
    output: str = ""  # where jobs write, in the same forms; "" means the staging location

    @property
    def output_location(self) -> str:
        return self.output or self.staging

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"


def default_endpoint(location: str) -> str:
    """The Vertex AI host for a location (the global endpoint for ``global``)."""
    if location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def resolve(
    project: str | None,
    location: str | None,
    staging: str | None,
    api_endpoint: str | None = None,
    transport: str = "rest",
    output: str | None = None,
) -> Settings:
    """Settings from arguments, then environment, then (for the project) application default
    credentials; raises InputError naming the fix."""
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or _credentials_project()
    location = location or os.environ.get("GOOGLE_CLOUD_LOCATION")
    if not project:
        raise InputError("No Google Cloud project: pass project='my-project', set "
                         "GOOGLE_CLOUD_PROJECT, or sign in with application default "
                         "credentials that carry one (gcloud auth application-default login "
                         "after gcloud config set project ...).")
    if not whole(_PROJECT, project):
        raise InputError(f"project={project!r} is not a valid Google Cloud project id.")
    if not location:
        raise InputError("No location: pass location='us-central1' (or another region, or "
                         "'global') or set GOOGLE_CLOUD_LOCATION.")
    if not whole(_LOCATION, location):
        raise InputError(f"location={location!r} is not a valid location such as 'us-central1'.")
    staging = given_or_environment(
        staging, "staging", "No staging location: pass staging='gs://my-bucket/prefix' (or "
        "'bq://my-project.my_dataset') or set PDBATCH_STAGING.")
    if transport not in TRANSPORTS:
        raise InputError(f"transport={transport!r}: choose one of {TRANSPORTS}.")
    return Settings(project, location, staging, endpoint(api_endpoint, location),
                    transport, storage.checked(output, "output") if output else "")


def _credentials_project() -> str | None:
    """The project application default credentials carry (a service account key, gcloud's
    configured project, Colab Enterprise's or a Google Cloud VM's), or None when there are
    none. Only asked when no project was given."""
    try:
        import google.auth

        _, project = google.auth.default()
    except Exception:  # noqa: BLE001  no credentials, or none usable here: no project
        return None
    return project or None


def given_or_environment(where: str | None, name: str, missing: str) -> str:
    """``where``, else ``PDBATCH_STAGING``, checked by ``storage.checked``; InputError
    ``missing`` when there is neither."""
    where = where or os.environ.get("PDBATCH_STAGING")
    if not where:
        raise InputError(missing)
    return storage.checked(where, name)


def endpoint(api_endpoint: str | None, location: str) -> str:
    """The checked Vertex AI endpoint: the argument, else ``GOOGLE_VERTEX_BASE_URL``, else the
    location's host."""
    found = api_endpoint or os.environ.get("GOOGLE_VERTEX_BASE_URL") or default_endpoint(location)
    if not whole(_ENDPOINT, found):
        raise InputError(f"api_endpoint={found!r} must be a host[:port], optionally with "
                         "http:// or https://.")
    return found.rstrip("/")


def settings_of(run) -> Settings:
    """The checked settings of a call's ``RunOptions`` (then the environment)."""
    return resolve(run.project, run.location, run.staging, run.api_endpoint, run.transport,
                   run.output)
