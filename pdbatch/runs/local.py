"""The pandas driver: prepare -> (re-attach or) plan -> stage -> submit -> wait -> collect ->
join, then the follow-up passes (re-asks and retries), each a run of its own.

A run is remembered in its staging location (``storage.RunStore``) under its fingerprint
before its first job is created, and each job is recorded as soon as it exists, so the same
call made again re-attaches instead of paying twice. ``read_only`` runs (``read_results``)
only read what runs made: they create no job and wait for none.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import numpy as np
import pandas as pd

from .. import costs, plan, progress, storage
from ..errors import InputError, JobError
from ..join import Kind, Result, joined, vector_sink
from ..options import Options
from ..prepare import Prepared, prepare
from . import lifecycle
from . import manifest as manifests
from .handle import BatchRun
from .jobs import answers, open_locations
from .lifecycle import Planned
from .manifest import Manifest

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
        prepared = prepare(df, run.options, run.manifest.tag)
        if prepared.fingerprint != run.manifest.fingerprint:
            raise InputError(f"This frame (rows, prompts or files) is not the one {run.id} was "
                             "made from; pass that frame to run.result(df).")
        self.prepared = prepared
        return prepared


class PandasCall:
    """A pandas call for the lifecycle: one frame, whose jobs are consecutive slices of its
    sent rows, each staged as it is created (one job's lines in memory at a time)."""

    def __init__(self, prepared: Prepared, parent: str = ""):
        self.prepared, self.parent = prepared, parent
        self.settings, self.options = prepared.settings, prepared.options
        self.fingerprint, self.resource = prepared.fingerprint, prepared.family.resource
        self.sends = bool(len(prepared.sent_rows))

    def new(self, run_id: str) -> Manifest:
        prepared = self.prepared
        return manifests.new(run_id, prepared.fingerprint, prepared.settings, prepared.options,
                             prepared.family.resource, len(prepared.df),
                             len(prepared.sent_rows), prepared.tag, parent=self.parent)

    def planned(self, manifest: Manifest) -> Iterator[Planned]:
        first = 0
        for number, (positions, requests) in enumerate(plan.jobs_of(self.prepared)):
            yield ({"first": first, "count": len(positions)},
                   lambda inputs, number=number, requests=requests: inputs.stage(number,
                                                                                 requests))
            first += len(positions)

    def estimate(self, count_tokens: bool) -> costs.Estimate:
        return costs.estimate(self.prepared, count_tokens=count_tokens)

    def locations(self, manifest: Manifest):
        return _locations(manifest, self.prepared)

    def upload(self, inputs, outputs) -> None:
        files = self.prepared.rows.files
        if files is not None and files.local:
            (inputs if inputs.hosts_files else outputs).upload(files.uploads)

    def discard(self) -> None:
        """Nothing: a pandas call stages nothing before its run is recorded."""

    def notice(self, text: str) -> None:
        progress.notice(text)


def start(prepared: Prepared, read_only: bool = False, parent: str = "") -> BatchRun | None:
    """The run of a prepared call: the one this call already made (unless ``force``), else a
    new one, with every job submitted. ``read_only``: only the run already made (None when
    there is none). ``parent``: the run a follow-up pass follows."""
    started = lifecycle.start(PandasCall(prepared, parent), storage.new_run_id(), read_only)
    if started is None:
        return None
    manifest, found = started
    run = BatchRun(manifest, prepared.settings, prepared.options,
                   PandasDriver(prepared, read_only))
    run.reattached = found
    return run


def _locations(manifest: Manifest, prepared: Prepared):
    return open_locations(manifest.run, prepared.settings, prepared.family.parser,
                          prepared.options.credentials, manifest.labels, prepared.rows.carried)


def result_of(run: BatchRun, prepared: Prepared, read_only: bool = False) -> Result:
    """The run's result for its prepared call: wait for the jobs (``read_only``: they must
    have ended), read their answers, join them, remove the staged inputs of a run that
    succeeded, and make the follow-up passes."""
    status = lifecycle.ended(run, read_only)
    inputs, outputs = _locations(run.manifest, prepared)
    sent = prepared.sent_rows
    jobs = [(job, info, sent[job.first:job.first + job.count])
            for job, info in zip(run.manifest.jobs, status.jobs, strict=True)]
    sink = vector_sink(prepared)
    found = answers(outputs, jobs, prepared.options.result.include_response, run.service(),
                    sink)
    result = joined(prepared, found,
                    run.id, f"Inputs are in {inputs}; any partial outputs in {outputs}.", sink)
    del found, sink  # the result holds the vectors: not the lines' bookkeeping, in the passes
    lifecycle.tidy(run, status, read_only, lambda: inputs)
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
