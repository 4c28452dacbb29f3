"""The public functions that find a recorded run: ``attach`` (its handle), ``answers`` (its
answers without the frame), ``runs`` (the runs of a staging location) and ``read_results`` (a
run's result columns read again). Where runs are recorded is ``config.runs_place``; a recorded
run's driver is the one that made it."""

from __future__ import annotations

import importlib.util
import logging
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from . import config, families, storage
from . import service as services
from .columns import SUCCESS, pandas_array
from .errors import InputError, PdbatchError, ServiceError
from .runs import keys, local
from .runs import manifest as manifests
from .runs.handle import BatchRun, summarise
from .runs.jobs import output_lines
from .runs.manifest import RUN_LABEL, Manifest

if TYPE_CHECKING:
    import dask.dataframe as dd
    from google.auth.credentials import Credentials

log = logging.getLogger(__name__)


def attach(run: str, *, staging: str | None = None, project: str | None = None,
           location: str | None = None, api_endpoint: str | None = None,
           transport: str = "rest", credentials: Credentials | None = None,
           service: str | None = None, api_key: str | None = None) -> BatchRun:
    """The ``BatchRun`` of an earlier ``submit`` or ``batch_predict``, from its run id
    (``run.id``, ``out.attrs["pdbatch_run"]``) and the staging location it was made in
    (default ``PDBATCH_STAGING``; for ``service="gemini-api"`` the local runs folder), or
    from one of its jobs' resource names (the staging location is then read from the job; a
    Developer API batch ``batches/...``: the local runs folder). ``result(df)`` then needs the
    frame it was made from.

    Args:
        run: a run id (``run-...``), a Vertex AI job's resource name
            (``projects/P/locations/L/batchPredictionJobs/N``) or a Developer API batch's
            name (``batches/...``).
        staging: where the run was made (default ``PDBATCH_STAGING``; read from the job when
            ``run`` names one).
        project: override the recorded project (default: the run's own).
        location: override the recorded location (default: the run's own).
        api_endpoint: the Vertex AI endpoint (default as in ``batch_predict``).
        transport: ``"rest"`` (default) or ``"grpc"``.
        credentials: google-auth credentials (default: application default credentials).
        service: ``"vertex"`` or ``"gemini-api"`` (default: ``PDBATCH_SERVICE``, else
            Vertex AI; a ``batches/...`` name means the Developer API).
        api_key: the Gemini Developer API's key (default as in ``batch_predict``).

    Returns:
        The run's ``BatchRun`` (``status()``, ``wait()``, ``result(df)``, ``cancel()``).

    Examples:
        >>> run = pdbatch.attach("run-20261121-183000-a1b2c3",  # doctest: +SKIP
        ...                      staging="gs://my-bucket/pdbatch")
        >>> run.status().summary  # doctest: +SKIP
        'succeeded: 12/12 requests done, 1/1 jobs ended'
    """
    run_id = run
    job_kind = services.kind_of_job(run)
    if job_kind is not None:
        settings = job_kind.job_settings(run, staging, api_endpoint, transport, api_key)
        job = services.open_service(settings, credentials).get(run)
        run_id = _run_of_job(job, run)
        staging = staging or storage.staging_of(job.input_uri, run_id)
        service = job_kind.name
    elif not storage.is_run_id(run):
        raise InputError(f"run={run!r} is neither a pdbatch run id such as "
                         "'run-20261121-183000-a1b2c3' nor a batch prediction job name "
                         "('projects/P/locations/L/batchPredictionJobs/123', 'batches/...').")
    found, where = _stored(run_id, staging, credentials, service)
    options = manifests.options_of(found, credentials, api_key=api_key)
    settings = manifests.settings_of(found, where, project, location, api_endpoint, transport,
                                     api_key)
    run = BatchRun(found, settings, options, _driver(found))
    run.reattached = True
    if run.jobs:
        try:
            run.status()  # its state now, for its repr and notebook view
        except ServiceError as err:  # the handle still works once the service answers
            log.warning("the state of %s is unknown for now: %s", run.id, err)
    return run


