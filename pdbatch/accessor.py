"""The ``df.gemini`` accessor: holds the frame and forwards to plain functions."""

from __future__ import annotations

import inspect

import pandas as pd

from . import reread, run


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

    batch_predict = _forwarding(run.batch_predict)
    submit = _forwarding(run.submit, signature_of=run.batch_predict)
    estimate = _forwarding(run.estimate, signature_of=run.batch_predict)
    read_results = _forwarding(reread.read_results)
