"""What every batch service gives: ``JobInfo``, job states, the ``BatchService`` protocol, and
``wait``, which polls any of them."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..storage import Destination, Staged

from ..config import retry_deadline
from ..errors import InputError

log = logging.getLogger(__name__)

#: The label every job of a run carries (its run id).
RUN_LABEL = "pdbatch-run"
#: The label every job of a run carries (the call's fingerprint).
FINGERPRINT_LABEL = "pdbatch-fingerprint"
#: Labels pdbatch sets on every job, which a user's ``labels=`` may not name.
RESERVED_LABELS = (RUN_LABEL, FINGERPRINT_LABEL)
SUCCESS_STATES = frozenset({"JOB_STATE_SUCCEEDED", "JOB_STATE_PARTIALLY_SUCCEEDED"})
#: Terminal states. PAUSED is listed because a paused job does nothing until someone resumes it.
TERMINAL_STATES = SUCCESS_STATES | {
    "JOB_STATE_FAILED", "JOB_STATE_CANCELLED", "JOB_STATE_EXPIRED", "JOB_STATE_PAUSED",
}
_FIRST_POLL, _MAX_POLL, _GROWTH = 0.25, 30.0, 1.5


@dataclass(frozen=True)
class JobInfo:
    """What pdbatch needs to know of a job after a GET."""

    name: str
    state: str
    output_dir: str
    error_code: int
    error_message: str
    successful: int
    failed: int
    labels: Mapping[str, str] = field(default_factory=dict)
    input_uri: str = ""  # the first input file, or the input table
    display_name: str = ""
    partial_failures: tuple[str, ...] = ()  # e.g. input files the job could not read
    end_time: str = ""  # when the job ended (ISO 8601, UTC); "" while it runs

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def succeeded(self) -> bool:
        return self.state in SUCCESS_STATES

    @property
    def state_word(self) -> str:
        """``running``, ``succeeded``, ... for people."""
        return self.state.removeprefix("JOB_STATE_").lower()


class BatchService(Protocol):
    """A batch prediction service for one project and location."""

    #: Whether one list call by label is cheaper than a GET per job (``wait`` then lists).
    lists_cheaply: bool
    #: Whether creators of the same run on several machines converge through the job list
    #: (runs are remembered per machine, so no claim is shared).
    converges: bool

    def create(self, display_name: str, model: str, staged: Staged,
               destination: Destination, labels: Mapping[str, str]) -> str:
        """Create a job reading what storage ``staged``, writing to ``destination``; its
        name. A create whose answer was lost is found (by display name
        and run label) before it is tried again, so a job is never created twice."""

    def find(self, display_name: str, run_id: str) -> str | None:
        """The job of run ``run_id`` with this display name, if one exists."""

    def get(self, name: str) -> JobInfo: ...

    def labelled(self, key: str, value: str) -> list[JobInfo]:
        """Every job carrying the label ``key=value``, oldest first."""

    def cancel(self, name: str) -> None: ...

    def count_tokens(self, model: str, texts: list[str], system: str) -> int:
        """Input tokens of these prompts (with a system instruction) by the service's
        countTokens; raises when it does not answer."""


def gone(name: str, where: str) -> Exception:
    """The error for a recorded job or batch the service does not have (any more), in one line
    with the way out."""
    return InputError(f"{name}, recorded by this run, is not on {where} (it was deleted, or "
                      "the run was made against another endpoint, project or key): pass "
                      "force=True to start the call afresh.")


class ServiceKind(Protocol):
    """What varies by batch service, asked before (or without) connecting to it: the class
    of its ``BatchService`` (calling it with settings and credentials connects)."""

    name: str  # as ``service=`` names it
    title: str  # for people
    lists_cheaply: bool
    openapi_schema: bool  # response schemas go as the OpenAPI subset, not JSON Schema

    def __call__(self, settings, credentials=None) -> BatchService: ...

    def refuse(self, options) -> None:
        """Refuse, before anything is sent, options this service does not take."""

    def check_model(self, resource: str) -> None:
        """Refuse a model this service does not serve."""

    def check_locations(self, settings, family, model: str, credentials, rows: int) -> None:
        """Refuse staging or output locations its jobs cannot use."""

    def locations(self, run_id: str, settings, parser, credentials=None, labels=None,
                  carried=()) -> tuple:
        """Where a run's inputs are staged and its answers read (``storage.Location``s)."""

    def plan_files(self, df, files, reasons, roots: list[str], settings, credentials):
        """The checked ``files=`` columns, to be uploaded where this service reads them."""

    def fingerprint_place(self, settings) -> dict:
        """Where a run goes, as its fingerprint covers it."""

    def pinned(self, options, settings):
        """``options`` with where the run goes fixed, for Dask workers."""

    def attach_call(self, run_id: str, settings) -> str:
        """The call that picks a run up in another process."""

    def is_job_name(self, name: object) -> bool:
        """Whether ``name`` is one of this service's job names."""

    def job_settings(self, name: str, staging: str | None, api_endpoint: str | None,
                     transport: str, api_key: str | None):
        """The ``config.Settings`` that reach job ``name``."""


