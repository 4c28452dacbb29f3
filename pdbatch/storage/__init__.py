"""Where a run's requests are staged, its answers read back, and the run remembered: a Cloud
Storage folder (``gs://``, ``storage.gcs``) or a BigQuery dataset (``bq://``,
``storage.bigquery``); for the Gemini Developer API, the service's own Files API
(``storage.files_api``) with runs remembered in a local folder (``file://``,
``storage.folder``).

The scheme of a location is examined here and nowhere else (as fsspec's registry does): the
rest of pdbatch asks a ``Location`` or ``RunStore`` what it can do. Inputs and outputs may be of
different kinds: the service allows JSONL in with a table out, and a table in with JSONL out.
"""

from __future__ import annotations

import os
import tempfile
from types import ModuleType
from typing import Any, Protocol

import pyarrow as pa

from ..errors import InputError
from ..families.lines import Parser, PerBatch
from ..identifiers import whole
from . import bigquery, folder, gcs
from .runids import is_run_id, new_run_id
from .staged import Destination, Staged

__all__ = ["Destination", "Location", "RunStore", "Staged", "carried_columns", "check",
           "checked", "exchange_folder", "files_folder", "folder_uri", "hosts_files",
           "in_the_cloud", "is_file_uri", "is_run_id", "local_folder", "local_path",
           "missing_files", "new_run_id", "open_location", "open_store", "staging_of", "tabular",
           "valid_file_uri"]

_BACKENDS: tuple[ModuleType, ...] = (gcs, bigquery, folder)


class Location(Protocol):
    """A run's place in a staging or output location."""

    hosts_files: bool  # uploaded files can live here (``upload``)
    tabular: bool  # inputs are table rows (only families with ``table_input``)
    one_source: bool  # a job reads one staged shard (a BigQuery table; a Files API file)

    def stage(self, number: int, requests: pa.ChunkedArray) -> Staged:
        """Stage job ``number``'s request lines; what the job reads."""

    def stage_shard(self, partition: int, index: int, requests: pa.ChunkedArray) -> str:
        """Stage one shard of a Dask partition; its name for ``source``."""

    def shard(self, partition: int, index: int) -> str:
        """The name ``stage_shard`` gives that shard."""

    def source(self, names: list[str]) -> Staged:
        """What a job reading these staged shards reads (one, where the location has
        ``one_source``)."""

    def upload(self, files: dict[str, tuple[bytes | str, str]]) -> None:
        """Put files sent with ``files=`` (name -> (path or bytes, MIME type)) in
        ``files_folder`` (where ``hosts_files``)."""

    def destination(self, number: int) -> Destination:
        """Where job ``number`` writes."""

    def collect(self, con, number: int, output_dir: str, response: bool,
                per_batch: PerBatch | None = None) -> pa.Table:
        """Job ``number``'s answers, parsed (the task's ``parsed_fields``), each parsed batch
        through ``per_batch`` (``families.lines.parse_output``)."""

    def clean_up(self) -> None:
        """Remove what the run staged (outputs stay)."""


class RunStore(Protocol):
    """Manifests by run id, and an index from fingerprints to run ids."""

    def save(self, manifest: dict) -> None: ...

    def load(self, run_id: str) -> dict | None:
        """The run's manifest; None when there is none; InputError when it is damaged."""

    def delete(self, run_id: str) -> None: ...

    def link(self, fingerprint: str, run_id: str) -> None:
        """Point the fingerprint at the run, whatever it pointed at."""

    def claim(self, fingerprint: str, run_id: str) -> str:
        """Point the fingerprint at the run unless it points at one already, atomically;
        the run it points at now (``run_id`` when this claim won)."""

    def find(self, fingerprint: str) -> str | None: ...

    def run_ids(self) -> list[str]: ...


def _backend(uri: str, name: str = "staging") -> ModuleType:
    for backend in _BACKENDS:
        if isinstance(uri, str) and uri.startswith(backend.SCHEME):
            return backend
    raise InputError(
        f"{name}={uri!r} is neither a Cloud Storage nor a BigQuery location. Pass "
        f"{name}='gs://my-bucket/some/prefix' or {name}='bq://my-project.my_dataset'"
        + (" (or set PDBATCH_STAGING)." if name == "staging" else "."))


def checked(uri: str, name: str = "staging") -> str:
    """``uri`` checked whole: ``gs://bucket[/prefix]`` (returned without a trailing slash) or
    ``bq://project.dataset``; InputError naming ``name`` and the fix otherwise."""
    return _backend(uri, name).checked(uri, name)


