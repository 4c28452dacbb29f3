"""service="gemini-api": the Gemini Developer API's batch mode, with an API key and no Cloud
project, through google-genai against the emulator's Developer API surface."""

from __future__ import annotations

import os
import time

import pandas as pd
import pyarrow as pa
import pytest

import pdbatch
from pdbatch import InputError


def _frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"prompt": [f"question {i}" for i in range(n)]},
                        index=pd.RangeIndex(100, 100 + n))


def test_a_missing_key_is_refused_before_anything_is_sent(monkeypatch, tmp_path):
    for name in ("GEMINI_API_KEY", "GOOGLE_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    with pytest.raises(InputError, match="No Gemini API key: pass api_key="):
        _frame(2).gemini.batch_predict(prompt_col="prompt", service="gemini-api",
                                       staging=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("option", "value", "says"), [
    ("project", "my-project", "project= is a Vertex AI option"),
    ("location", "us-central1", "location= is a Vertex AI option"),
    ("labels", {"team": "a"}, "labels= is a Vertex AI option"),
    ("carry", ["prompt"], "carry= is a Vertex AI option"),
    ("output", "bq://p.d", "output= is a Vertex AI option"),
    ("staging", "bq://p.d", "keeps no runs in Cloud Storage or BigQuery"),
    ("staging", "gs://bucket/x", "keeps no runs in Cloud Storage or BigQuery"),
    ("transport", "grpc", "transport= is a Vertex AI option"),
    ("model", "llama-3.3-70b-instruct-maas", "not served by the Gemini Developer API"),
])
def test_vertex_only_options_are_refused_naming_the_vertex_way(option, value, says, tmp_path):
    arguments = {"staging": str(tmp_path), option: value}
    with pytest.raises(InputError, match=says):
        _frame(2).gemini.batch_predict(prompt_col="prompt", service="gemini-api",
                                       api_key="k", **arguments)
    assert list(tmp_path.iterdir()) == []


def test_a_key_alone_never_chooses_the_developer_api(monkeypatch):
    """Vertex AI stays the default: a user with a key and no project is told how to choose
    the Developer API rather than switched to it (the two bill differently)."""
    for name in ("GOOGLE_CLOUD_PROJECT", "PDBATCH_SERVICE", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", "k")
    monkeypatch.setenv("PDBATCH_STAGING", "gs://bucket/x")
    monkeypatch.setenv("CLOUDSDK_CONFIG", "/nonexistent")  # no gcloud project either
    with pytest.raises(InputError, match="pass service='gemini-api' or set PDBATCH_SERVICE"):
        _frame(2).gemini.batch_predict(prompt_col="prompt", location="us-central1")


def test_an_unknown_service_is_refused():
    with pytest.raises(InputError, match="service='openai': choose 'vertex'"):
        _frame(2).gemini.batch_predict(prompt_col="prompt", service="openai")


@pytest.fixture
def runs_folder(tmp_path):
    """Where this test's Developer API runs are remembered."""
    return str(tmp_path / "runs")


@pytest.fixture
def genai_client(stack):
    """The unmodified google-genai client on the emulator's Developer API surface (from the
    environment the stack exports: GOOGLE_GEMINI_BASE_URL and GEMINI_API_KEY)."""
    from google import genai

    return genai.Client()


def test_a_small_frame_goes_through_a_file_and_every_row_gets_its_own_answer(
        stack, runs_folder, genai_client):
    """Even 50 rows go through the Files API, not inline: inline answers come back without
    the keys that tell their rows (python-genai #2008) and out of order (#1909)."""
    df = _frame(50)
    out = df.gemini.batch_predict(prompt_col="prompt", service="gemini-api",
                                  staging=runs_folder, progress=False)
    pd.testing.assert_index_equal(out.index, df.index)
    assert (out["status"] == "ok").all()
    assert (out["text"] == "echo: " + df["prompt"]).all()
    assert (out["prompt_tokens"] == 2).all() and out["finish_reason"].eq("STOP").all()
    [name] = out["job"].unique()
    batch = genai_client.batches.get(name=name)
    assert batch.dest.file_name and not batch.dest.inlined_responses
    assert batch.display_name.startswith(f"pdbatch-{out.attrs['pdbatch_run']}-00000 [")


def test_a_large_frame_goes_through_several_files_api_batches(stack, runs_folder,
                                                              genai_client):
    n = 250_000
    df = pd.DataFrame({"prompt": [f"question number {i}" for i in range(n)]})
    out = df.gemini.batch_predict(prompt_col="prompt", service="gemini-api",
                                  staging=runs_folder, progress=False)
    assert (out["status"] == "ok").all()
    assert (out["text"] == "echo: " + df["prompt"]).all()  # every row its own answer
    names = out["job"].unique()
    assert len(names) == 2  # 200,000 requests per batch at most
    for name in names:
        batch = genai_client.batches.get(name=name)
        assert batch.dest.file_name.startswith("files/") and not batch.dest.inlined_responses


def test_a_run_is_remembered_locally_re_attached_and_read_again(stack, runs_folder,
                                                                genai_client):
    df = _frame(12)
    run = df.gemini.submit(prompt_col="prompt", service="gemini-api", staging=runs_folder,
                           progress=False)
    before = len(list(genai_client.batches.list()))
    again = df.gemini.submit(prompt_col="prompt", service="gemini-api", staging=runs_folder,
                             progress=False)
    assert again.id == run.id and len(list(genai_client.batches.list())) == before

    listed = pdbatch.runs(service="gemini-api", staging=runs_folder)
    assert listed["run"].tolist() == [run.id]
    attached = pdbatch.attach(run.id, service="gemini-api", staging=runs_folder)
    out = attached.result(df)
    assert (out["text"] == "echo: " + df["prompt"]).all()
    by_batch = pdbatch.attach(run.jobs[0], staging=runs_folder)
    assert by_batch.id == run.id
    read = pdbatch.read_results(df, run=run.id, staging=runs_folder)  # a folder: this service
    pd.testing.assert_frame_equal(read, out)
    assert pdbatch.runs(service="gemini-api", staging=runs_folder)["state"].tolist() == [
        "succeeded"]


def test_the_local_record_lost_the_same_call_finds_its_batches_by_display_name(
        stack, tmp_path, genai_client):
    df = _frame(8)
    first = df.gemini.submit(prompt_col="prompt", service="gemini-api",
                             staging=str(tmp_path / "a"), progress=False)
    first.wait(progress=False)
    # The record is gone (a new Colab runtime), or the call is made with another folder (on
    # another machine): the same call is found by the fingerprint its batch's display name
    # carries, and no batch is made again.
    import shutil

    shutil.rmtree(tmp_path / "a")
    before = len(list(genai_client.batches.list()))
    for folder in ("a", "b"):
        rebuilt = df.gemini.submit(prompt_col="prompt", service="gemini-api",
                                   staging=str(tmp_path / folder), progress=False)
        assert rebuilt.id == first.id
        assert pdbatch.runs(service="gemini-api", staging=str(tmp_path / folder))[
            "run"].tolist() == [first.id]
    assert len(list(genai_client.batches.list())) == before


def test_files_are_uploaded_once_through_the_files_api(stack, tmp_path, genai_client):
    """Local files and bytes go to the Files API as files/<content hash> (an upload already
    there is not made again); a gs:// cell is refused before anything is uploaded."""
    (tmp_path / "cat.png").write_bytes(b"\x89PNG a cat")
    df = pd.DataFrame({"prompt": ["what is this?"] * 4,
                       "picture": [str(tmp_path / "cat.png"), None, b"GIF89a raw",
                                   str(tmp_path / "cat.png")]})
    options = {"prompt_col": "prompt", "service": "gemini-api", "files_root": tmp_path,
               "staging": str(tmp_path / "runs"), "progress": False,
               "files": {"picture": "image/png"}}
    def sent_files() -> list:
        return [f for f in genai_client.files.list() if f.name not in before
                and (f.display_name or "").startswith("pdbatch-file-")]

    before = {f.name for f in genai_client.files.list()}
    out = df.gemini.batch_predict(**options)
    assert (out["status"] == "ok").all()
    uploaded = sent_files()
    assert sorted(f.mime_type for f in uploaded) == ["image/png", "image/png"]
    assert all(len(f.name) == len("files/") + 40 for f in uploaded)
    request = __import__("json").loads(out["response"].iloc[0])  # answered with its file
    assert request["candidates"][0]["content"]["parts"][0]["text"] == "echo: what is this?"

    again = df.gemini.batch_predict(**options, force=True)  # a new run, the same files
    assert (again["status"] == "ok").all()
    assert len(sent_files()) == 2

    cloud = df.assign(picture=["gs://bucket/cat.png", None, None, None])
    with pytest.raises(InputError, match="row 0.*does not read: send a local file or bytes"):
        cloud.gemini.batch_predict(**options)


def test_the_guard_refuses_a_run_over_its_limits_before_anything_is_uploaded(
        stack, tmp_path, genai_client):
    df = pd.DataFrame({"prompt": [f"question {i % 10}" for i in range(30)]})
    options = {"prompt_col": "prompt", "service": "gemini-api", "progress": False,
               "staging": str(tmp_path / "runs"), "dedup": False}
    files, batches = len(list(genai_client.files.list())), len(list(genai_client.batches.list()))
    with pytest.raises(InputError, match="Not submitted.*30 requests is over max_rows=20"):
        df.gemini.batch_predict(max_rows=20, **options)
    with pytest.raises(InputError, match="Not submitted"):
        df.gemini.batch_predict(max_cost=1e-9, **options)
    assert len(list(genai_client.files.list())) == files
    assert len(list(genai_client.batches.list())) == batches
    assert pdbatch.runs(service="gemini-api", staging=str(tmp_path / "runs")).empty

    estimate = df.gemini.estimate(prompt_col="prompt", service="gemini-api",
                                  staging=str(tmp_path / "runs"))
    assert estimate.requests == 10 and estimate.input_tokens == 20  # countTokens: 2 words
    assert "countTokens" in estimate.method


def test_a_cancelled_run_ends_cancelled_and_says_so(stack, tmp_path):
    stack.service.fault_labels = {"emulator-queue-ms": "20000"}
    try:
        run = _frame(5).gemini.submit(prompt_col="prompt", service="gemini-api",
                                      staging=str(tmp_path / "runs"), progress=False,
                                      force=True)
    finally:
        stack.service.fault_labels = {}
    assert run.status().state in ("pending", "queued")
    run.cancel()
    assert run.wait(progress=False).state == "cancelled"
    with pytest.raises(pdbatch.JobError, match="CANCELLED"):
        run.result()


def test_the_emulator_counts_tokens_as_the_developer_api_does(stack, genai_client):
    from google.genai import errors

    counted = genai_client.models.count_tokens(model="gemini-2.5-flash",
                                               contents=["three words here"])
    assert counted.total_tokens == 3
    with pytest.raises(errors.ClientError, match="models/gemini-0 is not found"):
        genai_client.models.count_tokens(model="gemini-0", contents=["x"])


_CLIENT = """
import sys
import os
import time

import pandas as pd
import pyarrow as pa
import pdbatch
frame = pd.DataFrame({"prompt": [f"question number {i}" for i in range(40)]})
frame.gemini.batch_predict(prompt_col="prompt", service="gemini-api", staging=sys.argv[1],
                           progress=False, cancel_on_interrupt=sys.argv[2] == "cancel",
                           force=True)
"""


@pytest.mark.parametrize("mode", ["", "cancel"])
def test_an_interrupt_leaves_the_batch_running_or_cancels_it(stack, tmp_path, mode):
    import os
    import signal
    import subprocess
    import sys
    import time

    folder = str(tmp_path / "runs")
    stack.service.fault_labels, stack.service.fault_jobs = {"emulator-queue-ms": "20000"}, 1
    try:
        process = subprocess.Popen([sys.executable, "-c", _CLIENT, folder, mode],
                                   stderr=subprocess.PIPE, text=True, env=os.environ.copy())
        deadline = time.monotonic() + 60
        while not (pdbatch.runs(service="gemini-api", staging=folder)["jobs"] == 1).any():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.2)
        process.send_signal(signal.SIGINT)
        _, errors = process.communicate(timeout=20)
    finally:
        stack.service.fault_labels, stack.service.fault_jobs = {}, None
    assert process.returncode != 0 and "KeyboardInterrupt" in errors
    [run] = pdbatch.runs(service="gemini-api", staging=folder)["run"]
    state = pdbatch.attach(run, service="gemini-api", staging=folder).status().state
    if mode == "cancel":
        assert "asked the Gemini API to cancel" in errors and state == "cancelled"
    else:
        assert "keep running on the Gemini API" in errors
        assert f"pdbatch.attach('{run}', service='gemini-api', staging='{folder}')" in errors
        assert state == "pending"


def test_an_interrupt_while_the_manifest_is_saved_leaves_the_run_to_pick_up(stack, tmp_path,
                                                                            monkeypatch, caplog):
    """Ctrl-C reaching the client inside the manifest's save (``os.replace``), its batch just
    made: it says the batch keeps running and how to attach, the manifest names the batch, and
    the same call made again picks the run up at once (no 60 s wait, no second batch)."""
    folder = str(tmp_path / "runs")
    replace = os.replace

    def interrupted(source, target):
        if str(target).endswith("manifest.json") and '"batches/' in open(source).read():
            monkeypatch.setattr(os, "replace", replace)
            raise KeyboardInterrupt  # as the signal lands before the rename
        replace(source, target)

    monkeypatch.setattr(os, "replace", interrupted)
    options = {"prompt_col": "prompt", "service": "gemini-api", "staging": folder,
               "progress": False}
    with pytest.raises(KeyboardInterrupt):
        _frame(6).gemini.batch_predict(**options)
    [run] = pdbatch.runs(service="gemini-api", staging=folder)["run"]
    assert "keep running on the Gemini API" in caplog.text
    assert f"pdbatch.attach('{run}', service='gemini-api', staging='{folder}')" in caplog.text
    assert len(pdbatch.attach(run, service="gemini-api", staging=folder).jobs) == 1
    started = time.monotonic()
    out = _frame(6).gemini.batch_predict(**options)
    assert out.attrs["pdbatch_run"] == run and (out["status"] == "ok").all()
    assert time.monotonic() - started < 30 and out["job"].nunique() == 1


def test_an_api_key_without_the_service_is_refused(stack, staging):
    with pytest.raises(InputError, match="api_key= is the Gemini Developer API's: pass "
                                         "service='gemini-api'"):
        _frame(2).gemini.batch_predict(prompt_col="prompt", api_key="k", staging=staging)


def test_an_expired_batch_raises_or_has_its_rows_asked_again(stack, tmp_path):
    """A batch the service let expire (after 48 hours; here the emulator's fault) ends the
    run with a JobError, as on Vertex AI; retry_expired=True asks its rows again."""
    options = {"prompt_col": "prompt", "service": "gemini-api", "progress": False,
               "staging": str(tmp_path / "runs")}
    stack.service.fault_labels, stack.service.fault_jobs = {"emulator-fault": "expire"}, 1
    try:
        with pytest.raises(pdbatch.JobError, match="EXPIRED"):
            _frame(6).gemini.batch_predict(force=True, **options)
        stack.service.fault_jobs = 1  # the next batch expires, its retry does not
        out = _frame(6).gemini.batch_predict(max_retries=1, retry_expired=True, force=True,
                                             **options)
    finally:
        stack.service.fault_labels, stack.service.fault_jobs = {}, None
    assert (out["status"] == "ok").all() and (out["attempts"] == 2).all()


def test_a_create_whose_answer_was_lost_is_found_not_made_twice(stack, genai_client):
    """The batch was made, but the answer to the create was lost (a 503): the service looks
    for it by its display name before asking again."""
    from pdbatch import config
    from pdbatch.families.gemini import PARSER
    from pdbatch.service import open_service
    from pdbatch.storage import Destination
    from pdbatch.storage.files_api import FilesApiLocation

    settings = config.resolve(None, None, None, service="gemini-api")
    requests = pa.chunked_array([['{"pdbatch_row":0,"request":{"contents":[{"role":"user",'
                                  '"parts":[{"text":"hi"}]}]}}\n']])
    run = "run-20261129-000000-abcdef"
    source = FilesApiLocation(run, PARSER, settings.api_endpoint, "k").stage(0, requests)
    labels = {"pdbatch-run": run, "pdbatch-fingerprint": "0" * 32}
    stack.service.api_faults.inject(503, 1, lost=True)
    name = open_service(settings).create(f"pdbatch-{run}-00000",
                                         "publishers/google/models/gemini-2.5-flash",
                                         source, Destination(), labels)
    made = [b for b in genai_client.batches.list() if "0" * 32 in (b.display_name or "")]
    assert [b.name for b in made] == [name]


def test_answers_given_inline_are_joined_by_key_or_not_at_all(stack, genai_client):
    """Should a batch answer inline, an answer without its key is never matched to a row by
    position; with keys, a row error reads as it does from a results file."""
    from pdbatch import engine
    from pdbatch.families.gemini import PARSER
    from pdbatch.storage.files_api import FilesApiLocation

    requests = [{"contents": [{"role": "user", "parts": [{"text": f"question {i}"}]}],
                 "metadata": {"key": str(i)}} for i in range(4)]
    location = FilesApiLocation("run-20261129-000000-abcdef", PARSER,
                                os.environ["GOOGLE_GEMINI_BASE_URL"], "k")
    found = {}
    for with_keys in (False, True):
        stack.gemini.inline_metadata = with_keys
        stack.service.fault_labels, stack.service.fault_jobs = (
            {"emulator-row-errors": "400-50"}, 1)
        try:
            batch = genai_client.batches.create(model="gemini-2.5-flash", src=requests,
                                                config={"display_name": "inline"})
            while not genai_client.batches.get(name=batch.name).done:
                time.sleep(0.05)
        finally:
            stack.gemini.inline_metadata = False
            stack.service.fault_labels, stack.service.fault_jobs = {}, None
        found[with_keys] = location.collect(engine.connect(), 0, batch.name, True)
    assert found[False].column("key").null_count == 4  # not joined: no row gets them
    keyed = found[True].to_pandas()
    assert sorted(keyed["key"]) == [0, 1, 2, 3]
    answered = keyed[keyed["status"] == ""]
    assert (answered["text"] == "echo: question " + answered["key"].astype(str)).all()
    failed = keyed.loc[keyed["status"] != "", "status"]
    assert failed.str.startswith('INVALID_ARGUMENT: {"error":{"code":400').all()


def test_uploads_are_used_once_the_files_api_has_processed_them(stack, tmp_path):
    """A batch cannot use a file still PROCESSING (FAILED_PRECONDITION): pdbatch waits until
    its requests file and the files it sends are ACTIVE."""
    (tmp_path / "cat.png").write_bytes(b"\x89PNG a processed cat")
    df = _frame(3).assign(picture=[str(tmp_path / "cat.png"), None, None])
    stack.gemini.processing_seconds = 1.0
    try:
        out = df.gemini.batch_predict(prompt_col="prompt", service="gemini-api",
                                      staging=str(tmp_path / "runs"), progress=False,
                                      files={"picture": None}, files_root=tmp_path)
    finally:
        stack.gemini.processing_seconds = 0.0
    assert (out["status"] == "ok").all()


def test_a_bare_host_as_base_url_is_reached_over_https(monkeypatch):
    from pdbatch import config

    monkeypatch.setenv("GOOGLE_GEMINI_BASE_URL", "generativelanguage.googleapis.com")
    settings = config.resolve(None, None, None, service="gemini-api", api_key="k")
    assert settings.api_endpoint == "https://generativelanguage.googleapis.com"


def test_the_runs_folder_is_written_whole_by_concurrent_writers(tmp_path):
    """Two processes saving the same run's record (one taking over from another, or a folder
    shared on a drive): each writes its own temporary file, renamed over the record."""
    import threading

    from pdbatch.storage.folder import FolderStore

    store = FolderStore(f"file://{tmp_path}")
    manifest = {"run": "run-20261129-000000-abcdef", "fingerprint": "0" * 32, "jobs": []}
    errors = []

    def save(n: int) -> None:
        try:
            for i in range(200):
                store.save({**manifest, "jobs": [{"n": n, "i": i}] * 50})
                assert store.load(manifest["run"])["run"] == manifest["run"]
        except Exception as err:  # noqa: BLE001  (collected for the assertion below)
            errors.append(err)

    threads = [threading.Thread(target=save, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and [p.name for p in tmp_path.rglob(".*")] == []
