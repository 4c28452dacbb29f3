"""Where a run goes: the batch service (Vertex AI, or the Gemini Developer API), project,
location, staging location (Cloud Storage or BigQuery; a local folder for the Developer API),
where the jobs write, and the service's endpoint.

Arguments come first, then the environment (``PDBATCH_SERVICE``, ``GOOGLE_CLOUD_PROJECT``,
``GOOGLE_CLOUD_LOCATION``, ``PDBATCH_STAGING``, ``GOOGLE_VERTEX_BASE_URL``; for the Developer
API ``GOOGLE_API_KEY`` or ``GEMINI_API_KEY``, ``PDBATCH_RUNS_FOLDER`` and
``GOOGLE_GEMINI_BASE_URL``), then a clear error. Every value is checked before it is put into
a resource name or URL.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from . import storage
from .errors import InputError
from .identifiers import whole

_PROJECT = re.compile(r"^(?:[a-z0-9.-]+:)?[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_LOCATION = re.compile(r"^[a-z][a-z0-9-]{0,62}[a-z0-9]$")
_ENDPOINT = re.compile(r"^(?:https?://)?[A-Za-z0-9.-]+(?::\d{1,5})?/?$")
TRANSPORTS = ("rest", "grpc")
VERTEX, GEMINI_API = "vertex", "gemini-api"
SERVICES = (VERTEX, GEMINI_API)
GEMINI_API_HOST = "https://generativelanguage.googleapis.com"
#: Where Developer API runs are remembered when no folder is given (PDBATCH_RUNS_FOLDER).
DEFAULT_RUNS_FOLDER = "~/.pdbatch/runs"
_KEY_VARIABLES = ("GOOGLE_API_KEY", "GEMINI_API_KEY")  # google-genai's order: the first wins
#: Seconds a GET, list or cancel keeps retrying transient failures before the call fails, on
#: either service (``PDBATCH_RETRY_DEADLINE`` overrides it).
RETRY_DEADLINE = 300.0


@dataclass(frozen=True)
class Settings:
    project: str
    location: str
    staging: str  # "gs://bucket/prefix" (no trailing slash) or "bq://project.dataset"
    api_endpoint: str
    transport: str
    output: str = ""  # where jobs write, in the same forms; "" means the staging location
    service: str = VERTEX
    api_key: str = field(default="", repr=False, compare=False)  # the Developer API's key

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
    service: str | None = None,
    api_key: str | None = None,
    staged: bool = True,
) -> Settings:
    """Settings from arguments, then environment, then (for the project) application default
    credentials; raises InputError naming the fix. ``staged=False`` (an estimate, which
    stages nothing) leaves a missing staging location ""."""
    if service_of(service) == GEMINI_API:
        return _gemini_api(staging, api_endpoint, api_key)
    project = project or os.environ.get("GOOGLE_CLOUD_PROJECT") or _credentials_project()
    location = location or os.environ.get("GOOGLE_CLOUD_LOCATION")
    if not project:
        raise InputError("No Google Cloud project: pass project='my-project', set "
                         "GOOGLE_CLOUD_PROJECT, or sign in with application default "
                         "credentials that carry one (gcloud auth application-default login "
                         "after gcloud config set project ...)." + _key_hint())
    if not whole(_PROJECT, project):
        raise InputError(f"project={project!r} is not a valid Google Cloud project id.")
    if not location:
        raise InputError("No location: pass location='us-central1' (or another region, or "
                         "'global') or set GOOGLE_CLOUD_LOCATION.")
    if not whole(_LOCATION, location):
        raise InputError(f"location={location!r} is not a valid location such as 'us-central1'.")
    if not staged and not (staging or os.environ.get("PDBATCH_STAGING")):
        staging = ""
    else:
        staging = given_or_environment(
            staging, "staging", "No staging location: pass staging='gs://my-bucket/prefix' (or "
            "'bq://my-project.my_dataset') or set PDBATCH_STAGING." + _key_hint())
    if staging and storage.local_folder(staging):
        raise InputError(f"staging={staging!r}: Vertex AI jobs read from Cloud Storage or "
                         "BigQuery; a local folder keeps runs of service='gemini-api' only.")
    if transport not in TRANSPORTS:
        raise InputError(f"transport={transport!r}: choose one of {TRANSPORTS}.")
    return Settings(project, location, staging, endpoint(api_endpoint, location),
                    transport, storage.checked(output, "output") if output else "")


def service_of(service: str | None) -> str:
    """The checked service: the argument, else ``PDBATCH_SERVICE``, else Vertex AI."""
    chosen = service or os.environ.get("PDBATCH_SERVICE") or VERTEX
    if chosen not in SERVICES:
        raise InputError(f"service={chosen!r}: choose 'vertex' (Vertex AI batch prediction) or "
                         "'gemini-api' (the Gemini Developer API's batch mode, with an API key).")
    return chosen


def _key_hint() -> str:
    """A pointer to the Developer API for a user with an API key and no Cloud project: the
    service is never chosen for them, since the two bill differently."""
    if any(os.environ.get(name) for name in _KEY_VARIABLES):
        return (" (A Gemini API key is set: to use the Gemini Developer API's batch mode "
                "instead of Vertex AI, pass service='gemini-api' or set "
                "PDBATCH_SERVICE=gemini-api.)")
    return ""


def _gemini_api(folder: str | None, base_url: str | None, api_key: str | None) -> Settings:
    """The settings of a Developer API run: its key, its base URL, and the local folder where
    runs are remembered (the service has no bucket to keep them in)."""
    key = api_key or next((os.environ[n] for n in _KEY_VARIABLES if os.environ.get(n)), "")
    if not key:
        raise InputError("No Gemini API key: pass api_key='...' or set GEMINI_API_KEY (get a "
                         "key at https://aistudio.google.com/apikey).")
    if not isinstance(key, str) or not key.isprintable() or " " in key:
        raise InputError("api_key must be the key's text (printable, without spaces).")
    url = base_url or os.environ.get("GOOGLE_GEMINI_BASE_URL") or GEMINI_API_HOST
    if not whole(_ENDPOINT, url):
        raise InputError(f"api_endpoint={url!r} must be a host[:port], optionally with "
                         "http:// or https://.")
    if "://" not in url:  # a bare host: google-genai needs the scheme
        url = "https://" + url
    return Settings("", "", runs_folder(folder), url.rstrip("/"), "rest",
                    service=GEMINI_API, api_key=key)


#: The error of a call that needs a staging location and has none.
NO_STAGING = "Pass staging= (the run's staging location) or set PDBATCH_STAGING."


def runs_place(staging: str | None, service: str | None) -> str:
    """Where runs are recorded: the local runs folder for ``service="gemini-api"`` or a local
    folder given as ``staging``; else ``staging`` (default ``PDBATCH_STAGING``)."""
    local = staging is not None and not storage.in_the_cloud(staging) and (
        "://" not in staging or storage.local_folder(staging))
    if local or service_of(service) == GEMINI_API:
        return runs_folder(staging)
    return given_or_environment(staging, "staging", NO_STAGING)


def job_settings(project: str, location: str, api_endpoint: str | None, transport: str
                 ) -> Settings:
    """The settings of a Vertex AI job known by name (its project and location)."""
    if transport not in TRANSPORTS:
        raise InputError(f"transport={transport!r}: choose one of {TRANSPORTS}.")
    return Settings(project, location, "", endpoint(api_endpoint, location), transport)


def runs_folder(folder: str | os.PathLike | None) -> str:
    """The local folder (as ``file://`` + its absolute path) where Developer API runs are
    remembered: the argument, else ``PDBATCH_RUNS_FOLDER``, else ``~/.pdbatch/runs``."""
    given = folder or os.environ.get("PDBATCH_RUNS_FOLDER") or DEFAULT_RUNS_FOLDER
    text = os.fspath(given)
    if storage.in_the_cloud(text):
        raise InputError(f"staging={text!r}: the Gemini Developer API stages requests through "
                         "its Files API and keeps no runs in Cloud Storage or BigQuery; pass a "
                         "local folder (or nothing), or use service='vertex' for this "
                         "location.")
    path = storage.local_path(text) if "://" in text else text
    return storage.checked(storage.folder_uri(str(Path(path).expanduser().resolve())),
                           "staging")


def retry_deadline() -> float:
    """``PDBATCH_RETRY_DEADLINE`` seconds, else ``RETRY_DEADLINE``."""
    given = os.environ.get("PDBATCH_RETRY_DEADLINE")
    try:
        return float(given) if given else RETRY_DEADLINE
    except ValueError:
        raise InputError(f"PDBATCH_RETRY_DEADLINE={given!r} is not a number of seconds.") from None


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


def settings_of(run, api_key: str | None = None, staged: bool = True) -> Settings:
    """The checked settings of a call's ``RunOptions`` (then the environment)."""
    return resolve(run.project, run.location, run.staging, run.api_endpoint, run.transport,
                   run.output, run.service, api_key, staged)
