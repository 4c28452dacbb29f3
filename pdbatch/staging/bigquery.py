"""BigQuery staging: request tables in, answer tables out (spec §2.4, §3.2).

A job reads ``<dataset>.pdbatch_<run>_input_NNNNN`` (the row key, the request as JSON and any
carried columns) and writes ``<dataset>.pdbatch_<run>_output_NNNNN``: naming the output table
in full makes the service refuse to overwrite anything, and lets a run's answers be read again
from the table alone. Identifiers are checked by pattern and passed to the client library as
table references, never pasted into SQL.
"""

from __future__ import annotations

import json
import os
import re

import pandas as pd
import pyarrow as pa

from ..errors import InputError

#: Columns the service keeps for its output (spec §2.4, §3.2), plus pdbatch's own.
RESERVED = ("response", "status", "processed_time", "id", "_vertex_row_id", "request",
            "pdbatch_row")
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
_MULTI_REGIONS = {"us", "eu"}
#: pandas dtype kinds that can be carried, and their BigQuery types.
_TYPES = {"i": "INTEGER", "u": "INTEGER", "f": "FLOAT", "b": "BOOLEAN", "O": "STRING",
          "U": "STRING"}


def dataset_of(uri: str) -> tuple[str, str]:
    """``(project, dataset)`` of a checked ``bq://project.dataset``."""
    project, dataset = uri[len("bq://"):].split(".")
    return project, dataset


def client(project: str, credentials=None):
    """A BigQuery client; ``BIGQUERY_EMULATOR_HOST`` points it at a local server, like
    pandas-gbq and the emulator read it (anonymous credentials over plain HTTP)."""
    from google.cloud import bigquery

    endpoint = os.environ.get("BIGQUERY_EMULATOR_HOST")
    if not endpoint:
        return bigquery.Client(project=project, credentials=credentials)
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    plain = endpoint.startswith("http://")
    return bigquery.Client(project=project,
                           credentials=AnonymousCredentials() if plain else credentials,
                           client_options=ClientOptions(api_endpoint=endpoint))


def client_for(uri: str, credentials=None):
    """A BigQuery client in the project of dataset ``uri`` (``bq://project.dataset``)."""
    return client(dataset_of(uri)[0], credentials)


def check_dataset(bq, uri: str, location: str, name: str) -> None:
    """The dataset exists and is in the job's region (the service refuses other regions and
    multi-regions such as US or EU)."""
    from google.api_core.exceptions import NotFound

    project, dataset = dataset_of(uri)
    try:
        where = (bq.get_dataset(f"{project}.{dataset}").location or "").lower()
    except NotFound:
        raise InputError(f"{name}={uri!r}: the dataset does not exist. Create it in the job's "
                         f"region first: bq mk --location={location} {project}:{dataset}") from None
    if where != location.lower():
        kind = "the multi-region" if where in _MULTI_REGIONS else "region"
        raise InputError(f"{name}={uri!r} is in {kind} {where.upper() or '?'}, but batch jobs "
                         f"read and write BigQuery only in their own region ({location}); use a "
                         f"dataset created with --location={location}.")


def carried_columns(df: pd.DataFrame, carry) -> list:
    """Schema fields for the columns to carry into the input and output tables; refuses
    unknown, reserved, badly named or nested columns before anything is created."""
    carry = list(carry or [])
    if not carry:
        return []
    from google.cloud import bigquery

    missing = [c for c in carry if c not in df.columns]
    if missing:
        raise InputError(f"carry={missing} names no column of the frame.")
    fields = []
    for name in carry:
        if not isinstance(name, str) or not _COLUMN.match(name) or name.lower() in RESERVED:
            raise InputError(
                f"carry: column {name!r} cannot be carried: names are letters, digits and '_' "
                f"(not starting with a digit), and {list(RESERVED)} are reserved. Rename it "
                "first, e.g. df.rename(columns={...}).")
        dtype = df[name].dtype
        kind = "O" if isinstance(dtype, pd.StringDtype) else dtype.kind
        if kind not in _TYPES or (kind == "O" and pd.api.types.infer_dtype(
                df[name], skipna=True) not in ("string", "empty")):
            raise InputError(f"carry: column {name!r} has dtype {dtype}; carried columns must "
                             "be integers, floats, booleans or strings. Convert it first, e.g. "
                             f"df[{name!r}].astype(str).")
        fields.append(bigquery.SchemaField(name, _TYPES[kind]))
    return fields


