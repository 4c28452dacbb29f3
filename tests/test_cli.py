"""The `pdbatch` command: the offline stack, runs from a terminal, estimates of a file."""

from __future__ import annotations

import subprocess
import sys
import urllib.request

import pandas as pd
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import JobServiceClient
from helpers import finished, jsonl_job, listed_and_shown

import pdbatch
from pdbatch.cli import main
from pdbatch.emulator.stack import read_exports


def test_emulator_command_prints_working_environment():
    process = subprocess.Popen([sys.executable, "-m", "pdbatch.emulator", "--bucket", "cli-b",
                                "--fault", "emulator-stats=empty"],
                               stdout=subprocess.PIPE, text=True)
    try:
        env = read_exports(process.stdout)
        assert env["PDBATCH_STAGING"] == "gs://cli-b/runs"
        assert env["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"] == "false"
        buckets = urllib.request.urlopen(f"{env['STORAGE_EMULATOR_HOST']}/storage/v1/b").read()
        assert b'"cli-b"' in buckets
        parent = f"projects/{env['GOOGLE_CLOUD_PROJECT']}/locations/{env['GOOGLE_CLOUD_LOCATION']}"
        listing = urllib.request.urlopen(
            f"{env['GOOGLE_VERTEX_BASE_URL']}/v1/{parent}/batchPredictionJobs").read()
        assert listing == b"{}"
        _run_one_job(env, parent)
    finally:
        process.terminate()
        assert process.wait(timeout=15) == 0


def _run_one_job(env: dict, parent: str) -> None:
    """A job submitted to the printed endpoints reads its input and writes its output."""
    from gcsfs.core import GCSFileSystem

    fs = GCSFileSystem(endpoint_url=env["STORAGE_EMULATOR_HOST"], token="anon",
                       skip_instance_cache=True)
    staging = env["PDBATCH_STAGING"]
    fs.pipe(f"{staging}/in.jsonl", b'{"request": {"contents": [{"parts": [{"text": "hi"}]}]}}\n')
    client = JobServiceClient(transport="rest", credentials=AnonymousCredentials(),
                              client_options=ClientOptions(
                                  api_endpoint=env["GOOGLE_VERTEX_BASE_URL"]))
    job = finished(client, client.create_batch_prediction_job(
        parent=parent,
        batch_prediction_job=jsonl_job(f"{staging}/in.jsonl", f"{staging}/out")).name)
    assert job.state.name == "JOB_STATE_SUCCEEDED", job.error.message
    output = fs.cat(f"{job.output_info.gcs_output_directory}/predictions.jsonl")
    assert b'"echo: hi"' in output
    assert "completion_stats" not in job  # the --fault emulator-stats=empty given at start


