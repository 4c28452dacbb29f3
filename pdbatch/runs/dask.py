"""The Dask driver: partitions -> shards -> jobs -> partitions, without the frame on the client,
through the same stages as the pandas driver (``prepare``, ``plan``, ``runs.jobs``, ``join``,
``runs.local.follow_up``); only the scheduling differs.

``batch_predict(ddf, ...)`` builds a lazy graph:

1. one **stage** task per partition prepares its rows and writes them as shards (JSONL files
   within the per-job limits) to ``<staging>/<run>/shards/``; a line's row key is
   ``partition << 32 | row``. It returns only the shards' sizes and the partition's
   fingerprint.
2. one **submit** task plans jobs from those sizes alone (whole shards, within the request and
   byte limits per job), records the run's manifest and creates the jobs (at most
   ``max_concurrent_jobs`` unfinished at a time); one **wait** task waits for them. The same
   call computed again finds the run by fingerprint and only waits for (or reads) its jobs.
3. one **join** task per partition computes the partition again (from its source, after the
   run: no partition is held in memory while the jobs run), reads the outputs of the jobs
   that hold its shards, keeps the lines whose key belongs to it, and joins them onto its
   rows as the pandas driver does (follow-up passes such as ``max_retries`` included, as
   pandas runs of that partition's rows).

The lazy frame's meta is the pandas driver's result for the empty frame, so its dtypes are
those of the computed partitions.
"""

from __future__ import annotations

import hashlib
import json
import logging
from functools import partial

import numpy as np
import pandas as pd
import pyarrow.compute as pc

from .. import config, families, plan, service, storage
from ..errors import InputError, JobError
from ..join import joined
from ..options import Options
from ..prepare import prepare
from . import manifest as manifests
from .handle import BatchRun
from .jobs import (
    answers,
    await_submission,
    check_jobs,
    create_job,
    display_name,
    find_run,
    kept_alive,
    open_locations,
    record_run,
    save,
)
from .local import follow_up

log = logging.getLogger(__name__)

_ROW_BITS = 32  # a row key is partition << 32 | row within the partition


class DaskDriver:
    """Results of runs of Dask frames: the lazy frame (``frame``: the Dask frame the run was
    made from, when this process made it)."""

    def __init__(self, frame=None, read_only: bool = False):
        self.frame, self.read_only = frame, read_only

    def result(self, run: BatchRun, df=None):
        frame = df if df is not None else self.frame
        if frame is None:
            raise InputError(f"{run.id} was attached by id: pass the Dask frame it was made "
                             "from, run.result(ddf).")
        if not hasattr(frame, "__dask_graph__"):
            raise InputError(f"{run.id} was made from a Dask DataFrame: pass that Dask frame.")
        return result_frame(frame, run.manifest, run.options, self.read_only)


def batch_predict(ddf, options: Options):
    """``batch_predict`` over a Dask DataFrame: a lazy Dask DataFrame with the same
    partitions and divisions and the same result columns (computing it runs the jobs)."""
    meta = result_meta(ddf, options)
    return _joined_frame(ddf, _submission(ddf, options), options, meta)


def submit(ddf, options: Options) -> BatchRun:
    """Stage the frame's partitions and create the jobs now (on the Dask workers); returns a
    ``BatchRun`` whose ``result()`` is the lazy frame of ``batch_predict``."""
    import dask

    result_meta(ddf, options)
    (manifest,) = dask.compute(_submission(ddf, options))
    return BatchRun(manifest, config.settings_of(options.run), options, DaskDriver(ddf))


def result_frame(ddf, manifest: dict, options: Options, read_only: bool = False):
    """The lazy result of a submitted Dask run, for the frame it was made from (each
    partition is checked against the run's manifest when it is joined)."""
    if ddf.npartitions != len(manifest["partitions"]):
        raise InputError(f"{manifest['run']} was made from a frame of "
                         f"{len(manifest['partitions'])} partitions; this one has "
                         f"{ddf.npartitions}. Pass the frame it was made from.")
    meta = result_meta(ddf, options)
    return _joined_frame(ddf, manifest, options, meta, read_only)


