"""The stages both drivers share once a call is prepared: find the run a call already made or
record a new one, create each job and record it at once, and read the jobs' answers."""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
import pyarrow as pa

from .. import engine, service, storage
from ..service import BatchService, JobInfo
from ..storage import Location, RunStore
from .manifest import read

log = logging.getLogger(__name__)


def find_run(store: RunStore, fingerprint: str) -> dict | None:
    """The manifest of the run this call (by its fingerprint) already made, if any."""
    run_id = store.find(fingerprint)
    manifest = store.load(run_id) if run_id else None
    if manifest is not None:
        log.info("re-attaching to %s, made by the same call (force=True starts afresh)",
                 run_id)
        return read(manifest)
    return None


def record_run(store: RunStore, manifest: dict) -> None:
    """Save a new run's manifest and index it by its fingerprint."""
    store.save(manifest)
    store.link(manifest["fingerprint"], manifest["run"])


def create_job(batch: BatchService, store: RunStore, manifest: dict, number: int,
               resource: str, stage: Callable[[], dict], output_config: dict, resumed: bool,
               cap: int | None, **entry) -> None:
    """Create job ``number`` of a run and record it in the manifest at once. ``stage()`` stages
    its input and gives the input config; it is not called when ``resumed`` and an earlier
    attempt created the job (found by display name). With ``cap``, first wait until fewer
    than that many of the run's jobs are unfinished."""
    if cap:
        service.wait(batch, [job["name"] for job in manifest["jobs"]], running_at_most=cap - 1)
    display = f"pdbatch-{manifest['run']}-{number:05d}"
    name = (resumed and batch.find(display, manifest["run"])) or batch.create(
        display, resource, stage(), output_config, manifest["labels"])
    manifest["jobs"].append({"number": number, "name": name, **entry})
    store.save(manifest)


def answers(outputs: Location, jobs: list[tuple[dict, JobInfo, np.ndarray]], response: bool
            ) -> list[tuple[JobInfo, np.ndarray, pa.Table]]:
    """Each job's info, row positions and parsed output lines, for ``join.joined``."""
    con = engine.connect()
    return [(info, positions, outputs.collect(con, job["number"], info.output_dir, response))
            for job, info, positions in jobs]


def open_locations(run_id: str, settings, parser, credentials=None, labels=None,
                   carried=()) -> tuple[Location, Location]:
    """Where a run's inputs are staged and where its jobs write (the same object when they are
    the same place)."""
    def location(uri: str) -> Location:
        return storage.open_location(uri, run_id, parser, project=settings.project,
                                     credentials=credentials, labels=labels, carried=carried)

    inputs = location(settings.staging)
    if settings.output_location == settings.staging:
        return inputs, inputs
    return inputs, location(settings.output_location)