def create_once(create: Callable[[], str], find: Callable[[], str | None],
                transient: Callable[[Exception], bool],
                unreachable: Callable[[Exception], Exception], what: str,
                deadline: float | None = None) -> str:
    """``create()`` a job; its name. A transient failure may hide a create that happened
    with its answer lost: ``find()`` looks for the job before it is asked for again (with
    backoff, 1 s doubling to 30 s, for up to ``deadline`` seconds: ``PDBATCH_RETRY_DEADLINE``,
    300 s, as every other call rides an outage out), so that a job is never started (and
    billed) twice. Other failures are raised as they are; ``unreachable(err)`` when the
    deadline has passed."""
    ends = time.monotonic() + (retry_deadline() if deadline is None else deadline)
    delay = 1.0
    while True:
        try:
            return create()
        except Exception as err:
            if not transient(err):
                raise
            found = find()
            if found:
                log.info("found %s, created by an earlier attempt", found)
                return found
            if time.monotonic() + delay > ends:
                raise unreachable(err) from err
            log.warning("creating %s failed (%s); trying again in %.0f s", what, err, delay)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)


def look(service: BatchService, names: list[str], known: Mapping[str, JobInfo],
         label: tuple[str, str] | None = None) -> list[JobInfo]:
    """The jobs' infos now, in the order of ``names``: a job ``known`` to have ended is not
    asked again. With ``label`` (a ``(key, value)`` every one of the jobs carries) and a
    service that ``lists_cheaply``, the unfinished ones are one list call, whatever their
    number; a job the list does not show yet (or any, otherwise) is a GET of its own."""
    waiting = [name for name in names if name not in known or not known[name].done]
    listed = ({info.name: info for info in service.labelled(*label)}
              if label and len(waiting) > 1 and service.lists_cheaply else {})
    return [known[name] if name not in waiting else listed.get(name) or service.get(name)
            for name in names]


def wait(service: BatchService, names: list[str],
         on_poll: Callable[[list[JobInfo]], None] | None = None,
         timeout: float | None = None, running_at_most: int | None = None,
         label: tuple[str, str] | None = None) -> list[JobInfo]:
    """Poll jobs with exponential backoff (0.25 s growing to 30 s) until every one is
    terminal (or, with ``running_at_most``, until no more than that many are not); ``on_poll``
    sees each round's infos. TimeoutError after ``timeout`` seconds (the jobs keep running).
    Each round is a ``look`` (one list call with ``label``, where the service lists cheaply)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    delay = _FIRST_POLL
    infos: dict[str, JobInfo] = {}
    while True:
        ordered = look(service, names, infos, label)
        for info in ordered:
            if info.name not in infos or infos[info.name].state != info.state:
                log.info("%s is %s", info.name, info.state)
        infos = {info.name: info for info in ordered}
        if on_poll:
            on_poll(ordered)
        if sum(not info.done for info in ordered) <= (running_at_most or 0):
            return ordered
        if deadline is not None and time.monotonic() + delay > deadline:
            raise TimeoutError(f"{sum(not i.done for i in ordered)} of {len(names)} jobs "
                               f"still running after {timeout} s")
        time.sleep(delay)
        delay = min(delay * _GROWTH, _MAX_POLL)