def result_meta(ddf, options: Options) -> pd.DataFrame:
    """The result's meta: the pandas driver's result for the empty frame (the options are
    checked against the frame's meta on the way, before any task runs)."""
    settings = config.settings_of(options.run)
    for name, where in (("staging", settings.staging), ("output", settings.output_location)):
        if storage.tabular(where):
            raise InputError(f"{name}={where!r}: Dask runs stage on Cloud Storage in this "
                             "version; pass a gs:// location.")
    if options.request.files:
        raise InputError("files= is not supported for Dask frames in this version.")
    if options.run.max_cost is not None or options.run.max_rows is not None:
        raise InputError("max_cost and max_rows need the whole frame's estimate; for a Dask "
                         "frame, estimate a sample with df.gemini.estimate first.")
    empty = prepare(ddf._meta, options)
    result = joined(empty, [], "", "")
    follow_up(empty, result, read_only=True)
    return result.frame


def _submission(ddf, options: Options):
    """The task that stages every partition (one task each), then submits the run."""
    import dask

    run_id = storage.new_run_id()
    staged = [dask.delayed(_stage, pure=False)(part, number, run_id, options)
              for number, part in enumerate(ddf.to_delayed())]
    return dask.delayed(_submit_run, pure=False)(staged, run_id, options)


