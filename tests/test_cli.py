"""`python -m pdbatch.emulator` serves the stack and prints the environment to export."""

from __future__ import annotations

import subprocess
import sys
import urllib.request


def test_emulator_command_prints_working_environment():
    process = subprocess.Popen([sys.executable, "-m", "pdbatch.emulator", "--bucket", "cli-b"],
                               stdout=subprocess.PIPE, text=True)
    try:
        env = {}
        for line in process.stdout:
            if line.startswith("export "):
                key, _, value = line[len("export "):].strip().partition("=")
                env[key] = value
            if line.startswith("# Ctrl-C"):
                break
        assert env["PDBATCH_STAGING"] == "gs://cli-b/runs"
        assert env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] == "false"
        buckets = urllib.request.urlopen(f"{env['STORAGE_EMULATOR_HOST']}/storage/v1/b").read()
        assert b'"cli-b"' in buckets
        parent = f"projects/{env['GOOGLE_CLOUD_PROJECT']}/locations/{env['GOOGLE_CLOUD_LOCATION']}"
        listing = urllib.request.urlopen(
            f"{env['GOOGLE_VERTEX_BASE_URL']}/v1/{parent}/batchPredictionJobs").read()
        assert listing == b"{}"
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0


def test_pdbatch_command_without_a_subcommand_prints_usage():
    result = subprocess.run([sys.executable, "-m", "pdbatch.cli"], capture_output=True, text=True)
    assert result.returncode == 2 and "usage: pdbatch emulator" in result.stderr
