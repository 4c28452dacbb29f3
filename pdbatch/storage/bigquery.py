"""BigQuery: request tables in, answer tables out (spec §2.4, §3.2), and one-row tables for
manifests and the fingerprint index (``bq://project.dataset``).

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
import time

import pandas as pd
import pyarrow as pa

from ..errors import InputError
from ..families import lines
from ..families.lines import Parser, PerBatch, string_bytes
from ..identifiers import whole
from .runids import checked_fingerprint, checked_run_id, is_run_id, manifest_of
from .staged import Destination, Staged

SCHEME = "bq://"
#: Uploaded files need Cloud Storage: a table holds no file a job could read.
HOSTS_FILES = False
#: Inputs are table rows with a ``request`` column (Gemini's form of input table).
TABULAR = True
_DATASET = re.compile(r"^bq://(?P<project>[a-z][a-z0-9-]{4,28}[a-z0-9])\.(?P<dataset>[A-Za-z_]"
                      r"[A-Za-z0-9_]{0,1023})$")

#: Columns the service keeps for a Gemini table's output (spec §2.4, §3.2: ``id`` is reserved
#: only for MaaS tables, which pdbatch does not stage), plus pdbatch's own.
RESERVED = ("response", "status", "processed_time", "_vertex_row_id", "request",
            "pdbatch_row")
_CLAIM_POLLS = 60  # half-seconds a losing claim waits for the winner's run id
_COLUMN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
_MULTI_REGIONS = {"us", "eu"}
#: pandas dtype kinds that can be carried, and their BigQuery types.
_TYPES = {"i": "INTEGER", "u": "INTEGER", "f": "FLOAT", "b": "BOOLEAN", "O": "STRING",
          "U": "STRING"}


def checked(uri: str, name: str) -> str:
    """``uri`` checked to be ``bq://project.dataset``."""
    if not whole(_DATASET, uri):
        raise InputError(
            f"{name}={uri!r} is not a BigQuery dataset. Pass {name}='bq://my-project."
            "my_dataset' (project id: 6-30 lowercase letters, digits and '-'; dataset: "
            "letters, digits and '_')."
        )
    return uri


def staging_of(input_uri: str, run_id: str) -> str | None:
    """The dataset of a job's input table ``bq://project.dataset.pdbatch_<run>_input_N``."""
    dataset, _, table = input_uri.rpartition(".")
    return dataset if table.startswith(_table_prefix(run_id)) else None


def _table_prefix(run_id: str) -> str:
    return f"pdbatch_{checked_run_id(run_id).replace('-', '_')}"


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

    plain = not endpoint.startswith("https://")
    return bigquery.Client(project=project,
                           credentials=AnonymousCredentials() if plain else credentials,
                           client_options=ClientOptions(api_endpoint=endpoint))


def check(uri: str, name: str, region: str, project: str | None = None,
          credentials=None) -> None:
    """The dataset exists and is in the job's region."""
    check_dataset(client(project or dataset_of(uri)[0], credentials), uri, region, name)


def check_dataset(bq, uri: str, location: str, name: str) -> None:
    """The dataset exists and is in the job's region (the service refuses other regions and
    multi-regions such as US or EU); a job on the global endpoint takes any location."""
    from google.api_core.exceptions import NotFound

    project, dataset = dataset_of(uri)
    try:
        where = (bq.get_dataset(f"{project}.{dataset}").location or "").lower()
    except NotFound:
        region = location if location.lower() != "global" else "REGION"
        raise InputError(f"{name}={uri!r}: the dataset does not exist. Create it in the job's "
                         f"region first: bq mk --location={region} {project}:{dataset}") from None
    if location.lower() != "global" and where != location.lower():
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
        if not whole(_COLUMN, name) or name.lower() in RESERVED:
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
                  labels: dict[str, str], columns: tuple[str, ...] = ()) -> None:
    """Create ``table`` (labelled) and load the request lines into it: the row key and the
    request as JSON, or each line as a row of STRING ``columns`` (the first required)."""
    import io

    from google.cloud import bigquery

    schema = [bigquery.SchemaField(name, "STRING", mode="NULLABLE" if i else "REQUIRED")
              for i, name in enumerate(columns)] or [
        bigquery.SchemaField("pdbatch_row", "INTEGER", mode="REQUIRED"),
        bigquery.SchemaField("request", "JSON", mode="REQUIRED")]
    schema += carried
    new = bigquery.Table(table, schema=schema)
    new.labels = labels
    bq.create_table(new, exists_ok=True)  # staged again when a run is resumed
    data = io.BytesIO(b"".join(string_bytes(chunk) for chunk in lines.chunks))
    config = bigquery.LoadJobConfig(schema=schema, source_format="NEWLINE_DELIMITED_JSON",
                                    write_disposition="WRITE_TRUNCATE")
    bq.load_table_from_file(data, table, job_config=config).result()


