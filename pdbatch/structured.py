"""Structured output: a response schema in every request, and the answers parsed into typed
columns, one per top-level field (or one column of dicts).

The answers are checked with DuckDB, vectorised: each must be a JSON object, have the schema's
required fields, and top-level values of the declared types. When the schema says more
(``enum``, ``minimum``, ``pattern``, nested ``items``, ``$ref``, ...), the answers that passed
are validated against the whole schema with ``jsonschema``. Nested values are kept as they
come (lists and dicts).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .columns import SCHEMA_TYPES, SUCCESS, pandas_array
from .errors import InputError

#: JSON Schema types of top-level fields and the DuckDB types they are read as.
_TYPES = {"string": "VARCHAR", "integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN"}


@dataclass(frozen=True)
class Schema:
    """A response schema as JSON Schema, and its top-level fields: ``(name, type or None)``."""

    json_schema: dict
    fields: tuple[tuple[str, str | None], ...]
    required: frozenset


def schema_of(response_schema) -> Schema:
    """A pydantic model class or a JSON Schema dict describing an object with properties."""
    if isinstance(response_schema, type) and hasattr(response_schema, "model_json_schema"):
        schema = response_schema.model_json_schema()
    elif isinstance(response_schema, Mapping):
        schema = json.loads(json.dumps(response_schema))  # a plain, JSON-able copy
    else:
        raise InputError("response_schema must be a pydantic model class or a JSON Schema dict "
                         f"such as {{'type': 'object', 'properties': {{...}}}}; got "
                         f"{type(response_schema).__name__}.")
    properties = schema.get("properties")
    if schema.get("type", "object") != "object" or not isinstance(properties, Mapping) \
            or not properties:
        raise InputError("response_schema must describe a JSON object with properties: each "
                         "becomes a result column.")
    return Schema(schema, tuple((name, _type(prop, schema)) for name, prop in
                                properties.items()),
                  frozenset(schema.get("required") or ()))


def _type(prop, root: Mapping) -> str | None:
    """The scalar JSON type of a property (``anyOf`` with null unwrapped, a ``$ref`` to the
    schema's ``$defs`` followed: a pydantic Enum field is a string, as a ``Literal`` is), or
    None."""
    options = [_resolved(o, root) for o in prop.get("anyOf", [prop])]
    options = [o for o in options if o.get("type") != "null"]
    kind = options[0].get("type") if len(options) == 1 else None
    return kind if kind in _TYPES else None


def _resolved(prop: Mapping, root: Mapping) -> Mapping:
    """``prop``, or the local definition its ``$ref`` names (``#/$defs/Name``)."""
    ref = prop.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/"):
        target = root
        for key in ref[2:].split("/"):
            target = target.get(key, {}) if isinstance(target, Mapping) else {}
        return target if isinstance(target, Mapping) else {}
    return prop


def generation_config(config: Mapping | None, schema: Schema, openapi: bool = False) -> dict:
    """``config`` asking for JSON answers of ``schema``: as ``responseJsonSchema``, or, with
    ``openapi``, as the OpenAPI-subset ``responseSchema`` (the Developer API's batch mode
    answers ``responseJsonSchema`` with JSON of the wrong shape, and ``responseSchema`` right:
    ruby_llm #894)."""
    config = dict(config or {})
    taken = [k for k in config if k in ("response_mime_type", "responseMimeType",
                                        "response_schema", "responseSchema",
                                        "response_json_schema", "responseJsonSchema")]
    if taken:
        raise InputError(f"generation_config sets {taken} and response_schema= is given; "
                         "pass the schema once, as response_schema=.")
    if openapi:
        return {**config, "response_mime_type": "application/json",
                "response_schema": openapi_schema(schema.json_schema)}
    return {**config, "response_mime_type": "application/json",
            "response_json_schema": schema.json_schema}


#: JSON Schema keywords the OpenAPI-subset Schema of the Gemini API has too, kept as they are.
_OPENAPI_KEPT = ("format", "description", "title", "enum", "required", "minItems", "maxItems",
                 "minimum", "maximum", "minLength", "maxLength", "pattern", "minProperties",
                 "maxProperties", "example", "default")
_MAX_DEPTH = 32


def openapi_schema(schema: Mapping) -> dict:
    """A JSON Schema as the Gemini API's OpenAPI-subset ``Schema``: local ``$ref`` inlined,
    ``null`` types and options as ``nullable``, ``const`` as a one-value ``enum``, type names
    in capitals, ``propertyOrdering`` as the properties come, other keywords left out.
    InputError for a recursive schema, which that form cannot say."""
    definitions = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}

    def convert(node: Mapping, depth: int) -> dict:
        if depth > _MAX_DEPTH:
            raise InputError("response_schema refers to itself (or nests over 32 levels): the "
                             "Gemini Developer API's response schema cannot say that; use "
                             "service='vertex', or a schema without recursion.")
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if not ref.startswith(("#/$defs/", "#/definitions/")) or name not in definitions:
                raise InputError(f"response_schema: $ref {ref!r} is not one of its own "
                                 "definitions ($defs).")
            merged = {**definitions[name], **{k: v for k, v in node.items() if k != "$ref"}}
            return convert(merged, depth + 1)
        out: dict = {key: node[key] for key in _OPENAPI_KEPT if key in node}
        kinds = node.get("type")
        nullable = False
        if isinstance(kinds, list):
            nullable = "null" in kinds
            kinds = [k for k in kinds if k != "null"]
            if len(kinds) > 1:
                out["anyOf"] = [{"type": k.upper()} for k in kinds]
            kinds = kinds[0] if len(kinds) == 1 else None
        options = node.get("anyOf") or node.get("oneOf")
        if options:
            others = [o for o in options if o.get("type") != "null"]
            nullable = nullable or len(others) < len(options)
            if len(others) == 1:
                out.update(convert(others[0], depth + 1))
            elif others:
                out["anyOf"] = [convert(o, depth + 1) for o in others]
        if isinstance(kinds, str) and kinds != "null":
            out["type"] = kinds.upper()
        if "const" in node:
            out["enum"] = [node["const"]]
        if isinstance(node.get("properties"), Mapping):
            out["properties"] = {name: convert(sub, depth + 1)
                                 for name, sub in node["properties"].items()}
            out["propertyOrdering"] = list(node["properties"])
        if isinstance(node.get("items"), Mapping):
            out["items"] = convert(node["items"], depth + 1)
        if nullable:
            out["nullable"] = True
        return out

    return convert(schema, 0)


def parse(con, texts: pa.ChunkedArray, schema: Schema) -> tuple[dict, np.ndarray]:
    """Typed columns (Arrow) by field name, and per row why its answer does not fit the
    schema ("" when it does; rows without text are not checked)."""
    structure = json.dumps({name: _TYPES[kind] if kind else "JSON"
                            for name, kind in schema.fields})
    paths = ['$."' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
             for name, _ in schema.fields]
    con.register("pdbatch_answers", pa.table({"t": texts}))
    try:
        table = con.sql(
            """SELECT valid, kind,
                      CASE WHEN kind = 'OBJECT' THEN json_extract(j, $paths) END AS raw,
                      CASE WHEN kind = 'OBJECT' THEN from_json(j, $structure) END AS v
               FROM (SELECT json_valid(t) AS valid,
                            CASE WHEN json_valid(t) THEN json_type(t) END AS kind,
                            CASE WHEN json_valid(t) THEN t::JSON END AS j
                     FROM pdbatch_answers)""",
            params={"paths": paths, "structure": structure}).to_arrow_table()
    finally:
        con.unregister("pdbatch_answers")
    n = len(texts)
    reasons = np.full(n, "", dtype=object)
    has_text = pc.is_valid(texts).to_numpy(zero_copy_only=False)
    valid = pc.fill_null(table.column("valid"), False).to_numpy(zero_copy_only=False)
    kind = table.column("kind").to_pylist()
    reasons[has_text & ~valid] = "the answer is not JSON"
    for row in np.flatnonzero(has_text & valid & (np.array(kind, dtype=object) != "OBJECT")):
        reasons[row] = f"the answer is a JSON {str(kind[row]).lower()}, not an object"
    values = table.column("v").combine_chunks()
    raw = table.column("raw").combine_chunks()
    columns = {}
    for index, (name, kind_of) in enumerate(schema.fields):
        column = values.field(name) if len(values) else pa.nulls(n)
        if kind_of:  # the declared type, also when no row has a value (a Dask meta)
            column = column.cast(SCHEMA_TYPES[kind_of])
        found = pc.list_element(raw, index) if len(raw) else pa.nulls(n, pa.string())
        present = pc.fill_null(pc.is_valid(found), False).to_numpy(zero_copy_only=False)
        is_null = pc.fill_null(pc.equal(found, "null"), False).to_numpy(zero_copy_only=False)
        typed = pc.is_valid(column).to_numpy(zero_copy_only=False)
        ok = reasons == ""
        if name in schema.required:
            reasons[ok & has_text & ~present] = f"field {name!r} is missing"
        reasons[(reasons == "") & present & ~is_null & ~typed] = \
            f"field {name!r} is not a{'n' if (kind_of or 'x')[0] in 'aeiou' else ''} {kind_of}"
        columns[name] = column
    _check_constraints(texts, reasons, has_text, schema.json_schema)
    return columns, reasons


#: JSON Schema keywords the typed columns already check; any other keyword (``enum``,
#: ``minimum``, ``pattern``, ``items``, ``$ref``, ...) asks for a full validation.
_CHECKED_KEYWORDS = frozenset({"type", "properties", "required", "title", "description",
                               "$schema"})


def _check_constraints(texts: pa.ChunkedArray, reasons: np.ndarray, has_text: np.ndarray,
                       schema: dict) -> None:
    """Validate the answers that fit so far against the whole JSON Schema (jsonschema), when
    the schema says more than the field types; a violation becomes the row's reason."""
    if not _constrained(schema):
        return
    from jsonschema.exceptions import best_match
    from jsonschema.validators import validator_for

    validator = validator_for(schema)(schema)
    rows = np.flatnonzero(has_text & (reasons == ""))
    for row, text in zip(rows.tolist(), texts.take(pa.array(rows)).to_pylist(), strict=True):
        error = best_match(validator.iter_errors(json.loads(text)))
        if error is not None:
            where = ".".join(str(part) for part in error.absolute_path)
            reasons[row] = (f"field {where!r}: " if where else "") + error.message[:200]


def _constrained(schema) -> bool:
    """Whether ``schema`` uses a keyword beyond ``_CHECKED_KEYWORDS`` (below any level)."""
    if isinstance(schema, list):
        return any(_constrained(item) for item in schema)
    if not isinstance(schema, Mapping):
        return False
    for key, value in schema.items():
        if key == "properties" and isinstance(value, Mapping):
            if any(_constrained(sub) for sub in value.values()):
                return True
        elif key not in _CHECKED_KEYWORDS:
            return True
    return False


def add_columns(out: pd.DataFrame, schema: Schema, prefix: str, expand: bool, con
                ) -> np.ndarray:
    """Parse ``out``'s text column in place: typed columns (or one ``parsed`` column of
    dicts) inserted right after it, and an ``invalid: ...`` status for answered rows whose
    text does not fit; returns the mask of those rows."""
    texts = pa.chunked_array([pa.array(out[prefix + "text"], pa.large_string())])
    columns, reasons = parse(con, texts, schema)
    status = out[prefix + "status"].to_numpy(dtype=object, na_value=None)
    bad = (reasons != "") & (status == SUCCESS)
    keep = ~bad
    at = out.columns.get_loc(prefix + "text") + 1  # the fields are read right after the text
    if expand:
        for offset, (name, kind) in enumerate(schema.fields):
            if kind:
                values = pd.Series(pandas_array(columns[name]), index=out.index)
            else:  # nested: lists and dicts, as the answer has them
                values = pd.Series([None if v is None else json.loads(v)
                                    for v in columns[name].to_pylist()],
                                   index=out.index, dtype=object)
            out.insert(at + offset, prefix + name, values.where(keep))
    else:
        records = [None if not ok or text is None else json.loads(text)
                   for ok, text in zip(keep, texts.to_pylist(), strict=True)]
        out.insert(at, prefix + "parsed", pd.Series(records, index=out.index, dtype=object))
    if bad.any():
        out.loc[bad, prefix + "status"] = [f"invalid: {r} (response_schema)" for r in reasons[bad]]
    return bad


def column_names(schema: Schema, expand: bool) -> list[str]:
    """The columns ``add_columns`` adds, without prefix."""
    return [name for name, _ in schema.fields] if expand else ["parsed"]
