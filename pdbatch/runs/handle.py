"""``BatchRun``: a handle on a submitted run — its state, waiting with progress, its result,
cancelling — rebuilt from its manifest in any process (``pdbatch.attach``). How its result is
made is its driver's business (``runs.local`` for pandas frames, ``runs.dask`` for Dask)."""

from __future__ import annotations

import html
import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol

from .. import config, service
from ..errors import ServiceError
from ..options import Options
from ..service import BatchService, JobInfo

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunStatus:
    """A run's state as of one look: ``state`` is ``succeeded`` when every job succeeded,
    else the state of the first job that ended otherwise (``failed``, ``cancelled``,
    ``expired``, ``paused``), or, while jobs run, ``running`` (or ``pending``, ``queued``)."""

    state: str
    jobs: list[JobInfo]
    requests: int  # requests sent
    done: int  # requests answered or failed so far, from the jobs' completion counts
    failed: int  # requests that failed

    @property
    def finished(self) -> bool:
        return all(info.done for info in self.jobs)

    @property
    def succeeded(self) -> bool:
        return all(info.succeeded for info in self.jobs)


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

    def __init__(self, manifest: dict, settings: config.Settings, options: Options,
                 driver: Driver, batch: BatchService | None = None):
        self.manifest, self.settings, self.options = manifest, settings, options
        self._driver = driver
        self._service = batch  # made when first needed, unless the caller has one
        self._last: RunStatus | None = None

    @property
    def id(self) -> str:
        return self.manifest["run"]

    @property
    def jobs(self) -> list[str]:
        """The resource names of the run's jobs."""
        return [job["name"] for job in self.manifest["jobs"]]

    def service(self) -> BatchService:
        """The batch service the run's jobs are in."""
        if self._service is None:
            self._service = service.open_service(self.settings, self.options.credentials)
        return self._service

    def status(self) -> RunStatus:
        """The run's state now (one GET per unfinished job)."""
        known = {info.name: info for info in (self._last.jobs if self._last else [])}
        infos = [known[name] if name in known and known[name].done else self.service().get(name)
                 for name in self.jobs]
        self._last = summarise(infos, self._counts())
        return self._last

    def wait(self, timeout: float | None = None, progress: bool | None = None,
             cancel_on_interrupt: bool | None = None, *, bar=None) -> RunStatus:
        """Wait until every job has ended, showing progress (``tqdm``: a notebook bar or a
        terminal bar) from the jobs' completion counts, or their states when they give none.
        ``bar``: a tqdm-like bar to show it on instead (the Dask driver's, on a worker).

        TimeoutError after ``timeout`` seconds; the jobs go on. An interrupt (Ctrl-C, a
        notebook's stop button) leaves the jobs running and logs how to re-attach, or, with
        ``cancel_on_interrupt=True``, cancels them. Defaults come from the call's options.
        """
        from tqdm.auto import tqdm

        progress = self.options.run.progress if progress is None else progress
        if cancel_on_interrupt is None:
            cancel_on_interrupt = self.options.run.cancel_on_interrupt
        if bar is None or not progress:
            bar = tqdm(total=self.manifest["requests"], unit="row", desc=self.id,
                       disable=not progress)

        def show(infos: list[JobInfo]) -> None:
            self._last = summarise(infos, self._counts())
            bar.update(self._last.done - bar.n)
            finished = sum(info.done for info in infos)
            bar.set_postfix_str(f"{finished}/{len(infos)} jobs done, {self._last.state}")

        try:
            show(service.wait(self.service(), self.jobs, on_poll=show, timeout=timeout))
        except ServiceError as err:
            raise ServiceError(f"{err} The jobs of {self.id} go on without us: re-run the same "
                               f"call to pick them up, or pdbatch.attach({self.id!r}, "
                               f"staging={self.settings.staging!r}).") from err
        except KeyboardInterrupt:
            if cancel_on_interrupt:
                self.cancel()
                log.warning("Interrupted: asked Vertex AI to cancel the jobs of %s.", self.id)
            else:
                log.warning("Interrupted: the jobs of %s keep running on Vertex AI. Re-run the "
                            "same call to pick them up, or: pdbatch.attach(%r, staging=%r)",
                            self.id, self.id, self.settings.staging)
            raise
        finally:
            bar.close()
        return self._last

    def cancel(self) -> None:
        """Ask the service to cancel every job that has not ended (answers written so far
        stay readable)."""
        for info in self.status().jobs:
            if not info.done:
                self.service().cancel(info.name)

    def result(self, df=None):
        """The frame with the result columns, waiting for the jobs first. A run rebuilt by
        ``pdbatch.attach`` needs ``df``: the frame it was made from (checked by fingerprint).

        Raises JobError (with ``.result``: the answers that were written) when a job ended
        without results and the run's options do not ask its rows again.

        A Dask run returns the lazy frame of ``batch_predict`` (its jobs are waited for when
        it is computed); attached by id, it needs ``df``: the Dask frame it was made from."""
        return self._driver.result(self, df)

    def _counts(self) -> list[int]:
        return [job["count"] for job in self.manifest["jobs"]]

    # ------------------------------------------------------------------ display
    def _described(self) -> tuple[str, str]:
        status = self._last
        state = status.state if status else "submitted"
        counts = (f"{status.done:,}/{status.requests:,} requests done"
                  + (f", {status.failed:,} failed" if status.failed else "")) if status \
            else f"{self.manifest['requests']:,} requests"
        return state, counts

    def _elapsed(self) -> str:
        created = datetime.fromisoformat(self.manifest["created"])
        seconds = int((datetime.now(timezone.utc) - created).total_seconds())
        return f"{seconds // 3600}h {seconds // 60 % 60:02d}m {seconds % 60:02d}s"

    def __repr__(self) -> str:
        state, counts = self._described()
        return (f"<BatchRun {self.id} {self.manifest['model']}: {state}, {counts}, "
                f"{len(self.jobs)} job(s), {self._elapsed()} since submit>")

    def _repr_html_(self) -> str:
        state, counts = self._described()
        known = {info.name: info for info in (self._last.jobs if self._last else [])}
        rows = "".join(
            f"<tr><td><a href=\"{html.escape(service.console_link(name), quote=True)}\" "
            f"target=\"_blank\">{html.escape(name.rsplit('/', 1)[-1])}</a></td>"
            f"<td>{html.escape(known[name].state_word if name in known else '?')}</td></tr>"
            for name in self.jobs)
        return (f"<div><b>BatchRun</b> <code>{html.escape(self.id)}</code> · "
                f"{html.escape(self.manifest['model'])}<br>state: <b>{html.escape(state)}</b>"
                f" · {html.escape(counts)} · {self._elapsed()} since submit"
                f"<table><tr><th>job</th><th>state</th></tr>{rows}</table></div>")
