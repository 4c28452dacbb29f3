"""Where runs are remembered: each run's manifest, and an index from fingerprints to runs,
kept in the run's staging location so that any process can find them again.

Cloud Storage: ``<staging>/<run id>/manifest.json`` and ``<staging>/fingerprints/<fp>``.
BigQuery: one-row tables ``pdbatch_<run>_manifest`` and ``pdbatch_fingerprint_<fp>``.
A manifest is JSON: run id, fingerprint, creation time, model, row and request counts, the
options of the call, and each job created so far (number, resource name, and which slice of
the sent rows it answers); ``submitted`` turns true once every job exists.
"""

from __future__ import annotations

import json
import re

from .staging import bigquery, gcs

RUN_ID = re.compile(r"^run-\d{8}-\d{6}-[0-9a-f]{6}$")
_FINGERPRINT = re.compile(r"^[0-9a-f]{32}$")


def open_store(staging: str, bq=None, credentials=None):
    """The store of a checked staging location (``gs://...`` or ``bq://project.dataset``;
    ``bq``: a BigQuery client to use, else one is made with ``credentials``)."""
    if staging.startswith("bq://"):
        return BigQueryStore(staging, bq or bigquery.client_for(staging, credentials))
    return GcsStore(staging)


class GcsStore:
    def __init__(self, root: str):
        self.root, self.fs = root, gcs.filesystem()

    def save(self, manifest: dict) -> None:
        self.fs.pipe(f"{self.root}/{manifest['run']}/manifest.json",
                     json.dumps(manifest, indent=1).encode())

    def load(self, run_id: str) -> dict | None:
        try:
            return json.loads(self.fs.cat(f"{self.root}/{_checked(run_id)}/manifest.json"))
        except FileNotFoundError:
            return None

    def link(self, fingerprint: str, run_id: str) -> None:
        self.fs.pipe(f"{self.root}/fingerprints/{_fingerprint(fingerprint)}", run_id.encode())

    def find(self, fingerprint: str) -> str | None:
        try:
            run_id = self.fs.cat(f"{self.root}/fingerprints/{_fingerprint(fingerprint)}")
        except FileNotFoundError:
            return None
        return run_id.decode()

    def run_ids(self) -> list[str]:
        found = self.fs.glob(f"{self.root}/run-*/manifest.json")
        names = (path.rsplit("/", 2)[-2] for path in found)
        return sorted(name for name in names if RUN_ID.match(name))


class BigQueryStore:
    def __init__(self, uri: str, bq):
        project, dataset = bigquery.dataset_of(uri)
        self.uri, self.dataset, self.bq = uri, f"{project}.{dataset}", bq

    def save(self, manifest: dict) -> None:
        bigquery.write_text(self.bq, self._manifest_table(manifest["run"]), json.dumps(manifest))

    def load(self, run_id: str) -> dict | None:
        text = bigquery.read_text(self.bq, self._manifest_table(_checked(run_id)))
        return json.loads(text) if text is not None else None

    def link(self, fingerprint: str, run_id: str) -> None:
        bigquery.write_text(self.bq, self._fingerprint_table(fingerprint), run_id)

    def find(self, fingerprint: str) -> str | None:
        return bigquery.read_text(self.bq, self._fingerprint_table(fingerprint))

    def run_ids(self) -> list[str]:
        prefix = f"{self.dataset}.pdbatch_run_"
        names = ("run-" + table[len(prefix):-len("_manifest")].replace("_", "-")
                 for table in bigquery.tables(self.bq, self.uri, prefix)
                 if table.endswith("_manifest"))
        return sorted(name for name in names if RUN_ID.match(name))

    def _manifest_table(self, run_id: str) -> str:
        return f"{self.dataset}.pdbatch_{run_id.replace('-', '_')}_manifest"

    def _fingerprint_table(self, fingerprint: str) -> str:
        return f"{self.dataset}.pdbatch_fingerprint_{_fingerprint(fingerprint)}"


def _checked(run_id: str) -> str:
    if not isinstance(run_id, str) or not RUN_ID.match(run_id):
        raise ValueError(f"{run_id!r} is not a pdbatch run id")
    return run_id


def _fingerprint(fingerprint: str) -> str:
    if not _FINGERPRINT.match(fingerprint):
        raise ValueError(f"{fingerprint!r} is not a pdbatch fingerprint")
    return fingerprint
