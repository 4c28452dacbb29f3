"""Probe: an abandoned 80-job run taken over by 2 and by 5 processes at the same moment.

A client making an 80-job run (``max_requests_per_job=1``) is killed once 7 jobs exist; its
manifest is aged past ``STALE_AFTER``; then N processes make the same call together. Prints
how many jobs the run's fingerprint label finds (80 means the 73 missing ones were made once).
Run: ``python benchmarks/takeover_probe.py`` (about 2 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from datetime import datetime, timedelta, timezone

import pdbatch
from pdbatch.emulator import LocalStack, Timing

ROWS, KILLED_AFTER = 80, 7
CALL = textwrap.dedent("""
    import json, sys, time
    import pandas as pd
    import pdbatch
    frame = pd.DataFrame({"prompt": [f"question number {i}" for i in range(int(sys.argv[4]))]})
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
    out = frame.gemini.batch_predict(prompt_col="prompt", staging=sys.argv[1], progress=False,
                                     max_requests_per_job=1, **json.loads(sys.argv[3]))
    assert (out["status"] == "ok").all()
""")


def call(staging: str, start: float, **options) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", CALL, staging, str(start),
                             json.dumps(options), str(ROWS)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=os.environ.copy())


def probe(stack: LocalStack, takers: int) -> dict:
    from gcsfs.core import GCSFileSystem

    fs = GCSFileSystem(endpoint_url=stack.gcs.url, token="anon", skip_instance_cache=True)
    staging = f"gs://{stack.bucket}/probe-{uuid.uuid4().hex[:8]}"
    client = call(staging, 0, max_concurrent_jobs=KILLED_AFTER,
                  labels={"emulator-queue-ms": "20000"})
    while True:
        found = pdbatch.runs(staging)
        if len(found) and found["jobs"].iloc[0] >= KILLED_AFTER:
            break
        time.sleep(0.2)
    client.kill()
    client.communicate()
    [run] = pdbatch.runs(staging).to_dict("records")
    path = f"{staging}/{run['run']}/manifest.json"
    manifest = json.loads(fs.cat(path))
    manifest["updated"] = (datetime.now(timezone.utc) - timedelta(minutes=2)).isoformat(
        timespec="seconds")
    fs.pipe(path, json.dumps(manifest).encode())
    start = time.time() + 10
    processes = [call(staging, start) for _ in range(takers)]
    codes = [p.wait(timeout=600) for p in processes]
    jobs = stack.service.list(f"projects/{stack.project}/locations/{stack.location}", 1000, "",
                              f'labels.pdbatch-fingerprint="{run["fingerprint"]}"')
    return {"takers": takers, "recorded_before": len(manifest["jobs"]), "planned": ROWS,
            "jobs": len(jobs.get("batchPredictionJobs", [])), "exit_codes": codes,
            "seconds": round(time.time() - start, 1)}


if __name__ == "__main__":
    with LocalStack(timing=Timing(pending=0.05, running=0.05)) as local:
        for n in (2, 5):
            print(json.dumps(probe(local, n)), flush=True)
