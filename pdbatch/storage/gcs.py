"""Cloud Storage: a run's folder of request JSONL in and output folders out, its manifest and
the fingerprint index (``gs://bucket/prefix``).

``<staging>/<run id>/input-NNNNN.jsonl`` in (with ``pdbatch-run`` object metadata),
``.../output-NNNNN/`` out, Dask shards in ``.../shards/``; uploaded files, content-addressed, in
``<staging>/files/``; ``<staging>/<run id>/manifest.json`` and ``<staging>/fingerprints/<fp>``.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path

import pyarrow as pa

from ..errors import InputError
from ..families import lines
from ..families.lines import Parser, PerBatch, string_bytes
from ..identifiers import whole
from .runids import checked_fingerprint, checked_run_id, claimed_by, is_run_id, manifest_of
from .staged import Destination, Staged

SCHEME = "gs://"
#: Uploaded files can live here (jobs read ``fileData`` URIs from Cloud Storage).
HOSTS_FILES = True
#: Inputs are JSONL lines, so any model family can be staged here.
TABULAR = False
OBJECT_URI = re.compile(r"^gs://[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]/[^\n\r]+$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_PREFIX = re.compile(r"^[A-Za-z0-9._=/-]+$")

#: Resumable-upload chunk: few large requests (benchmarks/RESULTS.md: 8 MiB chunks made an 830 MB
#: upload to a local server 3.6x slower than one request; 64 MiB matches it).
_WRITE_BLOCK = 64 * 2**20
_READ_BLOCK = 8 * 2**20


def filesystem(credentials=None):
    """A gcsfs filesystem with ``credentials`` (default: application default credentials);
    honours ``STORAGE_EMULATOR_HOST`` like Google's clients do. A plain-HTTP endpoint gets
    anonymous requests, whatever credentials were given: they are never sent in clear.

    Against an emulator the core gcsfs class is used: the experimental HNS class would probe a
    gRPC API that local servers lack, and wait a minute on each call.
    """
    emulator = os.environ.get("STORAGE_EMULATOR_HOST")
    if emulator:
        from gcsfs.core import GCSFileSystem

        plain = not emulator.startswith("https://")
        return GCSFileSystem(endpoint_url=emulator, skip_instance_cache=True,
                             token="anon" if plain or credentials is None else credentials)
    import fsspec
    import gcsfs

    configured = (os.environ.get("FSSPEC_GCS_ENDPOINT_URL")
                  or fsspec.config.conf.get("gcs", {}).get("endpoint_url") or "")
    if configured and not configured.startswith("https://"):
        credentials = "anon"  # fsspec's own setting points at a plain-HTTP server
    return gcsfs.GCSFileSystem(token=credentials) if credentials is not None \
        else gcsfs.GCSFileSystem()


def write_jsonl(fs, uri: str, lines: pa.ChunkedArray, metadata: dict | None = None) -> None:
    """Write Arrow string lines (each ending in a newline) to one object with custom
    ``metadata``, straight from the Arrow buffers in large writes."""
    with fs.open(uri, "wb", block_size=_WRITE_BLOCK, metadata=metadata) as f:
        for chunk in lines.chunks:
            body = string_bytes(chunk)
            for start in range(0, len(body), _WRITE_BLOCK):
                f.write(body[start:start + _WRITE_BLOCK])


def output_files(fs, output_dir: str) -> list[str]:
    """The files holding a job's answers (one listing).

    When the job wrote its final ``predictions.jsonl``, every final ``.jsonl`` file of the
    directory (a large output may come in several files); otherwise (a cancelled or expired
    job) every ``.jsonl`` under it, incremental files included. Duplicates are resolved by key.
    """
    found = sorted("gs://" + p for p in fs.find(output_dir) if p.endswith(".jsonl"))
    final = [f for f in found if "/incremental_predictions/" not in f]
    if any(f.endswith("/predictions.jsonl") for f in final):
        return final
    return found


def download(fs, uri: str, path: str) -> None:
    """Copy one object to a local file, sequentially in large blocks."""
    with fs.open(uri, "rb", cache_type="readahead", block_size=_READ_BLOCK) as src, \
            open(path, "wb") as dst:
        while chunk := src.read(_READ_BLOCK):
            dst.write(chunk)


def checked(uri: str, name: str) -> str:
    """``uri`` checked to be ``gs://bucket[/prefix]``, without a trailing slash."""
    bucket, _, prefix = uri[len(SCHEME):].partition("/")
    if not whole(_BUCKET, bucket) or ".." in bucket:
        raise InputError(
            f"{name}={uri!r}: {bucket!r} is not a valid bucket name (3-222 characters: "
            f"lowercase letters, digits, '-', '_', '.'). Pass {name}='gs://my-bucket/prefix'."
        )
    prefix = prefix.strip("/")
    if prefix and (not whole(_PREFIX, prefix)
                   or any(part in ("", ".", "..") for part in prefix.split("/"))):
        raise InputError(
            f"{name}={uri!r}: use a prefix of letters, digits and '-_.=/' without empty, "
            "'.' or '..' segments, e.g. 'gs://my-bucket/pdbatch'."
        )
    return f"gs://{bucket}/{prefix}" if prefix else f"gs://{bucket}"


