"""The Dask driver: partitions -> shards -> jobs -> partitions, without the frame on the client,
through the same stages and lifecycle as the pandas driver (``prepare``, ``plan``, ``costs``,
``runs.lifecycle``, ``join``, ``runs.local.follow_up``); only the scheduling differs.

``batch_predict(ddf, ...)`` builds a lazy graph (``graph.Tasks``):

1. **dedup** (when ``dedup``, ``dedup.py``): requests repeated across partitions are found
   by their hashes (bucketed through the exchange folder); their rows are not sent, and the
   line of the row that is answers them.
2. one **stage** task per partition prepares its rows, leaves out its copies, uploads its
   local ``files=`` and writes its requests as shards (JSONL files, or tables on BigQuery)
   within the per-job limits to the run's staging; a line's row key is ``runs.keys``'
   ``partition << 32 | row``.
3. one **submit** task prices the run (``max_cost``/``max_rows``), plans jobs from the shard
   sizes alone (whole shards within the limits per job; one shard per job on BigQuery),
   records the run's manifest and creates the jobs (``runs.lifecycle.start``); one **wait**
   task waits for them (with the run's progress bar on the client). The same call computed
   again finds the run by its fingerprint and only waits for (or reads) its jobs.
4. **route** tasks read each job's output once (one job at a time) and write its lines by
   the partitions that asked for them (a copy's line sent to its partition under its own key)
   to the run's exchange folder (``exchange.py``), not to memory.
5. one **join** task per partition, once every route task is done, computes the partition
   again (from its source, after the run: no partition is held in memory while the jobs
   run), reads its answers from the exchange folder and joins them onto its rows as the
   pandas driver does (follow-up passes included).

A worker so holds one partition, one bucket of hashes, one job's output or one partition's
answers at a time, whatever the run's size; the graph has three tasks per partition and a
hundred more.

With ``max_cost`` or ``max_rows``, steps 1-3 run when ``batch_predict`` is called (so that the
guard can ask on the caller's terminal or notebook), as ``submit`` does.

The lazy frame's meta is the pandas driver's result for the empty frame, so its dtypes are
those of the computed partitions.
"""

from __future__ import annotations

import os
from typing import Any

import pandas as pd

from ... import config, progress, service, storage
from ...errors import InputError
from ...join import joined
from ...options import Options
from ...prepare import prepare
from ..handle import BatchRun
from ..local import follow_up
from ..manifest import Manifest
from .dedup import NO_COPIES, Copies, copies_task
from .graph import Tasks
from .tasks import dedups, join, route, routed, stage, submit_run, wait_run

#: At most this many route tasks (fewer for frames of fewer partitions).
MAX_ROUTES = 32


class DaskDriver:
    """Results of runs of Dask frames: the lazy frame (``frame``: the Dask frame the run was
    made from, when this process made it; ``copies``: its cross-partition copies, when
    known)."""

    def __init__(self, frame=None, read_only: bool = False, copies: Copies | None = None):
        self.frame, self.read_only, self.copies = frame, read_only, copies

    def result(self, run: BatchRun, df=None) -> Any:
        frame = df if df is not None else self.frame
        if frame is None:
            raise InputError(f"{run.id} was attached by id: pass the Dask frame it was made "
                             "from, run.result(ddf).")
        if not hasattr(frame, "__dask_graph__"):
            raise InputError(f"{run.id} was made from a Dask DataFrame: pass that Dask frame.")
        copies = self.copies if frame is self.frame else None
        return result_frame(frame, run.manifest, run.options, self.read_only, copies,
                            run.reattached)


def batch_predict(ddf, options: Options):
    """``batch_predict`` over a Dask DataFrame: a lazy Dask DataFrame with the same
    partitions and divisions and the same result columns (computing it runs the jobs). With
    ``max_cost`` or ``max_rows``, the frame is staged and priced now (see ``submit``)."""
    options = _for_workers(options)
    meta = result_meta(ddf, options)
    if options.run.max_cost is not None or options.run.max_rows is not None:
        return _submitted(ddf, options).result()
    tasks = Tasks(ddf)
    run_id, staged, copies = _staging(tasks, options)
    topic = progress.distributed_topic()
    submitted = tasks.add("submit", 0, submit_run, staged, run_id, options, topic)
    return _joined_frame(ddf, tasks, submitted, copies, options, meta, topic=topic)


