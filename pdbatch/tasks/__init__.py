"""Tasks: what a row becomes and what comes back. A ``Task`` declares the fields a model
family's parser reads from each answer line, the result columns and their dtypes, which fields
count tokens, how many output tokens an estimate assumes, and its per-job limit. The request
line itself and the SQL that reads each field are the family's (``families/``), within its
task.

Generating content (``tasks.generate``) is the first task. Every task's answers go through the
same join, drivers and storage: those read the declarations here, never a task's name.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

#: The fields every parsed answer line starts with (the row key, the service's status text
#: and when it was processed), and the raw response it ends with.
LINE_FIELDS = {"key": pa.int64(), "status": pa.string(), "processed_time": pa.string()}
RESPONSE_FIELD = "response"
#: The result columns every task has, computed by the join (not parsed): how each row went
#: and which job answered it.
BOOKKEEPING = {"status": "string", "error_code": "Int64", "error_message": "string",
               "job": "string"}


@dataclass(frozen=True)
class Task:
    """What a row becomes and what comes back (see the module's docstring)."""

    name: str
    #: What a family's parser reads from each answer, in order, and its Arrow type.
    fields: dict[str, pa.DataType]
    #: The result columns and their pandas dtypes, in the order a user reads them: the
    #: parsed fields of the same names, ``BOOKKEEPING`` and the raw ``response``.
    result_columns: dict[str, str]
    #: The parsed fields that count tokens, prompt first (``run.usage()``).
    token_fields: tuple[str, ...]
    #: Output tokens an estimate assumes per request when the call does not say.
    default_output_tokens: int
    #: The service's limit of requests per job.
    max_requests_per_job: int
    #: The request message each line carries: a service whose create call differs by it (the
    #: Developer API's ``batchGenerateContent`` / ``asyncBatchEmbedContent``) asks this.
    request_type: str = "GenerateContentRequest"
    #: The field holding a vector (its fixed size is the call's: ``Family.result_types``).
    vector: str | None = None

    def parsed_fields(self, response: bool = True) -> dict[str, pa.DataType]:
        """The columns of a parsed output table, in order."""
        return {**LINE_FIELDS, **self.fields,
                **({RESPONSE_FIELD: pa.string()} if response else {})}

    def columns(self, response: bool = True) -> list[str]:
        """The names of the result columns, ``response`` only when it is kept."""
        return [c for c in self.result_columns if response or c != RESPONSE_FIELD]

    def empty_output(self, response: bool = True) -> pa.Table:
        """The parsed table of a job with no output lines."""
        return pa.table({name: pa.array([], kind)
                         for name, kind in self.parsed_fields(response).items()})

    def expressions(self, **sql: str) -> dict[str, str]:
        """A family's SQL for each field (``NULL`` of the field's type for a field it does
        not report); refuses names that are not the task's fields."""
        unknown = set(sql) - set(self.fields)
        if unknown:
            raise ValueError(f"{self.name} has no fields {sorted(unknown)}")
        nulls = {name: f"NULL::{_SQL_TYPES[kind]}" for name, kind in self.fields.items()}
        return {**nulls, **sql}


_SQL_TYPES = {pa.string(): "VARCHAR", pa.int64(): "BIGINT", pa.bool_(): "BOOLEAN",
              pa.list_(pa.float32()): "FLOAT[]"}
