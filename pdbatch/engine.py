"""The DuckDB connection pdbatch serialises requests and parses outputs with (multi-threaded,
columnar; see benchmarks/RESULTS.md). Imported lazily: ``import pdbatch`` stays light."""

from __future__ import annotations


def connect():
    """A fresh in-memory DuckDB connection that never reaches the network for extensions."""
    import duckdb

    return duckdb.connect(config={"autoinstall_known_extensions": False,
                                  "autoload_known_extensions": False})
