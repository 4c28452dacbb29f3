"""What a run shows while it works: a progress bar that fits where it runs, and one-line
notices (such as re-attaching to an earlier run); for a Dask run computed on ``distributed``
workers, the bar and notices its wait task sends to the client.

In a Jupyter kernel with ipywidgets: a widget bar. Anywhere else (a terminal, a script, a
notebook without ipywidgets): one text bar that updates in place, with no warning (tqdm's
``auto`` module warns in a notebook without ipywidgets; it is not used). Nothing at all when
progress is off.
"""

from __future__ import annotations

import io
import sys
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tqdm.std import tqdm

#: What the bar counts.
UNIT = "request"


def _kernel() -> bool:
    """Whether this is a Jupyter kernel (IPython is looked up, never imported)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def _widgets() -> bool:
    """Whether ipywidgets can be used (imported only in a kernel that shows progress)."""
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


def bar(total: int, desc: str, enabled: bool | str = True) -> tqdm:
    """A tqdm bar of ``total`` requests labelled ``desc`` (a disabled one when not
    ``enabled``); ``enabled`` may name the kind, as pandas-gbq's ``progress_bar_type`` does:
    ``"tqdm"`` (text), ``"tqdm_notebook"`` (a notebook widget)."""
    from tqdm.std import tqdm

    kind = enabled if isinstance(enabled, str) else "auto"
    if enabled and (kind == "tqdm_notebook" or _kernel()):
        if kind != "tqdm" and _widgets():
            from tqdm.notebook import tqdm as widget_bar

            return widget_bar(total=total, desc=desc, unit=UNIT)
        return _text_bar_in_kernel()(total=total, desc=desc, unit=UNIT, ncols=100,
                                     ascii=False, file=io.StringIO())
    return tqdm(total=total, desc=desc, unit=UNIT, disable=not enabled, file=sys.stderr,
                dynamic_ncols=True)


def _text_bar_in_kernel() -> type[tqdm]:
    """tqdm's text bar drawn into one notebook output that is updated in place (written to
    stdout, each update would be an output of its own in the saved notebook)."""
    from IPython.display import display
    from tqdm.std import tqdm

    class KernelTextBar(tqdm):
        def display(self, msg=None, pos=None):
            text = {"text/plain": msg or self.__str__()}
            handle = getattr(self, "_handle", None)
            if handle is None:
                self._handle = display(text, raw=True, display_id=True)
            else:
                handle.update(text, raw=True)
            return True

    return KernelTextBar


def notice(text: str) -> None:
    """Show a one-line notice where the bar would be: on stdout in a notebook (stderr shows as
    an error there), on stderr elsewhere."""
    print(f"pdbatch: {text}", file=sys.stdout if _kernel() else sys.stderr, flush=True)


# ------------------------------------------------- runs computed on distributed workers
def distributed_topic() -> str | None:
    """When a ``distributed`` client computes the graph, the topic its workers send the
    run's progress on (the client shows it); None otherwise (the wait task runs in this
    process and shows its own bar)."""
    if "distributed" not in sys.modules:
        return None
    from distributed import default_client

    try:
        client = default_client()
    except ValueError:
        return None
    topic = f"pdbatch-progress-{uuid.uuid4().hex}"
    client.subscribe_topic(topic, ClientBar())
    return topic


class ClientBar:
    """The client's bar for a run computed on ``distributed`` workers: one bar per compute of
    the graph (it stays subscribed, so that computing the same lazy frame again shows one
    too; a handler is a few bytes per graph built)."""

    def __init__(self):
        self.bar = None

    def __call__(self, event) -> None:
        _, state = event
        if "notice" in state:
            notice(state["notice"])
            return
        if self.bar is None and state["closed"]:  # a wait that showed nothing
            return
        if self.bar is None:
            self.bar = bar(state["total"], state["desc"])
        self.bar.update(state["n"] - self.bar.n)
        if state["postfix"]:
            self.bar.set_postfix_str(state["postfix"])
        if state["closed"]:  # ready for the next compute of the same graph
            self.bar.close()
            self.bar = None


def notice_from(topic: str | None, text: str) -> None:
    """Show a notice on the client: sent on ``topic`` from a ``distributed`` worker, shown
    here otherwise."""
    worker = _distributed_worker() if topic else None
    if worker is not None:
        worker.log_event(topic, {"notice": text})
    else:
        notice(text)


def _distributed_worker():
    """The ``distributed`` worker running this task, or None."""
    if "distributed" not in sys.modules:
        return None
    from distributed import get_worker

    try:
        return get_worker()
    except ValueError:
        return None


class EventBar:
    """A tqdm-like bar on a ``distributed`` worker that sends its state to the client."""

    def __init__(self, worker, topic: str, total: int, desc: str):
        self.worker, self.topic = worker, topic
        self.state = {"total": total, "desc": desc, "n": 0, "postfix": "", "closed": False}
        self.n = 0

    @classmethod
    def on_worker(cls, topic: str | None, total: int, desc: str) -> EventBar | None:
        """The bar for a wait task running on a worker of the client that subscribed to
        ``topic``; None elsewhere."""
        worker = _distributed_worker() if topic else None
        return cls(worker, topic, total, desc) if worker else None

    def _send(self) -> None:
        self.worker.log_event(self.topic, dict(self.state, n=self.n))

    def update(self, count: int) -> None:
        self.n += count
        self._send()

    def set_postfix_str(self, text: str) -> None:
        self.state["postfix"] = text
        self._send()

    def close(self) -> None:
        self.state["closed"] = True
        self._send()
