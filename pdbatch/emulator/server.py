"""The emulator's HTTP front: the REST routes of ``batchPredictionJobs`` under /v1 and /v1beta1,
``countTokens`` of publisher models (the words of the request's text), the ``GET`` of a
tuned model, and the Gemini Developer API surface under /v1beta (``gemini_api``)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from .faults import FaultError
from .gemini_api import GeminiApi, Reply
from .responder import count_tokens
from .rest import ServiceError
from .service import JOB_STATES, BatchService

#: Admin route: ``POST {"code": 429, "count": 3}`` makes the next 3 API calls answer 429;
#: with ``"lost": true`` the calls are carried out and only their answers are lost.
FAULTS_PATH = "/emulator/faults"

_ROUTE = re.compile(
    r"^/(?:v1|v1beta1)/(?P<parent>projects/(?P<project>[^/]+)/locations/(?P<location>[^/]+))"
    r"/batchPredictionJobs(?:/(?P<id>\d+))?(?P<cancel>:cancel)?$"
)
_MODEL = re.compile(
    r"^/(?:v1|v1beta1)/(?P<name>projects/[^/]+/locations/[^/]+/models/[^/:@]+(?:@[\w-]+)?)$")
_COUNT_TOKENS = re.compile(
    r"^/(?:v1|v1beta1)/projects/[^/]+/locations/[^/]+/publishers/[^/]+/models/[^/:]+"
    r":countTokens$")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: EmulatorHTTPServer

    def log_message(self, format: str, *args) -> None:  # quiet by default
        pass

    def _send(self, status: int, body: dict, int_enums: bool = False) -> None:
        if int_enums:
            body = _with_int_enums(body)
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> dict:
        raw = self._raw
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except ValueError:
            raise ServiceError(400, "INVALID_ARGUMENT", "Invalid JSON payload received.") from None

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        service = self.server.service
        # Read the whole request first: an unread body would be taken for the next request
        # on this kept-alive connection.
        length = int(self.headers.get("Content-Length") or 0)
        self._raw = self.rfile.read(length) if length else b""
        if url.path == FAULTS_PATH and method == "POST":
            self._send(*self._inject(service))
            return
        fault = service.api_faults.next_error()
        if fault and not fault[1]:  # refused before it is carried out
            error = ServiceError(*fault[0])
            self._send(error.code, error.envelope())
            return
        gemini = self.server.gemini
        if gemini is not None and gemini.serves(url.path):
            host = self.headers.get("Host") or self.server.url.removeprefix("http://")
            reply = gemini.route(method, url.path, url.query, self.headers, self._raw,
                                 f"http://{host}")
            answer = (reply.status, reply.body, False)
        else:
            answer = self._answer(method, url, service)
            reply = None
        if fault:  # carried out, but the answer is lost
            error = ServiceError(*fault[0])
            answer, reply = (error.code, error.envelope(), False), None
        if reply is not None:
            self._reply(reply)
        else:
            self._send(*answer)

    def _reply(self, reply: Reply) -> None:
        """A Gemini Developer API answer: JSON, raw bytes or a file's bytes, with headers."""
        if isinstance(reply.body, dict):
            data, size = json.dumps(reply.body).encode(), None
        else:
            data = reply.body if isinstance(reply.body, bytes) else None
            size = len(data) if data is not None else os.path.getsize(reply.body)
        headers = {"Content-Type": "application/json; charset=UTF-8", **reply.headers}
        self.send_response(reply.status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(data) if size is None else size))
        self.end_headers()
        if data is not None:
            self.wfile.write(data)
        else:
            with open(reply.body, "rb") as source:
                shutil.copyfileobj(source, self.wfile, 2**20)

    def _answer(self, method: str, url, service: BatchService) -> tuple[int, dict, bool]:
        """``(HTTP status, body, enums as numbers)`` for one API call."""
        match = _ROUTE.match(url.path)
        try:
            if method == "POST" and _COUNT_TOKENS.match(url.path):
                return 200, count_tokens(self._body()), False
            model = _MODEL.match(url.path)
            if method == "GET" and model:  # a tuned model, as the vertexai SDK looks it up
                return 200, service.tuned_model(model["name"]), False
            if not match:
                raise ServiceError(404, "NOT_FOUND", f"The URL {url.path} was not found.")
            parent, job_id, cancel = match["parent"], match["id"], match["cancel"]
            name = f"{parent}/batchPredictionJobs/{job_id}"
            query = {k: v[-1] for k, v in parse_qs(url.query).items()}
            # GAPIC REST asks for ``$alt=json;enum-encoding=int``; google-genai asks for nothing
            # and gets names, which it needs (spec §1.6).
            ints = "enum-encoding=int" in query.get("$alt", "")
            body = self._body()
            if method == "POST" and not job_id:
                return 200, service.create(match["project"], match["location"], body), ints
            if method == "GET" and job_id and not cancel:
                return 200, service.get(name), ints
            if method == "GET" and not job_id:
                page_size = int(query.get("pageSize") or query.get("page_size") or 0)
                token = query.get("pageToken") or query.get("page_token") or ""
                return 200, service.list(parent, page_size, token,
                                         query.get("filter", "")), ints
            if method == "POST" and job_id and cancel:
                service.cancel(name)
                return 200, {}, False
            if method == "DELETE" and job_id and not cancel:
                return 200, service.delete(name), False
            raise ServiceError(405, "METHOD_NOT_ALLOWED", f"{method} {url.path} is not allowed.")
        except ServiceError as err:
            return err.code, err.envelope(), False

    def _inject(self, service: BatchService) -> tuple[int, dict]:
        try:
            body = self._body()
            service.api_faults.inject(int(body.get("code", 0)), int(body.get("count", 1)),
                                      bool(body.get("lost", False)))
        except (FaultError, TypeError, ValueError) as exc:
            return 400, ServiceError(400, "INVALID_ARGUMENT", str(exc)).envelope()
        except ServiceError as err:
            return err.code, err.envelope()
        return 200, {}

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")


