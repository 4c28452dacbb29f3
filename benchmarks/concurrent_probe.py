"""Probe: 10 identical calls made at the same moment, 6 rounds, on each service.

Configurations: Vertex AI (one shared staging location), the Developer API from one machine
(one runs folder) and from ten machines (a runs folder each: no claim is shared, the creators
converge through the batch list). Each round is a new call (its own prompts), 40 rows in 4
jobs; every job queues 3 s first, as real batches wait before they run. Prints one line per
round: the runs the clients got, the jobs the call's fingerprint finds (created, cancelled
before running, answered), whether every client got its own rows' answers, and the clients that
failed. Run: ``python benchmarks/concurrent_probe.py [rounds] [vertex|gemini-api|machines ...]``
(about 15 minutes on 2 cores).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid

import pdbatch
from pdbatch.emulator import LocalStack, Timing

CLIENTS, ROWS, PER_JOB = 10, 40, 10
CALL = textwrap.dedent("""
    import json, sys, time
    import duckdb, gcsfs.core, pandas as pd
    from google import genai
    from google.cloud.aiplatform_v1.services import job_service
    import pdbatch
    frame = pd.DataFrame({"prompt": [f"{sys.argv[3]} question {i}" for i in range(40)]})
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
    out = frame.gemini.batch_predict(prompt_col="prompt", staging=sys.argv[1], progress=False,
                                     service=sys.argv[4], max_requests_per_job=10)
    own = out["text"].tolist() == [f"echo: {p}" for p in frame["prompt"]]
    print(json.dumps({"run": out.attrs["pdbatch_run"], "jobs": sorted(set(out["job"])),
                      "own": own and bool((out["status"] == "ok").all())}))
""")


def jobs_of(stack: LocalStack, service: str, fingerprint: str) -> list[tuple[str, str]]:
    """(name, state) of every job carrying the fingerprint."""
    if service == "vertex":
        found = stack.service.list(f"projects/{stack.project}/locations/{stack.location}",
                                   1000, "", f'labels.pdbatch-fingerprint="{fingerprint}"')
        return [(job["name"], job["state"].removeprefix("JOB_STATE_"))
                for job in found.get("batchPredictionJobs", [])]
    found = stack.gemini.batches.list(0, 10000)["operations"]
    return [(op["name"], op["metadata"]["state"].removeprefix("BATCH_STATE_"))
            for op in found if fingerprint in op["metadata"].get("displayName", "")]


def round_of(stack: LocalStack, service: str, machines: bool, number: int) -> dict:
    tag = f"r{number}-{uuid.uuid4().hex[:6]}"
    shared = (f"gs://{stack.bucket}/probe-{tag}" if service == "vertex"
              else tempfile.mkdtemp(prefix="pdbatch-probe-"))
    folders = [tempfile.mkdtemp(prefix="pdbatch-probe-") if machines else shared
               for _ in range(CLIENTS)]
    start = time.time() + 20  # time for every interpreter to import pdbatch on a busy machine
    clients = [subprocess.Popen([sys.executable, "-c", CALL, folder, str(start), tag, service],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=os.environ.copy()) for folder in folders]
    answers = [client.communicate(timeout=900) for client in clients]
    late = round(time.time() - start, 1)
    said = [json.loads(out.strip().splitlines()[-1]) for out, _ in answers if out.strip()]
    failed = [err.strip().splitlines()[-1] if err.strip() else f"exit {c.returncode}"
              for c, (_, err) in zip(clients, answers, strict=True) if c.returncode]
    fingerprint = pdbatch.runs(folders[0], service=service)["fingerprint"].iloc[0]
    states = [state for _, state in jobs_of(stack, service, fingerprint)]
    return {"service": service, "machines": CLIENTS if machines else 1, "round": number,
            "runs": len({s["run"] for s in said}), "job_sets": len({tuple(s["jobs"])
                                                                    for s in said}),
            "planned": ROWS // PER_JOB, "created": len(states),
            "cancelled": states.count("CANCELLED"), "answered": states.count("SUCCEEDED"),
            "own_answers": sum(s["own"] for s in said), "failed": failed, "seconds": late}


if __name__ == "__main__":
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    chosen = sys.argv[2:] or ["vertex", "gemini-api", "machines"]  # configurations to run
    configurations = {"vertex": ("vertex", False), "gemini-api": ("gemini-api", False),
                      "machines": ("gemini-api", True)}
    with LocalStack(timing=Timing(pending=0.05, running=0.05)) as local:
        local.service.fault_labels = {"emulator-queue-ms": "3000"}  # every job queues 3 s
        for service, machines in (configurations[name] for name in chosen):
            for number in range(rounds):
                print(json.dumps(round_of(local, service, machines, number)), flush=True)