def _joined_frame(ddf, manifest, options: Options, meta: pd.DataFrame,
                  read_only: bool = False):
    """One join task per partition, after the run's jobs have ended (``manifest``: the
    submitted run, or a task giving it)."""
    import dask
    import dask.dataframe as dd
    from dask.optimization import cull

    parts = ddf.to_delayed()
    graph = dict(parts[0].__dask_graph__()) if parts else {}
    ended = dask.delayed(_wait_run, pure=False)(manifest, options, read_only)
    joins = [dask.delayed(_join, pure=False)(Recipe(cull(graph, [part.key])[0], part.key),
                                             number, ended, options, read_only)
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


def _stage(part: pd.DataFrame, number: int, run_id: str, options: Options) -> dict:
    """Prepare one partition and write its shards; returns their sizes and the fingerprint."""
    prepared = prepare(part, options)
    location = storage.open_location(prepared.settings.staging, run_id,
                                     prepared.family.parser, credentials=options.credentials)
    shards, first = [], 0
    for index, (positions, requests) in enumerate(plan.jobs_of(prepared, number << _ROW_BITS)):
        shards.append({"uri": location.stage_shard(number, index, requests),
                       "partition": number, "first": first, "count": len(positions),
                       "bytes": int(pc.sum(pc.binary_length(requests)).as_py())})
        first += len(positions)
    return {"partition": number, "rows": len(part), "fingerprint": prepared.fingerprint,
            "shards": shards}


def _submit_run(staged: list[dict], run_id: str, options: Options) -> dict:
    """Plan, record and create the jobs of the whole frame, or find the run this call already
    made (and create what it did not get to); returns its manifest."""
    settings = config.settings_of(options.run)
    family = families.resolve(options.request.model)
    partitions = [s["fingerprint"] for s in staged]
    fingerprint = hashlib.blake2b(json.dumps(partitions).encode(), digest_size=16).hexdigest()
    store = storage.open_store(settings.staging, options.credentials)
    batch = service.open_service(settings, options.credentials)

    def new(owner: str) -> dict:  # the manifest of run ``owner`` for this call's shards
        location = storage.open_location(settings.staging, owner, family.parser)
        shards = [{**shard, "uri": location.shard(part["partition"], index)}
                  for part in staged for index, shard in enumerate(part["shards"])]
        return manifests.new(owner, fingerprint, settings, options, family.resource,
                             sum(part["rows"] for part in staged),
                             sum(shard["count"] for shard in shards),
                             dask=True, partitions=partitions, shards=shards)

    def rebuilt(owner: str, jobs: list) -> dict:
        """A lost manifest from its jobs: the same call stages the same shards (under this
        attempt's run id), so the owner's shards and their packing into jobs are known."""
        manifest = new(owner)
        names = {job.display_name: job.name for job in jobs}
        planned = _packed(manifest["shards"], options)
        for number, members in enumerate(planned):
            name = names.get(display_name(owner, number))
            if name is None:
                break
            manifest["jobs"].append({"number": number, "name": name, "shards": members,
                                     "count": sum(manifest["shards"][i]["count"]
                                                  for i in members)})
        manifest["submitted"] = len(manifest["jobs"]) == len(planned)
        return manifest

    manifest = None if options.run.force else find_run(store, fingerprint, batch, rebuilt)
    if manifest is None:
        manifest, _ = record_run(store, new(run_id), force=options.run.force)
    resumed = manifest["run"] != run_id
    if resumed:
        # this attempt's shards: the run's own are already staged
        storage.open_location(settings.staging, run_id, family.parser,
                              credentials=options.credentials).clean_up()
        manifest = await_submission(store, manifest)
    if not manifest["submitted"]:
        _create(batch, manifest, store, settings, options, family, resumed)
    return manifest


def _packed(shards: list[dict], options: Options) -> list[list[int]]:
    """The run's jobs: consecutive whole shards within the per-job limits."""
    return plan.pack([(s["count"], s["bytes"]) for s in shards],
                     options.request.max_requests_per_job, plan.MAX_BYTES_PER_FILE)


def _create(batch, manifest: dict, store, settings, options: Options, family, resumed: bool
            ) -> None:
    """Create the jobs the manifest does not have yet: consecutive whole shards each."""
    shards = manifest["shards"]
    inputs, outputs = open_locations(manifest["run"], settings, family.parser,
                                     options.credentials)
    planned = _packed(shards, options)
    with kept_alive(store, manifest):
        for number, members in enumerate(planned[len(manifest["jobs"]):],
                                         len(manifest["jobs"])):
            source = partial(inputs.source, [shards[i]["uri"] for i in members])
            create_job(batch, store, manifest, number, family.resource, source,
                       outputs.destination(number), resumed, options.run.max_concurrent_jobs,
                       shards=members, count=sum(shards[i]["count"] for i in members))
        manifest["submitted"] = True
        save(store, manifest)


def _wait_run(manifest: dict, options: Options, read_only: bool) -> dict:
    """Wait for the run's jobs (``read_only``: they must have ended); the manifest with each
    job's final ``info``. The shards are removed once every job succeeded (unless
    ``keep_staging`` or ``read_only``)."""
    settings = config.settings_of(options.run)
    batch = service.open_service(settings, options.credentials)
    names = [job["name"] for job in manifest["jobs"]]
    infos = [batch.get(name) for name in names] if read_only else service.wait(batch, names)
    check_jobs(manifest["run"], infos)
    if read_only and not all(info.done for info in infos):
        raise InputError(f"{manifest['run']} is still running: compute its result with "
                         "pdbatch.attach(...).result(ddf) to wait for it.")
    manifest = {**manifest, "jobs": [{**job, "info": info}
                                     for job, info in zip(manifest["jobs"], infos, strict=True)]}
    if all(info.succeeded for info in infos) and not (options.run.keep_staging or read_only):
        parser = families.resolve(options.request.model).parser
        storage.open_location(settings.staging, manifest["run"], parser,
                              credentials=options.credentials).clean_up()
    return manifest


def _join(recipe: Recipe, number: int, manifest: dict, options: Options, read_only: bool
          ) -> pd.DataFrame:
    """One partition's rows with the result columns, from the jobs that hold its shards."""
    prepared = prepare(recipe.compute(), options)
    if prepared.fingerprint != manifest["partitions"][number]:
        raise InputError(f"partition {number} is not the one {manifest['run']} was made from; "
                         "pass the frame it was made from.")
    outputs = storage.open_location(prepared.settings.output_location, manifest["run"],
                                    prepared.family.parser, credentials=options.credentials)
    sent = prepared.sent_rows
    mine = []
    for job in manifest["jobs"]:
        shards = [manifest["shards"][i] for i in job["shards"]
                  if manifest["shards"][i]["partition"] == number]
        if shards:
            positions = np.concatenate([sent[s["first"]:s["first"] + s["count"]]
                                        for s in shards])
            mine.append((job, job["info"], positions))
    parsed = []
    for info, positions, lines in answers(outputs, mine, options.result.include_response):
        keys = lines.column("key")
        ours = pc.equal(pc.shift_right(keys, _ROW_BITS), number)
        lines = lines.filter(pc.fill_null(ours, False))
        lines = lines.set_column(lines.schema.get_field_index("key"), "key",
                                 pc.bit_wise_and(lines.column("key"), (1 << _ROW_BITS) - 1))
        parsed.append((info, positions, lines))
    try:
        result = joined(prepared, parsed, manifest["run"],
                        f"Shards and outputs are in {outputs}.")
    except JobError as err:
        raise JobError(f"partition {number}: {err}", err.result, err.kinds) from None
    follow_up(prepared, result, read_only)
    return result.frame
