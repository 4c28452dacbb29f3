"""What every model family shares: request lines built by DuckDB from a family's ``Frame``,
and output lines parsed by DuckDB into its task's fields with a family's ``Parser``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..tasks import Task


@dataclass(frozen=True)
class Frame:
    """A family's request line around the row number and the prompt:
    ``head + row + mid + json(prompt) + close_part + <file parts> + tail + <config items> +
    config_tail``, then ``}`` (or the carried fields) and a newline. Only families with
    ``close_part`` take file parts, and only frames with ``config_tail`` config items."""

    head: str
    mid: str
    tail: str
    close_part: str = ""
    config_tail: str = ""  # after the per-row config items, when the frame takes them
    keyed: bool = True  # False: no row number after ``head`` (lines the service keys not)


def request_lines(con, prompts: pa.ChunkedArray, keys: np.ndarray, frame: Frame,
                  carried: pa.Table | None = None, parts: pa.ChunkedArray | None = None,
                  config: pa.ChunkedArray | None = None) -> pa.ChunkedArray:
    """One JSONL line (newline included) per prompt, carrying its row key, with ``parts``
    (JSON text such as ``,{"fileData": ...}``) after the prompt's part, ``config`` (JSON
    items such as ``,"temperature":0.3``) in the frame's config, and ``carried``'s columns as
    further top-level fields. Built in DuckDB with the
    frame bound as parameters: the same JSON as ``orjson.dumps`` of each line, byte for byte
    except the hex case of control-character escapes (``\\\\u001B``)."""
    nothing = pa.chunked_array([pa.repeat(pa.scalar("", pa.large_string()), len(keys))])
    con.register("pdbatch_requests", pa.table({
        "row": pa.array(keys, pa.int64()), "prompt": prompts,
        "parts": nothing if parts is None else parts,
        "config": nothing if config is None else config}))
    request = ("$head || CASE WHEN $keyed THEN r.row::VARCHAR ELSE '' END || $mid || "
               "to_json(r.prompt)::VARCHAR || $close || r.parts || $tail || r.config || "
               "$config_tail")
    if carried is None or carried.num_columns == 0:
        sql = f"SELECT {request} || '}}' || chr(10) AS line FROM pdbatch_requests r"
    else:  # the carried row as a JSON object without its opening brace: "a":1,"b":"x"}
        con.register("pdbatch_carried", carried)
        sql = (f"SELECT {request} || ',' || substr(to_json(c)::VARCHAR, 2) || chr(10) AS line "
               "FROM pdbatch_requests r POSITIONAL JOIN pdbatch_carried c")
    try:
        return con.sql(sql, params={
            "head": frame.head, "mid": frame.mid, "tail": frame.tail, "close": frame.close_part,
            "config_tail": frame.config_tail, "keyed": frame.keyed}).to_arrow_table().column("line")
    finally:
        for name in ("pdbatch_requests", "pdbatch_carried"):
            con.unregister(name)


def min_line_sizes(prompt_bytes: np.ndarray, frame: Frame) -> np.ndarray:
    """A lower bound of each request line's size from its prompt's UTF-8 size (escaping only
    adds bytes), for planning jobs before the lines exist."""
    frame_text = frame.head + frame.mid + frame.close_part + frame.tail + frame.config_tail
    fixed = len(frame_text.encode()) + len('""}\n') + 1
    return prompt_bytes + fixed


def string_bytes(chunk: pa.Array) -> memoryview:
    """The concatenated values of an Arrow string array, without copying."""
    if len(chunk) == 0:
        return memoryview(b"")
    width = np.int64 if pa.types.is_large_string(chunk.type) else np.int32
    offsets = np.frombuffer(chunk.buffers()[1], dtype=width)[chunk.offset:]
    return memoryview(chunk.buffers()[2])[offsets[0]:offsets[len(chunk)]]


@dataclass(frozen=True)
class Parser:
    """How a family's output lines become its task's fields (SQL over DuckDB).

    ``key`` is the top-level field holding the row number and ``key_type`` how to read it;
    ``response_type`` the typed part of a response (bound to ``r``); ``answer`` extra columns
    computed from ``r``; ``fields`` the SQL of each of the ``task``'s fields
    (``Task.expressions``).
    """

    key: str
    key_type: str
    key_expr: str
    response_type: str
    task: Task
    fields: Mapping[str, str]
    answer: str = ""
    thoughts_in_output: bool = False  # whether output_tokens already counts thinking tokens
    response_key: str = "response"
    rekey: Callable | None = None
    #: Read the answer straight as ``response_type`` when its raw JSON is not kept (one parse
    #: instead of two: a million embedding vectors), for answers whose shape is fixed.
    typed_read: bool = False
    #: Output lines longer than this are skipped (their rows get a ``missing`` status).
    max_line_bytes: int = 64 << 20
    #: A request line that is itself a table row, with these STRING columns (text-embedding
    #: instances: ``content``, ``task_type``, ``title``), and the SQL of an output row's key
    #: over them; empty: Gemini's input table (the row key and the ``request`` as JSON).
    table_columns: tuple[str, ...] = ()
    table_key: str = ""

    def empty(self, response: bool = True) -> pa.Table:
        """The parsed table of a job with no output lines."""
        return self.task.empty_output(response)


_PARSE = """
WITH line AS ({lines}), typed AS (
    SELECT *, try_cast(response AS {response_type}) AS r FROM line
), answer AS (
    SELECT *{answer} FROM typed
)
SELECT key,
       coalesce(status, '') AS status,
       coalesce(processed_time, '') AS processed_time,
       {fields}{response}
