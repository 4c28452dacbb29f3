"""A run's manifest: the JSON record, kept in its staging location (``storage.RunStore``),
from which any process can pick the run up again.

It holds the run id, fingerprint, follow-up ``pass`` tag, creation time, model, project,
location, staging and output locations, row and request counts, labels, the call's options
(``Options.to_json``) and each job created so far (number, resource name, and which slice of
the sent rows, or which Dask shards, it answers); ``submitted`` turns true once every job
exists. ``read`` fills in what a manifest of an older version lacks, so that every version's
runs can be attached.
"""

from __future__ import annotations

from datetime import datetime, timezone

from .. import config, service
from ..errors import InputError
from ..options import Options
from ..service import RUN_LABEL
from ..service.base import FINGERPRINT_LABEL

__all__ = ["FINGERPRINT_LABEL", "RUN_LABEL", "new", "options_of", "read", "settings_of"]
#: Fields a manifest may lack (written by an older version), and their values then.
_DEFAULTS = {"pass": "", "parent": "", "output": "", "labels": {}, "options": {}, "jobs": [],
             "submitted": True, "dask": False,
             "dedup_across": False, "service": config.VERTEX}


def new(run_id: str, fingerprint: str, settings: config.Settings, options: Options,
        resource: str, rows: int, requests: int, tag: str = "", **extra) -> dict:
    """A new run's manifest, with no job yet."""
    labels = {**(options.run.labels or {}), RUN_LABEL: run_id, FINGERPRINT_LABEL: fingerprint}
    return {
        "run": run_id, "fingerprint": fingerprint, "pass": tag,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": resource.rsplit("/", 1)[-1],
        "project": settings.project, "location": settings.location,
        "service": settings.service, "staging": settings.staging, "output": settings.output,
        "rows": rows, "requests": requests, "labels": labels,
        "options": options.to_json(), **extra, "jobs": [], "submitted": False,
    }


def read(manifest: dict) -> dict:
    """A stored manifest with defaults for the fields an older version did not write; an
    InputError when a job entry is not one pdbatch wrote."""
    manifest = {**_DEFAULTS, **manifest}
    for job in manifest["jobs"]:
        if not (isinstance(job, dict) and service.is_job_name(job.get("name"))
                and all(isinstance(job.get(k, 0), int) for k in ("number", "first", "count"))):
            raise InputError(f"The manifest of {manifest['run']} has a job entry pdbatch did not "
                             f"write ({str(job)[:200]}). Remove the manifest: the same call then "
                             "rebuilds it from its jobs' labels; or pass force=True.")
    return manifest


def options_of(manifest: dict, credentials=None, **changes) -> Options:
    """The options of the call that made the run (today's defaults for options it predates),
    with ``changes``. Where the call left its project, location, staging or output to the
    environment, the run's own are used: reading a run does not depend on the reader's
    environment."""
    where = {"project": manifest["project"], "location": manifest["location"],
             "staging": manifest["staging"], "output": manifest["output"] or None}
    stored = dict(manifest["options"])
    stored.update({k: v for k, v in where.items() if stored.get(k) is None})
    return Options.from_json(stored, credentials, **changes)


def settings_of(manifest: dict, staging: str, project: str | None = None,
                location: str | None = None, api_endpoint: str | None = None,
                transport: str = "rest", api_key: str | None = None) -> config.Settings:
    """Where the run's jobs are: its own service, project, location and output, unless
    overridden."""
    return config.resolve(project or manifest["project"], location or manifest["location"],
                          staging, api_endpoint, transport, manifest["output"] or None,
                          manifest["service"], api_key)
