"""Everything a run decides before it may cost money: checked arguments, rendered prompts,
the rows to send (invalid rows skipped, repeated requests sent once) and the run's fingerprint.

Nothing here uploads or submits; a BigQuery location's dataset is only looked up.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import config, engine, formats, multimodal, overrides, prompts, structured
from .errors import InputError
from .formats import lines
from .results import ResultBuilder, check_no_clash
from .staging import bigquery
from .staging.gcs import string_bytes

#: Service limit of requests per job (spec §4).
MAX_REQUESTS_PER_JOB = 200_000
ON_INVALID = ("raise", "skip")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")
#: Bumped when what the fingerprint covers changes, so old runs are not re-attached wrongly.
_FINGERPRINT_VERSION = "1"


@dataclass
class Prepared:
    """A checked call: its frame, arguments, settings, model family and the rows to send."""

    df: pd.DataFrame
    arguments: dict
    settings: config.Settings
    schema: structured.Schema | None
    family: formats.Family
    bq: object | None  # a BigQuery client when the run stages or writes there
    carried: list  # BigQuery schema fields of the carried columns
    texts: pa.ChunkedArray  # each row's rendered prompt
    reasons: np.ndarray  # "" or why the row is not sent
    file_plan: multimodal.FilePlan | None
    row_config: pa.ChunkedArray | None
    send: np.ndarray  # rows sent: valid and not repeating an earlier row's request
    copies: np.ndarray  # rows answered with an earlier row's answer ...
    originals: np.ndarray  # ... namely these rows'
    tag: str = ""  # "" for the call itself; e.g. "/retry-1" for a follow-up pass
    fingerprint: str = ""

    @property
    def sent_rows(self) -> np.ndarray:
        """Positions of the rows sent, in order: a job sends a consecutive slice of these."""
        return np.flatnonzero(self.send)

    def results(self) -> ResultBuilder:
        """An empty result for every row, with the skipped and repeated rows filled in."""
        builder = ResultBuilder(len(self.df), self.arguments["include_response"])
        skipped = np.flatnonzero(self.reasons != "")
        builder.skip(skipped, self.reasons[skipped])
        builder.copy_rows(self.copies, self.originals)
        return builder

    def carried_values(self) -> pa.Table | None:
        if not self.carried:
            return None
        return pa.Table.from_pandas(self.df[[f.name for f in self.carried]],
                                    preserve_index=False)


def prepare(df: pd.DataFrame, arguments: dict, tag: str = "") -> Prepared:
    """Check ``batch_predict``'s ``arguments`` against ``df``; render, skip, dedup and
    fingerprint (``tag`` names a follow-up pass, such as a retry, so that it is a run of its
    own). Raises InputError before anything is uploaded."""
    a = arguments
    if not isinstance(df, pd.DataFrame):
        raise InputError(f"batch_predict needs a pandas DataFrame, got {type(df).__name__}.")
    if a["on_invalid"] not in ON_INVALID:
        raise InputError(f"on_invalid={a['on_invalid']!r}: choose one of {ON_INVALID}.")
    if not (isinstance(a["max_retries"], int) and 0 <= a["max_retries"] <= 10):
        raise InputError("max_retries must be a whole number from 0 to 10.")
    limit = a["max_requests_per_job"]
    if not (isinstance(limit, int) and 0 < limit <= MAX_REQUESTS_PER_JOB):
        raise InputError(f"max_requests_per_job must be between 1 and {MAX_REQUESTS_PER_JOB}.")
    cap = a["max_concurrent_jobs"]
    if cap is not None and not (isinstance(cap, int) and cap > 0):
        raise InputError("max_concurrent_jobs must be None or a whole number of at least 1.")
    settings = settings_of(a)
    check_labels(a["labels"])
    schema = (structured.schema_of(a["response_schema"])
              if a["response_schema"] is not None else None)
    check_no_clash(df, a["result_prefix"], a["include_response"],
                   (structured.column_names(schema, a["expand"]) if schema else [])
                   + (["attempts"] if a["max_retries"] else []))
    carried = bigquery.carried_columns(df, a["carry"])
    if schema and formats.resolve(a["model"]).name != "gemini":
        raise InputError("response_schema is supported for Gemini models in this version.")
    request_config = (structured.generation_config(a["generation_config"], schema) if schema
                      else a["generation_config"])
    family = formats.resolve(a["model"], a["system_instruction"], request_config,
                             a["safety_settings"], row_config=bool(a["config_cols"]))
    bq = _bigquery(settings, a["credentials"])
    if bq is not None and family.name != "gemini":
        raise InputError(f"BigQuery staging and output support Gemini models in this version; "
                         f"stage {a['model']!r} on Cloud Storage (staging='gs://...').")
    texts, reasons = prompts.render(df, a["prompt_col"], a["prompt"])
    file_plan = _file_plan(df, a["files"], reasons, family, settings)
    row_config = _row_config(df, a["config_cols"], request_config, reasons)
    if a["on_invalid"] == "raise" and (reasons != "").any():
        raise InputError(prompts.describe_invalid(df, reasons))

    send = reasons == ""
    copies = originals = np.array([], dtype=np.int64)
    if a["dedup"] and not carried and send.any():
        copies, originals = _duplicates(texts, send, file_plan, row_config)
        send[copies] = False
    prepared = Prepared(df, arguments, settings, schema, family, bq, carried, texts, reasons,
                        file_plan, row_config, send, copies, originals, tag)
    prepared.fingerprint = fingerprint(prepared)
    return prepared


def settings_of(arguments: dict) -> config.Settings:
    """The checked settings of a call's arguments (then the environment)."""
    a = arguments
    return config.resolve(a["project"], a["location"], a["staging"], a["api_endpoint"],
                          a["transport"], a["output"])