def check(uri: str, name: str, region: str, project: str | None = None,
          credentials=None) -> None:
    """The bucket exists (jobs read and write buckets of any region)."""
    bucket = uri[len(SCHEME):].split("/", 1)[0]
    if not filesystem(credentials).exists(f"gs://{bucket}"):
        raise InputError(f"{name}={uri!r}: the bucket {bucket!r} does not exist (or these "
                         "credentials cannot see it). Create it first: gcloud storage buckets "
                         f"create gs://{bucket} --location={region}")


def staging_of(input_uri: str, run_id: str) -> str | None:
    """The staging location of a job input ``gs://.../<run>/input-N.jsonl`` (or a shard)."""
    folder = f"/{run_id}/"
    return input_uri[:input_uri.index(folder)] if folder in input_uri else None


class GcsLocation:
    """A run's folder in a staging or output location."""

    hosts_files, tabular = HOSTS_FILES, TABULAR
    one_source = False  # a job reads any number of files

    def __init__(self, root: str, run_id: str, parser: Parser, credentials=None):
        self.root, self.folder, self.run_id, self.parser = root, f"{root}/{run_id}", run_id, \
            parser
        self.fs = filesystem(credentials)

    def __str__(self) -> str:
        return self.folder

    def stage(self, number: int, requests: pa.ChunkedArray) -> Staged:
        uri = f"{self.folder}/input-{number:05d}.jsonl"
        write_jsonl(self.fs, uri, requests, metadata={"pdbatch-run": self.run_id})
        return self.source([uri])

    def stage_shard(self, partition: int, index: int, requests: pa.ChunkedArray) -> str:
        """Write one shard of a Dask partition; returns its URI (see ``source``)."""
        uri = self.shard(partition, index)
        write_jsonl(self.fs, uri, requests, metadata={"pdbatch-run": self.run_id})
        return uri

    def shard(self, partition: int, index: int) -> str:
        """Where shard ``index`` of a Dask partition is staged."""
        return f"{self.folder}/shards/part-{partition:05d}-{index:04d}.jsonl"

    @staticmethod
    def source(uris: list[str]) -> Staged:
        """What a job reading these staged files reads."""
        return Staged(tuple(uris))

    def destination(self, number: int) -> Destination:
        return Destination(f"{self.folder}/output-{number:05d}")

    def upload(self, files: dict[str, tuple[bytes | str, str]]) -> None:
        """Put local files and bytes (by their object name under ``files_folder``, with their
        MIME type) where jobs can read them, skipping those already there (names are content
        hashes)."""
        for name, (source, _) in files.items():
            uri = f"{files_folder(self.root)}/{name}"
            if not self.fs.exists(uri):
                self.fs.pipe(uri, Path(source).read_bytes() if isinstance(source, str)
                             else bytes(source))

    def collect(self, con, number: int, output_dir: str, response: bool,
                per_batch: PerBatch | None = None) -> pa.Table:
        """Download the job's output files to a temporary folder and parse them (none when
        the job ended before writing any)."""
        with tempfile.TemporaryDirectory(prefix="pdbatch-") as tmp:
            paths = []
            uris = output_files(self.fs, output_dir) if output_dir else []
            for count, uri in enumerate(uris):
                paths.append(os.path.join(tmp, f"{count:05d}.jsonl"))
                download(self.fs, uri, paths[-1])
            return lines.parse_output(con, self.parser, paths, response, per_batch)

    def clean_up(self) -> None:
        """Remove the run's staged inputs and Dask shards (outputs stay). Other processes
        that re-attached to the same run may be removing them at the same moment: a file
        already gone is no error."""
        staged = [path for pattern in ("input-*.jsonl", "shards/*.jsonl")
                  for path in self.fs.glob(f"{self.folder}/{pattern}")]
        try:
            if staged:
                self.fs.rm(staged)
        except FileNotFoundError:
            for path in staged:
                try:
                    self.fs.rm_file(path)
                except FileNotFoundError:
                    pass


