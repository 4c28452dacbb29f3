"""Dask frames: partitions -> shards -> jobs -> partitions, with the threaded scheduler and a
distributed LocalCluster."""

from __future__ import annotations

import dask
import dask.dataframe as dd
import pandas as pd
import pytest

import pdbatch

SIZES = [0, 37, 1, 80, 0, 52, 30]  # uneven partitions, two of them empty


def _frame(n: int) -> pd.DataFrame:
    return pd.DataFrame({"prompt": [f"question {i}" for i in range(n)],
                         "n": range(n)}, index=pd.RangeIndex(1000, 1000 + n, name="id"))


def _uneven() -> tuple[pd.DataFrame, dd.DataFrame]:
    df = _frame(sum(SIZES))
    bounds = [sum(SIZES[:i]) for i in range(len(SIZES) + 1)]
    pieces = [dask.delayed(df.iloc[a:b].copy)()
              for a, b in zip(bounds[:-1], bounds[1:], strict=True)]
    ddf = dd.from_delayed(pieces, meta=df.iloc[:0])
    # The frame as Dask itself gives it back, which pdbatch's result must keep: with pandas 2,
    # Dask turns object strings into string[pyarrow] (its dataframe.convert-string option).
    return ddf.compute(scheduler="sync"), ddf


def _check(out: pd.DataFrame, df: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(out[df.columns], df)
    assert (out["status"] == "ok").all()
    assert out["text"].tolist() == [f"echo: {p}" for p in df["prompt"]]


def test_uneven_and_empty_partitions_span_several_jobs_on_threads(staging, uploaded):
    df, ddf = _uneven()
    lazy = ddf.gemini.batch_predict(prompt_col="prompt", staging=staging,
                                    max_requests_per_job=40)
    assert uploaded() == [] and len(pdbatch.runs(staging)) == 0  # building calls no model
    assert lazy.npartitions == len(SIZES)
    out = lazy.compute(scheduler="threads")
    _check(out, df)
    assert out.dtypes.equals(lazy._meta.dtypes)

    [run] = pdbatch.runs(staging).to_dict("records")
    # Shards of at most 40 requests (37 | 1 | 40 40 | 40 12 | 30), packed whole into jobs of
    # at most 40: [37, 1] [40] [40] [40] [12] [30]; the first job holds two partitions.
    assert run["rows"] == sum(SIZES) and run["jobs"] == 6
    assert out.groupby("job", sort=False).size().tolist() == [38, 40, 40, 40, 12, 30]
    assert not [p for p in uploaded() if "/shards/" in p]  # shards removed after success

    again = lazy.compute(scheduler="threads")  # the same call: re-attached, not paid twice
    pd.testing.assert_frame_equal(again, out)
    assert len(pdbatch.runs(staging)) == 1


def test_submit_and_attach_give_the_lazy_result_of_a_submitted_dask_run(staging):
    df, ddf = _uneven()
    run = ddf.gemini.submit(prompt_col="prompt", staging=staging, max_requests_per_job=64,
                            progress=False)
    assert len(run.jobs) == 5 and run.wait().state == "succeeded"
    assert run.status().done == sum(SIZES)
    _check(run.result().compute(scheduler="threads"), df)

    attached = pdbatch.attach(run.id, staging=staging)
    with pytest.raises(pdbatch.InputError, match="pass the Dask frame"):
        attached.result()
    _check(attached.result(ddf).compute(scheduler="threads"), df)
    with pytest.raises(pdbatch.InputError, match="7 partitions; this one has 2"):
        attached.result(dd.from_pandas(df, npartitions=2))
    changed = ddf.assign(prompt=ddf["prompt"] + "?")
    with pytest.raises(pdbatch.InputError, match="is not the one"):
        attached.result(changed).compute(scheduler="threads")
    assert len(pdbatch.runs(staging)) == 1


def test_a_frame_of_empty_partitions_makes_no_job(staging):
    empty = dd.from_pandas(_frame(0), npartitions=1)
    out = empty.gemini.batch_predict(prompt_col="prompt", staging=staging).compute(
        scheduler="threads")
    assert len(out) == 0 and {"text", "status", "job"} <= set(out.columns)
    assert pdbatch.runs(staging)["jobs"].tolist() == [0]


def test_known_divisions_are_kept_and_partitions_are_computed_after_the_jobs(staging):
    df = _frame(120)
    ddf = dd.from_pandas(df, npartitions=4)
    lazy = pdbatch.batch_predict(ddf, prompt_col="prompt", staging=staging, result_prefix="llm_",
                                 max_requests_per_job=50, max_concurrent_jobs=1)
    assert lazy.divisions == ddf.divisions
    out = lazy.compute(scheduler="threads")
    pd.testing.assert_frame_equal(out[df.columns], ddf.compute())  # Dask's own string dtype
    assert out["llm_text"].tolist() == [f"echo: {p}" for p in df["prompt"]]


def test_bad_arguments_are_refused_when_the_graph_is_built(staging, uploaded, monkeypatch):
    _, ddf = _uneven()
    with pytest.raises(pdbatch.InputError, match="not columns of the frame"):
        ddf.gemini.batch_predict(prompt_col="missing", staging=staging)
    with pytest.raises(pdbatch.InputError, match="neither a Cloud Storage nor a BigQuery"):
        ddf.gemini.batch_predict(prompt_col="prompt", staging="s3://my-bucket/x")
    monkeypatch.setenv("PDBATCH_STAGING", "gs://no-such-bucket-here")  # from the environment
    with pytest.raises(pdbatch.InputError, match="no-such-bucket-here"):
        ddf.gemini.batch_predict(prompt_col="prompt")
    assert uploaded() == []


def test_a_local_cluster_runs_the_same_graph_with_the_progress_bar_on_the_client(staging,
                                                                              capsys):
    from distributed import Client, LocalCluster

    df, ddf = _uneven()
    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None, processes=True) as cluster, Client(cluster):
        out = ddf.gemini.batch_predict(prompt_col="prompt", staging=staging,
                                       max_requests_per_job=64).compute()
    _check(out, df)
    assert out["job"].nunique() == 5  # shards 37 | 1 | 64 16 | 52 | 30 in jobs of <= 64
    # The wait task ran on a worker; its bar was drawn here, in the client's process.
    shown = capsys.readouterr().err
    assert f"{out.attrs['pdbatch_run']}: 100%" in shown and "5/5 jobs done, succeeded" in shown