FROM answer
{order}
"""


def _sql(parser: Parser, lines: str, response: bool, ordered: bool = True) -> str:
    fields = ",\n       ".join(f"{sql} AS {name}" for name, sql in parser.fields.items())
    sql = _PARSE.replace("{order}", "ORDER BY key" if ordered else "")
    for name, value in (("lines", lines), ("response_type", parser.response_type),
                        ("answer", parser.answer), ("fields", fields),
                        ("response", ", response::VARCHAR AS response" if response else "")):
        sql = sql.replace("{" + name + "}", value)
    return sql


def line_rank(status: str, processed_time: str, line: int) -> tuple:
    """How a row's output line ranks among the row's lines (the highest is kept): a success
    first, then the latest ``processed_time``, then the lexically largest status, then the
    later line of the parsed table (only between lines that agree on all of these; the join
    and ``vector_sink`` see the same table, so they keep the same line)."""
    return status == "", processed_time, status, line


#: Called with each batch of the parsed table, returns the batch to keep
#: (``vector_sink.JobVectors.take``).
PerBatch = Callable[[pa.RecordBatch], pa.RecordBatch]


def parse_output(con, parser: Parser, paths: list[str], response: bool = True,
                 per_batch: PerBatch | None = None) -> pa.Table:
    """The kept fields of every line of the output files at local ``paths``, as the columns
    of the task's ``parsed_fields`` (without ``response`` when ``response`` is false), sorted
    by key, except for answers read typed (``Parser.typed_read``: a million vectors), which
    come in file order (the join puts them in row order with one gather, where DuckDB's
    sort would copy every vector twice).

    ``response`` is the raw JSON text. ``key`` is null for a line without an integer row key,
    and a line that is not JSON becomes a row of nulls; lines over the parser's
    ``max_line_bytes`` are skipped.
    ``per_batch`` is given each batch of the table and returns what is kept of it: batch by
    batch as DuckDB parses them for answers read typed, after the whole read otherwise.
    """
    if not paths:
        return parser.empty(response)
    key = parser.key_expr.replace("{key}", parser.key)
    answer = parser.response_key
    typed = parser.response_type if parser.typed_read and not response else "JSON"
    lines = (f"SELECT {key} AS key, status, processed_time, {answer} AS response "
             "FROM read_ndjson($paths, ignore_errors = true, "
             f"maximum_object_size = {int(parser.max_line_bytes)}, "
             f"columns = {{'{parser.key}': '{parser.key_type}', 'status': 'VARCHAR', "
             f"'processed_time': 'VARCHAR', '{answer}': '{typed}'}})")
    ordered = typed == "JSON"
    result = con.sql(_sql(parser, lines, response, ordered), params={"paths": paths})
    if ordered:
        return _each_batch(result.to_arrow_table(), per_batch)
    # streamed in batches: DuckDB holds one batch, not a second copy of every vector
    stream = getattr(result, "to_arrow_reader", None) or result.fetch_arrow_reader  # duckdb<1.4
    reader = stream(65_536)
    if per_batch is None:
        return reader.read_all()
    return pa.Table.from_batches([per_batch(batch) for batch in reader], reader.schema)


def parse_rows(con, parser: Parser, rows: pa.Table, response: bool = True,
               per_batch: PerBatch | None = None) -> pa.Table:
    """``parse_output`` for BigQuery output rows (the key column, or the parser's
    ``table_columns``, ``status``, ``processed_time``, the answer as JSON text)."""
    con.register("pdbatch_answers", rows)
    key = parser.table_key or f"TRY_CAST({parser.key} AS BIGINT)"
    lines = (f"SELECT {key} AS key, status, "
             "CAST(processed_time AS VARCHAR) AS processed_time, "
             f"try_cast({parser.response_key} AS JSON) AS response FROM pdbatch_answers")
    try:
        return _each_batch(con.sql(_sql(parser, lines, response)).to_arrow_table(), per_batch)
    finally:
        con.unregister("pdbatch_answers")


def _each_batch(table: pa.Table, per_batch: PerBatch | None) -> pa.Table:
    if per_batch is None:
        return table
    return pa.Table.from_batches([per_batch(batch) for batch in table.to_batches()],
                                 table.schema)


def custom_id_frame(envelope: str, messages_before: str, close: str) -> Frame:
    """The frame of a line keyed by ``custom_id`` (the row number as a string), for families
    whose lines are ``{"custom_id": "n", <envelope>..."content": <prompt>}<close>``."""
    return Frame(head='{"custom_id":"', mid='",' + envelope + messages_before, tail=close)


def camel_key(key: str) -> str:
    """``max_output_tokens`` -> ``maxOutputTokens`` (camelCase keys are kept)."""
    head, *rest = key.split("_")
    return head + "".join(word[:1].upper() + word[1:] for word in rest)


def snake_key(key: str) -> str:
    """``maxOutputTokens`` -> ``max_output_tokens`` (snake_case keys are kept)."""
    return "".join("_" + c.lower() if c.isupper() else c for c in str(key))


def translated_config(generation_config, names: dict[str, str], family: str) -> dict:
    """``generation_config`` (snake_case or camelCase keys) in a family's own parameter names;
    a key it has no name for is refused, naming the ones it takes."""
    from ..errors import InputError

    out = {}
    for key, value in (generation_config or {}).items():
        snake = snake_key(key)
        if snake not in names:
            raise InputError(f"generation_config key {key!r} is not supported for {family} "
                             f"models; use {sorted(names)}.")
        out[names[snake]] = value
    return out


def json_items(con, table: pa.Table, lead: str) -> pa.ChunkedArray:
    """Each row of ``table`` as JSON object items (``"a":1,"b":2``, names from the table's
    columns), after ``lead`` (e.g. ``","``)."""
    con.register("pdbatch_items", table)
    try:
        return con.sql(
            "SELECT $lead || substr(to_json(c)::VARCHAR, 2, length(to_json(c)::VARCHAR) - 2) "
            "AS items FROM pdbatch_items c", params={"lead": lead}
        ).to_arrow_table().column("items")
    finally:
        con.unregister("pdbatch_items")
