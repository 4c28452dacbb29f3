"""Everything a run decides before it may cost money: the options checked against the frame,
rendered prompts, the rows to send (invalid rows skipped, repeated requests sent once) and the
run's fingerprint. ``Prepared`` is complete and frozen when ``prepare`` returns.

Nothing here uploads or submits; a BigQuery location's dataset is only looked up.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import config, engine, families, multimodal, overrides, prompts, service, storage, structured
from .columns import check_no_clash
from .errors import InputError
from .families import lines
from .families.lines import Frame, string_bytes
from .options import Options

log = logging.getLogger(__name__)
_WARNED: set[str] = set()

#: Bumped when what the fingerprint covers changes, so old runs are not re-attached wrongly.
_FINGERPRINT_VERSION = "1"


@dataclass(frozen=True)
class Rows:
    """Each row's rendered request parts, and why a row is not sent ("" when it is)."""

    texts: pa.ChunkedArray  # each row's rendered prompt
    reasons: np.ndarray
    files: multimodal.FilePlan | None
    row_config: pa.ChunkedArray | None  # each row's own generationConfig items, JSON text
    carried: tuple  # BigQuery schema fields of the columns carried through the service


@dataclass(frozen=True)
class Sending:
    """Which rows are sent: valid rows that do not repeat an earlier row's request; each
    repeating row (``copies``) gets the answer of the row it repeats (``originals``)."""

    send: np.ndarray
    copies: np.ndarray
    originals: np.ndarray

    @property
    def rows(self) -> np.ndarray:
        """Positions of the rows sent, in order: a job sends a consecutive slice of these."""
        return np.flatnonzero(self.send)


@dataclass(frozen=True)
class Prepared:
    """A checked call: its frame, options, settings, model family and the rows to send."""

    df: pd.DataFrame
    options: Options
    settings: config.Settings
    family: families.Family
    frame: Frame  # the request line around each prompt
    schema: structured.Schema | None
    rows: Rows
    sending: Sending
    tag: str  # "" for the call itself; e.g. "/retry-1" for a follow-up pass
    fingerprint: str

    @property
    def sent_rows(self) -> np.ndarray:
        return self.sending.rows

    def carried_values(self) -> pa.Table | None:
        if not self.rows.carried:
            return None
        return pa.Table.from_pandas(self.df[[f.name for f in self.rows.carried]],
                                    preserve_index=False)


def prepare(df: pd.DataFrame, options: Options, tag: str = "", staged: bool = True
            ) -> Prepared:
    """Check ``options`` against ``df``; render, skip, dedup and fingerprint (``tag`` names a
    follow-up pass, such as a retry, so that it is a run of its own). Raises InputError before
    anything is uploaded; nothing here uploads or submits (a BigQuery dataset is looked up).
    ``staged=False`` (an estimate) needs no staging location and does not look at it."""
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"batch_predict needs a pandas DataFrame, got {type(df).__name__}.")
    request, result = options.request, options.result
    settings = config.settings_of(options.run, options.api_key, staged)
    batch = service.kind(settings)
    batch.refuse(options)
    schema = (structured.schema_of(request.response_schema)
              if request.response_schema is not None else None)
    family = families.resolve(request.model)
    check_no_clash(df, result.result_prefix, family.task.columns(result.include_response),
                   (structured.column_names(schema, result.expand) if schema else [])
                   + (["attempts"] if options.run.max_retries else []))
    carried = tuple(storage.carried_columns(df, request.carry))
    unknown = families.check_model(request.model)
    if unknown and unknown not in _WARNED:  # once per model and process
        _WARNED.add(unknown)
        log.warning("%s", unknown)
    batch.check_model(family.resource)
    if schema and not family.response_schema:
        raise InputError("response_schema is supported for Gemini models in this version.")
    request_config = (structured.generation_config(
        request.generation_config, schema, openapi=batch.openapi_schema)
        if schema else request.generation_config)
    frame = family.frame(request.system_instruction, request_config, request.safety_settings,
                         row_config=bool(request.config_cols))
    texts, reasons = prompts.render(df, request.prompt_col, request.prompt)
    file_plan = _file_plan(df, request.files, request.files_root, reasons, family, settings,
                           options.credentials)
    row_config = _row_config(df, request.config_cols, request_config, reasons,
                             family.row_settings)
    if request.on_invalid == "raise" and (reasons != "").any():
        raise InputError(prompts.describe_invalid(df, reasons))
    if staged:
        batch.check_locations(settings, family, request.model, options.credentials, len(df))
    rows = Rows(texts, reasons, file_plan, row_config, carried)

    send = reasons == ""
    copies = originals = np.array([], dtype=np.int64)
    if request.dedup and not carried and send.any():
        copies, originals = _duplicates(texts, send, file_plan, row_config)
        send[copies] = False
    sending = Sending(send, copies, originals)
    carried_values = df[[f.name for f in carried]].iloc[sending.rows] if carried else None
    fingerprint = _fingerprint(options, settings, family, frame, rows, sending, tag, len(df),
                               carried_values)
    return Prepared(df, options, settings, family, frame, schema, rows, sending, tag,
                    fingerprint)


