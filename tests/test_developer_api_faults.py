"""service="gemini-api" when the service is not as tidy as a test's: a key holding more than a
page of files, an outage longer than google-genai's own retries, a results file that comes
after SUCCEEDED, and several machines making the same call; through google-genai against the
emulator's Developer API surface."""

from __future__ import annotations

import io
import threading
import time

import pandas as pd
import pytest

import pdbatch
from pdbatch.emulator import BatchService, LocalStack, Timing, VertexEmulator


@pytest.fixture
def genai_client(stack):
    """The unmodified google-genai client on the session stack's Developer API surface."""
    from google import genai

    return genai.Client()


def _frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"prompt": [f"question {i}" for i in range(n)]})


def _answered(out: pd.DataFrame) -> bool:
    return bool((out["status"] == "ok").all()) and out["text"].tolist() == [
        f"echo: {p}" for p in out["prompt"]]


def test_clean_up_deletes_inputs_of_a_key_holding_more_than_a_page_of_files(tmp_path):
    """Deleting while google-genai's pager reads the list shrinks it: its last page comes back
    empty, on which the pager fails (IndexError). 90 files of the key, 6 inputs and 6 results
    of the run: 102 before the clean-up, 96 after."""
    from google import genai

    with LocalStack(timing=Timing(0.01, 0.01)):
        client = genai.Client()
        for _ in range(90):
            client.files.upload(file=io.BytesIO(b"x"), config={"mime_type": "text/plain"})
        out = _frame(6).gemini.batch_predict(prompt_col="prompt", service="gemini-api",
                                             progress=False, staging=str(tmp_path),
                                             max_requests_per_job=1)
        left = [f.display_name or "" for f in client.files.list(config={"page_size": 100})]
    assert _answered(out)
    assert len(left) == 96 and not [name for name in left if "-input-" in name]


def _serve(state, port: int = 0) -> VertexEmulator:
    service = BatchService(timing=Timing(pending=1.0, running=0.5), state_dir=state)
    return VertexEmulator(service, port=port).start()


def test_a_developer_api_run_waits_through_an_outage(tmp_path):
    """google-genai counts attempts, not time: pdbatch gives it as many as its waits need to
    last ``PDBATCH_RETRY_DEADLINE`` (300 s), as a Vertex AI run rides an outage out."""
    first = _serve(tmp_path / "state")
    port = int(first.url.rsplit(":", 1)[1])
    run = _frame(8).gemini.submit(prompt_col="prompt", service="gemini-api", api_key="k",
                                  api_endpoint=first.url, staging=str(tmp_path / "runs"),
                                  progress=False)
    first.stop()
    restarted = []
    back = threading.Timer(4.0, lambda: restarted.append(_serve(tmp_path / "state", port)))
    back.start()
    try:
        out = run.result()
    finally:
        back.join()
        for emulator in restarted:
            emulator.stop()
    assert restarted and _answered(out)


def test_a_developer_api_outage_past_the_deadline_is_a_service_error(tmp_path, monkeypatch):
    """PDBATCH_RETRY_DEADLINE bounds the Developer API's retries too (google-genai's own six
    attempts took 31 s whatever it said)."""
    monkeypatch.setenv("PDBATCH_RETRY_DEADLINE", "3")
    emulator = _serve(tmp_path / "state")
    run = _frame(4).gemini.submit(prompt_col="prompt", service="gemini-api", api_key="k",
                                  api_endpoint=emulator.url, staging=str(tmp_path / "runs"),
                                  progress=False)
    emulator.stop()
    started = time.monotonic()
    with pytest.raises(pdbatch.ServiceError, match="did not answer"):
        run.wait()
    assert time.monotonic() - started < 15


def test_attempts_cover_the_deadline():
    from pdbatch.gemini_client import attempts_within

    assert attempts_within(0) == 1
    assert attempts_within(3) == 3  # waits of 1 and 2 s
    assert attempts_within(300) == 15  # 1+2+4+8+16, then nine of 30 s: 301 s


