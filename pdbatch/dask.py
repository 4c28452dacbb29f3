"""Dask frames: partitions -> shards -> jobs -> partitions, without the frame on the client.

``batch_predict(ddf, ...)`` builds a lazy graph:

1. one **stage** task per partition checks and renders its rows and writes them as shards
   (JSONL files within the per-job limits) to ``<staging>/<run>/shards/``; a line's row key is
   ``partition << 32 | row``. It returns only the shards' sizes and the partition's fingerprint.
2. one **run** task plans jobs from those sizes alone (whole shards, within the request and
   byte limits per job), records the run's manifest, creates the jobs (at most
   ``max_concurrent_jobs`` unfinished at a time) and waits. The same call computed again finds
   the run by fingerprint and only waits for (or reads) its jobs.
3. one **join** task per partition computes the partition again (from its source, after the
   run: no partition is held in memory while the jobs run), reads the outputs of the jobs
   that hold its shards, keeps the lines whose key belongs to it, and joins them onto its
   rows as the pandas path does (follow-up passes such as ``max_retries`` included, as pandas
   runs of that partition's rows).
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import partial

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from . import engine, formats, run, runstore
from .batchrun import BatchRun, joined
from .errors import InputError, JobError
from .jobs import JobClient
from .locations import GcsLocation
from .prepare import prepare, settings_of
from .staging import gcs

log = logging.getLogger(__name__)

_ROW_BITS = 32  # a row key is partition << 32 | row within the partition


def batch_predict(ddf, **options):
    """``batch_predict`` over a Dask DataFrame: a lazy Dask DataFrame with the same
    partitions and divisions and the same result columns (computing it runs the jobs)."""
    arguments, meta = _checked(ddf, options)
    return _joined_frame(ddf, _submission(ddf, arguments), arguments, meta)


def submit(ddf, **options) -> BatchRun:
    """Stage the frame's partitions and create the jobs now (on the Dask workers); returns a
    ``BatchRun`` whose ``result()`` is the lazy frame of ``batch_predict``."""
    import dask

    arguments, _ = _checked(ddf, options)
    (manifest,) = dask.compute(_submission(ddf, arguments))
    return BatchRun(manifest, settings_of(arguments), arguments["credentials"], frame=ddf)


def result_frame(ddf, manifest: dict, credentials=None):
    """The lazy result of a submitted Dask run, for the frame it was made from (each
    partition is checked against the run's manifest when it is joined)."""
    if ddf.npartitions != len(manifest["partitions"]):
        raise InputError(f"{manifest['run']} was made from a frame of "
                         f"{len(manifest['partitions'])} partitions; this one has "
                         f"{ddf.npartitions}. Pass the frame it was made from.")
    arguments, meta = _checked(ddf, {**manifest["options"], "credentials": credentials})
    return _joined_frame(ddf, manifest, arguments, meta)


def _checked(ddf, options: dict) -> tuple[dict, pd.DataFrame]:
    """The call's arguments, checked against the frame's meta before any task runs, and the
    result's meta."""
    meta = ddf._meta
    arguments = run._arguments(meta, options)
    _check(arguments)
    settings = settings_of(arguments)  # from the arguments or the environment
    for name, where in (("staging", settings.staging), ("output", settings.output_location)):
        if where.startswith("bq://"):
            raise InputError(f"{name}={where!r}: Dask runs stage on Cloud Storage in this "
                             "version; pass a gs:// location.")
    empty = prepare(meta, arguments)
    out_meta = joined(empty, [], "", engine.connect(), "")
    if arguments["max_retries"]:
        out_meta[arguments["result_prefix"] + "attempts"] = pd.array([], dtype="Int64")
    return arguments, out_meta


def _submission(ddf, arguments: dict):
    """The task that stages every partition (one task each), then submits the run."""
    import dask

    run_id = run.new_run_id()
    staged = [dask.delayed(_stage, pure=False)(part, number, run_id, arguments)
              for number, part in enumerate(ddf.to_delayed())]
    return dask.delayed(_submit_run, pure=False)(staged, run_id, arguments)


def _joined_frame(ddf, manifest, arguments: dict, meta: pd.DataFrame):
    """One join task per partition, after the run's jobs have ended (``manifest``: the
    submitted run, or a task giving it)."""
    import dask
    import dask.dataframe as dd
    from dask.optimization import cull

    parts = ddf.to_delayed()
    graph = dict(parts[0].__dask_graph__()) if parts else {}
    ended = dask.delayed(_wait_run, pure=False)(manifest, arguments)
    joins = [dask.delayed(_join, pure=False)(Recipe(cull(graph, [part.key])[0], part.key),
                                             number, ended, arguments)
             for number, part in enumerate(parts)]
    return dd.from_delayed(joins, meta=meta, divisions=ddf.divisions, verify_meta=False)


class Recipe:
    """How to compute one partition again: its own part of the frame's graph, opaque to Dask,
    so that the join task reads its partition anew (from the source, after the jobs) rather
    than the partition being kept in memory from the stage task while the jobs run."""

    def __init__(self, graph: dict, key):
        self.graph, self.key = graph, key

    def compute(self) -> pd.DataFrame:
        from dask.local import get_sync

        return get_sync(self.graph, self.key)


def _check(arguments: dict) -> None:
    if arguments["files"]:
        raise InputError("files= is not supported for Dask frames in this version.")
    if arguments["max_cost"] is not None or arguments["max_rows"] is not None:
        raise InputError("max_cost and max_rows need the whole frame's estimate; for a Dask "
                         "frame, estimate a sample with df.gemini.estimate first.")


def _stage(part: pd.DataFrame, number: int, run_id: str, arguments: dict) -> dict:
    """Render one partition and write its shards; returns their sizes and the fingerprint."""
    prepared = prepare(part, arguments)
    fs = gcs.filesystem()
    folder = f"{prepared.settings.staging}/{run_id}/shards"
    shards, first = [], 0
    for index, (positions, requests) in enumerate(run.job_inputs(
            prepared.texts, prepared.send, prepared.family.frame,
            arguments["max_requests_per_job"], prepared.carried_values(),
            row_config=prepared.row_config, key_offset=number << _ROW_BITS)):
        uri = f"{folder}/part-{number:05d}-{index:04d}.jsonl"
        gcs.write_jsonl(fs, uri, requests, metadata={"pdbatch-run": run_id})
        shards.append({"uri": uri, "partition": number, "first": first,
                       "count": len(positions),
                       "bytes": int(pc.sum(pc.binary_length(requests)).as_py())})
        first += len(positions)
    return {"partition": number, "rows": len(part), "fingerprint": prepared.fingerprint,
            "shards": shards}


def pack(shards: list[dict], max_requests: int, max_bytes: int) -> list[list[int]]:
    """Consecutive shards grouped into jobs of at most ``max_requests`` requests and
    ``max_bytes`` bytes (each shard is within both already)."""
    jobs: list[list[int]] = []
    requests = size = 0
    for index, shard in enumerate(shards):
        if not jobs or requests + shard["count"] > max_requests \
                or size + shard["bytes"] > max_bytes:
            jobs.append([])
            requests = size = 0
        jobs[-1].append(index)
        requests += shard["count"]
        size += shard["bytes"]
    return jobs


def _submit_run(staged: list[dict], run_id: str, arguments: dict) -> dict:
    """Plan, record and create the jobs of the whole frame, or find the run this call already
    made (and create what it did not get to); returns its manifest."""
    a, settings = arguments, settings_of(arguments)
    family = formats.resolve(a["model"])
    partitions = [s["fingerprint"] for s in staged]
    fingerprint = hashlib.blake2b(json.dumps(partitions).encode(), digest_size=16).hexdigest()
    store = runstore.open_store(settings.staging)
    found = None if a["force"] else store.find(fingerprint)
    manifest = store.load(found) if found else None
    if manifest is not None:
        log.info("re-attaching to %s, made by the same call (force=True starts afresh)", found)
        # this attempt's shards: the run's own are already staged
        GcsLocation(settings.staging, run_id, family.parser).clean_up()
    else:
        shards = [shard for part in staged for shard in part["shards"]]
        manifest = run.new_manifest(run_id, fingerprint, settings, a, family.resource,
                                    sum(part["rows"] for part in staged),
                                    sum(shard["count"] for shard in shards),
                                    dask=True, partitions=partitions, shards=shards)
        store.save(manifest)
        store.link(fingerprint, run_id)
    if not manifest["submitted"]:
        _create(JobClient(settings, a["credentials"]), manifest, store, settings, a,
                family.resource, resumed=found is not None)
    return manifest


def _wait_run(manifest: dict, arguments: dict) -> dict:
    """Wait for the run's jobs; the manifest with each job's final ``info``. The shards are
    removed once every job succeeded (unless ``keep_staging``)."""
    settings = settings_of(arguments)
    client = JobClient(settings, arguments["credentials"])
    infos = client.wait([job["name"] for job in manifest["jobs"]])
    manifest = {**manifest, "jobs": [{**job, "info": info}
                                     for job, info in zip(manifest["jobs"], infos, strict=True)]}
    if all(info.succeeded for info in infos) and not arguments["keep_staging"]:
        parser = formats.resolve(arguments["model"]).parser
        GcsLocation(settings.staging, manifest["run"], parser).clean_up()
    return manifest


def _create(client: JobClient, manifest: dict, store, settings, a: dict, resource: str,
            resumed: bool) -> None:
    """Create the jobs the manifest does not have yet: consecutive whole shards each."""
    shards = manifest["shards"]
    folder = f"{settings.output_location}/{manifest['run']}"
    planned = pack(shards, a["max_requests_per_job"], run.MAX_BYTES_PER_FILE)
    for number, members in enumerate(planned[len(manifest["jobs"]):], len(manifest["jobs"])):
        source = partial(dict, instances_format="jsonl",
                         gcs_source={"uris": [shards[i]["uri"] for i in members]})
        output = f"{folder}/output-{number:05d}"
        run.create_job(client, store, manifest, number, resource, source,
                       {"predictions_format": "jsonl",
                        "gcs_destination": {"output_uri_prefix": output}},
                       resumed, a["max_concurrent_jobs"], shards=members,
                       count=sum(shards[i]["count"] for i in members))
    manifest["submitted"] = True
    store.save(manifest)


def _join(recipe: Recipe, number: int, manifest: dict, arguments: dict) -> pd.DataFrame:
    """One partition's rows with the result columns, from the jobs that hold its shards."""
    prepared = prepare(recipe.compute(), arguments)
    if prepared.fingerprint != manifest["partitions"][number]:
        raise InputError(f"partition {number} is not the one {manifest['run']} was made from; "
                         "pass the frame it was made from.")
    family = prepared.family
    outputs = GcsLocation(prepared.settings.output_location, manifest["run"], family.parser)
    sent = prepared.sent_rows
    con = engine.connect()
    answers = []
    for job in manifest["jobs"]:
        mine = [manifest["shards"][i] for i in job["shards"]
                if manifest["shards"][i]["partition"] == number]
        if not mine:
            continue
        info = job["info"]
        lines = outputs.collect(con, job["number"], info.output_dir,
                                arguments["include_response"])
        keys = lines.column("key")
        ours = pc.equal(pc.shift_right(keys, _ROW_BITS), number)
        lines = lines.filter(pc.fill_null(ours, False))
        lines = lines.set_column(lines.schema.get_field_index("key"), "key",
                                 pc.bit_wise_and(lines.column("key"), (1 << _ROW_BITS) - 1))
        positions = np.concatenate([sent[s["first"]:s["first"] + s["count"]] for s in mine])
        answers.append((info, positions, lines))
    try:
        out = joined(prepared, answers, manifest["run"], con,
                     f"Shards and outputs are in {outputs}.")
    except JobError as err:
        raise JobError(f"partition {number}: {err}", err.result) from None
    run._follow_up(prepared, out)
    return out