def test_the_threaded_scheduler_shows_the_run_progress_bar(staging, capsys):
    df, ddf = _uneven()
    out = ddf.gemini.batch_predict(prompt_col="prompt", staging=staging).compute(
        scheduler="threads")
    _check(out, df)
    shown = capsys.readouterr().err
    assert f"{out.attrs['pdbatch_run']}: 100%" in shown and "jobs done, succeeded" in shown

    ddf.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False).compute(
        scheduler="threads")
    assert "jobs done" not in capsys.readouterr().err


def test_each_job_output_is_read_once_whatever_partitions_its_rows_are_in(stack, staging,
                                                                          monkeypatch):
    import re
    from collections import Counter

    from recording_proxy import RecordingProxy

    df, ddf = _uneven()
    with RecordingProxy(stack.gcs.url) as gcs:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs.url)
        out = ddf.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                       max_requests_per_job=64).compute(scheduler="threads")
    _check(out, df)
    jobs = out["job"].nunique()
    # shards 37 | 1 | 64 16 | 52 | 30 in jobs of <= 64: the first job holds rows of two
    # partitions, and the third partition's rows are in two jobs
    assert jobs == 5
    # a read of a file starts at byte 0 (a large file is read in several ranges)
    downloads = Counter(path.split("?")[0] for method, path, headers in gcs.seen
                        if method == "GET" and "alt=media" in path
                        and re.search(r"output-\d{5}", path)
                        and headers.get("Range", "bytes=0-").startswith("bytes=0-"))
    assert downloads and set(downloads.values()) == {1}  # each output file read once
    assert len({re.search(r"output-\d{5}", path)[0] for path in downloads}) == jobs


def test_submit_and_the_guard_work_without_dedup(staging):
    df, ddf = _uneven()
    run = ddf.gemini.submit(prompt_col="prompt", staging=staging, progress=False, dedup=False)
    _check(run.result().compute(scheduler="threads"), df)
    guarded = ddf.gemini.batch_predict(prompt_col="prompt", staging=staging + "-guarded",
                                       progress=False, dedup=False, max_rows=1000)
    _check(guarded.compute(scheduler="threads"), df)
