"""The tasks of a Dask run: stage each partition's shards, submit the run (through the
shared ``runs.lifecycle``), wait for its jobs, route each job's answers to the partitions that
asked, and join each partition's answers onto its rows (as the pandas driver does, follow-up
passes included)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from ... import config, costs, engine, families, plan, progress, service
from ...errors import InputError, JobError
from ...join import joined
from ...options import Options
from ...prepare import prepare
from ...service import JobInfo
from ...storage import Location
from .. import keys, lifecycle
from .. import manifest as manifests
from ..handle import BatchRun
from ..jobs import collected, open_locations
from ..lifecycle import Planned
from ..local import follow_up
from ..manifest import Manifest
from .dedup import Copies, without_copies
from .exchange import Exchange, give_back
from .graph import Recipe, computed

#: Marks how a Dask run's partitions are combined in its fingerprint: a run made before
#: requests were deduplicated across partitions is not re-attached by today's call.
_DASK_FINGERPRINT = "dask-dedup-across-1"


def dedups(options: Options) -> bool:
    """Whether requests are deduplicated (across partitions too): not with ``carry``, where
    every row's carried values go with its own request."""
    return options.request.dedup and not options.request.carry


def stage(source, number: int, copies: Copies, run_id: str, options: Options) -> dict:
    """Prepare one partition, upload its local files and write its shards; returns their
    sizes, the partition's fingerprint and its measure."""
    prepared = prepare(computed(source), options)
    fingerprint = prepared.fingerprint
    prepared = without_copies(prepared, number, copies)
    labels = {**(options.run.labels or {}), manifests.RUN_LABEL: run_id}
    inputs, outputs = open_locations(run_id, prepared.settings, prepared.family.parser,
                                     options.credentials, labels, prepared.rows.carried)
    files = prepared.rows.files
    if files is not None and files.local:
        (inputs if inputs.hosts_files else outputs).upload(files.uploads)
    shards, first, offset = [], 0, keys.offset(number)
    for index, (positions, requests) in enumerate(plan.jobs_of(prepared, offset)):
        shards.append({"uri": inputs.stage_shard(number, index, requests),
                       "partition": number, "first": first, "count": len(positions),
                       "bytes": int(pc.sum(pc.binary_length(requests)).as_py()),
                       "keys": [int(positions[0]) + offset, int(positions[-1]) + offset]})
        first += len(positions)
    return {"partition": number, "rows": len(prepared.df), "fingerprint": fingerprint,
            "shards": shards, "measure": costs.measure(prepared)}


