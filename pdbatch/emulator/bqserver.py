"""A local BigQuery: bqemulator (PyPI), with the three fixes it needs here.

Out of the box bqemulator 1.4 aborts when it cannot download DuckDB's spatial extension, it
refuses the ``*/*`` content type google-cloud-bigquery sends with small loads, and it shares
one DuckDB connection between requests, which DuckDB 2 refuses ("connection is busy with
another call") as soon as two clients call at once (a job writing its table while another is
read). ``python -m pdbatch.emulator.bqserver start ...``
runs its CLI with all three fixed, the last by answering one REST request at a time;
``LocalBigQuery`` runs that as a child process on 127.0.0.1.
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
