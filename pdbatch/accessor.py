"""The ``df.gemini`` accessors (pandas and Dask): hold the frame and forward to ``api``.

Each method is made from the ``api`` function of the same name, which stays the one source of
its signature and docstring: ``help()``, ``inspect.signature`` and the API reference show
them at run time, and type checkers and IDEs read the static signature through ``_forwarding``'s
``ParamSpec`` typing (for ``submit`` and ``estimate``, which take ``batch_predict``'s arguments
as ``**options``, statically only their own)."""

from __future__ import annotations

import importlib.abc
import importlib.util
import inspect
import sys
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

import pandas as pd

from . import api, embedding, recorded
from .options import unknown_arguments

P = ParamSpec("P")
R = TypeVar("R")


def _forwarding(function: Callable[Concatenate[Any, P], R], owner: str,
                signature_of: Callable | None = None) -> Callable[Concatenate[Any, P], R]:
    """A method of class ``owner`` calling ``function(self._obj, ...)``, with its docstring
    and signature (plus the parameters of ``signature_of``, for functions that take its
    arguments as ``**options``). Positional arguments and unknown keywords are refused with
    a hint, as ``function`` itself would only say ``TypeError``."""
    name = function.__name__
    params = list(inspect.signature(function).parameters.values())[1:]
    if signature_of is not None:  # its **options are signature_of's arguments
        params = [p for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD] \
            + list(inspect.signature(signature_of).parameters.values())[1:]
    # a function that still ends in **options (embed) checks its own keywords
    known = None if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params) \
        else {p.name for p in params}

    def method(self, *args: Any, **options: Any) -> R:
        if args:
            raise TypeError(f"df.gemini.{name}() takes keyword arguments only, e.g. "
                            f"df.gemini.{name}(prompt_col='prompt'); got {len(args)} "
                            "positional argument(s).")
        if known is not None:
            unknown_arguments(set(options) - known, f"df.gemini.{name}")
        return function(self._obj, **options)

    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [self_param, *params], return_annotation=inspect.signature(function).return_annotation)
    method.__doc__ = function.__doc__
    method.__name__ = name
    method.__qualname__ = f"{owner}.{name}"
    method.__module__ = __name__
    return method  # type: ignore[return-value]


@pd.api.extensions.register_dataframe_accessor("gemini")
class GeminiAccessor:
    """Vertex AI batch prediction over this frame's rows: ``df.gemini.batch_predict(...)``."""

    def __init__(self, pandas_obj: pd.DataFrame):
        self._obj = pandas_obj

    batch_predict = _forwarding(api.batch_predict, "GeminiAccessor")
    submit = _forwarding(api.submit, "GeminiAccessor", signature_of=api.batch_predict)
    estimate = _forwarding(api.estimate, "GeminiAccessor", signature_of=api.batch_predict)
    read_results = _forwarding(recorded.read_results, "GeminiAccessor")
    embed = _forwarding(embedding.embed, "GeminiAccessor")
    submit_embed = _forwarding(embedding.submit_embed, "GeminiAccessor",
                               signature_of=embedding.embed)


def register_dask() -> None:
    """Register ``ddf.gemini`` on Dask DataFrames."""
    from dask.dataframe.extensions import register_dataframe_accessor

    @register_dataframe_accessor("gemini")
    class DaskGeminiAccessor:
        """Vertex AI batch prediction over a Dask frame: ``ddf.gemini.batch_predict(...)``
        returns a lazy frame."""

        def __init__(self, dask_obj):
            self._obj = dask_obj

        batch_predict = _forwarding(api.batch_predict, "DaskGeminiAccessor")
        submit = _forwarding(api.submit, "DaskGeminiAccessor", signature_of=api.batch_predict)
        read_results = _forwarding(recorded.read_results, "DaskGeminiAccessor")
        embed = _forwarding(embedding.embed, "DaskGeminiAccessor")


class _AfterImport(importlib.abc.MetaPathFinder):
    """Calls ``then()`` once module ``name`` has been imported (without importing it)."""

    def __init__(self, name: str, then):
        self.name, self.then = name, then

    def find_spec(self, fullname, path, target=None):
        if fullname != self.name:
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            run_module, then = spec.loader.exec_module, self.then

            def exec_module(module):
                run_module(module)
                then()

            spec.loader.exec_module = exec_module
        return spec


if "dask.dataframe" in sys.modules:
    register_dask()
else:  # importing dask.dataframe takes 0.4 s: register when the user imports it
    sys.meta_path.insert(0, _AfterImport("dask.dataframe", register_dask))
