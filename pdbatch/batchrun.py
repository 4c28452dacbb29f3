"""``BatchRun``: a handle on a submitted run — its state, waiting with progress, its result,
cancelling — rebuilt from its manifest in any process (``pdbatch.attach``)."""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np
import pandas as pd
import pyarrow as pa

from . import config, engine, structured
from .errors import InputError, JobError
from .jobs import JobClient, JobInfo
from .locations import BigQueryLocation, GcsLocation
from .prepare import Prepared, prepare

log = logging.getLogger(__name__)

#: States after which a run's rows may be asked again (with ``max_retries``); EXPIRED only
#: with ``retry_expired=True``.
_RETRYABLE = {"JOB_STATE_FAILED"}


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
    states = [_state_word(info) for info in jobs]
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


class BatchRun:
    """A submitted run. ``run.status()`` looks at its jobs, ``run.wait()`` waits for them with
    a progress bar, ``run.result()`` returns the frame with the result columns (waiting first),
    ``run.cancel()`` cancels what still runs. ``run.id`` re-attaches it anywhere:
    ``pdbatch.attach(run.id, staging=...)``."""

    def __init__(self, manifest: dict, settings: config.Settings, credentials=None,
                 prepared: Prepared | None = None,
                 follow_up: Callable[[Prepared, pd.DataFrame], None] | None = None,
                 frame=None):
        self.manifest, self.settings, self._credentials = manifest, settings, credentials
        self._prepared, self._follow_up = prepared, follow_up
        self._frame = frame  # the Dask frame of a Dask run
        self._client: JobClient | None = None
        self._last: RunStatus | None = None

    @property
    def id(self) -> str:
        return self.manifest["run"]

    @property
    def jobs(self) -> list[str]:
        """The resource names of the run's jobs."""
        return [job["name"] for job in self.manifest["jobs"]]

    def client(self) -> JobClient:
        if self._client is None:
            self._client = JobClient(self.settings, self._credentials)
        return self._client

    def status(self) -> RunStatus:
        """The run's state now (one GET per unfinished job)."""
        known = {info.name: info for info in (self._last.jobs if self._last else [])}
        infos = [known[name] if name in known and known[name].done else self.client().get(name)
                 for name in self.jobs]
        self._last = summarise(infos, self._counts())
        return self._last

    def wait(self, timeout: float | None = None, progress: bool | None = None,
             cancel_on_interrupt: bool | None = None) -> RunStatus:
        """Wait until every job has ended, showing progress (``tqdm``: a notebook bar or a
        terminal bar) from the jobs' completion counts, or their states when they give none.

        TimeoutError after ``timeout`` seconds; the jobs go on. An interrupt (Ctrl-C, a
        notebook's stop button) leaves the jobs running and logs how to re-attach, or, with
        ``cancel_on_interrupt=True``, cancels them. Defaults come from the call's options.
        """
        from tqdm.auto import tqdm

        options = self._prepared.arguments if self._prepared else self.manifest["options"]
        progress = options.get("progress", True) if progress is None else progress
        if cancel_on_interrupt is None:
            cancel_on_interrupt = options.get("cancel_on_interrupt", False)
        bar = tqdm(total=self.manifest["requests"], unit="row", desc=self.id,
                   disable=not progress)

        def show(infos: list[JobInfo]) -> None:
            self._last = summarise(infos, self._counts())
            bar.update(self._last.done - bar.n)
            finished = sum(info.done for info in infos)
            bar.set_postfix_str(f"{finished}/{len(infos)} jobs done, {self._last.state}")

        try:
            show(self.client().wait(self.jobs, on_poll=show, timeout=timeout))
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
                self.client().cancel(info.name)

    def result(self, df: pd.DataFrame | None = None) -> pd.DataFrame:
        """The frame with the result columns, waiting for the jobs first. A run rebuilt by
        ``pdbatch.attach`` needs ``df``: the frame it was made from (checked by fingerprint).

        Raises JobError (with ``.result``: the answers that were written) when a job ended
        without results and the run's options do not ask its rows again.

        A Dask run returns the lazy frame of ``batch_predict`` (its jobs are waited for when
        it is computed); attached by id, it needs ``df``: the Dask frame it was made from."""
        if self.manifest.get("dask"):
            from . import dask as on_dask

            frame = df if df is not None else self._frame
            if frame is None:
                raise InputError(f"{self.id} was attached by id: pass the Dask frame it was "
                                 "made from, run.result(ddf).")
            return on_dask.result_frame(frame, self.manifest, self._credentials)
        prepared = self._prepared_for(df)
        status = self.wait() if self.jobs else summarise([], [])
        inputs, outputs = self.locations(prepared)
        con = engine.connect()
        sent = prepared.sent_rows
        answers = [(info, sent[job["first"]:job["first"] + job["count"]],
                    outputs.collect(con, job["number"], info.output_dir,
                                    prepared.arguments["include_response"]))
                   for job, info in zip(self.manifest["jobs"], status.jobs, strict=True)]
        out = joined(prepared, answers, self.id, con, f"Inputs are in {inputs}; any partial "
                     f"outputs in {outputs}.")
        if status.succeeded and self.jobs and not prepared.arguments["keep_staging"]:
            inputs.clean_up()
            if outputs is not inputs:
                outputs.clean_up()  # uploaded files, when they went to the output location
        if self._follow_up:
            self._follow_up(prepared, out)
        return out

    def _prepared_for(self, df: pd.DataFrame | None) -> Prepared:
        if df is None:
            if self._prepared is None:
                raise InputError(f"{self.id} was attached by id: pass the frame it was made "
                                 "from, run.result(df).")
            return self._prepared
        if self._prepared is not None and df is self._prepared.df:
            return self._prepared
        options = {**self.manifest["options"], "credentials": self._credentials}
        prepared = prepare(df, options, self.manifest["pass"])
        if prepared.fingerprint != self.manifest["fingerprint"]:
            raise InputError(f"This frame (rows, prompts or files) is not the one {self.id} was "
                             "made from; pass that frame to run.result(df).")
        self._prepared = prepared
        return prepared

    def locations(self, prepared: Prepared) -> tuple:
        """Where the run's inputs are staged and where its jobs write (the same object when
        they are the same place)."""

        def location(uri: str):
            parser = prepared.family.parser
            if uri.startswith("bq://"):
                return BigQueryLocation(uri, self.id, parser, prepared.bq,
                                        self.manifest["labels"], prepared.carried)
            return GcsLocation(uri, self.id, parser)

        inputs = location(self.settings.staging)
        if self.settings.output_location == self.settings.staging:
            return inputs, inputs
        return inputs, location(self.settings.output_location)

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
            f"<tr><td><a href=\"{html.escape(_console_link(name), quote=True)}\" "
            f"target=\"_blank\">{html.escape(name.rsplit('/', 1)[-1])}</a></td>"
            f"<td>{html.escape(_state_word(known[name]) if name in known else '?')}</td></tr>"
            for name in self.jobs)
        return (f"<div><b>BatchRun</b> <code>{html.escape(self.id)}</code> · "
                f"{html.escape(self.manifest['model'])}<br>state: <b>{html.escape(state)}</b>"
                f" · {html.escape(counts)} · {self._elapsed()} since submit"
                f"<table><tr><th>job</th><th>state</th></tr>{rows}</table></div>")


