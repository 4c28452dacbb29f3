"""The stages both drivers share once a call is prepared: find the run a call already made
(rebuilding a lost manifest from the jobs' labels) or claim its fingerprint for a new one, create
each job and record it at once, check that jobs are the run's own, and read their answers."""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import engine, families, service, storage
from ..errors import InputError, ServiceError
from ..families.lines import PerBatch
from ..service import BatchService, JobInfo
from ..storage import Destination, Location, RunStore, Staged
from ..vector_sink import VectorSink
from .manifest import FINGERPRINT_LABEL, RUN_LABEL, JobEntry, Manifest

#: Seconds after which an unfinished manifest no process has saved counts as abandoned
#: (compared with this machine's clock).
STALE_AFTER = 60.0
#: Seconds a job that succeeded may take to show its output (the Developer API can report
#: SUCCEEDED before its results file is set) before its rows are called missing.
OUTPUT_WAIT = 120.0
#: Job states of a job no run adopts: cancelled, or ended without answers.
GIVEN_UP = frozenset({"JOB_STATE_CANCELLED", "JOB_STATE_CANCELLING", "JOB_STATE_FAILED",
                      "JOB_STATE_EXPIRED"})
_SAVING = threading.RLock()  # a manifest is changed and saved by one thread at a time

log = logging.getLogger(__name__)


def find_run(store: RunStore, fingerprint: str, batch: BatchService,
             rebuild: Callable[[str, list[JobInfo]], Manifest]) -> Manifest | None:
    """The manifest of the run this call (by its fingerprint) already made, if any.

    When the index names no run but jobs carry the fingerprint's label, the newest of their
    runs is indexed again; its manifest, when it is gone too, is rebuilt by the driver from
    the jobs of the fingerprint (``rebuild(run_id, jobs)``, oldest first). Nothing is created
    twice."""
    run_id = store.find(fingerprint)
    manifest = _load(store, run_id) if run_id else None
    if manifest is not None:
        if (manifest.run, manifest.fingerprint) != (run_id, fingerprint):
            raise InputError(f"The run index of this call in {store} names {run_id}, whose "
                             "manifest is another run's or another call's. Remove the index, "
                             "or pass force=True.")
        log.info("re-attaching to %s, made by the same call (force=True starts afresh)",
                 run_id)
        return manifest
    labelled = [job for job in batch.labelled(FINGERPRINT_LABEL, fingerprint)
                if storage.is_run_id(job.labels.get(RUN_LABEL))]
    if not labelled:
        return None
    run_id = max(job.labels[RUN_LABEL] for job in labelled)
    manifest = _load(store, run_id)
    if manifest is None:
        manifest = rebuild(run_id, labelled)
        save(store, manifest)
        log.warning("rebuilt the manifest of %s from the labels of %d job(s)", run_id,
                    len(manifest.jobs))
    store.link(fingerprint, run_id)
    log.info("re-attaching to %s, found by its jobs' labels", run_id)
    return manifest


def _load(store: RunStore, run_id: str) -> Manifest | None:
    stored = store.load(run_id)
    return None if stored is None else Manifest.read(stored)


def record_run(store: RunStore, manifest: Manifest, force: bool = False
               ) -> tuple[Manifest, bool]:
    """Save a new run's manifest and claim its fingerprint: ``(manifest, True)`` when this
    run owns it now; ``(the owner's manifest, False)`` when another process made the same call
    at the same moment and claimed it first (this run's manifest is removed again).
    ``force``: this run takes the fingerprint whatever owned it."""
    save(store, manifest)
    if force:
        store.link(manifest.fingerprint, manifest.run)
        return manifest, True
    owner = store.claim(manifest.fingerprint, manifest.run)
    if owner == manifest.run:
        return manifest, True
    found = _load(store, owner)
    if found is None:  # the owner's manifest was removed (it is saved before its claim)
        log.warning("the index of this call named %s, whose manifest is gone: this run takes "
                    "its place", owner)
        store.link(manifest.fingerprint, manifest.run)
        return manifest, True
    store.delete(manifest.run)
    log.info("another process made the same call at the same moment: re-attaching to %s",
             owner)
    return found, False