def _fingerprint(options: Options, settings: config.Settings, family: families.Family,
                 frame: Frame, rows: Rows, sending: Sending, tag: str, n: int,
                 carried_values: pd.DataFrame | None) -> str:
    """32 hex digits over what the jobs would be sent: the model and request frame (system
    instruction, generation config, safety settings), where they are staged and written, how
    they are split, and every sent row's position, prompt, files, settings and carried values.
    Result-side options (prefix, response column, expand) are not covered."""
    digest = hashlib.blake2b(digest_size=16)

    def add(data) -> None:
        data = memoryview(data).cast("B")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    header = {"version": _FINGERPRINT_VERSION, "pass": tag, "model": family.resource,
              "frame": dataclasses.asdict(frame), "rows": n,
              "per_job": options.request.max_requests_per_job,
              "carry": [f.name for f in rows.carried],
              **service.kind(settings).fingerprint_place(settings)}
    add(json.dumps(header, sort_keys=True).encode())
    add(np.packbits(sending.send).tobytes())
    add_strings = _strings_adder(add)
    add_strings(of_rows(rows.texts, sending.send))
    if rows.files is not None:
        add_strings(rows.files.json_parts(sending.rows))
    if rows.row_config is not None:
        add_strings(of_rows(rows.row_config, sending.send))
    if carried_values is not None:
        add(pd.util.hash_pandas_object(carried_values, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def of_rows(values: pa.ChunkedArray, mask: np.ndarray) -> pa.ChunkedArray:
    """The values of the rows ``mask`` marks: ``values`` itself (no copy) when it marks all."""
    return values if mask.all() else values.filter(pa.array(mask))


def _strings_adder(add):
    """Feeds an Arrow string column to ``add``: its value lengths, nulls and bytes."""

    def add_strings(values: pa.ChunkedArray) -> None:
        for chunk in values.chunks:
            add(pc.fill_null(pc.binary_length(chunk), -1).to_numpy().astype(np.int64).tobytes())
            add(string_bytes(chunk))

    return add_strings


def _duplicates(texts: pa.ChunkedArray, send: np.ndarray, file_plan, row_config
                ) -> tuple[np.ndarray, np.ndarray]:
    """Rows whose request repeats an earlier row's (same prompt, files and settings), and the
    earlier rows they repeat. Found by a DuckDB hash of each request, then confirmed value by
    value (only rows whose hashes meet are compared)."""
    rows = np.flatnonzero(send)
    key = _request_parts(texts, send, file_plan, row_config)
    con = engine.connect()
    con.register("pdbatch_keys", pa.table(key))
    names = ", ".join(key)  # our own column names: prompt, parts, config
    hashes = con.sql(f"SELECT hash({names}) AS h FROM pdbatch_keys").to_arrow_table()
    hashes = hashes.column("h").to_numpy()
    _, first, inverse = np.unique(hashes, return_index=True, return_inverse=True)
    copy = np.flatnonzero(first[inverse] != np.arange(len(rows)))
    if not len(copy):
        return copy, copy
    original = first[inverse][copy]
    table = pa.table(key).combine_chunks()
    same = np.ones(len(copy), dtype=bool)
    for column in table.columns:  # a hash collision is not a duplicate
        same &= pc.equal(column.take(pa.array(copy)),
                         column.take(pa.array(original))).to_numpy(zero_copy_only=False)
    return rows[copy[same]], rows[original[same]]


def _request_parts(texts: pa.ChunkedArray, send: np.ndarray, file_plan, row_config
                   ) -> dict[str, pa.ChunkedArray]:
    """What makes the request of each row ``send`` marks its own: prompt, files, settings."""
    parts = {"prompt": of_rows(texts, send)}
    if file_plan is not None:
        parts["parts"] = file_plan.json_parts(np.flatnonzero(send))
    if row_config is not None:
        parts["config"] = of_rows(row_config, send)
    return parts


def request_hashes(prepared: Prepared) -> tuple[np.ndarray, np.ndarray]:
    """A 128-bit MD5 of each sent row's request (its prompt, files and settings), as two
    uint64 arrays: equal for equal requests in any process, for dedup across Dask partitions
    (where requests cannot be compared value by value; MD5 meets by accident with odds of
    about n**2 / 2**129)."""
    rows = prepared.rows
    parts = _request_parts(rows.texts, prepared.sending.send, rows.files, rows.row_config)
    con = engine.connect()
    con.register("pdbatch_requests", pa.table(parts))
    # Each part is prefixed by its length (or "-" when null), so no two requests join alike.
    joined = ", '|', ".join(f"coalesce(length({name})::VARCHAR, '-'), ':', coalesce({name}, '')"
                            for name in parts)  # our own column names
    found = con.sql(f"SELECT md5_number_upper(s) AS hi, md5_number_lower(s) AS lo FROM "
                    f"(SELECT concat({joined}) AS s FROM pdbatch_requests)").to_arrow_table()
    return (found.column("hi").to_numpy().astype(np.uint64),
            found.column("lo").to_numpy().astype(np.uint64))


def _row_config(df, config_cols, request_config, reasons, allowed=None
                ) -> pa.ChunkedArray | None:
    """Each row's own config items (the family's ``row_settings``), as JSON text; their
    problems become row reasons."""
    if not config_cols:
        return None
    table = overrides.row_config(df, config_cols, request_config, reasons, allowed)
    return lines.json_items(engine.connect(), table, "," if request_config else "")


def _file_plan(df, files, files_root, reasons, family: families.Family,
               settings: config.Settings, credentials) -> multimodal.FilePlan | None:
    """The checked file columns; their problems become row reasons. Local files go to the
    files folder of the first location that can hold them (staging, else output)."""
    if not files:
        return None
    if not family.files:
        raise InputError("files= is supported for Gemini models in this version.")
    roots = [files_root] if isinstance(files_root, (str, os.PathLike)) else files_root
    roots = [os.fspath(r) for r in roots or [os.getcwd()]]
    return service.kind(settings).plan_files(df, files, reasons, roots, settings, credentials)