def joined(prepared: Prepared, answers: list[tuple[JobInfo, np.ndarray, pa.Table]],
           run_id: str, con, where: str) -> pd.DataFrame:
    """The prepared frame with the result columns from each job's parsed ``answers`` (its
    info, the positions of its rows and its output lines, in row order). Raises JobError
    (with ``.result``) when a job ended without results and the call's options do not ask
    its rows again."""
    a = prepared.arguments
    results = prepared.results()
    for info, positions, parsed in answers:
        results.add_job(info.name, positions, parsed, "" if info.succeeded else _ended(info))
    out = results.join(prepared.df, a["result_prefix"])
    out.attrs["pdbatch_run"] = run_id  # read_results(run=...) reads these answers again
    if prepared.schema:
        structured.add_columns(out, prepared.schema, a["result_prefix"], a["expand"], con)
    infos = [info for info, _, _ in answers]
    ended = [info for info in infos if not info.succeeded]
    if ended:
        retryable = _RETRYABLE | ({"JOB_STATE_EXPIRED"} if a["retry_expired"] else set())
        if not a["max_retries"] or any(info.state not in retryable for info in ended):
            raise JobError(_ended_message(ended, infos, where), out)
        log.warning("%d of %d jobs of %s ended without results; asking their unanswered rows "
                    "again", len(ended), len(infos), run_id)
    return out


def _state_word(info: JobInfo) -> str:
    return info.state.removeprefix("JOB_STATE_").lower()


def _console_link(name: str) -> str:
    """The Cloud console page of a job ``projects/P/locations/L/batchPredictionJobs/ID``."""
    parts = name.split("/")
    return (f"https://console.cloud.google.com/vertex-ai/locations/{parts[3]}/batch-predictions/"
            f"{parts[5]}?project={parts[1]}")


def _ended(info: JobInfo) -> str:
    error = f": {info.error_message}" if info.error_message else ""
    return f"job {info.name} ended {info.state}{error} before answering this row"


def _ended_message(ended, infos, where: str) -> str:
    lines = [f"{len(ended)} of {len(infos)} batch job(s) ended without results:"]
    for info in ended:
        error = f": {info.error_message} (code {info.error_code})" if info.error_message else ""
        lines.append(f"  {info.name} {info.state}{error}")
    lines.append(f"{where} The answers that were written are in this error's .result; "
                 "max_retries=N asks the other rows again (EXPIRED jobs: with "
                 "retry_expired=True).")
    return "\n".join(lines)