def await_submission(store: RunStore, manifest: Manifest) -> Manifest:
    """Wait while another process creates the run's jobs (its manifest is not ``submitted``
    and was updated in the last ``STALE_AFTER`` seconds); the manifest then. A manifest left
    unfinished longer than that was left by a process that stopped: the caller takes over,
    when it is the one of the waiting processes that ``take_over`` chooses."""
    delay = 0.5
    while not manifest.submitted:
        updated = datetime.fromisoformat(manifest.updated or manifest.created)
        if (datetime.now(timezone.utc) - updated).total_seconds() > STALE_AFTER \
                and take_over(store, manifest):
            log.info("%s was left unfinished: creating its other jobs", manifest.run)
            return manifest
        time.sleep(delay)
        delay = min(delay * 1.5, 5.0)
        manifest = _load(store, manifest.run) or manifest
    return manifest


def take_over(store: RunStore, manifest: Manifest) -> bool:
    """Whether this process is the one to finish a run left unfinished: of the processes that
    see it abandoned at the same save time, the one whose claim of that moment wins (the
    store's atomic ``claim``, on a key of the run and its save time); it saves the manifest at
    once, so that the others see the run alive again and go on waiting."""
    moment = f"{manifest.run} {manifest.updated or manifest.created}"
    key = hashlib.blake2b(moment.encode(), digest_size=16).hexdigest()
    token = storage.new_run_id()
    if store.claim(key, token) != token:
        return False
    save(store, manifest)
    return True


def save(store: RunStore, manifest: Manifest) -> None:
    """Save the manifest, stamped with the time (``await_submission`` reads it)."""
    with _SAVING:
        manifest.updated = datetime.now(timezone.utc).isoformat(timespec="seconds")
        store.save(manifest.to_json())


def abandon(store: RunStore, manifest: Manifest) -> None:
    """Save the manifest of a run this process stops creating (interrupted), stamped as if
    last saved ``2 * STALE_AFTER`` seconds ago when it is not ``submitted``: the same call made
    again takes its creation over at once instead of waiting for this process."""
    if manifest.submitted:
        save(store, manifest)
        return
    with _SAVING:
        manifest.updated = (datetime.now(timezone.utc) - timedelta(seconds=2 * STALE_AFTER)
                            ).isoformat(timespec="seconds")
        store.save(manifest.to_json())


