"""The ``df.gemini`` accessor: holds the frame and forwards to plain functions."""

from __future__ import annotations

import inspect

import pandas as pd

from . import reread, run


def _forwarding(function):
    """A method calling ``function(self._obj, ...)`` with its docstring and signature."""

    def method(self, **options):
        return function(self._obj, **options)

    params = list(inspect.signature(function).parameters.values())[1:]
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

    batch_predict = _forwarding(run.batch_predict)
    read_results = _forwarding(reread.read_results)
