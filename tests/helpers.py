"""What the tests share: the body of a JSONL job, and waiting for a job to end."""

from __future__ import annotations

import time

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
