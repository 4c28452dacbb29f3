"""A run's lifecycle, written once for both drivers: start (or re-attach to the run the same
call made), rebuild a lost manifest from its jobs, create the jobs not made yet, wait for them
and tidy up. A driver describes its call as a ``Call``: the pandas driver's jobs are slices of
one frame's sent rows, staged as each job is created; the Dask driver's are whole shards its
partitions staged before. Everything else is the same code.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol

from .. import costs, service, storage
from ..config import Settings
from ..errors import InputError
from ..options import Options
from ..service import JobInfo
from ..storage import Location, Staged
from .handle import BatchRun, RunStatus, summarise
from .jobs import (
    abandon,
    await_submission,
    check_jobs,
    create_job,
    display_name,
    find_run,
    given_up,
    job_number,
    kept_alive,
    record_run,
    save,
)
from .manifest import JobEntry, Manifest

if TYPE_CHECKING:
    from tqdm import tqdm

log = logging.getLogger(__name__)

#: A planned job: its entry's fields (``count`` and ``first`` or ``shards``), and how to
#: stage what it reads (given the run's input location).
Planned = tuple[dict, Callable[[Location], Staged]]


class Call(Protocol):
    """What a driver tells the lifecycle about one call."""

    settings: Settings
    options: Options
    fingerprint: str
    resource: str  # the model's resource name
    sends: bool  # whether any row is sent

    def new(self, run_id: str) -> Manifest:
        """A new manifest of this call for run ``run_id``, with no job."""

    def planned(self, manifest: Manifest) -> Iterator[Planned]:
        """The run's jobs, in order."""

    def estimate(self, count_tokens: bool) -> costs.Estimate:
        """What the call would cost."""

    def locations(self, manifest: Manifest) -> tuple[Location, Location]:
        """Where the run's inputs are staged and its jobs write."""

    def upload(self, inputs: Location, outputs: Location) -> None:
        """Upload what must exist before the jobs (local ``files=``)."""

    def discard(self) -> None:
        """Remove what this attempt staged, when its run is not made after all."""

    def notice(self, text: str) -> None:
        """Show a one-line notice where the caller sees it."""


def start(call: Call, run_id: str, read_only: bool = False
          ) -> tuple[Manifest, bool] | None:
    """The run of ``call``: the one the same call already made (unless ``force``), else a new
    one as ``run_id``, with every job created; and whether it was found rather than made.
    ``read_only``: only a run already made (None when there is none)."""
    run_options, settings = call.options.run, call.settings
    store = storage.open_store(settings.staging, call.options.credentials)
    batch = service.open_service(settings, call.options.credentials)
    found = None
    if (read_only or not run_options.force) and call.sends:
        found = find_run(store, call.fingerprint, batch,
                         lambda owner, jobs: rebuilt(call, owner, jobs))
    if found is None and read_only:
        return None
    if found is None:
        guarded = run_options.max_cost is not None or run_options.max_rows is not None
        estimate = call.estimate(count_tokens=run_options.max_cost is not None)
        if guarded:
            try:
                costs.guard(estimate, run_options.max_cost, run_options.max_rows)
            except InputError:
                call.discard()
                raise
        manifest = call.new(run_id)
        manifest.estimate = dataclasses.asdict(estimate)
        if not call.sends:
            log.warning("no row has a prompt to send; no job was created")
            manifest.submitted = True
            return manifest, False
        manifest, won = record_run(store, manifest, force=run_options.force)
        if won:
            create_jobs(call, manifest, store, batch, resumed=False)
            return manifest, False
        found = manifest
    if found.run != run_id:
        call.discard()  # the run's own inputs are staged under its own id
    if not read_only:
        found = await_submission(store, found)
        if not found.submitted:
            create_jobs(call, found, store, batch, resumed=True)
        if run_options.progress:
            with interrupted(call, found, store, batch):
                state = BatchRun(found, settings, call.options, None, batch).status().state
            call.notice(reattached(found.run, found.created, state))
    return found, True