def in_the_cloud(uri: str) -> bool:
    """Whether ``uri`` names a Cloud Storage or BigQuery location."""
    return isinstance(uri, str) and uri.startswith((gcs.SCHEME, bigquery.SCHEME))


def local_folder(uri: str) -> bool:
    """Whether ``uri`` is a local folder (``file://``), which keeps runs of the Gemini
    Developer API only."""
    return _backend(uri) is folder


def folder_uri(path: str) -> str:
    """The location of the local folder at absolute ``path`` (``file:///path``)."""
    return folder.SCHEME + path


def local_path(uri: str) -> str:
    """The path of a local folder location (``file:///path`` -> ``/path``)."""
    return uri[len(folder.SCHEME):] if local_folder(uri) else uri


def hosts_files(uri: str) -> bool:
    """Whether files sent with ``files=`` can be uploaded to this location."""
    return _backend(uri).HOSTS_FILES


def tabular(uri: str) -> bool:
    """Whether the jobs' inputs or outputs there are tables."""
    return _backend(uri).TABULAR


def check(uri: str, name: str, region: str, project: str | None = None,
          credentials=None) -> None:
    """Refuse, before anything is staged, a location the jobs of ``region`` cannot use (a
    BigQuery dataset that does not exist or is in another region)."""
    _backend(uri, name).check(uri, name, region, project, credentials)


def open_location(uri: str, run_id: str, parser: Parser, *, project: str | None = None,
                  credentials=None, labels: dict[str, str] | None = None,
                  carried=()) -> Location:
    """Run ``run_id``'s place in the checked location ``uri`` (``labels`` and ``carried``
    columns for what it creates; ``project`` runs its BigQuery load jobs)."""
    if _backend(uri) is gcs:
        return gcs.GcsLocation(uri, run_id, parser, credentials)
    if _backend(uri) is folder:
        raise InputError(f"{uri}: jobs do not read or write local folders.")
    return bigquery.BigQueryLocation(uri, run_id, parser, project=project,
                                     credentials=credentials, labels=labels, carried=carried)


def exchange_folder(uris: tuple[str, ...], run_id: str, credentials=None) -> tuple[Any, str]:
    """Where the tasks of a Dask run hand each other what is too large to hold in memory
    (request hashes by bucket, answers by partition): a filesystem and a folder,
    ``<location>/<run id>/exchange`` in the first Cloud Storage location of ``uris`` (the
    staging location, then the output location), else a local temporary folder, which only
    the workers of one machine share."""
    for uri in uris:
        if isinstance(uri, str) and _backend(uri) is gcs:
            return gcs.filesystem(credentials), f"{uri}/{run_id}/exchange"
    import fsspec

    return fsspec.filesystem("file"), os.path.join(tempfile.gettempdir(),
                                                   "pdbatch-exchange", run_id)


def open_store(uri: str, credentials=None) -> RunStore:
    """The run store of the checked staging location ``uri``."""
    if _backend(uri) is gcs:
        return gcs.GcsStore(uri, credentials)
    if _backend(uri) is folder:
        return folder.FolderStore(uri)
    return bigquery.BigQueryStore(uri, credentials)


def staging_of(input_uri: str, run_id: str) -> str | None:
    """The staging location a job's input (file or table) was staged in, if it is a run's."""
    for backend in _BACKENDS:
        if input_uri.startswith(backend.SCHEME):
            return backend.staging_of(input_uri, run_id)
    return None


def carried_columns(df, carry) -> list:
    """The checked ``carry`` columns of ``df``, as the table fields they are staged as."""
    return bigquery.carried_columns(df, carry)


def is_file_uri(text: str) -> bool:
    """Whether a ``files=`` cell names a Cloud Storage object (``gs://...``)."""
    return text.startswith(gcs.SCHEME)


def valid_file_uri(text: str) -> bool:
    """Whether a ``files=`` cell is a whole ``gs://bucket/object`` URI."""
    return whole(gcs.OBJECT_URI, text) is not None


def missing_files(uris: set[str], credentials=None) -> set[str]:
    """Which of these ``files=`` objects do not exist (a listing per folder, not a request
    per object)."""
    return gcs.missing_objects(uris, credentials)


def files_folder(uri: str) -> str:
    """Where files sent with ``files=`` go under a location that ``hosts_files``."""
    return gcs.files_folder(uri)
