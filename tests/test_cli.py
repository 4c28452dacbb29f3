"""`python -m pdbatch.emulator` serves the stack and prints the environment to export."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import JobServiceClient
from helpers import finished, jsonl_job

from pdbatch.emulator.stack import read_exports


def test_emulator_command_prints_working_environment():
    process = subprocess.Popen([sys.executable, "-m", "pdbatch.emulator", "--bucket", "cli-b",
                                "--fault", "emulator-stats=empty"],
                               stdout=subprocess.PIPE, text=True)
    try:
        env = read_exports(process.stdout)
        assert env["PDBATCH_STAGING"] == "gs://cli-b/runs"
        assert env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] == "false"
        buckets = urllib.request.urlopen(f"{env['STORAGE_EMULATOR_HOST']}/storage/v1/b").read()
        assert b'"cli-b"' in buckets
        parent = f"projects/{env['GOOGLE_CLOUD_PROJECT']}/locations/{env['GOOGLE_CLOUD_LOCATION']}"
        listing = urllib.request.urlopen(
            f"{env['GOOGLE_VERTEX_BASE_URL']}/v1/{parent}/batchPredictionJobs").read()
        assert listing == b"{}"
        _run_one_job(env, parent)
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0


def _run_one_job(env: dict, parent: str) -> None:
    """A job submitted to the printed endpoints reads its input and writes its output."""
    from gcsfs.core import GCSFileSystem

    fs = GCSFileSystem(endpoint_url=env["STORAGE_EMULATOR_HOST"], token="anon",
                       skip_instance_cache=True)
    staging = env["PDBATCH_STAGING"]
    fs.pipe(f"{staging}/in.jsonl", b'{"request": {"contents": [{"parts": [{"text": "hi"}]}]}}\n')
    client = JobServiceClient(transport="rest", credentials=AnonymousCredentials(),
                              client_options=ClientOptions(
                                  api_endpoint=env["GOOGLE_VERTEX_BASE_URL"]))
    job = finished(client, client.create_batch_prediction_job(
        parent=parent,
        batch_prediction_job=jsonl_job(f"{staging}/in.jsonl", f"{staging}/out")).name)
    assert job.state.name == "JOB_STATE_SUCCEEDED", job.error.message
    output = fs.cat(f"{job.output_info.gcs_output_directory}/predictions.jsonl")
    assert b'"echo: hi"' in output
    assert "completion_stats" not in job  # the --fault emulator-stats=empty given at start


def test_an_unknown_fault_stops_the_command_with_usage():
    result = subprocess.run([sys.executable, "-m", "pdbatch.emulator", "--fault", "emulator-x=1"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "Unknown emulator label(s) ['emulator-x']" in result.stderr


def test_pdbatch_command_without_a_subcommand_prints_usage():
    result = subprocess.run([sys.executable, "-m", "pdbatch.cli"], capture_output=True, text=True)
    assert result.returncode == 2 and "usage: pdbatch emulator" in result.stderr