@contextmanager
def kept_alive(store: RunStore, manifest: Manifest) -> Iterator[None]:
    """While the body creates a run's jobs, save its manifest every ``STALE_AFTER / 3``
    seconds, so that processes waiting for it (``await_submission``) see that this one is
    alive while it stages, uploads or waits under ``max_concurrent_jobs``."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(STALE_AFTER / 3):
            save(store, manifest)

    thread = threading.Thread(target=beat, name="pdbatch-alive", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def display_name(run_id: str, number: int) -> str:
    """The display name of job ``number`` of a run."""
    return f"pdbatch-{run_id}-{number:05d}"


def create_job(batch: BatchService, store: RunStore, manifest: Manifest, number: int,
               resource: str, stage: Callable[[], Staged], destination: Destination,
               resumed: bool, cap: int | None, converge: bool = False, **entry) -> None:
    """Create job ``number`` of a run and record it in the manifest at once. ``stage()`` stages
    its input and gives the input config; it is not called when ``resumed`` and an earlier
    attempt created the job (found by display name). With ``cap``, first wait until fewer
    than that many of the run's jobs are unfinished. With ``converge``, the job is the one
    ``converged`` keeps."""
    if cap:
        service.wait(batch, manifest.job_names, running_at_most=cap - 1,
                     label=(RUN_LABEL, manifest.run))
    display = display_name(manifest.run, number)
    name = (resumed and batch.find(display, manifest.run)) or batch.create(
        display, resource, stage(), destination, manifest.labels)
    if converge:
        name = converged(batch, manifest, number, name)
    with _SAVING:
        manifest.jobs.append(JobEntry(number, name, **entry))
    save(store, manifest)


def job_number(display: str) -> int | None:
    """The number of the job a pdbatch display name names (of any run), else None."""
    head, _, number = display.rpartition("-")
    if not (head.startswith("pdbatch-") and storage.is_run_id(head[len("pdbatch-"):])
            and len(number) == 5 and number.isdigit()):
        return None
    return int(number)


def given_up(info: JobInfo) -> bool:
    """Whether a job was cancelled or ended without answers (no run adopts it)."""
    return info.state in GIVEN_UP


def converged(batch: BatchService, manifest: Manifest, number: int, own: str) -> str:
    """The job ``number`` of the run, once its creators agree: job ``own`` was just created,
    and other machines making the same call (its fingerprint) may have created theirs. Of the
    fingerprint's jobs of that number (not given up), the earliest (by create time, then name)
    is kept by every creator; a later one, this one's, is cancelled before it runs (if it has
    not) and the earliest is recorded instead, so that every machine waits for and reads the
    same job."""
    rivals = [info for info in batch.labelled(FINGERPRINT_LABEL, manifest.fingerprint)
              if job_number(info.display_name) == number
              and (info.name == own or not given_up(info))]
    if not rivals or rivals[0].name == own or own not in {info.name for info in rivals}:
        return own  # the earliest, or the list does not show it yet: it is kept
    winner = rivals[0].name
    try:
        batch.cancel(own)
    except (ServiceError, InputError) as err:
        log.warning("could not cancel %s, made again by another machine (%s): both are paid "
                    "for", own, err)
    log.warning("job %d of %s was made by another machine at the same moment: %s, which it "
                "made first, is kept and %s is cancelled", number, manifest.run, winner, own)
    return winner


def check_jobs(manifest: Manifest, infos: list[JobInfo]) -> None:
    """Refuse to read jobs that are not the run's own (by their run label), except a job
    another machine made for the same call (its fingerprint label) under the same number,
    which ``converged`` adopted."""
    for entry, info in zip(manifest.jobs, infos, strict=True):
        owner = info.labels.get(RUN_LABEL)
        adopted = (info.labels.get(FINGERPRINT_LABEL) == manifest.fingerprint
                   and job_number(info.display_name) == entry.number)
        if owner != manifest.run and not adopted:
            raise InputError(f"The manifest of {manifest.run} names job {info.name}, which "
                             f"belongs to {owner or 'no pdbatch run'}: its answers are not this "
                             "run's. Remove the manifest to have the same call rebuild it from "
                             "the jobs' labels, or pass force=True to start a new run.")


def answers(outputs: Location, jobs: list[tuple[JobEntry, JobInfo, np.ndarray]], response: bool,
            batch: BatchService, sink: VectorSink | None = None
            ) -> list[tuple[JobInfo, np.ndarray, pa.Table]]:
    """Each job's info, row positions and parsed output lines, for ``join.joined`` (their
    vectors written into ``sink`` as they are read, when there is one)."""
    con = engine.connect()
    found = []
    for job, info, positions in jobs:
        per_batch = sink.job(positions).take if sink else None
        info, lines = collected(batch, outputs, con, job.number, info, response, per_batch)
        found.append((info, positions, lines))
    return found


def collected(batch: BatchService, outputs: Location, con, number: int, info: JobInfo,
              response: bool, per_batch: PerBatch | None = None) -> tuple[JobInfo, pa.Table]:
    """Job ``number``'s info and parsed output lines. A job that succeeded with no output line
    yet (every row it read gets one) is asked again, with backoff, for up to ``OUTPUT_WAIT``
    seconds, before any of its rows is called missing."""
    table = outputs.collect(con, number, info.output_dir, response, per_batch)
    deadline, delay = time.monotonic() + OUTPUT_WAIT, 0.5
    while info.succeeded and not table.num_rows and time.monotonic() < deadline:
        log.info("%s succeeded but shows no output yet: asking again in %.1f s", info.name,
                 delay)
        time.sleep(delay)
        delay = min(delay * 2, 15.0)
        info = batch.get(info.name)
        table = outputs.collect(con, number, info.output_dir, response, per_batch)
    if info.succeeded and not table.num_rows:
        log.warning("%s succeeded but showed no output within %.0f s: its rows are missing",
                    info.name, OUTPUT_WAIT)
    return info, table


def output_lines(run_id: str, settings, options, jobs: list[JobEntry], infos: list[JobInfo],
                 credentials=None) -> pa.Table:
    """Every output line of a run's ended jobs, parsed (the task's ``parsed_fields``),
    with the ``job`` that wrote it; lines without a row key are left out."""
    family = families.resolve(options.request.model)
    _, outputs = open_locations(run_id, settings, family.parser, credentials)
    con = engine.connect()
    tables = []
    batch = service.open_service(settings, credentials)
    for job, info in zip(jobs, infos, strict=True):
        info, table = collected(batch, outputs, con, job.number, info, True)
        tables.append(table.append_column("job", pa.array([info.name] * table.num_rows,
                                                          pa.large_string())))
    if not tables:
        return family.parser.empty().append_column("job", pa.array([], pa.large_string()))
    found = pa.concat_tables(tables)
    return found.filter(pc.is_valid(found.column("key")))


def open_locations(run_id: str, settings, parser, credentials=None, labels=None,
                   carried=()) -> tuple[Location, Location]:
    """Where a run's inputs are staged and where its jobs write, as its service says (the
    same object when they are the same place)."""
    return service.kind(settings).locations(run_id, settings, parser, credentials, labels,
                                            carried)