def submit(ddf, options: Options) -> BatchRun:
    """Stage the frame's partitions (on the Dask workers), price the run and create its jobs
    now; returns a ``BatchRun`` whose ``result()`` is the lazy frame of ``batch_predict``."""
    options = _for_workers(options)
    result_meta(ddf, options)
    return _submitted(ddf, options)


def _submitted(ddf, options: Options) -> BatchRun:
    import dask

    tasks = Tasks(ddf)
    run_id, staged, copies = _staging(tasks, options)
    staged, copies = dask.compute(tasks.delayed(staged), tasks.delayed(copies))
    manifest, found = submit_run(staged, run_id, options)  # here: the guard may ask the caller
    run = BatchRun(manifest, config.settings_of(options.run, options.api_key), options,
                   DaskDriver(ddf, copies=copies))
    run.reattached = found  # kept for the wait task of run.result()
    return run


def result_frame(ddf, manifest: Manifest, options: Options, read_only: bool = False,
                 copies: Copies | None = None, reattached: bool = True):
    """The lazy result of a submitted Dask run, for the frame it was made from (each
    partition is checked against the run's manifest when it is joined)."""
    if ddf.npartitions != len(manifest.partitions):
        raise InputError(f"{manifest.run} was made from a frame of "
                         f"{len(manifest.partitions)} partitions; this one has "
                         f"{ddf.npartitions}. Pass the frame it was made from.")
    options = _for_workers(options)
    meta = result_meta(ddf, options)
    tasks = Tasks(ddf)
    if copies is None:
        copies = copies_task(tasks, options, manifest.run) if manifest.dedup_across \
            else tasks.given("copies", NO_COPIES)
    else:  # known: in the graph once, not in each task that needs it
        copies = tasks.given("copies", copies)
    return _joined_frame(ddf, tasks, tasks.given("manifest", (manifest, reattached)), copies,
                         options, meta, read_only)


def result_meta(ddf, options: Options) -> pd.DataFrame:
    """The result's meta: the pandas driver's result for the empty frame (the options are
    checked against the frame's meta on the way, before any task runs)."""
    empty = prepare(ddf._meta, options)
    # the partitions' rows are not known yet: checked as if they had some
    service.kind(empty.settings).check_locations(
        empty.settings, empty.family, options.request.model, options.credentials, rows=1)
    result = joined(empty, [], "", "")
    follow_up(empty, result, read_only=True)
    return result.frame


def _for_workers(options: Options) -> Options:
    """The options as the workers need them: the service, and where the run goes, as the
    caller's arguments and environment resolve them (``pinned`` by the service), not each
    worker's environment; local ``files=`` found from the caller's working folder (the
    default ``files_root``). An API key given as ``api_key=`` travels with the tasks;
    otherwise each worker reads its own."""
    settings = config.settings_of(options.run, options.api_key)
    options = service.kind(settings).pinned(options, settings)
    if options.request.files and options.request.files_root is None:
        return options.replace(files_root=os.getcwd())
    return options


def _staging(tasks: Tasks, options: Options) -> tuple[str, list[tuple], tuple]:
    """A new run id, the stage tasks (one per partition) and the task giving the copies."""
    run_id = storage.new_run_id()
    if dedups(options):
        copies, sources = copies_task(tasks, options, run_id), tasks.recipes()
    else:
        copies = tasks.given("copies", NO_COPIES)
        sources = [part.key for part in tasks.parts]
    staged = [tasks.add("stage", number, stage, source, number, copies, run_id, options)
              for number, source in enumerate(sources)]
    return run_id, staged, copies


def _joined_frame(ddf, tasks: Tasks, submitted: tuple, copies, options: Options,
                  meta: pd.DataFrame, read_only: bool = False, topic: str | None = None):
    """Wait, route and join tasks after the submit task (``submitted``)."""
    import dask.dataframe as dd

    recipes = tasks.recipes()
    ended = tasks.add("wait", 0, wait_run, submitted, options, read_only,
                      topic or (None if read_only else progress.distributed_topic()))
    slots = max(1, min(len(recipes), MAX_ROUTES))
    done = tasks.add("routed", 0, routed, [
        tasks.add("route", slot, route, slot, slots, ended, copies, options, read_only)
        for slot in range(slots)])
    joins = [tasks.add("join", number, join, recipe, number, ended, copies, done, options,
                       read_only)
             for number, recipe in enumerate(recipes)]
    return dd.from_delayed(tasks.delayed(joins), meta=meta, divisions=ddf.divisions,
                           verify_meta=False)