def load_requests(bq, table: str, lines: pa.ChunkedArray, carried: list,
                  labels: dict[str, str]) -> None:
    """Create ``table`` (labelled) and load the request lines into it."""
    import io

    from google.cloud import bigquery

    from .gcs import string_bytes

    schema = [bigquery.SchemaField("pdbatch_row", "INTEGER", mode="REQUIRED"),
              bigquery.SchemaField("request", "JSON", mode="REQUIRED"), *carried]
    new = bigquery.Table(table, schema=schema)
    new.labels = labels
    bq.create_table(new)
    data = io.BytesIO(b"".join(string_bytes(chunk) for chunk in lines.chunks))
    config = bigquery.LoadJobConfig(schema=schema, source_format="NEWLINE_DELIMITED_JSON",
                                    write_disposition="WRITE_EMPTY")
    bq.load_table_from_file(data, table, job_config=config).result()


def read_answers(bq, table: str) -> pa.Table:
    """The output table's ``pdbatch_row``, ``status``, ``processed_time`` and ``response``;
    through the BigQuery Storage Read API when it is available, by REST pages otherwise."""
    wanted = ("pdbatch_row", "status", "processed_time", "response")
    fields = [f for f in bq.get_table(table).schema if f.name in wanted]
    rows = bq.list_rows(table, selected_fields=fields, page_size=50_000)
    storage = not os.environ.get("BIGQUERY_EMULATOR_HOST") and _has_storage_api()
    answers = rows.to_arrow(create_bqstorage_client=storage)
    return pa.table({name: (answers.column(name) if name in answers.column_names
                            else pa.nulls(answers.num_rows, pa.string()))
                     for name in wanted})


def _has_storage_api() -> bool:
    try:
        import google.cloud.bigquery_storage  # noqa: F401
    except ImportError:
        return False
    return True


def label(bq, table: str, labels: dict[str, str]) -> None:
    """Put ``labels`` on a table the service created."""
    created = bq.get_table(table)
    created.labels = {**(created.labels or {}), **labels}
    bq.update_table(created, ["labels"])


def tables(bq, uri: str, prefix: str) -> list[str]:
    """The tables of dataset ``uri`` whose full ids start with ``prefix``, sorted."""
    project, dataset = dataset_of(uri)
    return sorted(f"{project}.{dataset}.{t.table_id}" for t in bq.list_tables(
        f"{project}.{dataset}") if f"{project}.{dataset}.{t.table_id}".startswith(prefix))


def delete(bq, table: str) -> None:
    bq.delete_table(table, not_found_ok=True)


def write_text(bq, table: str, text: str) -> None:
    """Make ``table`` a one-row table holding ``text`` (replacing what it held)."""
    import io

    from google.cloud import bigquery

    schema = [bigquery.SchemaField("text", "STRING", mode="REQUIRED")]
    config = bigquery.LoadJobConfig(schema=schema, source_format="NEWLINE_DELIMITED_JSON",
                                    write_disposition="WRITE_TRUNCATE")
    data = io.BytesIO(json.dumps({"text": text}).encode() + b"\n")
    bq.load_table_from_file(data, table, job_config=config).result()


def read_text(bq, table: str) -> str | None:
    """The text of a table written by ``write_text``; None when there is no such table."""
    from google.api_core.exceptions import NotFound

    try:
        rows = list(bq.list_rows(table, max_results=1))
    except NotFound:
        return None
    return rows[0]["text"] if rows else None
