"""Embedding models (task ``tasks.embed``), in two line formats (embeddings-spec.md):

- Gemini embedding models (``gemini-embedding-001``, ``gemini-embedding-2``), on Vertex AI and
  the Gemini Developer API: keyed lines ``{"key": "7", "request": {"content": {"parts":
  [{"text": ...}]}, "embed_content_config": {...}}}``, answered ``{"key", ..., "response":
  {"tokenCount": "2", "embedding": {"values": [...]}}}`` (§1.1, §2.3, §2.4);
- the text-embedding models (``text-embedding-005``, ``text-multilingual-embedding-002``,
  ``text-embedding-004``), Vertex AI only: instances ``{"content": ..., "task_type", "title"}``
  with **no row key**, answered ``{"instance": {...}, "predictions": [{"embeddings":
  {"statistics": {"token_count", "truncated"}, "values": [...]}}], "status": ""}`` (§1.2).
  Their answers are matched back by the echoed instance (``rekey``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import InputError
from ..identifiers import whole
from ..tasks.embed import EMBED, EMBED_LEGACY
from .lines import Frame, Parser, snake_key

_PUBLISHER = (r"(?:(?:projects/[a-z0-9.:-]+/locations/[a-z0-9-]+/)?publishers/google/models/"
              r"|models/)?")
_GEMINI = re.compile(_PUBLISHER + r"(?P<name>gemini-embedding-[A-Za-z0-9._-]+)")
_LEGACY = re.compile(_PUBLISHER + r"(?P<name>(?:text-embedding|text-multilingual-embedding)"
                     r"-[0-9]{3}(?:@[0-9]+)?)")
#: The vector size a model returns when the call does not say, and the sizes it takes
#: (``output_dimensionality``; Google's embeddings pages: 128-3072 for the Gemini embedding
#: models, 1-768 for the text-embedding models).
DIMENSIONS = {"gemini": (3072, 128, 3072), "legacy": (768, 1, 768)}
TASK_TYPES = ("RETRIEVAL_QUERY", "RETRIEVAL_DOCUMENT", "SEMANTIC_SIMILARITY", "CLASSIFICATION",
              "CLUSTERING", "QUESTION_ANSWERING", "FACT_VERIFICATION", "CODE_RETRIEVAL_QUERY")
#: Input tokens a model reads per text: 2,048 for gemini-embedding-001 and the text-embedding
#: models, 8,192 for gemini-embedding-2 (Google's model pages; spec §1.1 cites a client
#: re-embedding rows over 2,048 tokens). Counted before anything is sent by characters, at
#: about 4 a token (as ``costs`` estimates prompts): an estimate, not the model's tokenizer.
INPUT_TOKENS = (("gemini-embedding-2", 8192), ("", 2048))
CHARS_PER_TOKEN = 4
#: The settings an embedding call takes for every row (``EmbedContentConfig``) and per row.
SETTINGS = ("task_type", "output_dimensionality", "auto_truncate")
ROW_SETTINGS = ("title",)


def gemini_resource(model: str) -> str | None:
    """``publishers/google/models/gemini-embedding-...`` for a Gemini embedding model."""
    match = whole(_GEMINI, model) if isinstance(model, str) else None
    return None if not match else (
        model if model.startswith("projects/") else f"publishers/google/models/{match['name']}")


def legacy_resource(model: str) -> str | None:
    """``publishers/google/models/text-embedding-005`` (and the like), or None."""
    match = whole(_LEGACY, model) if isinstance(model, str) else None
    return None if not match else (
        model if model.startswith("projects/") else f"publishers/google/models/{match['name']}")


def dimensions(kind: str, config: Mapping | None) -> int:
    """The vector size of a call: ``output_dimensionality``, else the model's default."""
    default, _, _ = DIMENSIONS[kind]
    return int((config or {}).get("output_dimensionality") or default)


