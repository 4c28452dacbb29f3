"""What a run shows while it works: a progress bar that fits where it runs, and one-line
notices (such as re-attaching to an earlier run).

In a Jupyter kernel with ipywidgets: a widget bar. Anywhere else (a terminal, a script, a
notebook without ipywidgets): one text bar that updates in place, with no warning (tqdm's
``auto`` module warns in a notebook without ipywidgets; it is not used). Nothing at all when
progress is off.
"""

from __future__ import annotations

import importlib.util
import sys

#: What the bar counts.
UNIT = "request"


def _kernel() -> bool:
    """Whether this is a Jupyter kernel (IPython is looked up, never imported)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


def _widgets() -> bool:
    try:
        return importlib.util.find_spec("ipywidgets") is not None
    except (ImportError, ValueError):
        return False


def bar(total: int, desc: str, enabled: bool = True):
    """A tqdm bar of ``total`` requests labelled ``desc`` (a disabled one when not
    ``enabled``)."""
    if enabled and _kernel() and _widgets():
        from tqdm.notebook import tqdm
    else:
        from tqdm.std import tqdm
    return tqdm(total=total, desc=desc, unit=UNIT, disable=not enabled, file=_stream(),
                **({} if _kernel() else {"dynamic_ncols": True}))


def notice(text: str, enabled: bool = True) -> None:
    """Show a one-line notice where the bar would be (nothing when not ``enabled``)."""
    if enabled:
        print(f"pdbatch: {text}", file=_stream(), flush=True)


def _stream():
    """stdout in a notebook (stderr shows as an error there), stderr elsewhere."""
    return sys.stdout if _kernel() else sys.stderr
