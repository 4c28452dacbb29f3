"""A run its client left unfinished, taken over by several processes making the same call at
the same moment: one of them creates the missing jobs, once each."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from datetime import datetime, timedelta, timezone

import pandas as pd

import pdbatch

ROWS = 12
_CALL = """
import json, sys, time
import duckdb, gcsfs.core, pandas as pd
from google.cloud.aiplatform_v1.services import job_service  # imported before the start
import pdbatch
frame = pd.DataFrame({"prompt": [f"question number {i}" for i in range(int(sys.argv[4]))]})
start = float(sys.argv[2])
time.sleep(max(0.0, start - time.time()))  # every process calls at the same moment
out = frame.gemini.batch_predict(prompt_col="prompt", staging=sys.argv[1], progress=False,
                                 max_requests_per_job=1, **json.loads(sys.argv[3]))
assert (out["status"] == "ok").all(), out["status"].tolist()
print(out.attrs["pdbatch_run"])
"""


def _call(staging: str, start: float, **options) -> subprocess.Popen:
    arguments = [staging, str(start), json.dumps(options), str(ROWS)]
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(_CALL), *arguments],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=os.environ.copy())


def _abandoned(staging: str, fs) -> dict:
    """A run whose client was killed after 3 of its 12 jobs (it could not start more: its
    jobs stay queued and it runs at most 3 at once), its manifest last saved 2 minutes ago."""
    client = _call(staging, 0, max_concurrent_jobs=3, labels={"emulator-queue-ms": "4000"})
    deadline = time.monotonic() + 90
    while True:
        found = pdbatch.runs(staging)
        if len(found) and found["jobs"].iloc[0] == 3:
            break
        assert client.poll() is None and time.monotonic() < deadline, client.communicate()
        time.sleep(0.2)
    client.kill()
    client.communicate(timeout=10)
    [run] = pdbatch.runs(staging).to_dict("records")
    path = f"{staging}/{run['run']}/manifest.json"
    manifest = json.loads(fs.cat(path))
    assert not manifest["submitted"] and len(manifest["jobs"]) == 3
    manifest["updated"] = (datetime.now(timezone.utc) - timedelta(minutes=2)).isoformat(
        timespec="seconds")
    fs.pipe(path, json.dumps(manifest).encode())
    return manifest


def test_an_abandoned_run_taken_over_by_three_processes_at_once_creates_each_job_once(
        stack, staging, fs, gapic, parent):
    manifest = _abandoned(staging, fs)
    start = time.time() + 8  # time enough for every interpreter to import pdbatch
    processes = [_call(staging, start) for _ in range(3)]
    answers = [process.communicate(timeout=240) for process in processes]
    assert [p.returncode for p in processes] == [0] * 3, [err[-4000:] for _, err in answers]
    assert {out.strip().splitlines()[-1] for out, _ in answers} == {manifest["run"]}
    jobs = list(gapic.list_batch_prediction_jobs(request={
        "parent": parent, "filter": f'labels.pdbatch-fingerprint="{manifest["fingerprint"]}"'}))
    names = pd.Series([job.display_name for job in jobs])
    assert len(jobs) == ROWS and names.is_unique  # the 9 missing jobs, made once each
