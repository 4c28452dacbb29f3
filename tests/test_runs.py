"""Runs that never lose work and never pay twice: re-attaching, submit/attach, killed and
interrupted clients, failed and expired jobs, the cost guard and the run's display."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pandas as pd
import pytest

import pdbatch
from pdbatch.costs import PRICES
from pdbatch.runs.handle import summarise
from pdbatch.service import JobInfo

FRAME = pd.DataFrame({"prompt": [f"question number {i}" for i in range(40)]})


def _jobs(gapic, parent, fingerprint: str) -> list:
    return list(gapic.list_batch_prediction_jobs(request={
        "parent": parent, "filter": f'labels.pdbatch-fingerprint="{fingerprint}"'}))


def _answered(out: pd.DataFrame) -> bool:
    return (out["status"] == "ok").all() and out["text"].tolist() == [
        f"echo: {p}" for p in out["prompt"]]


def test_the_same_call_again_reattaches_and_force_starts_afresh(staging, gapic, parent):
    first = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)
    [run] = pdbatch.runs(staging).to_dict("records")
    assert run["run"] == first.attrs["pdbatch_run"] and run["rows"] == 40 and run["jobs"] == 1

    again = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                       result_prefix="llm_")  # result options may differ
    assert again.attrs["pdbatch_run"] == first.attrs["pdbatch_run"]
    assert again["llm_text"].tolist() == first["text"].tolist()
    assert len(_jobs(gapic, parent, run["fingerprint"])) == 1  # paid once

    changed = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                         system_instruction="Be brief.")
    assert changed.attrs["pdbatch_run"] != first.attrs["pdbatch_run"]
    fresh = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                       force=True)
    assert fresh.attrs["pdbatch_run"] != first.attrs["pdbatch_run"] and _answered(fresh)
    assert len(_jobs(gapic, parent, run["fingerprint"])) == 2
    assert len(pdbatch.runs(staging)) == 3


_CLIENT = """
import os, sys
import pandas as pd
import pdbatch
frame = pd.DataFrame({"prompt": [f"question number {i}" for i in range(40)]})
frame.gemini.batch_predict(prompt_col="prompt", staging=sys.argv[1], progress=False,
                           labels={"emulator-queue-ms": sys.argv[3]},
                           cancel_on_interrupt=sys.argv[2] == "cancel")