def _with_int_enums(body: dict) -> dict:
    """A job, or a list page of jobs, with ``state`` as its enum number."""
    if "batchPredictionJobs" in body:
        return {**body, "batchPredictionJobs": [_with_int_enums(job)
                                                for job in body["batchPredictionJobs"]]}
    if "state" in body:
        return {**body, "state": JOB_STATES.index(body["state"])}
    return body


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, service: BatchService, host: str = "127.0.0.1", port: int = 0,
                 gemini: GeminiApi | None = None):
        super().__init__((host, port), _Handler)
        self.service = service
        self.gemini = gemini
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request(self, request, client_address) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def drop_connections(self) -> None:
        """Close every open connection, as a server that goes away does (a kept-alive
        connection would otherwise go on being served by a stopped emulator)."""
        with self._open_lock:
            connections, self._open = list(self._open), set()
        for connection in connections:
            try:
                connection.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            connection.close()

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"


class VertexEmulator:
    """The Vertex batch emulator served from a background thread, with the Gemini Developer
    API surface on the same port (``gemini``: files and batches in the service's state folder
    when it has one).

    Examples:
        >>> with VertexEmulator() as vertex:   # doctest: +SKIP
        ...     print(vertex.url)              # GOOGLE_VERTEX_BASE_URL and GOOGLE_GEMINI_BASE_URL
    """

    def __init__(self, service: BatchService | None = None, host: str = "127.0.0.1", port: int = 0,
                 gemini: GeminiApi | None = None):
        self.service = service or BatchService()
        state = self.service.state_dir
        self.gemini = gemini or GeminiApi(
            self.service, os.path.join(state, "gemini-api") if state is not None else None)
        self._http = EmulatorHTTPServer(self.service, host, port, self.gemini)
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return self._http.url

    def start(self) -> VertexEmulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; running jobs stop where they are (``BatchService.close``)."""
        self.service.close()
        self._http.shutdown()
        self._http.server_close()
        self._http.drop_connections()
        self._thread.join()
        self.gemini.close()

    def __enter__(self) -> VertexEmulator:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
