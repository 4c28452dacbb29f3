"""What a run shows while it works: a progress bar that fits where it runs, and one-line
notices (such as re-attaching to an earlier run).

In a Jupyter kernel with ipywidgets: a widget bar. Anywhere else (a terminal, a script, a
notebook without ipywidgets): one text bar that updates in place, with no warning (tqdm's
``auto`` module warns in a notebook without ipywidgets; it is not used). Nothing at all when
progress is off.
"""

from __future__ import annotations

import io
import sys
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