def missing_objects(uris: set[str], credentials=None) -> set[str]:
    """The URIs among ``uris`` naming no object: one listing per folder; where a folder cannot
    be listed (no list permission), one look-up per object."""
    fs = filesystem(credentials)
    folders: dict[str, set[str]] = {}
    for uri in uris:
        folders.setdefault(uri.rsplit("/", 1)[0], set()).add(uri)
    missing = set()
    for folder, wanted in folders.items():
        try:
            found = {"gs://" + path for path in fs.ls(folder, detail=False, refresh=True)}
        except FileNotFoundError:
            found = set()
        except OSError:  # no permission to list: look each object up
            found = {uri for uri in wanted if fs.exists(uri)}
        missing |= wanted - found
    return missing


def files_folder(root: str) -> str:
    """Where local files sent with ``files=`` are uploaded, under a location's root."""
    return f"{root}/files"


class GcsStore:
    """Manifests and the fingerprint index in a Cloud Storage location."""

    def __init__(self, root: str, credentials=None):
        self.root, self.fs = root, filesystem(credentials)

    def __str__(self) -> str:
        return self.root

    def save(self, manifest: dict) -> None:
        self.fs.pipe(self._manifest(manifest["run"]), json.dumps(manifest, indent=1).encode())

    def load(self, run_id: str) -> dict | None:
        path = self._manifest(run_id)
        try:
            return manifest_of(self.fs.cat(path), path)
        except FileNotFoundError:
            return None

    def delete(self, run_id: str) -> None:
        self.fs.rm(self._manifest(run_id))

    def link(self, fingerprint: str, run_id: str) -> None:
        self.fs.pipe(self._index(fingerprint), run_id.encode())

    def claim(self, fingerprint: str, run_id: str) -> str:
        try:  # a conditional create (ifGenerationMatch=0): one claim wins
            self.fs.pipe(self._index(fingerprint), run_id.encode(), mode="create")
            return run_id
        except FileExistsError:
            return claimed_by(self.find(fingerprint), self._index(fingerprint))

    def find(self, fingerprint: str) -> str | None:
        try:
            run_id = self.fs.cat(self._index(fingerprint)).decode()
        except FileNotFoundError:
            return None
        return run_id if is_run_id(run_id) else None

    def _manifest(self, run_id: str) -> str:
        return f"{self.root}/{checked_run_id(run_id)}/manifest.json"

    def _index(self, fingerprint: str) -> str:
        return f"{self.root}/fingerprints/{checked_fingerprint(fingerprint)}"

    def run_ids(self) -> list[str]:
        found = self.fs.glob(f"{self.root}/run-*/manifest.json")
        names = (path.rsplit("/", 2)[-2] for path in found)
        return sorted(name for name in names if is_run_id(name))