class DaskCall:
    """A Dask call for the lifecycle: its jobs read whole shards, staged by the partitions'
    stage tasks before the run is recorded (under this attempt's run id)."""

    sends = True

    def __init__(self, staged: list[dict], run_id: str, options: Options, topic: str | None):
        self.staged, self.run_id, self.options, self.topic = staged, run_id, options, topic
        self.settings = config.settings_of(options.run, options.api_key)
        self.family = families.resolve(options.request.model)
        self.resource = self.family.resource
        self.partitions = [part["fingerprint"] for part in staged]
        combined = {"version": _DASK_FINGERPRINT, "partitions": self.partitions}
        self.fingerprint = hashlib.blake2b(json.dumps(combined).encode(),
                                           digest_size=16).hexdigest()

    def shards_of(self, run_id: str) -> Location:
        return open_locations(run_id, self.settings, self.family.parser,
                              self.options.credentials)[0]

    def new(self, run_id: str) -> Manifest:
        """The manifest of run ``run_id`` for this call's shards: the same call stages the
        same shards, so a run's own shards are known from this attempt's."""
        location = self.shards_of(run_id)
        shards = [{**shard, "uri": location.shard(part["partition"], index)}
                  for part in self.staged for index, shard in enumerate(part["shards"])]
        return manifests.new(run_id, self.fingerprint, self.settings, self.options,
                             self.resource, sum(part["rows"] for part in self.staged),
                             sum(shard["count"] for shard in shards), dask=True,
                             dedup_across=dedups(self.options), partitions=self.partitions,
                             shards=shards)

    def planned(self, manifest: Manifest) -> Iterator[Planned]:
        """Consecutive whole shards within the per-job limits (one shard per job where a job
        reads ``one_source``: a BigQuery table, a Files API file)."""
        shards = manifest.shards
        for members in plan.pack([(s["count"], s["bytes"]) for s in shards],
                                 min(self.options.request.max_requests_per_job,
                                     self.family.task.max_requests_per_job),
                                 plan.MAX_BYTES_PER_FILE,
                                 1 if self.shards_of(manifest.run).one_source else None):
            uris = [shards[i]["uri"] for i in members]
            yield ({"shards": members, "count": sum(shards[i]["count"] for i in members)},
                   lambda inputs, uris=uris: inputs.source(uris))

    def estimate(self, count_tokens: bool) -> costs.Estimate:
        measured = sum((part["measure"] for part in self.staged), costs.Measure(0, 0, 0, ()))
        return costs.estimate_of(measured, self.options, self.family, self.settings,
                                 count_tokens=count_tokens)

    def locations(self, manifest: Manifest) -> tuple[Location, Location]:
        return open_locations(manifest.run, self.settings, self.family.parser,
                              self.options.credentials, manifest.labels)

    def upload(self, inputs: Location, outputs: Location) -> None:
        """Nothing: each stage task uploaded its partition's files."""

    def discard(self) -> None:
        self.shards_of(self.run_id).clean_up()

    def notice(self, text: str) -> None:
        progress.notice_from(self.topic, text)


def submit_run(staged: list[dict], run_id: str, options: Options, topic: str | None = None
               ) -> tuple[Manifest, bool]:
    """Price, plan, record and create the jobs of the whole frame, or find the run this call
    already made (and create what it did not get to): its manifest, and whether it was
    found. A run over ``max_cost``/``max_rows`` is refused (its shards removed) before any
    job exists."""
    started = lifecycle.start(DaskCall(staged, run_id, options, topic), run_id)
    assert started is not None  # not read-only
    return started


def wait_run(submitted: tuple[Manifest, bool], options: Options, read_only: bool,
             topic: str | None) -> tuple[Manifest, list[JobInfo]]:
    """Wait for the run's jobs, with its progress bar (``read_only``: they must have ended);
    the manifest and each job's final info. The shards are removed once every job succeeded
    (unless ``keep_staging`` or ``read_only``)."""
    manifest, found = submitted
    settings = config.settings_of(options.run, options.api_key)
    run = BatchRun(manifest, settings, options, None)
    run.reattached = found
    bar = None if read_only else progress.EventBar.on_worker(topic, manifest.requests,
                                                              manifest.run)
    try:
        status = lifecycle.ended(run, read_only, bar)
    finally:
        if bar is not None:
            bar.close()  # the client's bar ends even when nothing was shown
    parser = families.resolve(options.request.model).parser
    lifecycle.tidy(run, status, read_only,
                   lambda: open_locations(manifest.run, settings, parser,
                                          options.credentials)[0])
    return manifest, status.jobs


