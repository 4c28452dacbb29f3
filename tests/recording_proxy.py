"""A recording HTTP proxy on 127.0.0.1 for tests: forwards every request to one upstream
server and remembers each request's method, path and headers (to check what a client sent)."""

from __future__ import annotations

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class RecordingProxy:
    """``with RecordingProxy(upstream) as proxy:`` — ``proxy.url`` forwards to ``upstream``;
    ``proxy.seen`` lists ``(method, path, headers)`` of every request."""

    def __init__(self, upstream: str):
        target = urlsplit(upstream)
        self.seen: list[tuple[str, str, dict[str, str]]] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format, *args):  # quiet
                pass

            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP}
                proxy.seen.append((self.command, self.path, dict(self.headers.items())))
                upstream_conn = http.client.HTTPConnection(target.hostname, target.port,
                                                           timeout=60)
                try:
                    upstream_conn.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream_conn.getresponse()
                    data = answer.read()
                finally:
                    upstream_conn.close()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in _HOP:
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _forward

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):  # a client hung up: no matter
                pass

        self._server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> RecordingProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def authorizations(self) -> list[str]:
        """The ``Authorization`` headers seen (any case of the name)."""
        return [v for _, _, headers in self.seen for k, v in headers.items()
                if k.lower() == "authorization"]
