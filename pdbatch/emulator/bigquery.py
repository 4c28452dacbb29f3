"""BigQuery input and output of a job (spec §2.4, §3.2), through google-cloud-bigquery.

Input: a table with the payload column (``request``, or ``body`` for OpenAI lines) as JSON or
as a STRING holding JSON; every other column passes through to the output. Output: the
pass-through columns, the echoed payload and ``response`` (JSON), ``status`` (STRING) and
``processed_time`` (TIMESTAMP), in a table named by the destination URI's rules.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator

import orjson

from .runner import ImportFailure, Lines

_URI = re.compile(r"^bq://(?P<project>[a-z][a-z0-9-]{4,61}[a-z0-9])"
                  r"(?:\.(?P<dataset>\w{1,1024})(?:\.(?P<table>[\w-]{1,1024}))?)?$")
#: Input columns the output needs for itself (spec §2.4, §3.2): Gemini tables (payload
#: ``request``) reserve these; the OpenAI-format tables of MaaS models (payload ``body``) also
#: reserve ``id``.
RESERVED = ("response", "status", "processed_time", "_vertex_row_id")
RESERVED_MAAS = (*RESERVED, "id")


class OutputError(Exception):
    """The destination cannot take the output; the job fails with error code 3."""


def parse_uri(uri: str) -> tuple[str, str | None, str | None]:
    """``(project, dataset, table)`` of ``bq://project[.dataset[.table]]``; ValueError if
    malformed."""
    match = _URI.match(uri or "")
    if not match:
        raise ValueError(f"Invalid BigQuery URI {uri!r}: use bq://project.dataset.table.")
    return match["project"], match["dataset"], match["table"]


def client(endpoint: str | None, project: str):
    """A BigQuery client for ``endpoint`` (default: ``BIGQUERY_EMULATOR_HOST``)."""
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import bigquery

    endpoint = endpoint or os.environ.get("BIGQUERY_EMULATOR_HOST")
    if not endpoint:
        return bigquery.Client(project=project)
    return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                           client_options=ClientOptions(api_endpoint=endpoint))


def table_lines(bq, uri: str, payload: str) -> tuple[Lines, list]:
    """The rows of the input table as lines, and its schema (for the pass-through columns)."""
    from google.api_core.exceptions import NotFound

    project, dataset, table = parse_uri(uri)
    if table is None:
        raise ImportFailure(f"The BigQuery input {uri} names no table.")
    try:
        schema = bq.get_table(f"{project}.{dataset}.{table}").schema
    except NotFound:
        raise ImportFailure(f"BigQuery table {uri} does not exist.") from None
    names = [field.name for field in schema]
    if not payload:  # each row is an instance (text-embedding models: spec §1.2)
        return _instance_lines(bq, uri, names), schema
    kept = RESERVED if payload == "request" else RESERVED_MAAS
    reserved = [name for name in names if name in kept]
    if reserved:
        raise ImportFailure(f"The input table {uri} has reserved column(s) {reserved}; "
                            f"{list(kept)} are kept for the output.")
    if payload not in names:
        raise ImportFailure(f"The input table {uri} has no '{payload}' column.")

    def lines() -> Iterator[tuple[str, object]]:
        rows = bq.list_rows(f"{project}.{dataset}.{table}", page_size=10_000)
        for number, row in enumerate(rows, 1):
            line = dict(row.items())
            if isinstance(line[payload], str):
                try:
                    line[payload] = orjson.loads(line[payload])
                except orjson.JSONDecodeError:
                    raise ImportFailure(f"Row {number} of {uri}: '{payload}' is not valid "
                                        "JSON.") from None
            yield f"Row {number} of {uri}", _plain(line)

    return lines, [field for field in schema if field.name != payload]


#: An instance table's columns (a text-embedding model's input table: ``content``, and
#: optionally ``task_type`` and ``title``; spec §1.2).
INSTANCE_COLUMNS = ("content", "task_type", "title")


def _instance_lines(bq, uri: str, names: list[str]) -> Lines:
    """The rows of an instance table, each its instance (a NULL column is left out)."""
    if "content" not in names:
        raise ImportFailure(f"The input table {uri} has no 'content' column.")
    project, dataset, table = parse_uri(uri)

    def lines() -> Iterator[tuple[str, object]]:
        rows = bq.list_rows(f"{project}.{dataset}.{table}", page_size=10_000)
        for number, row in enumerate(rows, 1):
            yield f"Row {number} of {uri}", {k: v for k, v in row.items()
                                             if k in INSTANCE_COLUMNS and v is not None}

    return lines


def _plain(line: dict) -> dict:
    """Values as JSON would carry them (timestamps and dates as ISO text, decimals as text)."""
    return {k: v if isinstance(v, (str, int, float, bool, dict, list, type(None))) else str(v)
            for k, v in line.items()}


class TableSink:
    """Output to a BigQuery table, loaded from the spooled lines when the run ends (the rows
    answered so far when it stops early)."""

    def __init__(self, bq, uri: str, location: str, model: str, timestamp: str, schema: list,
                 flatten: str = ""):
        from google.api_core.exceptions import NotFound

        project, dataset, table = parse_uri(uri)
        stamp = re.sub(r"\W", "_", timestamp)
        if dataset is None:  # bq://project: a new dataset (named as the service does [I])
            dataset = f"prediction_{re.sub(r'[^0-9A-Za-z]', '_', model.rsplit('/', 1)[-1])}_{stamp}"
            bq.create_dataset(_dataset(project, dataset, location))
        try:
            bq.get_dataset(f"{project}.{dataset}")
        except NotFound:
            raise OutputError(f"BigQuery dataset {project}.{dataset} does not exist.") from None
        if table is None:
            table = f"predictions_{stamp}"
        else:
            try:
                bq.get_table(f"{project}.{dataset}.{table}")
                raise OutputError(f"BigQuery table {uri} already exists; the output table must "
                                  "not exist.")
            except NotFound:
                pass
        self.bq, self.project, self.dataset, self.table = bq, project, dataset, table
        self.schema, self.flatten = schema, flatten

    def info(self) -> dict:
        """``outputInfo``: the table as a full ``bq://project.dataset.table`` URI, which is how
        Google's notebooks read ``job.output_location`` for Gemini jobs (spec §3.2)."""
        return {"bigqueryOutputDataset": f"bq://{self.project}.{self.dataset}",
                "bigqueryOutputTable": f"bq://{self.project}.{self.dataset}.{self.table}"}

    def add(self, data: bytes) -> None:
        pass  # no incremental output for tables

    def finished(self, spool) -> None:
        from google.cloud import bigquery

        spool.seek(0)
        if self.flatten:  # {"instance": {"content": ...}, ...} -> {"content": ..., ...}
            spool = _flattened(spool, self.flatten)
        config = bigquery.LoadJobConfig(schema=self.schema, ignore_unknown_values=True,
                                        source_format="NEWLINE_DELIMITED_JSON")
        self.bq.load_table_from_file(spool, f"{self.project}.{self.dataset}.{self.table}",
                                     job_config=config).result()

    stopped = finished


def _flattened(spool, key: str):
    """The spooled lines with the object under ``key`` spread into each line (a table's
    output has the instance's columns, not the instance: spec §1.2)."""
    import io

    out = io.BytesIO()
    for raw in spool:
        line = orjson.loads(raw)
        out.write(orjson.dumps({**(line.pop(key, None) or {}), **line}) + b"\n")
    out.seek(0)
    return out


def _dataset(project: str, dataset: str, location: str):
    from google.cloud import bigquery

    ref = bigquery.Dataset(f"{project}.{dataset}")
    ref.location = location
    return ref


def output_schema(keys: list[str], passthrough: list) -> list:
    """The output table's columns for output lines with ``keys``: pass-through columns keep
    their input type (JSON when the input was a file); payloads and answers are JSON."""
    from google.cloud import bigquery

    typed = {field.name: field for field in passthrough}
    fixed = {"status": "STRING", "processed_time": "TIMESTAMP", "id": "STRING"}
    return [typed.get(key) or bigquery.SchemaField(key, fixed.get(key, "JSON"))
            for key in keys]
