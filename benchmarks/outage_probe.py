"""Probe: a 60 s outage of the service (the emulator answers every API call 503), ridden out
with the default deadline (``PDBATCH_RETRY_DEADLINE`` unset: 300 s), on each service.

Two moments: the outage starts while the run waits for its jobs (``waiting``), and when the
call starts, before anything is uploaded or created (``creating``). Then, on each service, a
results file appearing 5 s after SUCCEEDED (``Timing(output=5)``). Prints one line per case:
whether every row was answered, the jobs the call's fingerprint finds, and the seconds taken.
Run: ``python benchmarks/outage_probe.py [outage seconds]`` (about 6 minutes).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
import uuid

import pandas as pd

import pdbatch
from pdbatch.emulator import LocalStack, Timing

sys.path.insert(0, os.path.dirname(__file__))
from concurrent_probe import jobs_of  # noqa: E402


def case(stack: LocalStack, service: str, moment: str, outage: float) -> dict:
    tag = uuid.uuid4().hex[:6]
    frame = pd.DataFrame({"prompt": [f"{tag} question {i}" for i in range(40)]})
    staging = (f"gs://{stack.bucket}/probe-{tag}" if service == "vertex"
               else tempfile.mkdtemp(prefix="pdbatch-probe-"))
    options = {"prompt_col": "prompt", "service": service, "staging": staging,
               "progress": False, "max_requests_per_job": 20}
    started, error, answered = time.monotonic(), "", False
    try:
        if moment == "creating":
            stack.service.api_faults.outage(outage)
            out = frame.gemini.batch_predict(**options)
        else:
            run = frame.gemini.submit(**options)
            if moment == "waiting":
                stack.service.api_faults.outage(outage)
            out = run.result()
        answered = out["text"].tolist() == [f"echo: {p}" for p in frame["prompt"]]
    except Exception as err:  # noqa: BLE001  (recorded: the probe counts unclear errors)
        error = f"{type(err).__name__}: {err}"
    stack.service.api_faults.outage(0)
    found = pdbatch.runs(staging, service=service)
    states = [state for _, state in jobs_of(stack, service, found["fingerprint"].iloc[0])] \
        if len(found) else []
    return {"service": service, "case": moment, "outage_s": outage if moment != "late" else 0,
            "answered": answered, "jobs": len(states), "planned": 2, "error": error[:300],
            "seconds": round(time.monotonic() - started, 1)}


if __name__ == "__main__":
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    os.environ.pop("PDBATCH_RETRY_DEADLINE", None)  # the default deadline
    with LocalStack(timing=Timing(pending=2.0, running=1.0)) as local:
        for service in ("vertex", "gemini-api"):
            for moment in ("waiting", "creating"):
                print(json.dumps(case(local, service, moment, seconds)), flush=True)
        local.service.timing.output = 5.0  # results 5 s after SUCCEEDED
        for service in ("vertex", "gemini-api"):
            print(json.dumps(case(local, service, "late", seconds)), flush=True)
