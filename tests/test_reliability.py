"""Never leak, never pay twice, never trust what can be checked: credentials over plain HTTP,
the same call made at the same moment, the service going away, and manifests that were
deleted, cut short or pointed at another run's job."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
import time

import pandas as pd
import pytest
from recording_proxy import RecordingProxy

import pdbatch
from pdbatch.emulator import BatchService, Timing, VertexEmulator

FRAME = pd.DataFrame({"prompt": [f"question number {i}" for i in range(40)]})


def _jobs(gapic, parent, fingerprint: str) -> list:
    return list(gapic.list_batch_prediction_jobs(request={
        "parent": parent, "filter": f'labels.pdbatch-fingerprint="{fingerprint}"'}))


def _answered(out: pd.DataFrame) -> bool:
    return bool((out["status"] == "ok").all()) and out["text"].tolist() == [
        f"echo: {p}" for p in out["prompt"]]


def test_credentials_never_go_to_a_plain_http_endpoint(stack, bigquery_server, dataset,
                                                       staging, monkeypatch):
    from google.oauth2.credentials import Credentials

    secret = Credentials(token="SECRET-TOKEN")
    with RecordingProxy(stack.vertex.url) as vertex, RecordingProxy(stack.gcs.url) as gcs, \
            RecordingProxy(bigquery_server.url) as bq:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
        monkeypatch.setenv("BIGQUERY_EMULATOR_HOST", bq.url)
        options = dict(prompt_col="prompt", credentials=secret, api_endpoint=vertex.url,
                       progress=False)
        assert _answered(FRAME.gemini.batch_predict(staging=staging, **options))
        assert FRAME.gemini.estimate(staging=staging, **options).method.startswith(
            "countTokens")
        table_run = FRAME.gemini.batch_predict(staging=f"bq://{stack.project}.{dataset}",
                                               **options)
        assert _answered(table_run)
        pdbatch.attach(table_run.attrs["pdbatch_run"], staging=f"bq://{stack.project}.{dataset}",
                       api_endpoint=vertex.url, credentials=secret).status()

    assert any(":countTokens" in path for _, path, _ in vertex.seen)
    for proxy in (vertex, gcs, bq):
        assert len(proxy.seen) > 3  # the calls went this way ...
        assert not [a for a in proxy.authorizations() if "SECRET" in a]  # ... without the token


def test_the_same_call_made_by_processes_at_the_same_moment_makes_one_run(stack, staging,
                                                                          gapic, parent):
    script = textwrap.dedent("""
        import sys, time
        import duckdb, gcsfs.core, pandas as pd
        from google.cloud.aiplatform_v1.services import job_service  # imported before the start
        import pdbatch
        frame = pd.DataFrame({"prompt": [f"question number {i}" for i in range(40)]})
        start = float(sys.argv[2])
        time.sleep(max(0.0, start - time.time()))  # every process calls at the same moment
        out = frame.gemini.batch_predict(prompt_col="prompt", staging=sys.argv[1],
                                         max_requests_per_job=10, progress=False)
        assert (out["status"] == "ok").all(), out["status"].tolist()
        print(out.attrs["pdbatch_run"])
    """)
    start = time.time() + 8  # time enough for every interpreter to import pdbatch
    # Each process's first call to the service (after it found no run, before it claims one)
    # is answered 503 and retried a second later: all of them are between the two at once.
    stack.service.api_faults.inject(503, 4)
    processes = [subprocess.Popen([sys.executable, "-c", script, staging, str(start)],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=os.environ.copy()) for _ in range(4)]
    answers = [process.communicate(timeout=240) for process in processes]
    assert [p.returncode for p in processes] == [0] * 4, [err[-6000:] for _, err in answers]
    runs = {out.strip().splitlines()[-1] for out, _ in answers}
    assert len(runs) == 1  # every process got the same run
    [run] = pdbatch.runs(staging).to_dict("records")
    assert run["run"] in runs and run["jobs"] == 4
    assert len(_jobs(gapic, parent, run["fingerprint"])) == 4  # the planned jobs, once each


def test_a_run_waits_through_an_outage_of_the_service(stack, staging, tmp_path):
    def serve(port: int = 0) -> VertexEmulator:
        service = BatchService(timing=Timing(pending=1.0, running=0.5),
                               gcs_endpoint=stack.gcs.url, state_dir=tmp_path / "state")
        return VertexEmulator(service, port=port).start()

    first = serve()
    port = int(first.url.rsplit(":", 1)[1])
    run = FRAME.gemini.submit(prompt_col="prompt", staging=staging, api_endpoint=first.url,
                              progress=False)
    first.stop()  # the service goes away while the job is pending
    restarted = []
    back = threading.Timer(5.0, lambda: restarted.append(serve(port)))
    back.start()
    try:
        out = run.result()  # waits: refused connections are retried until it is back
    finally:
        back.join()
        for emulator in restarted:
            emulator.stop()
    assert restarted and _answered(out)


def test_a_longer_outage_is_a_service_error_that_says_how_to_reattach(stack, staging, tmp_path,
                                                                      monkeypatch):
    service = BatchService(timing=Timing(pending=1.0, running=0.5), gcs_endpoint=stack.gcs.url,
                           state_dir=tmp_path / "state")
    vertex = VertexEmulator(service).start()
    run = FRAME.gemini.submit(prompt_col="prompt", staging=staging, api_endpoint=vertex.url,
                              progress=False)
    vertex.stop()  # and it does not come back
    monkeypatch.setenv("PDBATCH_RETRY_DEADLINE", "3")
    started = time.monotonic()
    with pytest.raises(pdbatch.ServiceError,
                       match=rf"for 3 s .*pdbatch.attach\('{run.id}', staging='{staging}'\)"):
        pdbatch.attach(run.id, staging=staging, api_endpoint=vertex.url).wait()
    assert time.monotonic() - started < 30


def _manifest_path(staging: str, run_id: str) -> str:
    return f"{staging}/{run_id}/manifest.json"


@pytest.mark.parametrize("lost", ["manifest", "index", "both"])
def test_a_lost_manifest_or_index_is_rebuilt_from_the_jobs_labels(lost, fs, staging, gapic,
                                                                  parent):
    first = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                       max_requests_per_job=15)
    run_id = first.attrs["pdbatch_run"]
    [run] = pdbatch.runs(staging).to_dict("records")
    if lost in ("manifest", "both"):
        fs.rm(_manifest_path(staging, run_id))
    if lost in ("index", "both"):
        fs.rm(f"{staging}/fingerprints/{run['fingerprint']}")

    again = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                       max_requests_per_job=15)
    assert again.attrs["pdbatch_run"] == run_id  # re-attached, not paid again
    pd.testing.assert_frame_equal(again, first)
    assert len(_jobs(gapic, parent, run["fingerprint"])) == 3
    [rebuilt] = pdbatch.runs(staging).to_dict("records")
    assert (rebuilt["run"], rebuilt["jobs"], rebuilt["submitted"]) == (run_id, 3, True)


def test_a_damaged_manifest_is_a_clear_error_that_names_it(fs, staging, gapic, parent):
    first = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)
    run_id = first.attrs["pdbatch_run"]
    path = _manifest_path(staging, run_id)
    fs.pipe(path, fs.cat(path)[:40])  # cut short
    with pytest.raises(pdbatch.InputError, match=rf"{path}.* is damaged.*Remove it"):
        FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)
    with pytest.raises(pdbatch.InputError, match="is damaged"):
        pdbatch.attach(run_id, staging=staging)
    fs.rm(path)  # the way out the message gives: rebuilt from the jobs' labels
    again = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)
    pd.testing.assert_frame_equal(again, first)
    assert len(_jobs(gapic, parent, pdbatch.runs(staging)["fingerprint"][0])) == 1


def test_a_manifest_naming_another_runs_job_is_refused(fs, staging):
    other = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                       system_instruction="Be brief.")
    first = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)
    path = _manifest_path(staging, first.attrs["pdbatch_run"])
    manifest = json.loads(fs.cat(path))
    manifest["jobs"][0]["name"] = other["job"].iloc[0]  # swapped for the other run's job
    fs.pipe(path, json.dumps(manifest).encode())
    with pytest.raises(pdbatch.InputError, match="belongs to run-.*not this run's"):
        FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)
    with pytest.raises(pdbatch.InputError, match="belongs to run-"):
        FRAME.gemini.read_results(run=first.attrs["pdbatch_run"], staging=staging)


@pytest.mark.parametrize("where", ["gcs", "bigquery"])
def test_one_claim_of_a_fingerprint_wins_however_many_race(where, request, stack, staging):
    from concurrent.futures import ThreadPoolExecutor

    from pdbatch import storage

    if where == "bigquery":
        uri = f"bq://{stack.project}.{request.getfixturevalue('dataset')}"
    else:
        uri = staging
    fingerprint = "0123456789abcdef0123456789abcdef"
    ids = [f"run-20261129-000000-{n:06x}" for n in range(8)]
    barrier = threading.Barrier(len(ids))

    def claim(run_id: str) -> str:
        store = storage.open_store(uri)
        barrier.wait()
        return store.claim(fingerprint, run_id)

    with ThreadPoolExecutor(len(ids)) as pool:
        owners = list(pool.map(claim, ids))
    assert len(set(owners)) == 1 and owners[0] in ids  # one winner, and everyone knows it
    assert storage.open_store(uri).find(fingerprint) == owners[0]


def test_a_dask_runs_lost_manifest_is_rebuilt_from_its_jobs(fs, staging, gapic, parent):
    import dask.dataframe as dd

    ddf = dd.from_pandas(FRAME, npartitions=3)
    lazy = ddf.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                    max_requests_per_job=10)
    first = lazy.compute(scheduler="threads")
    [run] = pdbatch.runs(staging).to_dict("records")
    fs.rm(_manifest_path(staging, run["run"]))
    fs.rm(f"{staging}/fingerprints/{run['fingerprint']}")

    again = lazy.compute(scheduler="threads")
    pd.testing.assert_frame_equal(again, first)
    [rebuilt] = pdbatch.runs(staging).to_dict("records")
    assert (rebuilt["run"], rebuilt["jobs"], rebuilt["submitted"]) == (run["run"],
                                                                       run["jobs"], True)
    assert len(_jobs(gapic, parent, run["fingerprint"])) == run["jobs"]  # none made again


def test_reading_a_run_does_not_depend_on_the_readers_environment(stack, staging, monkeypatch):
    monkeypatch.setenv("PDBATCH_STAGING", staging)  # the run takes its staging from here
    out = FRAME.gemini.batch_predict(prompt_col="prompt", progress=False)
    monkeypatch.delenv("PDBATCH_STAGING")
    monkeypatch.setenv("GOOGLE_CLOUD_LOCATION", "europe-west4")  # another reader, elsewhere
    again = FRAME.gemini.read_results(run=out.attrs["pdbatch_run"], staging=staging)
    pd.testing.assert_frame_equal(again, out)


def test_an_index_naming_another_calls_run_and_a_damaged_manifest_in_runs(fs, staging):
    FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)
    other = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                       system_instruction="Be brief.")
    [this_index] = [p for p in fs.find(f"{staging}/fingerprints")
                    if fs.cat(p).decode() != other.attrs["pdbatch_run"]]
    fs.pipe(this_index, other.attrs["pdbatch_run"].encode())  # swapped for the other call's
    with pytest.raises(pdbatch.InputError, match="manifest is another run's or another call's"):
        FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)
    fs.pipe(_manifest_path(staging, other.attrs["pdbatch_run"]), b"{")
    assert pdbatch.runs(staging)["run"].tolist() != []  # the damaged one is left out, logged
    assert other.attrs["pdbatch_run"] not in pdbatch.runs(staging)["run"].tolist()


def test_a_manifest_naming_a_job_the_service_does_not_have_says_what_to_do(fs, staging):
    """Another project's job (or one deleted since) is one line naming it and force=True, not
    the client library's NotFound."""
    first = FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)
    path = _manifest_path(staging, first.attrs["pdbatch_run"])
    manifest = json.loads(fs.cat(path))
    manifest["jobs"][0]["name"] = "projects/other-project/locations/us-central1/" \
                                  "batchPredictionJobs/1234567890123456789"
    fs.pipe(path, json.dumps(manifest).encode())
    with pytest.raises(pdbatch.InputError, match=r"^projects/other-project/.*is not on Vertex "
                                                 r"AI .*pass force=True[^\n]*$"):
        FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)


def test_reserved_labels_and_a_lone_surrogate_in_the_system_instruction_are_refused(staging,
                                                                                    uploaded):
    with pytest.raises(pdbatch.InputError, match="'pdbatch-run' is pdbatch's own: .*"
                                                 "pdbatch-run and pdbatch-fingerprint"):
        FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging,
                                   labels={"pdbatch-run": "mine"})
    with pytest.raises(pdbatch.InputError, match="system_instruction is not valid Unicode "
                                                 "text: it holds a lone surrogate at character 3"):
        FRAME.gemini.batch_predict(prompt_col="prompt", staging=staging,
                                   system_instruction="Be \ud800 brief.")
    assert uploaded() == []
