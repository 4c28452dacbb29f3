"""A Dask run's tasks as one low-level graph over the frame's partitions, and ``Recipe``: how
a task computes its partition again from the source."""

from __future__ import annotations

import uuid
from collections.abc import Hashable
from typing import Any

import pandas as pd


class Tasks:
    """A run's tasks as one low-level Dask graph over the frame's partitions. (Built call by
    call with ``dask.delayed``, every call with graph arguments culls and merges their graphs:
    over a minute for 64 partitions.) A task's key is ``(<its kind>-<token>, index)``; keys,
    and lists of keys, in a task's arguments are replaced by those tasks' results."""

    def __init__(self, ddf):
        self.parts = ddf.to_delayed()
        self.token = uuid.uuid4().hex[:16]
        self.graph: dict = {}

    def add(self, kind: str, index: int, function, *args) -> tuple:
        key = (f"pdbatch-{kind}-{self.token}", index)
        self.graph[key] = (function, *args)
        return key

    def given(self, kind: str, value: Any) -> tuple:
        """A task giving ``value``: a value many tasks need is then in the graph once."""
        return self.add(kind, 0, _given, value)

    def recipes(self) -> list[Recipe]:
        """How to compute each partition again."""
        from dask.optimization import cull

        graph = dict(self.parts[0].__dask_graph__()) if self.parts else {}
        return [Recipe(cull(graph, [part.key])[0], part.key) for part in self.parts]

    def delayed(self, keys):
        """``Delayed`` results of a key or a list of keys."""
        from dask.delayed import Delayed
        from dask.highlevelgraph import HighLevelGraph

        layer = f"pdbatch-{self.token}"
        graph = HighLevelGraph.from_collections(layer, self.graph, dependencies=self.parts)
        if isinstance(keys, list):
            return [Delayed(key, graph, layer=layer) for key in keys]
        return Delayed(keys, graph, layer=layer)


def _given(value: Any) -> Any:
    return value


class Recipe:
    """How to compute one partition again: its own part of the frame's graph, opaque to Dask,
    so that a task reads its partition anew (from the source) rather than the partition being
    kept in memory from an earlier task while other partitions are hashed or the jobs run."""

    def __init__(self, graph: dict, key: Hashable):
        self.graph, self.key = graph, key

    def compute(self) -> pd.DataFrame:
        from dask.local import get_sync

        return get_sync(self.graph, self.key)


def computed(source) -> pd.DataFrame:
    """A partition given as itself or as a ``Recipe``."""
    return source.compute() if isinstance(source, Recipe) else source
