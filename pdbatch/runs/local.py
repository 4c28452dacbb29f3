"""The pandas driver: prepare -> (re-attach or) plan -> stage -> submit -> wait -> collect ->
join, then the follow-up passes (re-asks and retries), each a run of its own.

A run is remembered in its staging location (``storage.RunStore``) under its fingerprint
before its first job is created, and each job is recorded as soon as it exists, so the same
call made again re-attaches instead of paying twice. ``read_only`` runs (``read_results``)
only read what runs made: they create no job and wait for none.
"""

from __future__ import annotations

import dataclasses
import logging
from functools import partial

import numpy as np
import pandas as pd

from .. import costs, plan, progress, service, storage
from ..errors import InputError, JobError
from ..join import Kind, Result, joined
from ..options import Options
from ..prepare import Prepared, prepare
from ..service import JobInfo
from . import manifest as manifests
from .handle import BatchRun, summarise
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

log = logging.getLogger(__name__)


class PandasDriver:
    """Results of runs of pandas frames (``prepared``: the call that made the run, when this
    process made it)."""

    def __init__(self, prepared: Prepared | None = None, read_only: bool = False):
        self.prepared, self.read_only = prepared, read_only

    def result(self, run: BatchRun, df: pd.DataFrame | None = None) -> pd.DataFrame:
        return result_of(run, self.prepared_for(run, df), self.read_only).frame

    def prepared_for(self, run: BatchRun, df: pd.DataFrame | None) -> Prepared:
        """The prepared call of ``run`` for ``df`` (checked by fingerprint)."""
        if df is None:
            if self.prepared is None:
                raise InputError(f"{run.id} was attached by id: pass the frame it was made "
                                 "from, run.result(df).")
            return self.prepared
        if self.prepared is not None and df is self.prepared.df:
            return self.prepared
        prepared = prepare(df, run.options, run.manifest["pass"])
        if prepared.fingerprint != run.manifest["fingerprint"]:
            raise InputError(f"This frame (rows, prompts or files) is not the one {run.id} was "
                             "made from; pass that frame to run.result(df).")
        self.prepared = prepared
        return prepared


def start(prepared: Prepared, read_only: bool = False, parent: str = "") -> BatchRun | None:
    """The run of a prepared call: the one this call already made (unless ``force``), else a
    new one, with every job submitted. ``read_only``: only the run already made (None when
    there is none). ``parent``: the run a follow-up pass follows."""
    options, settings = prepared.options, prepared.settings
    store = storage.open_store(settings.staging, options.credentials)
    driver = PandasDriver(prepared, read_only)
    batch = service.open_service(settings, options.credentials)
    found = None
    if (read_only or not options.run.force) and prepared.sending.send.any():
        found = find_run(store, prepared.fingerprint, batch, partial(_rebuilt, prepared))
    if found is None and read_only:
        return None
    if found is None:
        guarded = options.run.max_cost is not None or options.run.max_rows is not None
        estimate = costs.estimate(prepared, count_tokens=options.run.max_cost is not None)
        if guarded:
            costs.guard(estimate, options.run.max_cost, options.run.max_rows)
        manifest = _new_manifest(prepared, storage.new_run_id(), parent)
        manifest["estimate"] = dataclasses.asdict(estimate)
        if not len(prepared.sent_rows):
            log.warning("no row has a prompt to send; no job was created")
            manifest["submitted"] = True
            return BatchRun(manifest, settings, options, driver, batch)
        manifest, won = record_run(store, manifest, force=options.run.force)
        if won:
            run = BatchRun(manifest, settings, options, driver, batch)
            _submit_jobs(run, prepared, store, resumed=False)
            return run
        found = manifest
    if not read_only:
        found = await_submission(store, found)
    run = BatchRun(found, settings, options, driver, batch)
    if not found["submitted"] and not read_only:
        _submit_jobs(run, prepared, store, resumed=True)
    run.reattached = True
    if not read_only and options.run.progress:
        progress.notice(reattached(run.id, found["created"], run.status().state))
    return run


def reattached(run_id: str, created: str, state: str) -> str:
    """The notice of a call that re-attached to the run it made before."""
    return (f"re-attached to {run_id} ({state}), made by this same call at {created}: no new "
            "job was created (force=True starts afresh).")


def _new_manifest(prepared: Prepared, run_id: str, parent: str = "") -> dict:
    return manifests.new(run_id, prepared.fingerprint, prepared.settings, prepared.options,
                         prepared.family.resource, len(prepared.df), len(prepared.sent_rows),
                         prepared.tag, parent=parent)


def _rebuilt(prepared: Prepared, run_id: str, jobs: list[JobInfo]) -> dict:
    """The manifest of run ``run_id`` of this call, rebuilt from its ``jobs`` (found by their
    fingerprint label): each job's slice of the sent rows is planned again."""
    manifest = _new_manifest(prepared, run_id)
    names = {job.display_name: job.name for job in jobs}
    first = planned = 0
    for number, (positions, _) in enumerate(plan.jobs_of(prepared)):
        planned += 1
        name = names.get(display_name(run_id, number))
        if name is not None and len(manifest["jobs"]) == number:
            manifest["jobs"].append({"number": number, "name": name, "first": first,
                                     "count": len(positions)})
        first += len(positions)
    manifest["submitted"] = len(manifest["jobs"]) == planned
    return manifest