def answers(run: str, *, staging: str | None = None,
            credentials: Credentials | None = None, service: str | None = None,
            api_key: str | None = None) -> pd.DataFrame:
    """A finished run's answers without the frame it was made from: one row per answered or
    failed request, keyed by the position of its row in that frame (``row``; for a Dask run,
    ``partition`` and ``row`` within it), with ``status`` ("ok" when answered), ``text``,
    ``finish_reason``, the token counts, ``response`` and ``job``. Rows
    that repeated another row's request, were skipped, or belong to a follow-up pass are not
    in it: ``read_results`` with the frame gives every row.

    Args:
        run: the run id or a job's name, as for ``attach``.
        staging: where the run was made (default ``PDBATCH_STAGING``).
        credentials: google-auth credentials (default: application default credentials).
        service: ``"vertex"`` or ``"gemini-api"``, as for ``attach``.
        api_key: the Gemini Developer API's key, as for ``attach``.

    Returns:
        A pandas frame of one row per answer, sorted by ``row``.

    Raises:
        InputError: the run has not ended yet.

    Examples:
        >>> found = pdbatch.answers("run-20261121-183000-a1b2c3",  # doctest: +SKIP
        ...                         staging="gs://my-bucket/pdbatch")
        >>> found[["row", "status", "text"]]  # doctest: +SKIP
    """
    handle = attach(run, staging=staging, credentials=credentials, service=service,
                    api_key=api_key)
    status = handle.status()
    if not status.finished:
        raise InputError(f"{handle.id} is still {status.state}: its answers are read once it "
                         "has ended.")
    found = output_lines(handle.id, handle.settings, handle.options, handle.manifest.jobs,
                         status.jobs, credentials)
    columns = ["status", *families.resolve(handle.options.request.model).task.fields,
               "response", "job"]
    out = pd.DataFrame({name: pandas_array(found.column(name)) for name in columns})
    out["status"] = out["status"].mask(out["status"] == "", SUCCESS)
    row_keys = found.column("key").to_numpy(zero_copy_only=False).astype(np.int64)
    dask = handle.manifest.dask
    if dask:
        out.insert(0, "partition", pd.array(keys.partition_of(row_keys), dtype="Int64"))
        row_keys = keys.row_of(row_keys)
    out.insert(int(dask), "row", pd.array(row_keys, dtype="Int64"))
    return out.sort_values(list(out.columns[:1 + dask]), ignore_index=True)


def runs(staging: str | None = None, credentials: Credentials | None = None,
         service: str | None = None) -> pd.DataFrame:
    """The runs recorded in a staging location (default ``PDBATCH_STAGING``), newest first:
    run id, creation time (UTC timestamp), state now (one list call per run), model, rows,
    requests, jobs, ``pass`` ("" for a call, ``/retry-1``, ``/reask``, ... for its follow-up
    passes) and ``parent`` (the run a pass follows), whether every job was submitted, and the
    fingerprint. A location with no runs logs a warning. ``pdbatch.attach(run_id,
    staging=...)`` gives a run's handle. ``service="gemini-api"`` (or a local folder as
    ``staging``): the runs of the Gemini Developer API kept in that folder (default
    ``PDBATCH_RUNS_FOLDER``, else ``~/.pdbatch/runs``).

    Args:
        staging: the staging location (or, for the Developer API, the local folder).
        credentials: google-auth credentials (default: application default credentials).
        service: ``"vertex"`` or ``"gemini-api"`` (default ``PDBATCH_SERVICE``, else
            Vertex AI).

    Returns:
        A pandas frame of one row per run, newest first.

    Examples:
        >>> pdbatch.runs("gs://my-bucket/pdbatch")[["run", "state", "rows"]]  # doctest: +SKIP
    """
    where = config.runs_place(staging, service)
    store = storage.open_store(where, credentials)
    found = []
    for run_id in store.run_ids():
        try:
            manifest = store.load(run_id)
            if manifest is not None:
                found.append(Manifest.read(manifest))
        except InputError as err:  # one damaged manifest does not hide the others
            log.warning("%s", err)
    if not found:
        log.warning("no pdbatch runs are recorded in %s: is that the staging location the runs "
                    "were made with?", where)
    opened: dict = {}  # by (service, project, location)

    def state(manifest: Manifest) -> str:
        try:
            settings = manifests.settings_of(manifest, where)
            key = (settings.service, settings.project, settings.location)
            if key not in opened:
                opened[key] = services.open_service(settings, credentials)
            return _state(opened[key], manifest)
        except PdbatchError as err:  # one run the service cannot tell about hides no other
            log.warning("the state of %s is unknown: %s", manifest.run, err)
            return "unknown"

    columns = ["run", "created", "state", "model", "rows", "requests", "jobs", "pass",
               "parent", "submitted", "fingerprint"]
    table = pd.DataFrame([{**m.to_json(), "jobs": len(m.jobs), "state": state(m)}
                          for m in found], columns=columns)
    table["created"] = pd.to_datetime(table["created"], utc=True, format="ISO8601")
    return table.sort_values("created", ascending=False, ignore_index=True)


