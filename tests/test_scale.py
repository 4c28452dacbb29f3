"""Very large frames (issue 28): the emulator's concurrency quota, the Dask graph's size, and
answers routed through the staging store rather than held in the workers' memory."""

from __future__ import annotations

import json
import time

import dask.dataframe as dd
import pandas as pd
import pytest
from helpers import finished, jsonl_job

import pdbatch
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


def _part(number: int, rows: int) -> pd.DataFrame:
    ids = pd.RangeIndex(number * rows, (number + 1) * rows, name="id")
    return pd.DataFrame({"prompt": [f"item {i % 50}" for i in ids]}, index=ids)  # repeats


def test_the_graph_grows_by_a_few_tasks_per_partition(staging):
    counts = {}
    for partitions in (64, 128):  # (Dask 2024.12 culls a 640-partition graph for minutes)
        ddf = dd.from_map(_part, range(partitions), rows=1, meta=_part(0, 1).iloc[:0])
        graph = ddf.gemini.batch_predict(prompt_col="prompt", staging=staging).__dask_graph__()
        counts[partitions] = sum(1 for key in graph if "pdbatch-" in str(key))
    # hash, stage and join per partition; buckets, routes and a few more per run
    assert 0 < counts[128] - counts[64] <= 3 * (128 - 64)  # (fewer keys on older Dask)
    assert counts[64] <= 3 * 64 + 64 + 32 + 8


def test_answers_go_through_the_exchange_folder_and_to_parquet_writes_them_out(
        staging, fs, tmp_path):
    ddf = dd.from_map(_part, range(6), rows=40, meta=_part(0, 1).iloc[:0])
    lazy = ddf.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                    max_requests_per_job=25, max_concurrent_jobs=2)
    lazy.to_parquet(str(tmp_path / "out"), write_index=True, compute_kwargs={
        "scheduler": "threads"})
    out = pd.read_parquet(tmp_path / "out").sort_index()
    assert len(out) == 240 and (out["status"] == "ok").all()
    assert (out["text"] == "echo: " + out["prompt"]).all()
    run = out.attrs.get("pdbatch_run") or pdbatch.runs(staging)["run"].iloc[-1]
    # 50 distinct prompts: the other 190 rows were answered by their owners' lines
    assert pdbatch.runs(staging).set_index("run").loc[run, "requests"] == 50
    assert not fs.glob(f"{staging}/{run}/exchange/**")  # every piece was read and removed


def test_a_join_whose_answers_were_taken_already_says_so(staging, monkeypatch):
    from pdbatch.runs.dask.exchange import Exchange

    ddf = dd.from_map(_part, range(2), rows=10, meta=_part(0, 1).iloc[:0])
    lazy = ddf.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                    dedup=False)
    monkeypatch.setattr(Exchange, "answers", lambda self, partition: {})
    with pytest.raises(pdbatch.JobError, match="not all there"):
        lazy.compute(scheduler="threads")


def test_the_quota_never_holds_its_lock_while_it_asks_the_service():
    # the service asks full() under its own lock, while a waiting job asks, through gone(),
    # whether it was cancelled (which takes the service's lock): the order must not deadlock
    import threading

    service_lock, stop = threading.Lock(), threading.Event()
    capacity = Capacity(1)
    assert capacity.acquire(lambda: False)  # the one running job

    def gone() -> bool:
        with service_lock:
            return stop.is_set()

    def creating() -> None:
        while not stop.is_set():
            with service_lock:
                capacity.full()

    waiters = [threading.Thread(target=capacity.acquire, args=(gone, lambda: None, 0.0001),
                                daemon=True) for _ in range(4)]
    creator = threading.Thread(target=creating, daemon=True)
    for thread in [*waiters, creator]:
        thread.start()
    time.sleep(1.0)
    stop.set()
    for thread in [*waiters, creator]:
        thread.join(timeout=5)
    assert not any(thread.is_alive() for thread in [*waiters, creator])  # no deadlock