def test_an_unknown_fault_stops_the_command_with_usage():
    result = subprocess.run([sys.executable, "-m", "pdbatch.emulator", "--fault", "emulator-x=1"],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 2 and "Unknown emulator label(s) ['emulator-x']" in result.stderr


def test_the_pdbatch_command_has_help_a_version_and_clear_usage_errors(capsys):
    version = subprocess.run([sys.executable, "-m", "pdbatch.cli", "--version"],
                             capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.strip() == f"pdbatch {pdbatch.__version__}"

    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    shown = capsys.readouterr()
    assert all(word in shown.out for word in ("runs", "estimate", "emulator")) and not shown.err
    for argv, expected in (([], "required: COMMAND"), (["frobnicate"], "invalid choice"),
                           (["runs"], "required: ACTION"), (["runs", "show"], "run")):
        with pytest.raises(SystemExit) as done:
            main(argv)
        shown = capsys.readouterr()
        assert done.value.code == 2 and "usage: pdbatch" in shown.err and expected in shown.err


def test_runs_can_be_listed_shown_collected_and_cancelled_from_a_terminal(staging, tmp_path,
                                                                          capsys):
    df = pd.DataFrame({"prompt": [f"question {i}" for i in range(12)]})
    out = df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False)
    run = out.attrs["pdbatch_run"]

    listed, shown = listed_and_shown(run, staging, capsys)
    assert run in listed and "succeeded" in listed and "gemini-2.5-flash" in listed
    assert "succeeded: 12/12 requests done, 1/1 jobs ended" in shown
    assert "batchPredictionJobs/" in shown and "12 answered, 0 failed" in shown

    target = tmp_path / "answers.parquet"
    assert main(["runs", "results", run, "--staging", staging, "--out", str(target)]) == 0
    assert f"wrote 12 answers of {run}" in capsys.readouterr().out
    answers = pd.read_parquet(target)
    assert answers["row"].tolist() == list(range(12)) and (answers["status"] == "ok").all()
    assert answers["text"].tolist() == out["text"].tolist()

    assert main(["runs", "cancel", run, "--staging", staging]) == 0
    assert f"{run} has no job left running" in capsys.readouterr().out

    assert main(["runs", "show", "run-20990101-000000-abcdef", "--staging", staging]) == 1
    refused = capsys.readouterr()
    assert refused.err.startswith("pdbatch: ") and "Traceback" not in refused.err

    assert main(["runs", "list", "--staging", staging + "-nothing-here"]) == 0
    assert "No runs are recorded there." in capsys.readouterr().out


def test_a_file_can_be_estimated_from_a_terminal(staging, tmp_path, capsys):
    source = tmp_path / "reviews.csv"
    pd.DataFrame({"review": ["good", "bad", "good"]}).to_csv(source, index=False)
    assert main(["estimate", str(source), "--prompt", "Sentiment of: {review}",
                 "--no-count-tokens"]) == 0
    assert "3 rows, 2 requests" in capsys.readouterr().out
    assert main(["estimate", str(tmp_path / "missing.csv"), "--prompt-col", "review"]) == 1
    assert "no such file" in capsys.readouterr().err


def test_developer_api_runs_from_a_terminal(stack, tmp_path, capsys):
    folder = str(tmp_path / "runs")
    df = pd.DataFrame({"prompt": [f"a terminal question {i}" for i in range(5)]})
    out = df.gemini.batch_predict(prompt_col="prompt", service="gemini-api", staging=folder,
                                  progress=False)
    run = out.attrs["pdbatch_run"]
    assert main(["runs", "list", "--service", "gemini-api", "--staging", folder]) == 0
    assert run in capsys.readouterr().out
    assert main(["runs", "show", out["job"].iloc[0], "--staging", folder]) == 0  # a batch
    shown = capsys.readouterr().out
    assert run in shown and "batches/" in shown and "succeeded" in shown
    target = tmp_path / "answers.csv"
    assert main(["runs", "results", run, "--service", "gemini-api", "--staging", folder,
                 "--out", str(target)]) == 0
    assert pd.read_csv(target)["text"].tolist() == out["text"].tolist()
    source = tmp_path / "prompts.csv"
    df.to_csv(source, index=False)
    assert main(["estimate", str(source), "--prompt-col", "prompt", "--service", "gemini-api",
                 "--staging", folder]) == 0
    assert "5 rows, 5 requests" in capsys.readouterr().out


def _pdbatch(*argv: str, **env: str) -> subprocess.CompletedProcess:
    """The command as a user runs it: no emulator, no credentials, no project (unless given)."""
    import os

    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("GOOGLE_", "STORAGE_EMULATOR", "PDBATCH_", "GEMINI_",
                                  "BIGQUERY_EMULATOR"))}
    clean.update(NO_GCE_CHECK="True", **env)  # not on a Google Cloud VM
    return subprocess.run([sys.executable, "-m", "pdbatch.cli", *argv], capture_output=True,
                          text=True, timeout=60, env=clean)


def _one_line(result: subprocess.CompletedProcess, *words: str) -> None:
    assert result.returncode == 1, result
    assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("pdbatch: ") and all(w in result.stderr for w in words), \
        result.stderr


def test_expected_failures_are_one_line_in_the_commands_own_terms(tmp_path):
    source = tmp_path / "reviews.csv"
    pd.DataFrame({"review": ["good", "bad"]}).to_csv(source, index=False)
    _one_line(_pdbatch("runs", "list", "--staging", "gs://my-bucket/p", HOME=str(tmp_path)),
              "no Google Cloud credentials", "gcloud auth application-default login")
    _one_line(_pdbatch("runs", "show", "run-20990101-000000-abcdef"), "--staging")
    _one_line(_pdbatch("estimate", str(source), "--prompt-col", "revew", "--no-count-tokens"),
              "--prompt-col", "'revew'", "review")
    _one_line(_pdbatch("estimate", str(source), "--prompt", "{stars}: {review}"),
              "--prompt", "'stars'")
    _one_line(_pdbatch("estimate", str(source), "--prompt-col", "review", "--no-count-tokens",
                       HOME=str(tmp_path)), "--project my-project")
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"not parquet")
    _one_line(_pdbatch("estimate", str(broken), "--prompt-col", "review"), "cannot read")


def test_an_estimate_needs_no_staging_and_no_credentials(tmp_path):
    source = tmp_path / "reviews.csv"
    pd.DataFrame({"review": ["good", "bad", "good"]}).to_csv(source, index=False)
    result = _pdbatch("estimate", str(source), "--prompt-col", "review", "--project", "my-proj",
                      "--location", "us-central1", HOME=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert "3 rows, 2 requests" in result.stdout and "about 4 characters per token" \
        in result.stdout
    assert "estimating from characters instead" in result.stderr


def test_a_missing_bucket_is_one_line(stack, capsys):
    assert main(["runs", "list", "--staging", "gs://no-such-bucket-here/p"]) == 1
    refused = capsys.readouterr().err
    assert refused.startswith("pdbatch: ") and "no-such-bucket-here" in refused
    assert "Traceback" not in refused and refused.count("\n") == 1, refused