def _submit_jobs(run: BatchRun, prepared: Prepared, store, resumed: bool) -> None:
    """Stage and create the run's jobs that do not exist yet, recording each in the manifest
    as soon as it exists (when ``resumed``, a job created by an earlier attempt that died
    before recording it is found by its display name)."""
    manifest, options = run.manifest, prepared.options
    inputs, outputs = _locations(run, prepared)
    files = prepared.rows.files
    with kept_alive(store, manifest):
        if files is not None and files.local:
            (inputs if inputs.hosts_files else outputs).upload(files.uploads)
        first, known = 0, len(manifest["jobs"])
        for number, (positions, requests) in enumerate(plan.jobs_of(prepared)):
            if number >= known:
                create_job(run.service(), store, manifest, number, prepared.family.resource,
                           partial(inputs.stage, number, requests), outputs.destination(number),
                           resumed, options.run.max_concurrent_jobs, first=first,
                           count=len(positions))
            first += len(positions)
            del requests
        manifest["submitted"] = True
        save(store, manifest)
    log.info("run %s: %d requests for %d rows in %d job(s), staged in %s", run.id,
             manifest["requests"], len(prepared.df), len(manifest["jobs"]), inputs)


def _locations(run: BatchRun, prepared: Prepared):
    return open_locations(run.id, prepared.settings, prepared.family.parser,
                          prepared.options.credentials, run.manifest["labels"],
                          prepared.rows.carried)


def result_of(run: BatchRun, prepared: Prepared, read_only: bool = False) -> Result:
    """The run's result for its prepared call: wait for the jobs (``read_only``: they must
    have ended), read their answers, join them, remove the staged inputs of a run that
    succeeded, and make the follow-up passes."""
    if not run.jobs:
        status = summarise([], [])
    elif read_only:
        status = run.status()
        if not status.finished or not run.manifest["submitted"]:
            raise InputError(f"{run.id} is still {status.state}: wait for it with "
                             f"pdbatch.attach({run.id!r}, staging=...).result(df).")
    else:
        status = run.wait()
    check_jobs(run.id, status.jobs)
    inputs, outputs = _locations(run, prepared)
    sent = prepared.sent_rows
    jobs = [(job, info, sent[job["first"]:job["first"] + job["count"]])
            for job, info in zip(run.manifest["jobs"], status.jobs, strict=True)]
    found = answers(outputs, jobs, prepared.options.result.include_response, run.service())
    result = joined(prepared, found,
                    run.id, f"Inputs are in {inputs}; any partial outputs in {outputs}.")
    if status.succeeded and run.jobs and not read_only \
            and not prepared.options.run.keep_staging:
        inputs.clean_up()
    follow_up(prepared, result, read_only)
    return result


def follow_up(prepared: Prepared, result: Result, read_only: bool = False) -> None:
    """The passes after a run, each a run of its own: re-ask answers that did not fit the
    schema, then retry failed and missing rows (``read_only``: only passes made before)."""
    run_options = prepared.options.run
    if prepared.schema and run_options.reask_invalid:
        _reask(prepared, result, read_only)
    if run_options.max_retries:
        _retry(prepared, result, read_only)


def _again(prepared: Prepared, rows: np.ndarray, tag: str, read_only: bool, parent: str,
           **changes) -> Result | None:
    """Ask ``rows`` of the frame again in a run of their own (no guard, no progress bar);
    the answers written before a job ended when it ended without results. None when
    ``read_only`` and no such pass was made."""
    options: Options = prepared.options.replace(progress=False, max_cost=None, max_rows=None,
                                                **changes)
    again = prepare(prepared.df.iloc[rows], options, f"{prepared.tag}/{tag}")
    run = start(again, read_only, parent)
    if run is None:
        return None
    try:
        return result_of(run, again, read_only)
    except JobError as err:
        if err.result is None:
            raise
        log.warning("a follow-up pass ended without results for some rows: %s", err)
        return Result(err.result, err.kinds, again.options.result.result_prefix)


def _run_of(result: Result) -> str:
    """The run whose answers ``result`` holds (the parent of its follow-up passes)."""
    return result.frame.attrs.get("pdbatch_run", "")


def _new_columns(prepared: Prepared, other: Result):
    return other.frame.columns.difference(prepared.df.columns, sort=False)


def _retry(prepared: Prepared, result: Result, read_only: bool) -> None:
    """Ask failed (transient) and missing rows again, pass after pass, and count attempts."""
    sent_rows = prepared.rows.reasons == ""
    attempts = np.where(sent_rows, 1, 0)
    for number in range(1, prepared.options.run.max_retries + 1):
        again = np.flatnonzero(sent_rows & result.retryable())
        if not len(again):
            break
        log.info("asking %d failed or missing rows again", len(again))
        retry = _again(prepared, again, f"retry-{number}", read_only, _run_of(result),
                       max_retries=0)
        if retry is None:
            break
        attempts[again] += 1
        result.update(again, retry, _new_columns(prepared, retry))
        if not (retry.kinds == Kind.OK).any():
            log.warning("a retry pass answered none of %d rows; stopping", len(again))
            break
    frame = result.frame  # attempts go before job, with the other bookkeeping columns
    frame.insert(frame.columns.get_loc(result.prefix + "job"), result.prefix + "attempts",
                 pd.array(attempts, dtype="Int64"))


def _reask(prepared: Prepared, result: Result, read_only: bool) -> None:
    """Ask the rows with an answer that did not fit the schema once more, and keep the new
    answers."""
    again = np.flatnonzero(result.kinds == Kind.INVALID)
    if not len(again):
        return
    log.info("asking %d rows again whose answers did not fit response_schema", len(again))
    retry = _again(prepared, again, "reask", read_only, _run_of(result), reask_invalid=False,
                   max_retries=0)
    if retry is not None:
        result.update(again, retry, _new_columns(prepared, retry))
