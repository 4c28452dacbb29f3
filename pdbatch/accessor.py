"""The ``df.gemini`` accessors (pandas and Dask): hold the frame and forward to ``api``."""

from __future__ import annotations

import importlib.abc
import importlib.util
import inspect
import sys

import pandas as pd

from . import api, embedding


def _forwarding(function, signature_of=None):
    """A method calling ``function(self._obj, ...)`` with its docstring and signature (or the
    signature of ``signature_of``, for functions that take its arguments as ``**options``)."""

    def method(self, **options):
        return function(self._obj, **options)

    params = [p for p in inspect.signature(function).parameters.values()
              if p.kind is not inspect.Parameter.VAR_KEYWORD][1:]
    if signature_of is not None:
        params += list(inspect.signature(signature_of).parameters.values())[1:]
    self_param = inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY)
    method.__signature__ = inspect.Signature([self_param, *params])
    method.__doc__ = function.__doc__
    method.__name__ = function.__name__
    return method


@pd.api.extensions.register_dataframe_accessor("gemini")
class GeminiAccessor:
    """Vertex AI batch prediction over this frame's rows: ``df.gemini.batch_predict(...)``."""

    def __init__(self, pandas_obj: pd.DataFrame):
        self._obj = pandas_obj

    batch_predict = _forwarding(api.batch_predict)
    submit = _forwarding(api.submit, signature_of=api.batch_predict)
    estimate = _forwarding(api.estimate, signature_of=api.batch_predict)
    read_results = _forwarding(api.read_results)
    embed = _forwarding(embedding.embed)
    submit_embed = _forwarding(embedding.submit_embed, signature_of=embedding.embed)


def register_dask() -> None:
    """Register ``ddf.gemini`` on Dask DataFrames."""
    from dask.dataframe.extensions import register_dataframe_accessor

    @register_dataframe_accessor("gemini")
    class DaskGeminiAccessor:
        """Vertex AI batch prediction over a Dask frame: ``ddf.gemini.batch_predict(...)``
        returns a lazy frame."""

        def __init__(self, dask_obj):
            self._obj = dask_obj

        batch_predict = _forwarding(api.batch_predict)
        submit = _forwarding(api.submit, signature_of=api.batch_predict)
        read_results = _forwarding(api.read_results)
        embed = _forwarding(embedding.embed)


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