def read_answers(bq, table: str, keys: tuple[str, ...] = ("pdbatch_row",),
                 answer: str = "response") -> pa.Table:
    """The output table's ``keys`` columns, ``status``, ``processed_time`` and ``answer``;
    through the BigQuery Storage Read API when it is available, by REST pages otherwise."""
    wanted = (*keys, "status", "processed_time", answer)
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


def create_text_table(bq, table: str) -> None:
    """Create an empty ``write_text`` table; google.api_core's Conflict when it exists."""
    from google.cloud import bigquery

    bq.create_table(bigquery.Table(
        table, schema=[bigquery.SchemaField("text", "STRING", mode="REQUIRED")]))


def write_text(bq, table: str, text: str) -> None:
    """Make ``table`` a one-row table holding ``text`` (replacing what it held), with DML
    statements rather than a load job: BigQuery takes 1,500 load jobs a table a day, and a
    manifest is saved at every job created and every 20 s while a run is being submitted.
    (``table`` is built from checked identifiers only; ``text`` is a query parameter.)"""
    from google.api_core.exceptions import Conflict, NotFound

    try:
        replaced = _dml(bq, f"UPDATE `{table}` SET text = @text WHERE TRUE", text)
    except NotFound:
        try:
            create_text_table(bq, table)
        except Conflict:  # created by another process meanwhile
            pass
        replaced = 0
    if not replaced:
        _dml(bq, f"INSERT INTO `{table}` (text) VALUES (@text)", text)


def _dml(bq, statement: str, text: str) -> int:
    """Run a DML statement with the ``@text`` parameter; the rows it changed."""
    from google.cloud import bigquery

    config = bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter("text", "STRING", text)])
    job = bq.query(statement, job_config=config)
    job.result()
    return job.num_dml_affected_rows or 0


def read_text(bq, table: str) -> str | None:
    """The text of a table written by ``write_text``; None when there is no such table."""
    from google.api_core.exceptions import NotFound

    try:
        rows = list(bq.list_rows(table, max_results=1))
    except NotFound:
        return None
    return rows[0]["text"] if rows else None


