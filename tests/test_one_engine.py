"""One engine behind every driver: the pandas and the Dask driver give the same frame for the
same call, ``read_results`` gives back the frame the run returned, and a run recorded by an
older pdbatch (a manifest without today's options) can still be attached.

Acceptance tests through the public API only, against the offline stack (conftest.py).
"""

from __future__ import annotations

import json

import dask
import dask.dataframe as dd
import numpy as np
import pandas as pd
import pytest

import pdbatch

#: A response schema with one field of each scalar JSON type; the emulator answers JSON that
#: fits it: the echo text in strings, the echo's word count in integers (+ 0.5 in numbers),
#: true in booleans (pdbatch/emulator/responder.py).
SCHEMA = {
    "type": "object",
    "properties": {"score": {"type": "number"}, "count": {"type": "integer"},
                   "ok": {"type": "boolean"}, "label": {"type": "string"}},
    "required": ["score", "count", "ok", "label"],
}


def _frame(prompts: list, **columns) -> pd.DataFrame:
    """A frame of ``prompts`` with a sorted, gapped, named index (so that ``dd.from_pandas``
    keeps the row order). Text columns are ``string`` (pd.NA) because Dask turns pandas'
    default ``str`` columns into ``string`` anyway: both drivers then see the same input."""
    n = len(prompts)
    return pd.DataFrame({"prompt": pd.array(prompts, dtype="string"), **columns},
                        index=pd.Index(np.arange(n) * 3 + 100, name="id"))


def _plain() -> pd.DataFrame:
    return _frame([f"question number {i}" for i in range(45)])


def _dedup_heavy() -> pd.DataFrame:
    # 60 rows of 5 prompts, cycling: every partition of 20 rows repeats each prompt 4 times,
    # and each prompt is repeated in every partition.
    return _frame([f"tell me about topic {i % 5}" for i in range(60)])


def _with_invalid() -> pd.DataFrame:
    prompts = [None if i % 7 == 3 else "" if i % 11 == 5 else f"question {i}"
               for i in range(45)]
    return _frame(prompts)


def _with_settings() -> pd.DataFrame:
    """Rows with their own temperature, and a frame-wide instruction and settings."""
    return _frame([f"question {i % 4}" for i in range(30)],
                  temp=np.array([0.0, 0.5, 1.0] * 10))


SETTINGS = {"config_cols": {"temperature": "temp"}, "system_instruction": "Be brief.",
            "generation_config": {"max_output_tokens": 64, "top_p": 0.9},
            "safety_settings": [{"category": "HARM_CATEGORY_HATE_SPEECH",
                                 "threshold": "BLOCK_ONLY_HIGH"}]}


def _with_carried() -> pd.DataFrame:
    n = 36
    return _frame([f"question {i % 9}" for i in range(n)],  # repeats: carry sends every row
                  n=np.arange(n, dtype=np.int64) * 7,
                  tag=pd.array([f"t-{i}" for i in range(n)], dtype="string"))


