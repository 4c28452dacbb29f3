"""A local BigQuery: bqemulator (PyPI), with the five fixes it needs here.

Out of the box bqemulator 1.4 aborts when it cannot download DuckDB's spatial extension, it
refuses the ``*/*`` content type google-cloud-bigquery sends with small loads, it shares
one DuckDB connection between requests, which DuckDB 2 refuses ("connection is busy with
another call") as soon as two clients call at once (a job writing its table while another is
read), and it registers its built-in functions with ``null_handling="special"``, a string
that DuckDB before 1.4 refuses (it takes only its ``FunctionNullHandling`` enum), so it does
not start at all with the DuckDB 1.3 that Colab has; there, its CSV and JSON loads
(``COPY table FROM ?``) are a syntax error too. ``python -m pdbatch.emulator.bqserver
start ...`` runs its CLI with all five fixed, the third by answering one REST request at a
time; ``LocalBigQuery`` runs that as a child process on 127.0.0.1.
"""

from __future__ import annotations

import sys

from .child import ChildServer, free_port


def _patched_main() -> int:
    import bqemulator.api.routes.upload as upload
    import bqemulator.server as server
    import bqemulator.storage.engine as engine

    def load_spatial_offline(self) -> None:
        try:
            self._connection.execute("LOAD spatial")  # never INSTALL: that downloads
        except Exception:
            pass  # GEOGRAPHY columns are unavailable; nothing pdbatch uses

    engine.DuckDBEngine._load_spatial = load_spatial_offline
    _register_udfs_with_enums()
    _copy_from_a_literal_path()
    permitted = upload._is_permitted_media_type
    upload._is_permitted_media_type = lambda media: media == "*/*" or permitted(media)
    build = server.create_app

    def create_app(context):
        app = build(context)
        app.add_middleware(_OneRequestAtATime)
        return app

    server.create_app = create_app
    from bqemulator.cli import main

    return main()


def _register_udfs_with_enums() -> None:
    """bqemulator's built-in functions registered on a DuckDB that wants objects, not strings.

    Each ``create_function`` call is made as bqemulator wrote it; only when DuckDB refuses its
    arguments (a ``TypeError``: DuckDB < 1.4) is it made again with the type names given as
    DuckDB types (``JSON`` has no implicit conversion there) and ``null_handling`` and ``type``
    as DuckDB's enums.
    """
    import bqemulator.sql.builtin_udfs as builtin_udfs

    register = builtin_udfs.register_builtin_udfs

    class DuckDBObjects:
        def __init__(self, connection):
            self._connection = connection

        def __getattr__(self, name):
            return getattr(self._connection, name)

        def _type(self, name):
            return self._connection.type(name) if isinstance(name, str) else name

        def create_function(self, name, function, parameters=None, return_type=None, **kwargs):
            try:
                return self._connection.create_function(name, function, parameters,
                                                        return_type, **kwargs)
            except TypeError:
                from duckdb import functional

                if isinstance(parameters, list | tuple):
                    parameters = [self._type(each) for each in parameters]
                enums = {"null_handling": functional.FunctionNullHandling,
                         "type": functional.PythonUDFType}
                for key, enum in enums.items():
                    if isinstance(kwargs.get(key), str):
                        kwargs[key] = enum.__members__[kwargs[key].upper()]
                return self._connection.create_function(name, function, parameters,
                                                        self._type(return_type), **kwargs)

    builtin_udfs.register_builtin_udfs = lambda connection: register(DuckDBObjects(connection))


def _copy_from_a_literal_path() -> None:
    """bqemulator's CSV and JSON loads on a DuckDB that takes no parameter in ``COPY ... FROM``.

    A load is made as bqemulator wrote it; only when DuckDB rejects the ``?`` (a parser error,
    so nothing was loaded: DuckDB < 1.4) is the same ``COPY`` made with the file's path quoted
    as a string literal (bqemulator has checked that it is a local upload path).
    """
    import bqemulator.jobs.executor as executor

    def literal(load, options):
        def copy(path, target_ref, ctx):
            try:
                return load(path, target_ref, ctx)
            except Exception as exc:
                if 'syntax error at or near "?"' not in str(exc):
                    raise
            quoted = "'" + str(path).replace("'", "''") + "'"
            ctx.engine.execute(f"COPY {target_ref} FROM {quoted} ({options})")

        return copy

    handlers = executor._LOAD_FORMAT_HANDLERS
    formats = {"CSV": "FORMAT CSV, HEADER", "NEWLINE_DELIMITED_JSON": "FORMAT JSON",
               "JSON": "FORMAT JSON"}
    for name, options in formats.items():
        handlers[name] = literal(handlers[name], options)


class _OneRequestAtATime:
    """ASGI middleware: HTTP requests are handled one after another."""

    def __init__(self, app):
        self.app, self.lock = app, None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        import asyncio

        self.lock = self.lock or asyncio.Lock()
        async with self.lock:
            await self.app(scope, receive, send)


class LocalBigQuery(ChildServer):
    """bqemulator as a child process: REST on ``url``, in memory, stopped by process handle."""

    name = "bqemulator"
    poll = 0.1

    def __init__(self, project: str, port: int = 0, grpc_port: int = 0):
        super().__init__(port)
        self.project, self.grpc_port = project, grpc_port or free_port()

    def command(self) -> list[str]:
        try:
            import bqemulator  # noqa: F401
        except ImportError as exc:
            raise RuntimeError("The local BigQuery needs bqemulator: pip install "
                               "'pdbatch[emulator]' on Python 3.11 or newer (bqemulator "
                               "does not install on 3.10)") from exc
        return [sys.executable, "-m", "pdbatch.emulator.bqserver", "start",
                "--rest-host", "127.0.0.1", "--rest-port", str(self.port),
                "--grpc-host", "127.0.0.1", "--grpc-port", str(self.grpc_port),
                "--ephemeral", "--project", self.project, "--log-level", "error"]

    def probe_url(self) -> str:
        return f"{self.url}/bigquery/v2/projects/{self.project}/datasets"

    def start(self, timeout: float = 30.0) -> LocalBigQuery:
        return super().start(timeout)


if __name__ == "__main__":
    sys.exit(_patched_main())