class BigQueryLocation:
    """``<dataset>.pdbatch_<run id>_input_NNNNN`` in, ``..._output_NNNNN`` out, labelled with
    the run (``labels``; none when only reading)."""

    hosts_files, tabular = HOSTS_FILES, TABULAR
    one_source = True  # a job reads one table

    def __init__(self, uri: str, run_id: str, parser: Parser, *, project: str | None = None,
                 credentials=None, labels: dict[str, str] | None = None, carried=()):
        project_of, dataset = dataset_of(uri)
        self.prefix = f"{project_of}.{dataset}.{_table_prefix(run_id)}"
        self.uri, self.labels, self.carried = uri, dict(labels or {}), list(carried)
        self.parser = parser
        self.bq = client(project or project_of, credentials)

    def __str__(self) -> str:
        return f"{self.uri} (tables {self.prefix.rsplit('.', 1)[1]}_*)"

    def stage(self, number: int, requests: pa.ChunkedArray) -> Staged:
        table = f"{self.prefix}_input_{number:05d}"
        load_requests(self.bq, table, requests, self.carried, self.labels,
                      self.parser.table_columns)
        return self.source([table])

    def stage_shard(self, partition: int, index: int, requests: pa.ChunkedArray) -> str:
        """Load one shard of a Dask partition into a table of its own; its id."""
        table = self.shard(partition, index)
        load_requests(self.bq, table, requests, self.carried, self.labels,
                      self.parser.table_columns)
        return table

    def shard(self, partition: int, index: int) -> str:
        """The table of shard ``index`` of a Dask partition."""
        return f"{self.prefix}_input_p{partition:05d}_{index:04d}"

    @staticmethod
    def source(tables: list[str]) -> Staged:
        """What a job reading a staged table reads (a job reads one table)."""
        if len(tables) != 1:
            raise ValueError(f"a BigQuery job reads one table, not {len(tables)}")
        return Staged((f"{SCHEME}{tables[0]}",), table=True)

    def destination(self, number: int) -> Destination:
        return Destination(f"{SCHEME}{self.output_table(number)}", table=True)

    def output_table(self, number: int) -> str:
        return f"{self.prefix}_output_{number:05d}"

    def collect(self, con, number: int, output_dir: str, response: bool,
                per_batch: PerBatch | None = None) -> pa.Table:
        """The job's output table, parsed (none when the job ended before writing it)."""
        from google.api_core.exceptions import NotFound

        table = self.output_table(number)
        try:
            if self.labels:  # a re-read labels nothing, so writes nothing
                label(self.bq, table, self.labels)
            answers = read_answers(self.bq, table, self.parser.table_columns or
                                   (self.parser.key,), self.parser.response_key)
        except NotFound:
            return self.parser.empty(response)
        return lines.parse_rows(con, self.parser, answers, response, per_batch)

    def clean_up(self) -> None:
        """Remove the run's input tables (output tables stay)."""
        for table in tables(self.bq, self.uri, f"{self.prefix}_input_"):
            delete(self.bq, table)


class BigQueryStore:
    """Manifests and the fingerprint index as one-row tables ``pdbatch_<run>_manifest`` and
    ``pdbatch_fingerprint_<fp>``."""

    def __init__(self, uri: str, credentials=None):
        project, dataset = dataset_of(uri)
        self.uri, self.dataset = uri, f"{project}.{dataset}"
        self.bq = client(project, credentials)

    def __str__(self) -> str:
        return self.uri

    def save(self, manifest: dict) -> None:
        write_text(self.bq, self._manifest_table(manifest["run"]), json.dumps(manifest))

    def load(self, run_id: str) -> dict | None:
        table = self._manifest_table(run_id)
        text = read_text(self.bq, table)
        return manifest_of(text, f"table {table}") if text is not None else None

    def delete(self, run_id: str) -> None:
        delete(self.bq, self._manifest_table(run_id))

    def link(self, fingerprint: str, run_id: str) -> None:
        write_text(self.bq, self._fingerprint_table(fingerprint), run_id)

    def claim(self, fingerprint: str, run_id: str) -> str:
        """Creating the index table is the claim (a second create is refused); the winner
        then writes its run id, which the others wait for."""
        from google.api_core.exceptions import Conflict

        table = self._fingerprint_table(fingerprint)
        try:
            create_text_table(self.bq, table)
        except Conflict:
            for _ in range(_CLAIM_POLLS):
                owner = self.find(fingerprint)
                if owner:
                    return owner
                time.sleep(0.5)
            raise InputError(f"The run index {table} exists but names no run: another process "
                             "claimed this call and stopped. Remove the table, or pass "
                             "force=True.") from None
        write_text(self.bq, table, run_id)
        return run_id

    def find(self, fingerprint: str) -> str | None:
        run_id = read_text(self.bq, self._fingerprint_table(fingerprint))
        return run_id if is_run_id(run_id) else None

    def run_ids(self) -> list[str]:
        prefix = f"{self.dataset}.pdbatch_run_"
        names = ("run-" + table[len(prefix):-len("_manifest")].replace("_", "-")
                 for table in tables(self.bq, self.uri, prefix)
                 if table.endswith("_manifest"))
        return sorted(name for name in names if is_run_id(name))

    def _manifest_table(self, run_id: str) -> str:
        return f"{self.dataset}.{_table_prefix(run_id)}_manifest"

    def _fingerprint_table(self, fingerprint: str) -> str:
        return f"{self.dataset}.pdbatch_fingerprint_{checked_fingerprint(fingerprint)}"
