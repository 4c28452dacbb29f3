"""``BatchRun``: a handle on a submitted run — its state, waiting with progress, its result,
cancelling — rebuilt from its manifest in any process (``pdbatch.attach``). How its result is
made is its driver's business (``runs.local`` for pandas frames, ``runs.dask`` for Dask)."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol

from .. import config, families, service
from ..errors import InputError, ServiceError
from ..options import Options
from ..progress import bar as progress_bar
from ..service import BatchService, JobInfo
from ..usage import Usage, usage_of
from .jobs import output_lines
from .manifest import RUN_LABEL, Manifest

if TYPE_CHECKING:
    import dask.dataframe as dd
    import pandas as pd
    from tqdm import tqdm

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunStatus:
    """A run's state as of one look: ``state`` is ``succeeded`` when every job succeeded,
    else the state of the first job that ended otherwise (``failed``, ``cancelled``,
    ``expired``, ``paused``), or, while jobs run, ``running`` (or ``pending``, ``queued``).

    Attributes:
        state: the run's state word, as above.
        jobs: each job's ``JobInfo`` (name, state, counts).
        requests: the requests sent.
        done: the requests answered or failed so far (from the jobs' completion counts).
        failed: the requests that failed.
    """

    state: str
    jobs: list[JobInfo]
    requests: int  # requests sent
    done: int  # requests answered or failed so far, from the jobs' completion counts
    failed: int  # requests that failed

    @property
    def finished(self) -> bool:
        """Whether every job has ended (in any state)."""
        return all(info.done for info in self.jobs)

    @property
    def succeeded(self) -> bool:
        """Whether every job ended SUCCEEDED."""
        return all(info.succeeded for info in self.jobs)

    @property
    def summary(self) -> str:
        """One line: state, requests done (and failed) and jobs ended."""
        failed = f", {self.failed:,} failed" if self.failed else ""
        ended = sum(info.done for info in self.jobs)
        return (f"{self.state}: {self.done:,}/{self.requests:,} requests done{failed}, "
                f"{ended}/{len(self.jobs)} jobs ended")

    def __repr__(self) -> str:
        return f"<RunStatus {self.summary}>"

    def _repr_html_(self) -> str:
        return (f"<div><b>RunStatus</b> {html.escape(self.summary)}"
                f"{_jobs_table(self.jobs, [info.name for info in self.jobs])}</div>")


def _jobs_table(infos: list[JobInfo], names: list[str]) -> str:
    """An HTML table of jobs: a console link each, state, requests answered and failed."""
    known = {info.name: info for info in infos}
    rows = []
    for name in names:
        info = known.get(name)
        link = html.escape(service.console_link(name), quote=True)
        cells = ([info.state_word, f"{info.successful:,}", f"{info.failed:,}"] if info
                 else ["not looked at yet", "", ""])
        rows.append(f"<tr><td><a href=\"{link}\" target=\"_blank\">"
                    f"{html.escape(name.rsplit('/', 1)[-1])}</a></td>"
                    + "".join(f"<td>{html.escape(c)}</td>" for c in cells) + "</tr>")
    return ("<table><tr><th>job</th><th>state</th><th>answered</th><th>failed</th></tr>"
            f"{''.join(rows)}</table>")


def summarise(jobs: list[JobInfo], counts: list[int]) -> RunStatus:
    """The run's status from its jobs' infos (``counts``: each job's number of requests)."""
    states = [info.state_word for info in jobs]
    waiting = [s for info, s in zip(jobs, states, strict=True) if not info.done]
    ended = [s for info, s in zip(jobs, states, strict=True) if info.done and not info.succeeded]
    if waiting:
        state = "running" if "running" in waiting else waiting[0]
    else:
        state = ended[0] if ended else "succeeded"
    done = sum(count if info.done and not info.successful + info.failed
               else min(count, info.successful + info.failed)
               for info, count in zip(jobs, counts, strict=True))
    return RunStatus(state, jobs, sum(counts), done, sum(info.failed for info in jobs))


class Driver(Protocol):
    """Makes a run's result: the pandas driver or the Dask driver."""

    def result(self, run: BatchRun, df=None):
        """The frame with the result columns (``df``: the frame the run was made from, when
        the driver does not hold it)."""


class BatchRun:
    """A submitted run. ``run.status()`` looks at its jobs, ``run.wait()`` waits for them with
    a progress bar, ``run.result()`` returns the frame with the result columns (waiting first),
    ``run.cancel()`` cancels what still runs. ``run.id`` re-attaches it anywhere:
    ``pdbatch.attach(run.id, staging=...)``."""

    def __init__(self, manifest: Manifest, settings: config.Settings, options: Options,
                 driver: Driver, batch: BatchService | None = None):
        self.manifest, self.settings, self.options = manifest, settings, options
        self._driver = driver
        self._service = batch  # made when first needed, unless the caller has one
        self._last: RunStatus | None = None
        self.reattached = False  # the call found this run instead of making it
        self._usage: Usage | None = None  # once usage() was asked for

    @property
    def id(self) -> str:
        """The run id (``run-YYYYMMDD-HHMMSS-xxxxxx``): ``pdbatch.attach(run.id, staging=...)``
        picks the run up in another process."""
        return self.manifest.run

    @property
    def jobs(self) -> list[str]:
        """The resource names of the run's jobs."""
        return self.manifest.job_names

    def service(self) -> BatchService:
        """The batch service the run's jobs are in."""
        if self._service is None:
            self._service = service.open_service(self.settings, self.options.credentials)
        return self._service

    def status(self) -> RunStatus:
        """The run's state now (``service.look``: one list call for its unfinished jobs where
        the service lists cheaply, else a GET each)."""
        known = {info.name: info for info in (self._last.jobs if self._last else [])}
        infos = service.look(self.service(), self.jobs, known, (RUN_LABEL, self.id))
        self._last = summarise(infos, self._counts())
        return self._last

    def wait(self, timeout: float | None = None, progress: bool | None = None,
             cancel_on_interrupt: bool | None = None, *,
             bar: tqdm | None = None) -> RunStatus:
        """Wait until every job has ended, showing progress (``tqdm``: a notebook bar or a
        terminal bar) from the jobs' completion counts, or their states when they give none.
        ``bar``: a tqdm-like bar to show it on instead (the Dask driver's, on a worker).

        TimeoutError after ``timeout`` seconds; the jobs go on. An interrupt (Ctrl-C, a
        notebook's stop button) leaves the jobs running and logs how to re-attach, or, with
        ``cancel_on_interrupt=True``, cancels them. Defaults come from the call's options.
        """
        progress = self.options.run.progress if progress is None else progress
        if cancel_on_interrupt is None:
            cancel_on_interrupt = self.options.run.cancel_on_interrupt
        shown = []  # the bar, once made

        def show(infos: list[JobInfo]) -> None:
            self._last = summarise(infos, self._counts())
            if not shown:
                shown.append(bar if bar is not None and progress else progress_bar(
                    self.manifest.requests, self.id, progress))
            shown[0].update(self._last.done - shown[0].n)
            finished = sum(info.done for info in infos)
            shown[0].set_postfix_str(f"{finished}/{len(infos)} jobs done, {self._last.state}")

        try:
            if self.reattached and self.jobs and self.status().finished:
                return self._last  # an earlier run, already done: no progress to show
            show(service.wait(self.service(), self.jobs, on_poll=show, timeout=timeout,
                              label=(RUN_LABEL, self.id)))
        except ServiceError as err:
            raise ServiceError(f"{err} The jobs of {self.id} go on without us: re-run the same "
                               f"call to pick them up, or {self.attach_call}.") from err
        except KeyboardInterrupt:
            self.interrupted(cancel_on_interrupt)
            raise
        finally:
            for made in shown:
                made.close()
        return self._last

    def interrupted(self, cancel: bool) -> None:
        """After an interrupt: cancel the run's jobs (``cancel``), or say that they keep
        running and how to pick them up."""
        where = service.kind(self.settings).title
        if cancel:
            self.cancel()
            log.warning("Interrupted: asked %s to cancel the jobs of %s.", where, self.id)
        else:
            log.warning("Interrupted: the jobs of %s keep running on %s. Re-run the same "
                        "call to pick them up, or: %s", self.id, where, self.attach_call)

    @property
    def attach_call(self) -> str:
        """The call that picks this run up in another process."""
        return service.kind(self.settings).attach_call(self.id, self.settings)

    def cancel(self) -> None:
        """Ask the service to cancel every job that has not ended (answers written so far
        stay readable)."""
        for info in self.status().jobs:
            if not info.done:
                self.service().cancel(info.name)

    def result(self, df: pd.DataFrame | dd.DataFrame | None = None
               ) -> pd.DataFrame | dd.DataFrame:
        """The frame with the result columns, waiting for the jobs first. A run rebuilt by
        ``pdbatch.attach`` needs ``df``: the frame it was made from (checked by fingerprint).

        Raises JobError (with ``.result``: the answers that were written) when a job ended
        without results and the run's options do not ask its rows again.

        A Dask run returns the lazy frame of ``batch_predict`` (its jobs are waited for when
        it is computed); attached by id, it needs ``df``: the Dask frame it was made from."""
        return self._driver.result(self, df)

    def usage(self, df: pd.DataFrame | dd.DataFrame | None = None,
              prices: dict[str, tuple[float, float]] | None = None) -> Usage:
        """What the run did and cost: rows by outcome (from its result: ``df`` as for
        ``result``; for a Dask run only the status column is computed), the tokens of every
        request its jobs answered (prompt, output, thinking, cached), the cost at batch prices
        (``prices`` as in ``estimate``) beside the estimate made before it was submitted; in a
        notebook, with a chart. Follow-up passes are runs of their own (``pdbatch.runs()``
        lists them with this run as their ``parent``)."""
        status = self.status()
        if not status.finished:
            raise InputError(f"{self.id} is still {status.state}: its usage is known once it "
                             "has ended.")
        frame = self.result(df)
        column = frame[self.options.result.result_prefix + "status"]
        if hasattr(column, "__dask_graph__"):
            column = column.compute()
        lines = output_lines(self.id, self.settings, self.options, self.manifest.jobs,
                             status.jobs, self.options.credentials)
        estimate = (self.manifest.estimate or {}).get("cost")
        family = families.resolve(self.options.request.model)
        self._usage = usage_of(column, lines, self.id, self.manifest.model, family.task,
                               estimate, prices, family.parser.thoughts_in_output)
        return self._usage

    def _counts(self) -> list[int]:
        return self.manifest.counts

    # ------------------------------------------------------------------ display
    def _described(self) -> str:
        if self._last is None:
            return f"submitted, {self.manifest.requests:,} requests"
        return self._last.summary

    def _elapsed(self) -> str:
        """How long since the run was made: frozen at its last job's end once it ended."""
        created = datetime.fromisoformat(self.manifest.created)
        infos = self._last.jobs if self._last else []
        ended = self._last is not None and self._last.finished and infos \
            and all(info.end_time for info in infos)
        end = max(datetime.fromisoformat(info.end_time) for info in infos) if ended \
            else datetime.now(timezone.utc)
        seconds = max(0, int((end - created).total_seconds()))
        took = f"{seconds // 3600}h {seconds // 60 % 60:02d}m {seconds % 60:02d}s"
        return f"took {took}" if ended else f"{took} since submit"

    def __repr__(self) -> str:
        return (f"<BatchRun {self.id} {self.manifest.model}, {self._described()}, "
                f"{self._elapsed()}>")

    def _repr_html_(self) -> str:
        return (f"<div><b>BatchRun</b> <code>{html.escape(self.id)}</code> · "
                f"{html.escape(self.manifest.model)} · {html.escape(self._elapsed())}<br>"
                f"{html.escape(self._described())}"
                f"{_jobs_table(self._last.jobs if self._last else [], self.jobs)}"
                f"{self._usage._repr_html_() if self._usage else ''}</div>")