def _state(batch, manifest: Manifest) -> str:
    """A recorded run's state now (one list call for its jobs where the service lists
    cheaply, else a GET each)."""
    if not manifest.jobs:
        return "no jobs" if manifest.submitted else "submitting"
    names = manifest.job_names
    if not batch.lists_cheaply:
        known = services.look(batch, names, {})
    else:
        infos = {info.name: info for info in batch.labelled(RUN_LABEL, manifest.run)}
        known = [infos[name] for name in names if name in infos]
        if len(known) < len(names):
            return "jobs not found"
    state = summarise(known, manifest.counts).state
    return state if manifest.submitted else f"{state} (submitting)"


def read_results(df: pd.DataFrame | dd.DataFrame, *, run: str, staging: str | None = None,
                 output: str | None = None, model: str | None = None,
                 credentials: Credentials | None = None, result_prefix: str | None = None,
                 include_response: bool | None = None, service: str | None = None,
                 api_key: str | None = None) -> pd.DataFrame | dd.DataFrame:
    """``df`` with the result columns of run ``run`` (``out.attrs["pdbatch_run"]``), read again
    from the run's outputs: no job is created, none is waited for, nothing is paid. The same
    columns and values as the call that made it (its follow-up passes included), from the
    run's manifest in ``staging`` (default: ``output``, else ``PDBATCH_STAGING``). ``df`` must
    be the frame the run was made from (a Dask run: its Dask frame; checked by fingerprint).
    ``model``, when given, must be the run's; ``result_prefix`` and ``include_response``
    default to the run's own.

    Args:
        run: the run id.
        staging: where the run was made (default: ``output``, else ``PDBATCH_STAGING``).
        output: where its jobs wrote, when that is not ``staging``.
        model: the run's model, checked when given.
        credentials: google-auth credentials (default: application default credentials).
        result_prefix: prefix of the result columns (default: the run's).
        include_response: keep the ``response`` column (default: as the run did).
        service: ``"vertex"`` or ``"gemini-api"``, as for ``attach``.
        api_key: the Gemini Developer API's key, as for ``attach``.

    Returns:
        ``df`` with the run's result columns (a lazy frame for a Dask run).

    Examples:
        >>> out = df.gemini.read_results(run=out.attrs["pdbatch_run"],  # doctest: +SKIP
        ...                              staging="gs://my-bucket/pdbatch")
    """
    if not storage.is_run_id(run):
        raise InputError(f"run={run!r} is not a pdbatch run id such as "
                         "'run-20261121-183000-a1b2c3' (see out.attrs['pdbatch_run']).")
    found, where = _stored(run, staging or output, credentials, service)
    if model is not None and (not isinstance(model, str)
                              or found.model != model.rsplit("/", 1)[-1]):
        raise InputError(f"{run} was made with model {found.model!r}, not {model!r}.")
    shown = {name: value for name, value in (("result_prefix", result_prefix),
                                             ("include_response", include_response))
             if value is not None}
    options = manifests.options_of(found, credentials, api_key=api_key, **shown)
    settings = manifests.settings_of(found, where, api_key=api_key)
    handle = BatchRun(found, settings, options, _driver(found, read_only=True))
    return handle.result(df)


def _stored(run_id: str, staging: str | None, credentials, service_name: str | None = None
            ) -> tuple[Manifest, str]:
    """The manifest of ``run_id`` where runs are recorded (``config.runs_place``), and
    where."""
    where = config.runs_place(staging, service_name)
    found = storage.open_store(where, credentials).load(run_id)
    if found is None:
        hint = ("" if storage.local_folder(where) else " (runs of service='gemini-api' are "
                "kept in a local folder: pass service='gemini-api')")
        raise InputError(f"No run {run_id} in {where}: pass staging= where it was made{hint}.")
    return Manifest.read(found), where


def _run_of_job(job, name: str) -> str:
    """The run that made a job, from its run label."""
    run_id = job.labels.get(RUN_LABEL, "")
    if not storage.is_run_id(run_id):
        raise InputError(f"{name} was not made by pdbatch (it has no pdbatch-run label).")
    return run_id


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported here (found without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # its parent package is missing (or blocked)
        return False


def _driver(manifest: Manifest, read_only: bool = False):
    """The driver of a recorded run (the Dask driver is imported only for Dask runs)."""
    if manifest.dask:
        if not _installed("dask.dataframe"):
            raise InputError(f"{manifest.run} was made from a Dask frame, and Dask is not "
                             "installed here: pip install 'pdbatch[dask]'.")
        from .runs import dask as on_dask

        return on_dask.DaskDriver(read_only=read_only)
    return local.PandasDriver(read_only=read_only)
