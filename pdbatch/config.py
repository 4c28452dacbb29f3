"""Where a run goes: project, location, staging folder and the Vertex endpoint.

Arguments come first, then the environment (``GOOGLE_CLOUD_PROJECT``, ``GOOGLE_CLOUD_LOCATION``,
``PDBATCH_STAGING``, ``GOOGLE_VERTEX_BASE_URL``), then a clear error. Every value is checked
before it is put into a resource name or URL.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

from .errors import InputError

_PROJECT = re.compile(r"^(?:[a-z0-9.-]+:)?[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_LOCATION = re.compile(r"^[a-z][a-z0-9-]{0,62}[a-z0-9]$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9._=/-]+$")
_ENDPOINT = re.compile(r"^(?:https?://)?[A-Za-z0-9.-]+(?::\d{1,5})?/?$")
TRANSPORTS = ("rest", "grpc")


@dataclass(frozen=True)
class Settings:
    project: str
    location: str
    staging: str  # "gs://bucket/prefix", no trailing slash
    api_endpoint: str
    transport: str

    @property
    def parent(self) -> str:
        return f"projects/{self.project}/locations/{self.location}"


def default_endpoint(location: str) -> str:
    """The Vertex AI host for a location (the global endpoint for ``global``)."""
    if location == "global":
        return "https://aiplatform.googleapis.com"
    return f"https://{location}-aiplatform.googleapis.com"


def staging_folder(staging: str) -> str:
    """``staging`` checked to be ``gs://bucket[/prefix]``, returned without a trailing slash."""
    if not isinstance(staging, str) or not staging.startswith("gs://"):
        hint = (" BigQuery staging (bq://) is not available yet." if isinstance(staging, str)
                and staging.startswith("bq://") else "")
        raise InputError(
            f"staging={staging!r} is not a Cloud Storage location.{hint} Pass "
            "staging='gs://my-bucket/some/prefix' (or set PDBATCH_STAGING)."
        )
    bucket, _, prefix = staging[len("gs://"):].partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise InputError(
            f"staging={staging!r}: {bucket!r} is not a valid bucket name (3-222 characters: "
            "lowercase letters, digits, '-', '_', '.'). Pass staging='gs://my-bucket/prefix'."
        )
    prefix = prefix.strip("/")
    if prefix and (not _PREFIX.match(prefix)
                   or any(part in ("", ".", "..") for part in prefix.split("/"))):
        raise InputError(
            f"staging={staging!r}: use a prefix of letters, digits and '-_.=/' without empty, "
            "'.' or '..' segments, e.g. 'gs://my-bucket/pdbatch'."
        )
    return f"gs://{bucket}/{prefix}" if prefix else f"gs://{bucket}"


def resolve(
    project: str | None,
    location: str | None,
    staging: str | None,
    api_endpoint: str | None = None,
    transport: str = "rest",
) -> Settings:
    """Settings from arguments, then environment; raises InputError naming the fix."""
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    location = location or os.environ.get("GOOGLE_CLOUD_LOCATION")
    staging = staging or os.environ.get("PDBATCH_STAGING")
    if not project:
        raise InputError("No Google Cloud project: pass project='my-project' or set "
                         "GOOGLE_CLOUD_PROJECT.")
    if not _PROJECT.match(project):
        raise InputError(f"project={project!r} is not a valid Google Cloud project id.")
    if not location:
        raise InputError("No location: pass location='us-central1' (or another region, or "
                         "'global') or set GOOGLE_CLOUD_LOCATION.")
    if not _LOCATION.match(location):
        raise InputError(f"location={location!r} is not a valid location such as 'us-central1'.")
    if not staging:
        raise InputError("No staging location: pass staging='gs://my-bucket/prefix' or set "
                         "PDBATCH_STAGING.")
    endpoint = (api_endpoint or os.environ.get("GOOGLE_VERTEX_BASE_URL")
                or default_endpoint(location))
    if not _ENDPOINT.match(endpoint):
        raise InputError(f"api_endpoint={endpoint!r} must be a host[:port], optionally with "
                         "http:// or https://.")
    if transport not in TRANSPORTS:
        raise InputError(f"transport={transport!r}: choose one of {TRANSPORTS}.")
    return Settings(project, location, staging_folder(staging), endpoint.rstrip("/"), transport)