def reattached(run_id: str, created: str, state: str) -> str:
    """The notice of a call that re-attached to the run it made before."""
    return (f"re-attached to {run_id} ({state}), made by this same call at {created}: no new "
            "job was created (force=True starts afresh).")


def rebuilt(call: Call, run_id: str, jobs: list[JobInfo]) -> Manifest:
    """The manifest of run ``run_id`` of this call, rebuilt from ``jobs`` (the jobs of its
    fingerprint, oldest first): its jobs are planned again and matched by display name. A job
    of the run that was given up (cancelled: another machine made the same job first, see
    ``jobs.converged``) gives way to the earliest job of that number another run kept; on a
    service whose creators converge, that earliest job is taken whatever the run's own (which
    may be a later one its creator is about to cancel)."""
    manifest = call.new(run_id)
    names = {job.display_name: job for job in jobs}
    converging = service.kind(call.settings).converges
    planned = 0
    for number, (entry, _) in enumerate(call.planned(manifest)):
        planned += 1
        job = names.get(display_name(run_id, number))
        if converging or (job is not None and given_up(job)):
            job = next((other for other in jobs if job_number(other.display_name) == number
                        and not given_up(other)), job)
        if job is not None and len(manifest.jobs) == number:
            manifest.jobs.append(JobEntry(number, job.name, **entry))
    manifest.submitted = len(manifest.jobs) == planned
    return manifest


def create_jobs(call: Call, manifest: Manifest, store, batch, resumed: bool) -> None:
    """Stage and create the run's jobs that do not exist yet, recording each in the manifest
    as soon as it exists (when ``resumed``, a job created by an attempt that died before
    recording it is found by its display name)."""
    inputs, outputs = call.locations(manifest)
    converge = batch.converges and not call.options.run.force
    with interrupted(call, manifest, store, batch), kept_alive(store, manifest):
        call.upload(inputs, outputs)
        known = len(manifest.jobs)
        for number, (entry, stage) in enumerate(call.planned(manifest)):
            if number >= known:
                create_job(batch, store, manifest, number, call.resource,
                           lambda stage=stage: stage(inputs), outputs.destination(number),
                           resumed, call.options.run.max_concurrent_jobs, converge, **entry)
        manifest.submitted = True
        save(store, manifest)
    log.info("run %s: %d requests in %d job(s), staged in %s", manifest.run, manifest.requests,
             len(manifest.jobs), inputs)


@contextmanager
def interrupted(call: Call, manifest: Manifest, store, batch) -> Iterator[None]:
    """An interrupt (Ctrl-C) while the run's jobs are created, or its manifest saved: the
    manifest is saved again as it stands (it names every job made; the same call made again
    creates the others at once, ``jobs.abandon``), and the jobs made go on, or are cancelled
    with ``cancel_on_interrupt``, as when waiting (``BatchRun.wait``)."""
    try:
        yield
    except KeyboardInterrupt:
        abandon(store, manifest)
        if manifest.jobs:
            run = BatchRun(manifest, call.settings, call.options, None, batch)
            run.interrupted(call.options.run.cancel_on_interrupt)
        raise


def ended(run: BatchRun, read_only: bool, bar: tqdm | None = None) -> RunStatus:
    """The run's status once its jobs have ended (waited for, with progress; ``read_only``:
    they must have ended already), its jobs checked to be its own."""
    if not run.jobs:
        status = summarise([], [])
    elif read_only:
        status = run.status()
        if not status.finished or not run.manifest.submitted:
            raise InputError(f"{run.id} is still {status.state}: wait for it with "
                             f"pdbatch.attach({run.id!r}, staging=...).result(df).")
    else:
        status = run.wait(bar=bar)
    check_jobs(run.manifest, status.jobs)
    return status


def tidy(run: BatchRun, status: RunStatus, read_only: bool,
         inputs: Callable[[], Location]) -> None:
    """Remove the staged ``inputs()`` of a run whose jobs all succeeded (unless
    ``keep_staging`` or ``read_only``)."""
    if status.succeeded and run.jobs and not read_only and not run.options.run.keep_staging:
        inputs().clean_up()