"""


def _client_with_a_job(staging: str, mode: str = "", queue_ms: int = 3000) -> subprocess.Popen:
    """A client process running the call above, once its job exists (queued ``queue_ms``)."""
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_CLIENT), staging, mode,
                                str(queue_ms)],
                               stderr=subprocess.PIPE, text=True, env=os.environ.copy())
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = pdbatch.runs(staging)
        if len(found) and found["jobs"].iloc[0] == 1:
            return process
        assert process.poll() is None, process.stderr.read()
        time.sleep(0.2)
    process.kill()
    raise AssertionError("the client made no job within 60 s")


def test_a_client_killed_while_waiting_is_picked_up_by_the_same_call(staging, gapic, parent):
    process = _client_with_a_job(staging)
    process.kill()
    process.wait(timeout=10)
    process.stderr.close()

    out = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                     labels={"emulator-queue-ms": "3000"})
    assert _answered(out)
    [run] = pdbatch.runs(staging).to_dict("records")
    [job] = _jobs(gapic, parent, run["fingerprint"])  # exactly one job was ever made
    assert out["job"].unique().tolist() == [job.name]


@pytest.mark.parametrize("mode", ["", "cancel"])
def test_an_interrupt_leaves_the_job_running_or_cancels_it(staging, gapic, mode):
    process = _client_with_a_job(staging, mode, queue_ms=30_000)  # still queued when looked at
    process.send_signal(signal.SIGINT)
    _, errors = process.communicate(timeout=20)
    assert process.returncode != 0 and "KeyboardInterrupt" in errors
    [run] = pdbatch.runs(staging).to_dict("records")
    job = pdbatch.attach(run["run"], staging=staging).status().jobs[0]
    if mode == "cancel":
        assert "asked Vertex AI to cancel" in errors
        assert job.state in ("JOB_STATE_CANCELLING", "JOB_STATE_CANCELLED")
    else:
        assert f"pdbatch.attach('{run['run']}', staging='{staging}')" in errors
        assert job.state in ("JOB_STATE_PENDING", "JOB_STATE_QUEUED", "JOB_STATE_RUNNING")


def test_submit_returns_a_handle_and_attach_rebuilds_it_elsewhere(staging):
    run = FRAME.gemini.submit(prompt_col="prompt", staging=staging, progress=False)
    assert isinstance(run, pdbatch.BatchRun) and len(run.jobs) == 1
    assert run.id in repr(run) and "submitted" in repr(run)
    status = run.wait()
    assert status.state == "succeeded" and status.done == 40 and status.finished
    out = run.result()
    assert _answered(out) and out.attrs["pdbatch_run"] == run.id

    page = run._repr_html_()
    assert run.id in page and "succeeded: 40/40 requests done, 1/1 jobs ended" in page
    assert "https://console.cloud.google.com/vertex-ai/locations/" in page
    assert "took 0h 00m" in page  # the clock stops when the last job ended

    for handle in (pdbatch.attach(run.id, staging=staging), pdbatch.attach(run.jobs[0])):
        # attached: its state at once, in its repr and its notebook view, no "?" anywhere
        assert "succeeded: 40/40 requests done" in repr(handle)
        assert "<td>succeeded</td><td>40</td><td>0</td>" in handle._repr_html_()
        assert "not looked at yet" not in handle._repr_html_()
        assert handle.status().state == "succeeded"
        with pytest.raises(pdbatch.InputError, match="pass the frame it was made from"):
            handle.result()
        pd.testing.assert_frame_equal(handle.result(FRAME), out)
        with pytest.raises(pdbatch.InputError, match="is not the one"):
            handle.result(FRAME.iloc[:-1])


def test_a_job_that_fails_part_way_keeps_its_answers_and_only_the_rest_is_retried(
        stack, staging, gapic, parent):
    stack.service.fault_labels, stack.service.fault_jobs = {"emulator-fault": "fail-partway"}, 1
    try:
        with pytest.raises(pdbatch.JobError) as err:
            FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)
    finally:
        stack.service.fault_labels, stack.service.fault_jobs = {}, None
    partial = err.value.result
    answered = partial["status"] == "ok"
    assert answered.sum() == 20 and "max_retries=N" in str(err.value)
    assert partial.loc[~answered, "status"].str.startswith(
        "missing: job projects/").all()
    assert partial.loc[~answered, "status"].str.contains("ended JOB_STATE_FAILED").all()

    # The same call with retries re-attaches to the failed run and asks only the other 20.
    out = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                     max_retries=2)
    assert _answered(out)
    assert out["attempts"].tolist() == np.where(answered, 1, 2).tolist()
    retry_job = out.loc[~answered, "job"].unique().tolist()
    [job] = [j for j in gapic.list_batch_prediction_jobs(parent=parent) if j.name in retry_job]
    assert job.completion_stats.successful_count == 20


def test_an_expired_job_is_an_error_unless_its_rows_may_be_retried(stack, staging):
    stack.service.fault_labels, stack.service.fault_jobs = {"emulator-fault": "expire"}, 1
    try:
        with pytest.raises(pdbatch.JobError, match="retry_expired=True"):
            FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                       max_retries=1)
    finally:
        stack.service.fault_labels, stack.service.fault_jobs = {}, None
    out = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                     max_retries=1, retry_expired=True)
    assert _answered(out) and (out["attempts"] == 2).all()


def test_api_quota_and_unavailable_errors_do_not_stop_a_run(stack, staging, gapic, parent):
    stack.service.api_faults.inject(429, 2)
    stack.service.api_faults.inject(503, 2)
    out = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)
    assert _answered(out)
    [run] = pdbatch.runs(staging).to_dict("records")
    assert len(_jobs(gapic, parent, run["fingerprint"])) == 1


BIG = pd.DataFrame({"prompt": [f"tell me about item {i % 60_000} please" for i in range(100_000)]})


def test_the_estimate_counts_unique_requests_and_tokens_of_a_100k_row_frame(staging, uploaded):
    found = BIG.gemini.estimate(prompt_col="prompt", staging=staging)
    assert (found.rows, found.requests) == (100_000, 60_000)
    assert found.method.startswith("countTokens on 20 sampled requests")
    words = 6 * 60_000  # the emulator counts words
    assert abs(found.input_tokens - words) / words < 0.05
    assert found.output_tokens == 256 * 60_000
    price_in, price_out = PRICES["gemini-2.5-flash"]
    expected = (found.input_tokens * price_in + found.output_tokens * price_out) / 1e6 / 2
    assert found.cost == pytest.approx(expected) and "$" in str(found)

    rough = BIG.gemini.estimate(prompt_col="prompt", staging=staging, count_tokens=False,
                                output_tokens=10, prices={"gemini-2.5-flash": (1.0, 2.0)})
    chars = BIG["prompt"].drop_duplicates().str.len().sum()
    assert rough.input_tokens == -(-chars // 4) and rough.output_tokens == 600_000
    assert rough.cost == pytest.approx((rough.input_tokens * 1.0 + 600_000 * 2.0) / 1e6 / 2)
    assert uploaded() == []


def test_the_guard_refuses_a_run_over_its_limits_before_anything_is_uploaded(staging, uploaded):
    with pytest.raises(pdbatch.InputError, match=r"Not submitted: the estimated \$.* is over "
                                                 r"max_cost=1.0"):
        BIG.gemini.batch_predict(prompt_col="prompt", staging=staging, max_cost=1.0)
    with pytest.raises(pdbatch.InputError, match="60,000 requests is over max_rows=50,000"):
        BIG.gemini.batch_predict(prompt_col="prompt", staging=staging, max_rows=50_000)
    assert uploaded() == []
    small = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                       max_cost=1.0, max_rows=50_000)
    assert _answered(small)


_ASKED = """
import sys
import pandas as pd
import pdbatch
frame = pd.DataFrame({"prompt": ["a", "b", "c"]})
try:
    frame.gemini.batch_predict(prompt_col="prompt", staging=sys.argv[1], max_rows=1,
                               progress=False)
    print("SUBMITTED", flush=True)
