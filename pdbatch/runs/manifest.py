"""A run's manifest: the typed record, kept as JSON in its staging location
(``storage.RunStore``), from which any process can pick the run up again.

It holds the run id, fingerprint, follow-up pass ``tag`` (``"pass"`` in JSON), creation time,
model, service, project, location, staging and output locations, row and request counts,
labels, the call's options (``Options.to_json``) and each job created so far (``JobEntry``:
number, resource name, requests, and which slice of the sent rows, or which Dask shards, it
answers); ``submitted`` turns true once every job exists. ``Manifest.read`` fills in what a
manifest of an older version lacks (and ignores what a newer one adds), so that every
version's runs can be attached.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .. import config, service
from ..errors import InputError
from ..options import Options
from ..service import RUN_LABEL
from ..service.base import FINGERPRINT_LABEL


@dataclass
class JobEntry:
    """One job of a run: its number, resource name and how many requests it answers; a
    pandas run's job answers ``count`` sent rows from ``first``, a Dask run's reads
    ``shards`` (indexes into ``Manifest.shards``)."""

    number: int
    name: str
    count: int
    first: int = 0
    shards: list[int] = field(default_factory=list)

    def to_json(self) -> dict:
        entry = {"number": self.number, "name": self.name, "count": self.count}
        return {**entry, **({"shards": self.shards} if self.shards else {"first": self.first})}

    @classmethod
    def read(cls, stored: Any, run_id: str) -> JobEntry:
        """A stored job entry; InputError when it is not one pdbatch wrote."""
        numbers = ("number", "first", "count")
        if not (isinstance(stored, dict) and service.is_job_name(stored.get("name"))
                and all(isinstance(stored.get(k, 0), int) for k in numbers)
                and all(isinstance(i, int) for i in stored.get("shards", []))):
            raise InputError(f"The manifest of {run_id} has a job entry pdbatch did not write "
                             f"({str(stored)[:200]}). Remove the manifest: the same call then "
                             "rebuilds it from its jobs' labels; or pass force=True.")
        return cls(stored.get("number", 0), stored["name"], stored.get("count", 0),
                   stored.get("first", 0), list(stored.get("shards", [])))


@dataclass
class Manifest:
    """A run's record (see the module's docstring). ``dask``: made from a Dask frame, whose
    ``partitions`` fingerprints and staged ``shards`` it keeps."""

    run: str
    fingerprint: str
    created: str
    model: str
    rows: int
    requests: int
    tag: str = ""
    parent: str = ""
    service: str = config.VERTEX
    project: str = ""
    location: str = ""
    staging: str = ""
    output: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    options: dict[str, Any] = field(default_factory=dict)
    jobs: list[JobEntry] = field(default_factory=list)
    submitted: bool = True
    updated: str = ""
    estimate: dict | None = None
    dask: bool = False
    dedup_across: bool = False
    partitions: list[str] = field(default_factory=list)
    shards: list[dict] = field(default_factory=list)

    @property
    def job_names(self) -> list[str]:
        return [job.name for job in self.jobs]

    @property
    def counts(self) -> list[int]:
        return [job.count for job in self.jobs]

    def to_json(self) -> dict:
        """The JSON object a ``RunStore`` keeps."""
        stored = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        stored["pass"] = stored.pop("tag")
        stored["jobs"] = [job.to_json() for job in self.jobs]
        return stored

    @classmethod
    def read(cls, stored: dict) -> Manifest:
        """A stored manifest, with defaults for the fields an older version did not write;
        an InputError when a job entry is not one pdbatch wrote."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in stored.items() if k in known}
        values["tag"] = stored.get("pass", "")
        run_id = stored.get("run", "")
        values["jobs"] = [JobEntry.read(job, run_id) for job in stored.get("jobs", [])]
        values["output"] = values.get("output") or ""
        try:
            return cls(**values)
        except TypeError as err:
            raise InputError(f"The manifest of {run_id or 'a run'} lacks fields pdbatch "
                             f"writes ({err}). Remove it, or pass force=True.") from None


def new(run_id: str, fingerprint: str, settings: config.Settings, options: Options,
        resource: str, rows: int, requests: int, tag: str = "", **extra) -> Manifest:
    """A new run's manifest, with no job yet."""
    labels = {**(options.run.labels or {}), RUN_LABEL: run_id, FINGERPRINT_LABEL: fingerprint}
    return Manifest(
        run=run_id, fingerprint=fingerprint, tag=tag,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        model=resource.rsplit("/", 1)[-1], project=settings.project,
        location=settings.location, service=settings.service, staging=settings.staging,
        output=settings.output, rows=rows, requests=requests, labels=labels,
        options=options.to_json(), submitted=False, **extra)


def options_of(manifest: Manifest, credentials=None, **changes) -> Options:
    """The options of the call that made the run (today's defaults for options it predates),
    with ``changes``. Where the call left its project, location, staging or output to the
    environment, the run's own are used: reading a run does not depend on the reader's
    environment."""
    where = {"project": manifest.project, "location": manifest.location,
             "staging": manifest.staging, "output": manifest.output or None}
    stored = dict(manifest.options)
    stored.update({k: v for k, v in where.items() if stored.get(k) is None})
    return Options.from_json(stored, credentials, **changes)


def settings_of(manifest: Manifest, staging: str, project: str | None = None,
                location: str | None = None, api_endpoint: str | None = None,
                transport: str = "rest", api_key: str | None = None) -> config.Settings:
    """Where the run's jobs are: its own service, project, location and output, unless
    overridden."""
    return config.resolve(project or manifest.project, location or manifest.location,
                          staging, api_endpoint, transport, manifest.output or None,
                          manifest.service, api_key)
