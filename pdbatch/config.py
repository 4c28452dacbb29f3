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

from .errors import InputError

_PROJECT = re.compile(r"^(?:[a-z0-9.-]+:)?[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_LOCATION = re.compile(r"^[a-z][a-z0-9-]{0,62}[a-z0-9]$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9._=/-]+$")
_BQ_DATASET = re.compile(r"^bq://(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])\.(?P<dataset>[A-Za-z_]"
                         r"[A-Za-z0-9_]{0,1023})$")
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


def staging_location(staging: str, name: str = "staging") -> str:
    """``staging`` checked to be ``gs://bucket[/prefix]`` (returned without a trailing slash)
    or ``bq://project.dataset``."""
    if isinstance(staging, str) and staging.startswith("bq://"):
        if not _BQ_DATASET.match(staging):
            raise InputError(
                f"{name}={staging!r} is not a BigQuery dataset. Pass {name}='bq://my-project."
                "my_dataset' (project id: 6-30 lowercase letters, digits and '-'; dataset: "
                "letters, digits and '_')."
            )
        return staging
    if not isinstance(staging, str) or not staging.startswith("gs://"):
        raise InputError(
            f"{name}={staging!r} is neither a Cloud Storage nor a BigQuery location. Pass "
            f"{name}='gs://my-bucket/some/prefix' or {name}='bq://my-project.my_dataset'"
            + (" (or set PDBATCH_STAGING)." if name == "staging" else ".")
        )
    bucket, _, prefix = staging[len("gs://"):].partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise InputError(
            f"{name}={staging!r}: {bucket!r} is not a valid bucket name (3-222 characters: "
            f"lowercase letters, digits, '-', '_', '.'). Pass {name}='gs://my-bucket/prefix'."
        )
    prefix = prefix.strip("/")
    if prefix and (not _PREFIX.match(prefix)
                   or any(part in ("", ".", "..") for part in prefix.split("/"))):
        raise InputError(
            f"{name}={staging!r}: use a prefix of letters, digits and '-_.=/' without empty, "
            "'.' or '..' segments, e.g. 'gs://my-bucket/pdbatch'."
        )
    return f"gs://{bucket}/{prefix}" if prefix else f"gs://{bucket}"


def resolve(
    project: str | None,
    location: str | None,
    staging: str | None,
    api_endpoint: str | None = None,
    transport: str = "rest",
    output: str | None = None,
) -> Settings:
    """Settings from arguments, then environment; raises InputError naming the fix."""
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT")
    location = location or os.environ.get("GOOGLE_CLOUD_LOCATION")
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
    staging = given_or_environment(
        staging, "staging", "No staging location: pass staging='gs://my-bucket/prefix' (or "
        "'bq://my-project.my_dataset') or set PDBATCH_STAGING.")
    if transport not in TRANSPORTS:
        raise InputError(f"transport={transport!r}: choose one of {TRANSPORTS}.")
    return Settings(project, location, staging, endpoint(api_endpoint, location),
                    transport, staging_location(output, "output") if output else "")


def given_or_environment(where: str | None, name: str, missing: str) -> str:
    """``where``, else ``PDBATCH_STAGING``, checked by ``staging_location``; InputError
    ``missing`` when there is neither."""
    where = where or os.environ.get("PDBATCH_STAGING")
    if not where:
        raise InputError(missing)
    return staging_location(where, name)


def endpoint(api_endpoint: str | None, location: str) -> str:
    """The checked Vertex AI endpoint: the argument, else ``GOOGLE_VERTEX_BASE_URL``, else the
    location's host."""
    found = api_endpoint or os.environ.get("GOOGLE_VERTEX_BASE_URL") or default_endpoint(location)
    if not _ENDPOINT.match(found):
        raise InputError(f"api_endpoint={found!r} must be a host[:port], optionally with "
                         "http:// or https://.")
    return found.rstrip("/")
