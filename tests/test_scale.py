"""Very large frames (issue 28): the emulator's concurrency quota, the Dask graph's size, and
answers routed through the staging store rather than held in the workers' memory."""

from __future__ import annotations

import json
import time

from helpers import finished, jsonl_job

from pdbatch.emulator import BatchService, Timing, VertexEmulator
from pdbatch.emulator.capacity import Capacity


def _input(fs, staging, name, rows=5):
    path = f"{staging}/{name}.jsonl"
    fs.pipe(path, "".join(json.dumps({"id": i, "request": {"contents": [
        {"role": "user", "parts": [{"text": f"q{i}"}]}]}}) + "\n" for i in range(rows)).encode())
    return path


def test_jobs_beyond_the_quota_wait_queued_and_the_emulator_runs_only_that_many(
        stack, parent, fs, staging):
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud.aiplatform_v1 import JobServiceClient

    service = BatchService(timing=Timing(pending=0.05, running=0.3),
                           gcs_endpoint=stack.gcs.url, capacity=Capacity(2))
    vertex = VertexEmulator(service).start()
    try:
        gapic = JobServiceClient(transport="rest", credentials=AnonymousCredentials(),
                                 client_options=ClientOptions(api_endpoint=vertex.url))
        created = [gapic.create_batch_prediction_job(
            parent=parent, batch_prediction_job=jsonl_job(_input(fs, staging, f"quota-{i}"),
                                                          f"{staging}/quota-out-{i}"))
                   for i in range(5)]
        assert [job.state.name for job in created[2:]] == ["JOB_STATE_QUEUED"] * 3
        jobs = [finished(gapic, job.name) for job in created]
    finally:
        vertex.stop()
    assert all(job.state.name == "JOB_STATE_SUCCEEDED" for job in jobs)
    assert service.capacity.peak == 2  # never more than the quota at once
    ends = sorted(job.end_time.timestamp() for job in jobs)
    assert ends[-1] - ends[0] >= 0.3  # the last ones ran after the first ones ended


def test_a_queued_job_can_be_cancelled_while_it_waits():
    capacity = Capacity(1)
    assert capacity.acquire(lambda: False)
    waited = []
    started = time.monotonic()
    assert not capacity.acquire(lambda: time.monotonic() - started > 0.2,
                                lambda: waited.append(True))
    assert waited == [True]
    capacity.release()
    assert capacity.acquire(lambda: False) and capacity.peak == 1
