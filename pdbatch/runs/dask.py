"""The Dask driver: partitions -> shards -> jobs -> partitions, without the frame on the client,
through the same stages as the pandas driver (``prepare``, ``plan``, ``costs``, ``runs.jobs``,
``join``, ``runs.local.follow_up``); only the scheduling differs.

``batch_predict(ddf, ...)`` builds a lazy graph:

1. **dedup** (when ``dedup``): one task per partition hashes its requests (MD5, 16 bytes each)
   into buckets; one task per bucket finds the requests that an earlier partition also
   makes; one task gathers those *copies* (``Copies``: a row key and the key of the row whose
   request is sent, for requests repeated across partitions only).
2. one **stage** task per partition prepares its rows, leaves out its copies, uploads its
   local ``files=`` and writes its requests as shards (JSONL files, or tables on BigQuery)
   within the per-job limits to the run's staging; a line's row key is
   ``partition << 32 | row``. It returns the shards' sizes, the partition's fingerprint and
   its ``costs.Measure``.
3. one **submit** task prices the run (``max_cost``/``max_rows``), plans jobs from the shard
   sizes alone (whole shards within the limits per job; one shard per job on BigQuery),
   records the run's manifest and creates the jobs; one **wait** task waits for them (with
   the run's progress bar on the client). The same call computed again finds the run by its
   fingerprint and only waits for (or reads) its jobs.
4. **route** tasks read each job's output once and split its lines by the partitions that
   asked for them (a copy's line is sent to its partition under its own key).
5. one **join** task per partition computes the partition again (from its source, after the
   run: no partition is held in memory while the jobs run) and joins its routed lines onto
   its rows as the pandas driver does (follow-up passes such as ``max_retries`` included, as
   pandas runs of that partition's rows).

With ``max_cost`` or ``max_rows``, steps 1-3 run when ``batch_predict`` is called (so that the
guard can ask on the caller's terminal or notebook), as ``submit`` does.

The lazy frame's meta is the pandas driver's result for the empty frame, so its dtypes are
those of the computed partitions.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import operator
import os
import sys
import uuid
from collections.abc import Hashable
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .. import config, costs, engine, families, plan, progress, service, storage
from ..errors import InputError, JobError
from ..families.lines import empty_output
from ..join import joined
from ..options import Options
from ..prepare import Prepared, Sending, check_locations, prepare, request_hashes
from . import manifest as manifests
from .handle import BatchRun
from .jobs import (
    await_submission,
    check_jobs,
    collected,
    create_job,
    display_name,
    find_run,
    kept_alive,
    open_locations,
    record_run,
    save,
)
from .local import follow_up, reattached

log = logging.getLogger(__name__)

_ROW_BITS = 32  # a row key is partition << 32 | row within the partition
_ROW_MASK = (1 << _ROW_BITS) - 1
#: At most this many dedup buckets and route tasks (fewer for frames of fewer partitions):
#: the graph then has at most partitions x (MAX_BUCKETS + MAX_ROUTES) small pieces.
MAX_BUCKETS = 64
MAX_ROUTES = 32
#: Marks how a Dask run's partitions are combined in its fingerprint: a run made before
#: requests were deduplicated across partitions is not re-attached by today's call.
_DASK_FINGERPRINT = "dask-dedup-across-1"


@dataclass(frozen=True)
class Copies:
    """Requests repeated across partitions: row ``copy[i]`` (a row key) is answered by the
    line of row ``owner[i]`` (the first partition's row with that request), sorted by owner."""

    copy: np.ndarray
    owner: np.ndarray

    def of(self, partition: int) -> tuple[np.ndarray, np.ndarray]:
        """The partition's copies: their rows in the partition and their owners' keys."""
        mine = (self.copy >> _ROW_BITS) == partition
        return self.copy[mine] & _ROW_MASK, self.owner[mine]


_NO_COPIES = Copies(np.array([], dtype=np.int64), np.array([], dtype=np.int64))


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
        return result_frame(frame, run.manifest, run.options, self.read_only, copies)


def batch_predict(ddf, options: Options):
    """``batch_predict`` over a Dask DataFrame: a lazy Dask DataFrame with the same
    partitions and divisions and the same result columns (computing it runs the jobs). With
    ``max_cost`` or ``max_rows``, the frame is staged and priced now (see ``submit``)."""
    options = _for_workers(options)
    meta = result_meta(ddf, options)
    if _guarded(options):
        return _submitted(ddf, options).result()
    tasks = _Tasks(ddf)
    run_id, staged, copies = _staging(tasks, options)
    topic = _progress_topic()
    manifest = tasks.add("submit", 0, _submit_run, staged, run_id, options, topic)
    return _joined_frame(ddf, tasks, manifest, copies, options, meta, topic=topic)


def submit(ddf, options: Options) -> BatchRun:
    """Stage the frame's partitions (on the Dask workers), price the run and create its jobs
    now; returns a ``BatchRun`` whose ``result()`` is the lazy frame of ``batch_predict``."""
    options = _for_workers(options)
    result_meta(ddf, options)
    return _submitted(ddf, options)


def _submitted(ddf, options: Options) -> BatchRun:
    import dask

    tasks = _Tasks(ddf)
    run_id, staged, copies = _staging(tasks, options)
    staged, copies = dask.compute(tasks.delayed(staged), tasks.delayed(copies))
    manifest = _submit_run(staged, run_id, options)  # here: the guard may ask the caller
    run = BatchRun(manifest, config.settings_of(options.run, options.api_key), options,
                   DaskDriver(ddf, copies=copies))
    run.reattached = manifest["reattached"]  # kept for the wait task of run.result()
    return run


def result_frame(ddf, manifest: dict, options: Options, read_only: bool = False,
                 copies: Copies | None = None):
    """The lazy result of a submitted Dask run, for the frame it was made from (each
    partition is checked against the run's manifest when it is joined)."""
    if ddf.npartitions != len(manifest["partitions"]):
        raise InputError(f"{manifest['run']} was made from a frame of "
                         f"{len(manifest['partitions'])} partitions; this one has "
                         f"{ddf.npartitions}. Pass the frame it was made from.")
    options = _for_workers(options)
    meta = result_meta(ddf, options)
    tasks = _Tasks(ddf)
    if copies is None:
        copies = _copies(tasks, options) if manifest["dedup_across"] else _NO_COPIES
    else:  # known: in the graph once, not in each task that needs it
        copies = tasks.add("copies", 0, _given, copies)
    return _joined_frame(ddf, tasks, tasks.add("manifest", 0, _given, manifest), copies,
                         options, meta, read_only)


def result_meta(ddf, options: Options) -> pd.DataFrame:
    """The result's meta: the pandas driver's result for the empty frame (the options are
    checked against the frame's meta on the way, before any task runs)."""
    empty = prepare(ddf._meta, options)
    check_locations(empty.settings, empty.family, options.request.model, options.credentials,
                    rows=1)  # the partitions' rows are not known yet: as if they had some
    result = joined(empty, [], "", "")
    follow_up(empty, result, read_only=True)
    return result.frame


def _for_workers(options: Options) -> Options:
    """The options as the workers need them: the service, and where the run goes (project,
    location, staging; the runs folder and base URL of the Developer API), as the caller's
    arguments and environment resolve them, not each worker's environment; local ``files=``
    found from the caller's working folder (the default ``files_root``). An API key given as
    ``api_key=`` travels with the tasks; otherwise each worker reads its own."""
    settings = config.settings_of(options.run, options.api_key)
    if settings.service == config.GEMINI_API:
        options = options.replace(service=settings.service, api_endpoint=settings.api_endpoint,
                                  staging=storage.local_path(settings.staging))
    else:
        options = options.replace(service=settings.service, project=settings.project,
                                  location=settings.location, staging=settings.staging)
    if options.request.files and options.request.files_root is None:
        return options.replace(files_root=os.getcwd())
    return options


def _guarded(options: Options) -> bool:
    return options.run.max_cost is not None or options.run.max_rows is not None


def _dedups(options: Options) -> bool:
    """Whether requests are deduplicated (across partitions too): not with ``carry``, where
    every row's carried values go with its own request."""
    return options.request.dedup and not options.request.carry


# ---------------------------------------------------------------------------- the graph
class _Tasks:
    """A run's tasks as one low-level Dask graph over the frame's partitions. (Built call by
    call with ``dask.delayed``, every call with graph arguments culls and merges their graphs:
    over a minute for 64 partitions.) A task's key is ``(<its kind>-<token>, index)``; keys,
    and lists of keys, in a task's arguments are replaced by those tasks' results."""

    def __init__(self, ddf):
        self.parts = ddf.to_delayed()
        self.token = uuid.uuid4().hex[:16]
        self.graph: dict = {}

    def add(self, kind: str, index: int, function, *args) -> tuple:
        key = (f"pdbatch-{kind}-{self.token}", index)
        self.graph[key] = (function, *args)
        return key

    def pieces(self, kind: str, key: tuple, count: int) -> list[tuple]:
        """Tasks giving each item of the tuple that task ``key`` gives, so that a task that
        needs one item gets only that one (from another worker)."""
        return [self.add(f"{kind}-{key[1]}", index, operator.getitem, key, index)
                for index in range(count)]

    def delayed(self, keys):
        """``Delayed`` results of a key or a list of keys."""
        from dask.delayed import Delayed
        from dask.highlevelgraph import HighLevelGraph

        layer = f"pdbatch-{self.token}"
        graph = HighLevelGraph.from_collections(layer, self.graph, dependencies=self.parts)
        if isinstance(keys, list):
            return [Delayed(key, graph, layer=layer) for key in keys]
        return Delayed(keys, graph, layer=layer)


def _given(value: Any) -> Any:
    """The value, as a task: a value many tasks need is then in the graph once."""
    return value


def _staging(tasks: _Tasks, options: Options) -> tuple[str, list[tuple], tuple]:
    """A new run id, the stage tasks (one per partition) and the task giving the copies."""
    run_id = storage.new_run_id()
    if _dedups(options):
        copies, sources = _copies(tasks, options), _recipes(tasks)
    else:
        copies = tasks.add("copies", 0, _given, _NO_COPIES)
        sources = [part.key for part in tasks.parts]
    staged = [tasks.add("stage", number, _stage, source, number, copies, run_id, options)
              for number, source in enumerate(sources)]
    return run_id, staged, copies


def _copies(tasks: _Tasks, options: Options) -> tuple:
    """The task giving the frame's ``Copies``: each partition's request hashes, bucketed,
    then each bucket's repeats."""
    buckets = max(1, min(len(tasks.parts), MAX_BUCKETS))
    hashed = [tasks.pieces("hashed", tasks.add("hash", number, _hashes, part.key, number,
                                               options, buckets), buckets)
              for number, part in enumerate(tasks.parts)]
    repeats = [tasks.add("repeats", bucket, _repeats, [pieces[bucket] for pieces in hashed])
               for bucket in range(buckets)]
    return tasks.add("copies", 0, _gathered, repeats)


def _recipes(tasks: _Tasks) -> list[Recipe]:
    from dask.optimization import cull

    graph = dict(tasks.parts[0].__dask_graph__()) if tasks.parts else {}
    return [Recipe(cull(graph, [part.key])[0], part.key) for part in tasks.parts]


def _joined_frame(ddf, tasks: _Tasks, manifest: tuple, copies, options: Options,
                  meta: pd.DataFrame, read_only: bool = False, topic: str | None = None):
    """Wait, route and join tasks after the submit task (``manifest``)."""
    import dask.dataframe as dd

    recipes = _recipes(tasks)
    ended = tasks.add("wait", 0, _wait_run, manifest, options, read_only,
                      topic or (None if read_only else _progress_topic()))
    partitions = len(recipes)
    slots = max(1, min(partitions, MAX_ROUTES))
    routes = [tasks.pieces("routed", tasks.add("route", slot, _route, slot, slots, partitions,
                                               ended, copies, options, read_only), partitions)
              for slot in range(slots)]
    joins = [tasks.add("join", number, _join, recipe, number, ended, copies,
                       [pieces[number] for pieces in routes], options, read_only)
             for number, recipe in enumerate(recipes)]
    return dd.from_delayed(tasks.delayed(joins), meta=meta, divisions=ddf.divisions,
                           verify_meta=False)


class Recipe:
    """How to compute one partition again: its own part of the frame's graph, opaque to Dask,
    so that a task reads its partition anew (from the source) rather than the partition being
    kept in memory from an earlier task while other partitions are hashed or the jobs run."""

    def __init__(self, graph: dict, key: Hashable):
        self.graph, self.key = graph, key

    def compute(self) -> pd.DataFrame:
        from dask.local import get_sync

        return get_sync(self.graph, self.key)


# ---------------------------------------------------------------------------- the tasks
def _hashes(part: pd.DataFrame, number: int, options: Options, buckets: int) -> tuple:
    """The partition's sent requests as ``(hash high, hash low, row key)`` per bucket."""
    prepared = prepare(part, options)
    high, low = request_hashes(prepared)
    keys = prepared.sent_rows.astype(np.int64) + (number << _ROW_BITS)
    bucket = (low % np.uint64(buckets)).astype(np.int64)
    order = np.argsort(bucket, kind="stable")
    bounds = np.searchsorted(bucket[order], np.arange(buckets + 1))
    return tuple((high[order[a:b]], low[order[a:b]], keys[order[a:b]])
                 for a, b in zip(bounds[:-1], bounds[1:], strict=True))


def _repeats(pieces: list[tuple]) -> Copies:
    """One bucket's copies: rows whose request hash an earlier row key's also has."""
    high, low, keys = (np.concatenate([piece[i] for piece in pieces]) for i in range(3))
    order = np.lexsort((keys, low, high))
    high, low, keys = high[order], low[order], keys[order]
    first = np.ones(len(keys), dtype=bool)
    first[1:] = (high[1:] != high[:-1]) | (low[1:] != low[:-1])
    owners = keys[np.maximum.accumulate(np.where(first, np.arange(len(keys)), 0))]
    return Copies(keys[~first], owners[~first])


def _gathered(repeats: list[Copies]) -> Copies:
    copy = np.concatenate([c.copy for c in repeats] + [_NO_COPIES.copy])
    owner = np.concatenate([c.owner for c in repeats] + [_NO_COPIES.owner])
    order = np.argsort(owner, kind="stable")
    return Copies(copy[order], owner[order])


def _without_copies(prepared: Prepared, number: int, copies: Copies) -> Prepared:
    """The partition's call with its copies not sent (their owners' lines answer them)."""
    rows, _ = copies.of(number)
    if not len(rows):
        return prepared
    send = prepared.sending.send.copy()
    send[rows] = False
    sending = Sending(send, prepared.sending.copies, prepared.sending.originals)
    return dataclasses.replace(prepared, sending=sending)


def _part(source) -> pd.DataFrame:
    return source.compute() if isinstance(source, Recipe) else source


def _stage(source, number: int, copies: Copies, run_id: str, options: Options) -> dict:
    """Prepare one partition, upload its local files and write its shards; returns their
    sizes, the partition's fingerprint and its measure."""
    prepared = prepare(_part(source), options)
    fingerprint = prepared.fingerprint
    prepared = _without_copies(prepared, number, copies)
    labels = {**(options.run.labels or {}), manifests.RUN_LABEL: run_id}
    inputs, outputs = open_locations(run_id, prepared.settings, prepared.family.parser,
                                     options.credentials, labels, prepared.rows.carried)
    files = prepared.rows.files
    if files is not None and files.local:
        (inputs if inputs.hosts_files else outputs).upload(files.uploads)
    shards, first = [], 0
    for index, (positions, requests) in enumerate(plan.jobs_of(prepared, number << _ROW_BITS)):
        shards.append({"uri": inputs.stage_shard(number, index, requests),
                       "partition": number, "first": first, "count": len(positions),
                       "bytes": int(pc.sum(pc.binary_length(requests)).as_py()),
                       "keys": [int(positions[0]) + (number << _ROW_BITS),
                                int(positions[-1]) + (number << _ROW_BITS)]})
        first += len(positions)
    return {"partition": number, "rows": len(prepared.df), "fingerprint": fingerprint,
            "shards": shards, "measure": costs.measure(prepared)}


def _submit_run(staged: list[dict], run_id: str, options: Options, topic: str | None = None
                ) -> dict:
    """Price, plan, record and create the jobs of the whole frame, or find the run this call
    already made (and create what it did not get to); returns its manifest. A run over
    ``max_cost``/``max_rows`` is refused (its shards removed) before any job exists."""
    settings = config.settings_of(options.run, options.api_key)
    family = families.resolve(options.request.model)
    partitions = [s["fingerprint"] for s in staged]
    combined = {"version": _DASK_FINGERPRINT, "partitions": partitions}
    fingerprint = hashlib.blake2b(json.dumps(combined).encode(), digest_size=16).hexdigest()
    store = storage.open_store(settings.staging, options.credentials)
    batch = service.open_service(settings, options.credentials)

    def shards_of(run: str) -> storage.Location:
        return open_locations(run, settings, family.parser, options.credentials)[0]

    def new(owner: str) -> dict:  # the manifest of run ``owner`` for this call's shards
        location = shards_of(owner)
        shards = [{**shard, "uri": location.shard(part["partition"], index)}
                  for part in staged for index, shard in enumerate(part["shards"])]
        return manifests.new(owner, fingerprint, settings, options, family.resource,
                             sum(part["rows"] for part in staged),
                             sum(shard["count"] for shard in shards),
                             dask=True, dedup_across=_dedups(options), partitions=partitions,
                             shards=shards)

    def rebuilt(owner: str, jobs: list) -> dict:
        """A lost manifest from its jobs: the same call stages the same shards (under this
        attempt's run id), so the owner's shards and their packing into jobs are known."""
        manifest = new(owner)
        names = {job.display_name: job.name for job in jobs}
        planned = _packed(manifest["shards"], options, shards_of(owner))
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
        measured = sum((part["measure"] for part in staged), costs.Measure(0, 0, 0, ()))
        found = costs.estimate_of(measured, options, family, settings,
                                  count_tokens=options.run.max_cost is not None)
        if _guarded(options):
            try:
                costs.guard(found, options.run.max_cost, options.run.max_rows)
            except InputError:
                shards_of(run_id).clean_up()
                raise
        manifest = {**new(run_id), "estimate": dataclasses.asdict(found)}
        manifest, _ = record_run(store, manifest, force=options.run.force)
    if manifest["run"] != run_id:
        shards_of(run_id).clean_up()  # this attempt's shards: the run's own are staged
        manifest = await_submission(store, manifest)
        if options.run.progress:
            state = BatchRun(manifest, settings, options, DaskDriver(), batch).status().state
            _notice(topic, reattached(manifest["run"], manifest["created"], state))
    if not manifest["submitted"]:
        _create(batch, manifest, store, settings, options, family,
                resumed=manifest["run"] != run_id)
    return {**manifest, "reattached": manifest["run"] != run_id}  # for the wait task


def _packed(shards: list[dict], options: Options, inputs: storage.Location
            ) -> list[list[int]]:
    """The run's jobs: consecutive whole shards within the per-job limits (one shard per job
    where a job reads ``one_source``: a BigQuery table, a Files API file)."""
    return plan.pack([(s["count"], s["bytes"]) for s in shards],
                     options.request.max_requests_per_job, plan.MAX_BYTES_PER_FILE,
                     1 if inputs.one_source else None)


def _create(batch, manifest: dict, store, settings, options: Options, family, resumed: bool
            ) -> None:
    """Create the jobs the manifest does not have yet: consecutive whole shards each."""
    shards = manifest["shards"]
    inputs, outputs = open_locations(manifest["run"], settings, family.parser,
                                     options.credentials, manifest["labels"])
    planned = _packed(shards, options, inputs)
    with kept_alive(store, manifest):
        for number, members in enumerate(planned[len(manifest["jobs"]):],
                                         len(manifest["jobs"])):
            source = partial(inputs.source, [shards[i]["uri"] for i in members])
            create_job(batch, store, manifest, number, family.resource, source,
                       outputs.destination(number), resumed, options.run.max_concurrent_jobs,
                       shards=members, count=sum(shards[i]["count"] for i in members))
        manifest["submitted"] = True
        save(store, manifest)


def _wait_run(manifest: dict, options: Options, read_only: bool, topic: str | None) -> dict:
    """Wait for the run's jobs, with its progress bar (``read_only``: they must have ended);
    the manifest with each job's final ``info``. The shards are removed once every job
    succeeded (unless ``keep_staging`` or ``read_only``)."""
    settings = config.settings_of(options.run, options.api_key)
    run = BatchRun(manifest, settings, options, DaskDriver(read_only=read_only))
    run.reattached = manifest.get("reattached", True)
    if read_only:
        status = run.status()
        if not status.finished:
            raise InputError(f"{manifest['run']} is still running: compute its result with "
                             "pdbatch.attach(...).result(ddf) to wait for it.")
    else:
        bar = _EventBar.on_worker(topic, manifest)
        try:
            status = run.wait(bar=bar)
        finally:
            if bar is not None:
                bar.close()  # the client's bar ends even when nothing was shown
    check_jobs(manifest["run"], status.jobs)
    manifest = {**manifest, "jobs": [{**job, "info": info} for job, info
                                     in zip(manifest["jobs"], status.jobs, strict=True)]}
    if status.succeeded and not (options.run.keep_staging or read_only):
        parser = families.resolve(options.request.model).parser
        open_locations(manifest["run"], settings, parser, options.credentials)[0].clean_up()
    return manifest


def _route(slot: int, slots: int, partitions: int, manifest: dict, copies: Copies,
           options: Options, read_only: bool) -> tuple:
    """Read the outputs of jobs ``slot``, ``slot + slots``, ... (each once) and split their
    lines by partition: each partition's ``(job number, lines)``, a copy's line under the
    copy's own row key."""
    settings = config.settings_of(options.run, options.api_key)
    _, outputs = open_locations(manifest["run"], settings,
                                families.resolve(options.request.model).parser,
                                options.credentials,
                                None if read_only else manifest["labels"])
    pieces: list[list] = [[] for _ in range(partitions)]
    con = engine.connect()
    batch = service.open_service(settings, options.credentials)
    for job in manifest["jobs"][slot::slots]:
        _, lines = collected(batch, outputs, con, job["number"], job["info"],
                             options.result.include_response)
        keys = pc.fill_null(lines.column("key"), -1).to_numpy()
        _split(pieces, job["number"], lines, keys)
        low = np.searchsorted(copies.owner, keys, "left")
        wanted = np.searchsorted(copies.owner, keys, "right") - low
        if wanted.any():  # lines that other partitions' copies want too
            line = np.repeat(np.arange(len(keys)), wanted)
            starts = np.repeat(np.cumsum(wanted) - wanted, wanted)
            copy = copies.copy[low[line] + np.arange(len(line)) - starts]
            copied = lines.take(pa.array(line))
            copied = copied.set_column(copied.schema.get_field_index("key"), "key",
                                       pa.array(copy, copied.schema.field("key").type))
            _split(pieces, job["number"], copied, copy)
    return tuple(pieces)


def _split(pieces: list[list], job: int, lines: pa.Table, keys: np.ndarray) -> None:
    """Add each partition's lines (by their row keys) to its pieces."""
    partition = np.where(keys >= 0, keys >> _ROW_BITS, -1)
    for number in np.unique(partition[(partition >= 0) & (partition < len(pieces))]).tolist():
        pieces[number].append((job, lines.filter(pa.array(partition == number))))


def _join(recipe: Recipe, number: int, manifest: dict, copies: Copies, routed: list[list],
          options: Options, read_only: bool) -> pd.DataFrame:
    """One partition's rows with the result columns, from its routed lines."""
    prepared = prepare(recipe.compute(), options)
    if prepared.fingerprint != manifest["partitions"][number]:
        raise InputError(f"partition {number} is not the one {manifest['run']} was made from; "
                         "pass the frame it was made from.")
    prepared = _without_copies(prepared, number, copies)
    jobs = manifest["jobs"]
    shards = manifest["shards"]
    job_of = np.zeros(len(shards), dtype=np.int64)
    for index, job in enumerate(jobs):
        job_of[job["shards"]] = index
    positions: dict[int, list[np.ndarray]] = {}
    sent = prepared.sent_rows
    for index, shard in enumerate(shards):
        if shard["partition"] == number:
            positions.setdefault(int(job_of[index]), []).append(
                sent[shard["first"]:shard["first"] + shard["count"]])
    rows, owners = copies.of(number)
    if len(rows):  # a copy is in the job of its owner's shard
        firsts = np.array([shard["keys"][0] for shard in shards], dtype=np.int64)
        holders = job_of[np.searchsorted(firsts, owners, "right") - 1]
        for index in np.unique(holders).tolist():
            positions.setdefault(index, []).append(rows[holders == index])
    found: dict[int, list[pa.Table]] = {}
    for pieces in routed:
        for job, lines in pieces:
            found.setdefault(job, []).append(lines)
    response = options.result.include_response
    answers = []
    for index in sorted(positions):
        lines = pa.concat_tables(found.get(jobs[index]["number"]) or [empty_output(response)])
        lines = lines.set_column(lines.schema.get_field_index("key"), "key",
                                 pc.bit_wise_and(lines.column("key"), _ROW_MASK))
        answers.append((jobs[index]["info"], np.sort(np.concatenate(positions[index])), lines))
    try:
        result = joined(prepared, answers, manifest["run"],
                        f"Shards are in {prepared.settings.staging}; outputs in "
                        f"{prepared.settings.output_location}.")
    except JobError as err:
        raise JobError(f"partition {number}: {err}", err.result, err.kinds) from None
    follow_up(prepared, result, read_only)
    return result.frame


# ---------------------------------------------------------------------------- progress
def _progress_topic() -> str | None:
    """When a ``distributed`` client computes the graph, the topic its workers send the
    run's progress on (the client shows it); None otherwise (the wait task runs in this
    process and shows its own bar)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        client = default_client()
    except ValueError:
        return None
    topic = f"pdbatch-progress-{uuid.uuid4().hex}"
    client.subscribe_topic(topic, _ClientBar())
    return topic


class _ClientBar:
    """The client's bar for a run computed on ``distributed`` workers: one bar per compute of
    the graph (it stays subscribed, so that computing the same lazy frame again shows one
    too; a handler is a few bytes per graph built)."""

    def __init__(self):
        self.bar = None

    def __call__(self, event) -> None:
        _, state = event
        if "notice" in state:
            progress.notice(state["notice"])
            return
        if self.bar is None and state["closed"]:  # a wait that showed nothing
            return
        if self.bar is None:
            self.bar = progress.bar(state["total"], state["desc"])
        self.bar.update(state["n"] - self.bar.n)
        if state["postfix"]:
            self.bar.set_postfix_str(state["postfix"])
        if state["closed"]:  # ready for the next compute of the same graph
            self.bar.close()
            self.bar = None


def _notice(topic: str | None, text: str) -> None:
    """Show a notice on the client: sent on ``topic`` from a ``distributed`` worker, shown
    here otherwise."""
    worker = _worker() if topic else None
    if worker is not None:
        worker.log_event(topic, {"notice": text})
    else:
        progress.notice(text)


def _worker():
    """The ``distributed`` worker running this task, or None."""
    if "distributed" not in sys.modules:
        return None
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:
        return None


class _EventBar:
    """A tqdm-like bar on a ``distributed`` worker that sends its state to the client."""

    def __init__(self, worker, topic: str, total: int, desc: str):
        self.worker, self.topic = worker, topic
        self.state = {"total": total, "desc": desc, "n": 0, "postfix": "", "closed": False}
        self.n = 0

    @classmethod
    def on_worker(cls, topic: str | None, manifest: dict) -> _EventBar | None:
        """The bar for a wait task running on a worker of the client that subscribed to
        ``topic``; None elsewhere."""
        worker = _worker() if topic else None
        return cls(worker, topic, manifest["requests"], manifest["run"]) if worker else None

    def _send(self) -> None:
        self.worker.log_event(self.topic, dict(self.state, n=self.n))

    def update(self, count: int) -> None:
        self.n += count
        self._send()

    def set_postfix_str(self, text: str) -> None:
        self.state["postfix"] = text
        self._send()

    def close(self) -> None:
        self.state["closed"] = True
        self._send()
