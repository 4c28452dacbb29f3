"""Shared fixtures: one offline stack (fake-gcs-server + pdbatch's Vertex emulator) per session,
the ``pdbatch_stack`` fixture of pdbatch's own pytest plugin (what users test with).

The stack exports STORAGE_EMULATOR_HOST, GOOGLE_VERTEX_BASE_URL, GOOGLE_CLOUD_PROJECT,
GOOGLE_CLOUD_LOCATION and PDBATCH_STAGING, so the code under test reaches the local services
through the same knobs a user has.
"""

from __future__ import annotations

import os
import uuid

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import pytest  # noqa: E402
from helpers import skip_without_local_bigquery  # noqa: E402


@pytest.fixture(scope="session")
def stack(pdbatch_stack):
    return pdbatch_stack


@pytest.fixture
def fs(stack):
    from gcsfs.core import GCSFileSystem

    return GCSFileSystem(endpoint_url=stack.gcs.url, token="anon", skip_instance_cache=True)


@pytest.fixture
def staging(stack):
    """A fresh staging folder per test, so a test sees only what it uploaded."""
    return f"gs://{stack.bucket}/t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def uploaded(fs, staging):
    """Lists the objects under the test's staging folder."""

    def objects() -> list[str]:
        try:
            return fs.find(staging)
        except FileNotFoundError:
            return []

    return objects


@pytest.fixture
def gapic(stack):
    """The unmodified GAPIC REST JobServiceClient (v1) pointed at the emulator."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform_v1 import JobServiceClient

    return JobServiceClient(transport="rest", credentials=AnonymousCredentials(),
                            client_options=ClientOptions(api_endpoint=stack.vertex.url))


@pytest.fixture
def parent(stack):
    return f"projects/{stack.project}/locations/{stack.location}"


@pytest.fixture(scope="session")
def bigquery_server(stack):
    """A local BigQuery (bqemulator) for the session, started on first use and wired into the
    emulator and the environment (``BIGQUERY_EMULATOR_HOST``), as ``LocalStack(bigquery=True)``
    would."""
    from pdbatch.emulator.bqserver import LocalBigQuery

    skip_without_local_bigquery()
    server = LocalBigQuery(stack.project).start()
    stack.service.bigquery_endpoint = server.url
    os.environ["BIGQUERY_EMULATOR_HOST"] = server.url
    try:
        yield server
    finally:
        os.environ.pop("BIGQUERY_EMULATOR_HOST", None)
        stack.service.bigquery_endpoint = None
        server.stop()


@pytest.fixture(scope="session")
def bq(bigquery_server, stack):
    """google-cloud-bigquery's client, pointed at the local BigQuery."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    return bigquery.Client(project=stack.project, credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=bigquery_server.url))


@pytest.fixture
def dataset(bq, stack):
    """A fresh dataset in the job's region."""
    from google.cloud import bigquery

    ref = bigquery.Dataset(f"{stack.project}.d_{uuid.uuid4().hex[:10]}")
    ref.location = stack.location
    bq.create_dataset(ref)
    return ref.dataset_id