def checked_config(kind: str, resource: str, config: Mapping | None, row_config: bool) -> dict:
    """The embedding settings, snake_case, checked against what the model takes; InputError
    naming the fix otherwise."""
    out = {snake_key(k): v for k, v in (config or {}).items()}
    unknown = sorted(set(out) - set(SETTINGS))
    if unknown:
        raise InputError(f"{unknown[0]!r} is not an embedding setting; use {list(SETTINGS)} "
                         "(and title_col= for each row's title).")
    model = resource.rsplit("/", 1)[-1]
    if model.startswith("gemini-embedding-2") and (out.get("task_type") or row_config):
        raise InputError(f"{model} takes no task_type or title (the service ignores them): "
                         "write them into the text instead, e.g. df['text'] = 'title: ' + "
                         "df['title'] + ' | text: ' + df['abstract'], and embed text_col='text'.")
    task_type = out.get("task_type")
    if task_type is not None and task_type not in TASK_TYPES:
        raise InputError(f"task_type={task_type!r}: use one of {list(TASK_TYPES)}.")
    default, low, high = DIMENSIONS[kind]
    dims = out.get("output_dimensionality", default)
    if isinstance(dims, bool) or not isinstance(dims, (int, np.integer)) \
            or not low <= dims <= high:
        raise InputError(f"output_dimensionality={dims!r}: {model} returns vectors of {low} to "
                         f"{high} dimensions.")
    if kind == "legacy" and dims != default:
        raise InputError(f"output_dimensionality={dims} with {model}: in batch it is a job "
                         "parameter pdbatch does not send yet; embed at 768 and keep "
                         "pdbatch.vectors(out)[:, :d] (renormalised), or use gemini-embedding-001.")
    return out


def input_tokens(resource: str) -> int:
    """The input limit of an embedding model, in tokens."""
    model = resource.rsplit("/", 1)[-1]
    return next(limit for prefix, limit in INPUT_TOKENS if model.startswith(prefix))


def check_lengths(resource: str, texts: pa.ChunkedArray, config: Mapping | None, what: str,
                  reasons: np.ndarray) -> None:
    """Give each text estimated to be over the model's input limit a reason naming the fix
    (unless ``auto_truncate=True`` lets Vertex AI cut it and report it ``truncated``)."""
    if (config or {}).get("auto_truncate"):
        return
    limit = input_tokens(resource)
    chars = pc.fill_null(pc.utf8_length(texts), 0).to_numpy()
    over = np.flatnonzero((chars > limit * CHARS_PER_TOKEN) & (reasons == ""))
    model = resource.rsplit("/", 1)[-1]
    for i in over:
        reasons[i] = (f"{what} is about {-(-int(chars[i]) // CHARS_PER_TOKEN):,} tokens "
                      f"({int(chars[i]):,} characters at about {CHARS_PER_TOKEN} a token), over "
                      f"{model}'s {limit:,}-token input limit: shorten it, or pass "
                      "auto_truncate=True (Vertex AI) to have the service cut it and say so in "
                      "the 'truncated' column")


def gemini_frame(resource: str, config: Mapping | None, row_config: bool,
                 config_at_top: bool = False) -> Frame:
    """``{"key":"n","request":{"content":{"parts":[{"text":...}]},"embed_content_config":
    {...}}}`` around each text (Vertex AI's documented lines), or with ``config_at_top`` the
    settings at the top of the request, ``{"key":"n","request":{"content":{...},
    "output_dimensionality":768}}`` (the Developer API's documented file lines, spec §2.3);
    with ``row_config`` (a title per row) the config is left open for each row's items."""
    settings = checked_config("gemini", resource, config, row_config)
    head, mid = '{"key":"', '","request":{"content":{"parts":[{"text":'
    items = orjson.dumps(settings).decode()[1:-1]
    if config_at_top:
        tail = "]}" + ("," + items if items else "")
        return Frame(head, mid, close_part="}", tail=tail, config_tail="}") if row_config \
            else Frame(head, mid, close_part="}", tail=tail + "}")
    if row_config:
        return Frame(head, mid, close_part="}", tail=']},"embed_content_config":{' + items,
                     config_tail="}}")
    shared = ',"embed_content_config":{' + items + "}" if items else ""
    return Frame(head, mid, close_part="}", tail="]}" + shared + "}")


def legacy_frame(resource: str, config: Mapping | None, row_config: bool,
                 config_at_top: bool = False) -> Frame:
    """``{"content": ..., "task_type": ..., "title": ...}`` (no row key) around each text
    (its settings are at the top of the instance whatever the service)."""
    settings = checked_config("legacy", resource, config, row_config)
    tail = ',"task_type":' + orjson.dumps(settings["task_type"]).decode() \
        if settings.get("task_type") else ""
    if settings.get("auto_truncate") is not None:
        raise InputError("auto_truncate with a text-embedding model is a job parameter in "
                         "batch, which pdbatch does not send yet; drop it.")
    return Frame("{", '"content":', tail=tail, keyed=False)