def route(slot: int, slots: int, ended: tuple[Manifest, list[JobInfo]], copies: Copies,
          options: Options, read_only: bool) -> np.ndarray:
    """Read the outputs of jobs ``slot``, ``slot + slots``, ... (each once, one at a time),
    split each job's lines by partition (a copy's line under the copy's own row key) and
    write each partition's share to the run's exchange folder; the lines written for each
    partition."""
    manifest, infos = ended
    settings = config.settings_of(options.run, options.api_key)
    _, outputs = open_locations(manifest.run, settings,
                                families.resolve(options.request.model).parser,
                                options.credentials, None if read_only else manifest.labels)
    exchange = Exchange(manifest.run, options)
    con = engine.connect()
    written = np.zeros(len(manifest.partitions), dtype=np.int64)
    batch = service.open_service(settings, options.credentials)
    for job, info in list(zip(manifest.jobs, infos, strict=True))[slot::slots]:
        _, lines = collected(batch, outputs, con, job.number, info,
                             options.result.include_response)
        line_keys = pc.fill_null(lines.column("key"), -1).to_numpy()
        pieces: dict[int, list[pa.Table]] = {}
        _split(pieces, lines, line_keys, len(manifest.partitions))
        low = np.searchsorted(copies.owner, line_keys, "left")
        wanted = np.searchsorted(copies.owner, line_keys, "right") - low
        if wanted.any():  # lines that other partitions' copies want too
            line = np.repeat(np.arange(len(line_keys)), wanted)
            starts = np.repeat(np.cumsum(wanted) - wanted, wanted)
            copy = copies.copy[low[line] + np.arange(len(line)) - starts]
            copied = lines.take(pa.array(line))
            copied = copied.set_column(copied.schema.get_field_index("key"), "key",
                                       pa.array(copy, copied.schema.field("key").type))
            _split(pieces, copied, copy, len(manifest.partitions))
        del lines
        for number, tables in pieces.items():
            share = pa.concat_tables(tables)
            exchange.put_answers(number, job.number, share)
            written[number] += len(share)
        pieces.clear()
        give_back()  # one job's output at a time, also to the system
    return written


def routed(counts: list[np.ndarray]) -> np.ndarray:
    """Every route task has written its jobs' answers: the lines written for each
    partition."""
    return np.sum(counts, axis=0)


def _split(pieces: dict[int, list], lines: pa.Table, line_keys: np.ndarray,
           partitions: int) -> None:
    """Add each partition's lines (by their row keys) to its pieces."""
    partition = np.where(line_keys >= 0, keys.partition_of(line_keys), -1)
    for number in np.unique(partition[(partition >= 0) & (partition < partitions)]).tolist():
        pieces.setdefault(number, []).append(lines.filter(pa.array(partition == number)))


def join(recipe: Recipe, number: int, ended: tuple[Manifest, list[JobInfo]], copies: Copies,
         lines_routed: np.ndarray, options: Options, read_only: bool) -> pd.DataFrame:
    """One partition's rows with the result columns, from its routed lines (read from the
    exchange folder, then removed there unless ``keep_staging``)."""
    manifest, infos = ended
    prepared = prepare(recipe.compute(), options)
    if prepared.fingerprint != manifest.partitions[number]:
        raise InputError(f"partition {number} is not the one {manifest.run} was made from; "
                         "pass the frame it was made from.")
    prepared = without_copies(prepared, number, copies)
    jobs, shards = manifest.jobs, manifest.shards
    job_of = np.zeros(len(shards), dtype=np.int64)
    for index, job in enumerate(jobs):
        job_of[job.shards] = index
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
    exchange = Exchange(manifest.run, options)
    found = exchange.answers(number)
    if sum(len(lines) for lines in found.values()) != lines_routed[number]:
        raise JobError(f"partition {number}: its answers in {exchange.root} are not all there "
                       "(a join computed again after they were taken, e.g. when a worker was "
                       "lost?); compute the frame again: the run's jobs are only read again.")
    response = options.result.include_response
    answers = []
    for index in sorted(positions):
        lines = found.get(jobs[index].number) or prepared.family.parser.empty(response)
        lines = lines.set_column(lines.schema.get_field_index("key"), "key",
                                 pc.bit_wise_and(lines.column("key"), keys.ROW_MASK))
        answers.append((infos[index], np.sort(np.concatenate(positions[index])), lines))
    try:
        result = joined(prepared, answers, manifest.run,
                        f"Shards are in {prepared.settings.staging}; outputs in "
                        f"{prepared.settings.output_location}.")
    except JobError as err:
        raise JobError(f"partition {number}: {err}", err.result, err.kinds) from None
    follow_up(prepared, result, read_only)
    if not options.run.keep_staging:
        exchange.drop_answers(number)
    del found, answers, prepared
    give_back()
    return result.frame