def test_a_local_stack_keeps_its_own_runs_and_a_forgotten_batch_says_what_to_do(
        tmp_path, monkeypatch):
    """Runs against the emulator are not remembered in the user's runs folder; a run whose
    batch the service no longer has (the emulator restarted without its state) says so in one
    line, with force=True."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("PDBATCH_RUNS_FOLDER", raising=False)
    options = {"prompt_col": "prompt", "service": "gemini-api", "progress": False}
    with LocalStack(timing=Timing(0.01, 0.01)) as local:
        out = _frame(3).gemini.batch_predict(**options)
        assert len(pdbatch.runs(str(local.runs_folder), service="gemini-api")) == 1
        kept = str(tmp_path / "kept")
        _frame(3).gemini.batch_predict(staging=kept, **options)
    assert _answered(out) and not (tmp_path / "home").exists()
    with LocalStack(timing=Timing(0.01, 0.01)):  # a new emulator: the batch is not there
        with pytest.raises(pdbatch.InputError, match=r"^batches/\S+, recorded by this run, is "
                                                     r"not on the Gemini API at http://.*pass "
                                                     r"force=True[^\n]*$"):
            _frame(3).gemini.batch_predict(staging=kept, **options)
        again = _frame(3).gemini.batch_predict(staging=kept, force=True, **options)
    assert _answered(again)


@pytest.mark.parametrize("service", ["vertex", "gemini-api"])
def test_a_job_that_succeeded_before_its_output_shows_has_every_row_answered(
        service, stack, staging, tmp_path):
    """The service reports SUCCEEDED before the results are set (the emulator's
    ``Timing.output``): pdbatch waits for them instead of calling every row missing and paying
    for a second job with max_retries."""
    where = staging if service == "vertex" else str(tmp_path / "runs")
    stack.service.timing.output = 2.0
    try:
        out = _frame(5).gemini.batch_predict(prompt_col="prompt", service=service,
                                             staging=where, max_retries=1, progress=False)
    finally:
        stack.service.timing.output = 0.0
    assert _answered(out) and out["job"].nunique() == 1 and (out["attempts"] == 1).all()


def test_a_batch_without_a_display_name_is_made_as_the_live_api_makes_it(stack, genai_client):
    """google-genai's README and its test recorded against the live API
    (tests/batches/test_create_with_inlined_requests.py) create batches without a display
    name; the reference marks it required, which the emulator reads only when told to."""
    from google.genai import errors

    src = [{"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}]
    batch = genai_client.batches.create(model="gemini-2.5-flash", src=src)
    assert batch.name.startswith("batches/") and not batch.display_name
    stack.gemini.require_display_name = True
    try:
        with pytest.raises(errors.ClientError, match="display_name is required"):
            genai_client.batches.create(model="gemini-2.5-flash", src=src)
    finally:
        stack.gemini.require_display_name = False


@pytest.mark.parametrize("model", ["gemini-3.1-pro-preview", "gemini-3.1-flash-lite",
                                   "gemini-3.5-flash", "gemini-flash-latest"])
@pytest.mark.parametrize("service", ["vertex", "gemini-api"])
def test_current_models_and_aliases_are_served(model, service, staging, tmp_path):
    where = staging if service == "vertex" else str(tmp_path / "runs")
    out = _frame(2).gemini.batch_predict(prompt_col="prompt", model=model, service=service,
                                         staging=where, progress=False)
    assert _answered(out)


_MACHINE = """
import json, sys, time
import duckdb, pandas as pd
from google import genai  # imported before the start
import pdbatch
frame = pd.DataFrame({"prompt": [f"machine question {i}" for i in range(8)]})
time.sleep(max(0.0, float(sys.argv[2]) - time.time()))  # every process calls at the same moment
out = frame.gemini.batch_predict(prompt_col="prompt", service="gemini-api", staging=sys.argv[1],
                                 max_requests_per_job=2, progress=False)
assert (out["status"] == "ok").all(), out["status"].tolist()
assert out["text"].tolist() == [f"echo: {p}" for p in frame["prompt"]]
print(json.dumps(sorted(set(out["job"]))))
"""


def test_machines_making_the_same_call_at_once_converge_on_one_batch_per_job(
        stack, genai_client, tmp_path):
    """Three machines (each its own runs folder: no claim is shared) make a 4-batch call at
    the same moment: each creator keeps the earliest batch of each job number and cancels its
    own later one before it runs, so all read the same 4 batches (12 ran before)."""
    import json
    import os
    import subprocess
    import sys

    start = time.time() + 8  # time enough for every interpreter to import pdbatch
    stack.service.fault_labels = {"emulator-queue-ms": "4000"}  # queued: a cancel comes first
    try:
        processes = [subprocess.Popen([sys.executable, "-c", _MACHINE, str(tmp_path / f"m{i}"),
                                       str(start)], stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True, env=os.environ.copy())
                     for i in range(3)]
        answers = [process.communicate(timeout=240) for process in processes]
    finally:
        stack.service.fault_labels = {}
    assert [p.returncode for p in processes] == [0] * 3, [err[-4000:] for _, err in answers]
    read = [json.loads(out.strip().splitlines()[-1]) for out, _ in answers]
    [fingerprint] = {pdbatch.runs(staging=str(tmp_path / f"m{i}"))["fingerprint"].iloc[0]
                     for i in range(3)}
    batches = [b for b in genai_client.batches.list(config={"page_size": 100})
               if fingerprint in (b.display_name or "")]
    kept = sorted(b.name for b in batches if b.state.name != "JOB_STATE_CANCELLED")
    assert len(kept) == 4 and read == [kept] * 3  # one batch per job, read by every machine