def check_labels(labels) -> None:
    """Refuse job labels the service would refuse."""
    for key, value in (labels or {}).items():
        if not (isinstance(key, str) and _LABEL_KEY.match(key)
                and isinstance(value, str) and _LABEL_VALUE.match(value)):
            raise InputError(f"label {key!r}: {value!r} is not a valid Vertex AI label: keys "
                             "start with a lowercase letter; keys and values use lowercase "
                             "letters, digits, '_' and '-', at most 63 characters.")


def fingerprint(p: Prepared) -> str:
    """32 hex digits over what the jobs would be sent: the model and request frame (system
    instruction, generation config, safety settings), where they are staged and written, how
    they are split, and every sent row's position, prompt, files, settings and carried values.
    Result-side options (prefix, response column, expand) are not covered."""
    digest = hashlib.blake2b(digest_size=16)

    def add(data) -> None:
        data = memoryview(data).cast("B")
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)

    header = {"version": _FINGERPRINT_VERSION, "pass": p.tag, "model": p.family.resource,
              "frame": dataclasses.asdict(p.family.frame), "staging": p.settings.staging,
              "output": p.settings.output_location, "project": p.settings.project,
              "location": p.settings.location, "rows": len(p.df),
              "per_job": p.arguments["max_requests_per_job"],
              "carry": [f.name for f in p.carried]}
    add(json.dumps(header, sort_keys=True).encode())
    add(np.packbits(p.send).tobytes())
    add_strings = _strings_adder(add)
    add_strings(of_rows(p.texts, p.send))
    if p.file_plan is not None:
        add_strings(p.file_plan.json_parts(p.sent_rows))
    if p.row_config is not None:
        add_strings(of_rows(p.row_config, p.send))
    if p.carried:
        values = p.df[[f.name for f in p.carried]].iloc[p.sent_rows]
        add(pd.util.hash_pandas_object(values, index=False).to_numpy().tobytes())
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
    key = {"prompt": of_rows(texts, send)}
    if file_plan is not None:
        key["parts"] = file_plan.json_parts(rows)
    if row_config is not None:
        key["config"] = of_rows(row_config, send)
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


def _row_config(df, config_cols, request_config, reasons) -> pa.ChunkedArray | None:
    """Each row's own generationConfig items, as JSON text; their problems become row
    reasons."""
    if not config_cols:
        return None
    table = overrides.row_config(df, config_cols, request_config, reasons)
    return lines.json_items(engine.connect(), table, "," if request_config else "")


def _file_plan(df, files, reasons, family, settings) -> multimodal.FilePlan | None:
    """The checked file columns; their problems become row reasons."""
    if not files:
        return None
    if not family.frame.close_part:
        raise InputError("files= is supported for Gemini models in this version.")
    file_plan = multimodal.plan(df, files, reasons)
    if file_plan.local and not any(u.startswith("gs://") for u in
                                   (settings.staging, settings.output_location)):
        raise InputError("Local files and bytes are uploaded to Cloud Storage before the run: "
                         "pass a gs:// staging or output location, or use gs:// URIs.")
    return file_plan


def _bigquery(settings: config.Settings, credentials):
    """A BigQuery client when the run stages or writes there, after checking its datasets;
    None otherwise."""
    names = {"staging": settings.staging, "output": settings.output_location}
    used = {name: uri for name, uri in names.items() if uri.startswith("bq://")}
    if not used:
        return None
    bq = bigquery.client(settings.project, credentials)
    for name, uri in used.items():
        bigquery.check_dataset(bq, uri, settings.location, name)
    return bq