#: The row key of a text-embedding answer: a 63-bit MD5 of its echoed instance's text and
#: title (the same SQL hashes the rows sent: ``rekey``).
_INSTANCE_KEY = ("(md5_number_lower(coalesce({content}, '') || chr(0) || "
                 "coalesce({title}, chr(1))) >> 1)::BIGINT")


def rekey(con, parsed: pa.Table, texts: pa.ChunkedArray, config: pa.ChunkedArray | None,
          positions: np.ndarray) -> tuple[pa.Table, np.ndarray]:
    """A text-embedding job's answers keyed by row: each answer's instance hash is looked up
    among the hashes of the rows sent (``texts`` and per-row ``config`` items of
    ``positions``). Returns the answers with row keys (-1: no such row) and the rows whose
    instance came back more than once (their answers are dropped: which is whose cannot be
    told)."""
    title = ("json_extract_string('{' || ltrim(config, ',') || '}', '$.title')"
             if config is not None else "NULL")
    table = {"content": texts, "config": config if config is not None else
             pa.nulls(len(texts), pa.string())}
    con.register("pdbatch_sent", pa.table(table))
    try:
        sql = _INSTANCE_KEY.format(content="content", title=title)
        sent = con.sql(f"SELECT {sql} AS h FROM pdbatch_sent").to_arrow_table()
    finally:
        con.unregister("pdbatch_sent")
    hashes = sent.column("h").to_numpy()
    order = np.argsort(hashes, kind="stable")
    keys = pc.fill_null(parsed.column("key"), -1).to_numpy()
    found = np.searchsorted(hashes[order], keys)
    found = np.minimum(found, len(order) - 1) if len(order) else found
    hit = (len(order) > 0) & (hashes[order][found] == keys) if len(order) else \
        np.zeros(len(keys), dtype=bool)
    rows = np.where(hit, positions[order][found] if len(order) else -1, -1)
    unique, counts = np.unique(rows[rows >= 0], return_counts=True)
    twice = unique[counts > 1]
    rows[np.isin(rows, twice)] = -1
    return parsed.set_column(parsed.schema.get_field_index("key"), "key",
                             pa.array(rows, pa.int64())), twice


GEMINI_PARSER = Parser(
    key="key",
    key_type="VARCHAR",
    key_expr="TRY_CAST({key} AS BIGINT)",
    response_type=('STRUCT(tokenCount VARCHAR, embedding STRUCT("values" FLOAT[]), '
                   "truncated BOOLEAN, usageMetadata STRUCT(promptTokenCount BIGINT))"),
    task=EMBED,
    fields=EMBED.expressions(
        embedding='r.embedding."values"',
        token_count=("coalesce(TRY_CAST(r.tokenCount AS BIGINT), "
                     "r.usageMetadata.promptTokenCount)"),
        truncated="r.truncated",
    ),
    typed_read=True,
    # A line is a text of a few thousand tokens at most and its vector (tens of KB); DuckDB
    # reads a million vectors about a fifth faster with its default limit of 16 MiB than with
    # the 64 MiB generated answers need (benchmarks/RESULTS.md).
    max_line_bytes=16 << 20,
)

LEGACY_PARSER = Parser(
    key="instance",
    key_type="JSON",
    key_expr=_INSTANCE_KEY.format(content="json_extract_string({key}, '$.content')",
                                  title="json_extract_string({key}, '$.title')"),
    response_type=('STRUCT(embeddings STRUCT(statistics STRUCT(token_count BIGINT, '
                   'truncated BOOLEAN), "values" FLOAT[]))[]'),
    task=EMBED_LEGACY,
    fields=EMBED_LEGACY.expressions(
        embedding='r[1].embeddings."values"',
        token_count="r[1].embeddings.statistics.token_count",
        truncated="r[1].embeddings.statistics.truncated",
    ),
    response_key="predictions",
    rekey=rekey,
    typed_read=True,
    max_line_bytes=16 << 20,  # as GEMINI_PARSER's
    # BigQuery: an input table of instances, an output table ``content, predictions,
    # status`` (with the input's other columns: spec §1.2)
    table_columns=("content", "task_type", "title"),
    table_key=_INSTANCE_KEY.format(content="content", title="title"),
)