except pdbatch.InputError as err:
    print("REFUSED", flush=True)
"""


@pytest.mark.parametrize("answer, outcome", [("n", "REFUSED"), ("y", "SUBMITTED")])
def test_in_a_terminal_the_guard_asks_first(staging, answer, outcome):
    primary, secondary = os.openpty()
    process = subprocess.Popen([sys.executable, "-c", textwrap.dedent(_ASKED), staging],
                               stdin=secondary, stdout=subprocess.PIPE, text=True)
    os.close(secondary)
    try:
        os.write(primary, f"{answer}\n".encode())
        printed, _ = process.communicate(timeout=60)
    finally:
        os.close(primary)
    assert "Submit anyway? [y/N]" in printed and printed.strip().endswith(outcome)


def _info(state: str, successful: int = 0, failed: int = 0) -> JobInfo:
    return JobInfo("projects/p/locations/l/batchPredictionJobs/1", state, "", 0, "",
                   successful, failed)


def test_progress_counts_come_from_completion_stats_or_from_states():
    running = summarise([_info("JOB_STATE_SUCCEEDED", 9, 1), _info("JOB_STATE_RUNNING", 5)],
                        [10, 20])
    assert (running.state, running.done, running.failed, running.finished) == (
        "running", 15, 1, False)
    no_stats = summarise([_info("JOB_STATE_SUCCEEDED"), _info("JOB_STATE_FAILED")], [10, 20])
    assert (no_stats.state, no_stats.done, no_stats.succeeded) == ("failed", 30, False)


def test_a_submitted_run_can_time_out_waiting_and_be_cancelled(staging):
    run = FRAME.gemini.submit(prompt_col="prompt", staging=staging, progress=False,
                              labels={"emulator-queue-ms": "5000"})
    with pytest.raises(TimeoutError, match="1 of 1 jobs still running"):
        run.wait(timeout=0.5)
    run.cancel()
    assert run.wait().state == "cancelled"
    with pytest.raises(pdbatch.JobError, match="JOB_STATE_CANCELLED") as err:
        run.result()
    assert err.value.result["status"].str.startswith("missing: ").all()


def test_waiting_on_many_jobs_costs_one_list_call_per_round(stack, staging):
    from recording_proxy import RecordingProxy

    from pdbatch.emulator import BatchService, Timing, VertexEmulator

    service = BatchService(timing=Timing(pending=0.5, running=1.5), gcs_endpoint=stack.gcs.url)
    vertex = VertexEmulator(service).start()
    try:
        with RecordingProxy(vertex.url) as proxy:
            run = FRAME.gemini.submit(prompt_col="prompt", staging=staging, progress=False,
                                      api_endpoint=proxy.url, max_requests_per_job=8)
            created = len(proxy.seen)
            assert run.wait().state == "succeeded" and len(run.jobs) == 5
    finally:
        vertex.stop()
    polled = proxy.seen[created:]
    gets = [path for method, path, _ in polled
            if method == "GET" and "/batchPredictionJobs/" in path]
    lists = [path for method, path, _ in polled
             if method == "GET" and path.split("?")[0].endswith("/batchPredictionJobs")]
    assert len(lists) >= 3  # several rounds ...
    assert len(gets) <= 1  # ... none of them a GET per job (at most one for a last job)