def _with_files(tmp_path, fs, staging) -> pd.DataFrame:
    """Rows with a Cloud Storage file, a local file (two rows share it) or none."""
    shared = f"{staging}-data/pictures/tools.jpeg"
    fs.pipe(shared, b"jpeg")
    (tmp_path / "cat.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "dog.png").write_bytes(b"\x89PNG another one")
    pictures = [shared, str(tmp_path / "cat.png"), None, str(tmp_path / "dog.png"), None,
                str(tmp_path / "cat.png")]
    return _frame([f"what is in picture {i % 4}?" for i in range(30)],
                  picture=pd.array([pictures[i % 6] for i in range(30)], dtype="string"))


#: case: (frame, options, route); a route names where requests are staged and answers
#: written: Cloud Storage (gs), BigQuery (bq), or one then the other.
CASES = {
    "plain": (_plain, {}, "gs"),
    "dedup": (_dedup_heavy, {}, "gs"),
    "skipped": (_with_invalid, {"on_invalid": "skip"}, "gs"),
    "structured": (_plain, {"response_schema": SCHEMA}, "gs"),
    "settings": (_with_settings, SETTINGS, "gs"),
    "carried": (_with_carried, {"carry": ["n", "tag"]}, "gs"),
    "row-faults": (_plain, {"labels": {"emulator-row-errors": "429-20"}, "max_retries": 5},
                   "gs"),
    "bigquery": (_dedup_heavy, {}, "bq"),
    "gcs-to-bigquery": (_with_invalid, {"on_invalid": "skip"}, "gs-bq"),
    "bigquery-to-gcs": (_plain, {"response_schema": SCHEMA}, "bq-gs"),
    "files": (_with_files, {"files": {"picture": None}}, "gs"),
}
#: Cases also run on a 2-worker distributed LocalCluster (all but the slowest).
ON_CLUSTER = ["plain", "dedup", "carried", "bigquery", "gcs-to-bigquery", "bigquery-to-gcs",
              "files"]


@pytest.fixture(scope="module")
def cluster(bigquery_server):
    """A 2-worker LocalCluster's client, used only where a test names it as the scheduler
    (its workers start with the local services' variables in their environment)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1",
                      dashboard_address=None, processes=True) as local, \
            Client(local, set_as_default=False) as client:
        yield client


def _locations(request, staging: str, route: str) -> tuple[dict, dict]:
    """The staging (and output) options of the pandas and the Dask run of a route."""
    def where(kind: str, suffix: str) -> str:
        if kind == "gs":
            return staging + suffix
        stack = request.getfixturevalue("stack")
        return f"bq://{stack.project}.{request.getfixturevalue('dataset')}"

    kinds = route.split("-")
    return tuple({"staging": where(kinds[0], suffix), "output": where(kinds[-1], suffix)}
                 for suffix in ("", "-dask"))


def _make(request, make):
    wanted = [name for name in ("tmp_path", "fs", "staging")
              if name in make.__code__.co_varnames[:make.__code__.co_argcount]]
    frame = make(*[request.getfixturevalue(name) for name in wanted])
    # Both drivers are given the frame as Dask holds it: with pandas 2, Dask stores strings as
    # string[pyarrow] (its dataframe.convert-string option), whatever the frame had.
    return dd.from_pandas(frame, npartitions=1).compute(scheduler="sync")


@pytest.mark.parametrize("case,scheduler", [(case, "threads") for case in CASES]
                         + [(case, "cluster") for case in ON_CLUSTER])
def test_pandas_and_dask_drivers_agree(request, staging, case, scheduler):
    make, options, route = CASES[case]
    df = _make(request, make)
    on_pandas, on_dask = _locations(request, staging, route)
    if "files" in options:
        options = {**options, "files_root": request.getfixturevalue("tmp_path")}
    out = df.gemini.batch_predict(prompt_col="prompt", progress=False, **on_pandas, **options)
    with dask.config.set(scheduler=(request.getfixturevalue("cluster")
                                    if scheduler == "cluster" else "threads")):
        lazy = dd.from_pandas(df, npartitions=3).gemini.batch_predict(
            prompt_col="prompt", progress=False, keep_staging=True, **on_dask, **options)
        dask_out = lazy.compute()

    assert list(dask_out.columns) == list(out.columns)
    pd.testing.assert_series_equal(dask_out.dtypes, out.dtypes)
    pd.testing.assert_series_equal(lazy.dtypes, dask_out.dtypes)
    pd.testing.assert_index_equal(out.index, df.index)
    pd.testing.assert_index_equal(dask_out.index, df.index)
    pd.testing.assert_frame_equal(dask_out[df.columns], df)

    # Job resource names necessarily differ between the two runs: only which rows have one.
    sent = ~out["status"].str.startswith("skipped: ").fillna(False).to_numpy(dtype=bool)
    for result in (out, dask_out):
        assert result["job"].iloc[sent].notna().all()
    np.testing.assert_array_equal(dask_out["job"].isna().to_numpy(),
                                  out["job"].isna().to_numpy())
    if "on_invalid" in options:  # the case does what it says
        assert 0 < (~sent).sum() < len(df)
    # Requests are sent once per run, across Dask partitions too (unless carried).
    runs = [pdbatch.runs(where["staging"]) for where in (on_pandas, on_dask)]
    requests = [r.loc[r["run"] == run, "requests"].item() for r, run in zip(
        runs, [out.attrs["pdbatch_run"], dask_out.attrs["pdbatch_run"]], strict=True)]
    unique = df.loc[sent].drop_duplicates().shape[0]
    assert requests == [len(df.loc[sent]) if "carry" in options else unique] * 2
    if route == "gs":  # and the staged shards hold each request once
        staged = _staged_requests(request.getfixturevalue("fs"), on_dask["staging"],
                                  dask_out.attrs["pdbatch_run"])
        assert len(staged) == requests[1]
        assert len(set(staged)) == (len(staged) if "carry" not in options else
                                    df["prompt"].nunique())

    # ``attempts`` counts how often the random row faults hit a row: its dtype only (above).
    compared = [c for c in out.columns if c not in ("job", "attempts")]
    if case == "row-faults":
        # A row may stay failed, in one driver and not the other: retries stop after a pass
        # that answers none of the rows left (0.2 ** k for k rows). Compare the rows both
        # answered, and check that those are nearly all: more than 4 rows unanswered in
        # either happens about once in 10,000 pairs of runs (simulated; more than 2: 0.6 %).
        for result in (out, dask_out):  # the faults hit (0.8 ** 45 that they miss all)
            assert (result["attempts"] > 1).any()
        both = (out["status"].eq("ok") & dask_out["status"].eq("ok")).to_numpy(dtype=bool)
        assert both.sum() >= len(df) - 4
        for result in (out, dask_out):
            assert (result["error_code"].iloc[~both].dropna() == 429).all()
        pd.testing.assert_frame_equal(dask_out.loc[both, compared], out.loc[both, compared])
    else:
        assert (out["status"].iloc[sent] == "ok").all()
        pd.testing.assert_frame_equal(dask_out[compared], out[compared])


@pytest.mark.parametrize("limit,scheduler", [({"max_rows": 30}, "threads"),
                                              ({"max_cost": 1e-7}, "threads"),
                                              ({"max_rows": 30}, "cluster")])
def test_both_drivers_refuse_a_run_over_its_limits_before_any_job(request, staging, uploaded,
                                                                  limit, scheduler):
    df = _plain()
    with pytest.raises(pdbatch.InputError, match="Not submitted") as on_pandas:
        df.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False, **limit)
    ddf = dd.from_pandas(df, npartitions=3)
    with dask.config.set(scheduler=(request.getfixturevalue("cluster")
                                    if scheduler == "cluster" else "threads")):
        with pytest.raises(pdbatch.InputError, match="Not submitted") as on_dask:
            ddf.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                     **limit)  # priced now, not when computed
        assert uploaded() == []  # no job, no manifest, no shard left staged
        if "max_rows" in limit:  # the same estimate (countTokens samples may differ in size)
            assert str(on_dask.value) == str(on_pandas.value)
            assert "45 requests is over max_rows=30" in str(on_dask.value)

        raised = {"max_rows": 1000} if "max_rows" in limit else {"max_cost": 1.0}
        lazy = ddf.gemini.batch_predict(prompt_col="prompt", staging=staging, progress=False,
                                        **raised)
        assert len(pdbatch.runs(staging)) == 1  # accepted: its jobs exist already
        out = lazy.compute()
    assert (out["status"] == "ok").all() and len(out) == len(df)


def _staged_requests(fs, staging: str, run: str) -> list[str]:
    """The requests (without their row keys) in a Dask run's staged shards."""
    lines = [json.loads(line) for path in fs.find(f"{staging}/{run}/shards")
             for line in fs.cat(path).splitlines()]
    return [json.dumps(line["request"], sort_keys=True) for line in lines]


READ_BACK = ["pandas-gcs", "pandas-bigquery", "dask-gcs", "dask-bigquery"]


@pytest.mark.parametrize("route", READ_BACK)
def test_read_results_gives_the_original_result(request, stack, staging, route):
    df = _frame([f"tell me about {w}" for w in ["a", "b", "a", "c", "b"] * 8])
    assert df["prompt"].nunique() < len(df)  # dedup-heavy: most rows repeat another's request
    if route.endswith("bigquery"):
        where = f"bq://{stack.project}.{request.getfixturevalue('dataset')}"
    else:
        where = staging
    ddf = dd.from_pandas(df, npartitions=3)
    if route.startswith("dask"):
        out = ddf.gemini.batch_predict(prompt_col="prompt", staging=where,
                                       response_schema=SCHEMA, progress=False,
                                       ).compute(scheduler="threads")
        [run] = pdbatch.runs(where)["run"].tolist()
    else:
        out = df.gemini.batch_predict(prompt_col="prompt", staging=where,
                                      response_schema=SCHEMA, progress=False)
        run = out.attrs["pdbatch_run"]
    assert (out["status"] == "ok").all()
    assert set(SCHEMA["properties"]) <= set(out.columns)

    if route.startswith("dask"):  # a Dask run is read back for its Dask frame, lazily
        lazy = ddf.gemini.read_results(run=run, output=where)
        again = lazy.compute(scheduler="threads")
        pd.testing.assert_series_equal(lazy.dtypes, again.dtypes)
    else:
        again = df.gemini.read_results(run=run, output=where)
    pd.testing.assert_frame_equal(again, out)  # the same jobs' answers, job names included
    assert len(pdbatch.runs(where)) == 1  # nothing was submitted again


#: The options the very first manifests recorded; anything else is newer than them.
FIRST_OPTIONS = {"prompt_col", "prompt", "model", "staging", "project", "location",
                 "system_instruction", "generation_config", "labels", "on_invalid",
                 "result_prefix", "include_response", "api_endpoint", "transport",
                 "max_requests_per_job", "progress"}


def test_a_manifest_without_todays_optional_fields_attaches(fs, staging):
    df = _frame([f"distinct question {i}" for i in range(30)])  # no repeats: dedup is moot
    run = df.gemini.submit(prompt_col="prompt", staging=staging, progress=False)
    assert run.wait().state == "succeeded"
    original = run.result()
    assert (original["status"] == "ok").all()

    path = f"{staging}/{run.id}/manifest.json"
    manifest = json.loads(fs.cat(path))
    dropped = set(manifest["options"]) - FIRST_OPTIONS
    assert {"dedup", "carry", "response_schema", "max_retries"} <= dropped
    manifest["options"] = {k: v for k, v in manifest["options"].items() if k in FIRST_OPTIONS}
    manifest["options"]["some_future_option"] = 1  # written by a newer pdbatch
    for field in ("pass", "output"):  # top-level fields older versions did not write
        del manifest[field]
    fs.pipe(path, json.dumps(manifest, indent=1).encode())

    attached = pdbatch.attach(run.id, staging=staging)
    pd.testing.assert_frame_equal(attached.result(df), original)


#: What the Gemini Developer API refuses of the cases above (Vertex-only options).
NOT_ON_GEMINI_API = {"carried": "carry= is a Vertex AI option",
                     "bigquery": "keeps no runs in Cloud Storage or BigQuery",
                     "gcs-to-bigquery": "output= is a Vertex AI option",
                     "bigquery-to-gcs": "keeps no runs in Cloud Storage or BigQuery",
                     # its Cloud Storage cell (its local files are sent: test_gemini_api.py)
                     "files": "Gemini Developer API does not read: send a local file"}


@pytest.mark.parametrize("case,scheduler", [(case, "threads") for case in CASES]
                         + [("plain", "cluster"), ("dedup", "cluster")])
def test_vertex_and_the_gemini_api_give_the_same_frame(request, stack, staging, tmp_path,
                                                       case, scheduler):
    """The same call on both services, by the pandas and the Dask driver: the same columns,
    dtypes and answers (the emulator answers both services with one responder); where an
    option exists only on Vertex AI, the Developer API refuses it before anything is sent."""
    make, options, route = CASES[case]
    df = _make(request, make)
    on_vertex, _ = _locations(request, staging, route)
    runs_folder = str(tmp_path / "runs")
    if case in NOT_ON_GEMINI_API:
        given = {**options, "staging": (on_vertex["staging"] if route.startswith("bq")
                                         else runs_folder)}
        if route == "gs-bq":
            given["output"] = on_vertex["output"]
        if "files" in options:
            given["files_root"] = tmp_path
        for frame in (df, dd.from_pandas(df, npartitions=3)):
            with pytest.raises(pdbatch.InputError, match=NOT_ON_GEMINI_API[case]):
                out = frame.gemini.batch_predict(prompt_col="prompt", service="gemini-api",
                                                 progress=False, **given)
                out.compute(scheduler="threads")  # a Dask frame's rows: when computed
        return
    options = dict(options)
    faults = options.pop("labels", None)
    out = df.gemini.batch_predict(prompt_col="prompt", progress=False, **on_vertex, **options,
                                  **({"labels": faults} if faults else {}))
    if faults:  # the Developer API has no labels: the emulator's server-wide faults instead
        stack.service.fault_labels = faults
    try:
        # force=True: a fresh run (the Developer API's runs are found by their batches'
        # display names whatever the folder, so the same call would re-attach to another
        # case's run)
        on_api = df.gemini.batch_predict(prompt_col="prompt", service="gemini-api",
                                         staging=runs_folder, progress=False, force=True,
                                         **options)
        with dask.config.set(scheduler=(request.getfixturevalue("cluster")
                                        if scheduler == "cluster" else "threads")):
            on_api_dask = dd.from_pandas(df, npartitions=3).gemini.batch_predict(
                prompt_col="prompt", service="gemini-api", staging=runs_folder + "-dask",
                progress=False, force=True, **options).compute()
    finally:
        stack.service.fault_labels = {}

    compared = [c for c in out.columns if c not in ("job", "attempts", "response")]
    for result in (on_api, on_api_dask):
        assert list(result.columns) == list(out.columns)
        pd.testing.assert_series_equal(result.dtypes, out.dtypes)
        pd.testing.assert_index_equal(result.index, df.index)
        assert result["job"].dropna().str.startswith("batches/").all()
        if faults:  # random faults: compare the rows both answered
            assert (result["attempts"] > 1).any()
            both = (out["status"].eq("ok") & result["status"].eq("ok")).to_numpy(dtype=bool)
            assert both.sum() >= len(df) - 4
            pd.testing.assert_frame_equal(result.loc[both, compared], out.loc[both, compared])
        else:
            pd.testing.assert_frame_equal(result[compared], out[compared])


def test_a_dask_run_goes_where_the_caller_chose_not_where_workers_point(request, monkeypatch,
                                                                        tmp_path):
    """The service and runs folder come from the caller's environment, set after the
    cluster's workers started (they do not have them): the run is the caller's choice."""
    cluster = request.getfixturevalue("cluster")
    monkeypatch.setenv("PDBATCH_SERVICE", "gemini-api")
    monkeypatch.setenv("PDBATCH_RUNS_FOLDER", str(tmp_path / "runs"))
    df = _plain()
    with dask.config.set(scheduler=cluster):
        out = dd.from_pandas(df, npartitions=3).gemini.batch_predict(
            prompt_col="prompt", progress=False, force=True).compute()
    assert out["job"].str.startswith("batches/").all() and (out["status"] == "ok").all()
    assert pdbatch.runs(service="gemini-api")["run"].tolist() == [out.attrs["pdbatch_run"]]
