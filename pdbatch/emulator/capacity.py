"""The emulator's concurrency quota: at most ``limit`` jobs (Vertex jobs and Developer API
batches together) run at once; the others wait, as the real service makes jobs wait when its
capacity is taken (Vertex: ``JOB_STATE_QUEUED``; Developer API: ``BATCH_STATE_PENDING``). A
running job holds its input, output and shuffle buffers (~0.25 GiB each, benchmarks/RESULTS.md),
so the emulator's memory is that of its running jobs, not of every job created.

The default, 8, is the service's older documented quota for Gemini models ("Concurrent batch
prediction request limits: 8", spec §4); today's service has a shared pool instead.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

#: Jobs that run at once by default (``None``: no limit).
DEFAULT_LIMIT = 8


class Capacity:
    """Slots for running jobs, given in the order they were asked for."""

    def __init__(self, limit: int | None = DEFAULT_LIMIT):
        if limit is not None and limit < 1:
            raise ValueError(f"max_running_jobs must be at least 1 (or None), not {limit!r}")
        self.limit = limit
        self._running = 0
        self._waiting: list[object] = []
        self._changed = threading.Condition()
        self.peak = 0  # most jobs that ran at once

    def full(self) -> bool:
        """Whether a job created now would wait."""
        with self._changed:
            return self.limit is not None and (self._running + len(self._waiting)) >= self.limit

    def acquire(self, gone: Callable[[], bool], waits: Callable[[], None] = lambda: None,
                poll: float = 0.05) -> bool:
        """Wait for a slot (first come, first served; ``waits()`` is called once if the job
        must wait); False if ``gone()`` (the job was cancelled or deleted, or the emulator
        stopped) before one was free. The callbacks run without this object's lock held (they
        take the service's lock, under which the service asks ``full()``)."""
        ticket = object()
        with self._changed:
            self._waiting.append(ticket)
        told = False
        try:
            while True:
                with self._changed:
                    if self._free(ticket):
                        self._running += 1
                        self.peak = max(self.peak, self._running)
                        return True
                if gone():
                    return False
                if not told:
                    told = True
                    waits()
                    continue
                with self._changed:
                    if not self._free(ticket):
                        self._changed.wait(poll)
        finally:
            with self._changed:
                self._waiting.remove(ticket)
                self._changed.notify_all()

    def _free(self, ticket: object) -> bool:
        """Whether ``ticket``'s job may run now (call under the lock)."""
        return self.limit is None or (self._running < self.limit
                                      and self._waiting[0] is ticket)

    def release(self) -> None:
        with self._changed:
            self._running -= 1
            self._changed.notify_all()
