"""Prompts from a frame: a prompt column or a ``{column}`` template, and per-row checks,
as Arrow strings (no Python loop over string columns)."""

from __future__ import annotations

import string

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .errors import InputError


def template_parts(template: str) -> list[tuple[str, str | None]]:
    """The template as ``(literal text, column or None)`` pieces, in order.

    Only plain ``{column}`` substitution is allowed: attribute or index access (``{a.b}``,
    ``{a[0]}``), conversions (``{a!r}``), format specs (``{a:>10}``) and positional fields
    (``{}``) are refused, so a template can never reach into Python objects.
    """
    if not isinstance(template, str):
        raise InputError(f"prompt must be a template string, got {type(template).__name__}.")
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise InputError(f"prompt template {template!r} is malformed ({exc}); "
                         "write literal braces as '{{' and '}}'.") from None
    parts = []
    for literal, field, spec, conversion in parsed:
        if field is not None and (not field or field.isdigit() or any(c in field for c in ".[]")
                                  or spec or conversion):
            raise InputError(
                f"prompt template field {{{field}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} is not allowed: use plain {{column}} fields; "
                "compute other values into a column first."
            )
        parts.append((literal, field))
    return parts


def _check_columns(df: pd.DataFrame, names: list[str], what: str) -> None:
    """Every name must be exactly one column of the frame."""
    missing = [n for n in names if n not in df.columns]
    if missing:
        raise InputError(f"{what} {missing}, which are not columns of the frame. "
                         + _columns_hint(df))
    repeated = [n for n in names if (df.columns == n).sum() > 1]
    if repeated:
        raise InputError(f"{what} {repeated}, which the frame has more than once; give its "
                         "columns unique names first.")


def _columns_hint(df: pd.DataFrame) -> str:
    shown = ", ".join(repr(c) for c in list(df.columns)[:20])
    return f"The frame has columns: {shown}{', ...' if len(df.columns) > 20 else ''}."


def render(
    df: pd.DataFrame, prompt_col: str | None, prompt: str | None
) -> tuple[pa.ChunkedArray, np.ndarray]:
    """Each row's prompt text, and per row why it cannot be sent ("" when it can).

    Returns an Arrow string array of ``len(df)`` (only rows whose reason is "" are meant to be
    sent) and an object array of reasons. Vectorised: no Python loop over string columns.
    """
    if (prompt_col is None) == (prompt is None):
        raise InputError("Pass exactly one of prompt_col='column' or "
                         "prompt='template with {column} fields'.")
    reasons = np.full(len(df), "", dtype=object)
    if prompt_col is not None:
        _check_columns(df, [prompt_col], "prompt_col refers to")
        what = f"column {prompt_col!r}"
        texts = _text(df[prompt_col], reasons, what, stringify=False)
    else:
        parts = template_parts(prompt)
        fields = [field for _, field in parts if field is not None]
        _check_columns(df, fields, "prompt template refers to")
        columns = {f: _text(df[f], reasons, f"template field {f!r}", stringify=True)
                   for f in dict.fromkeys(fields)}
        pieces: list = []
        for literal, field in parts:
            pieces += [pa.scalar(literal, pa.large_string())] if literal else []
            pieces += [columns[field]] if field is not None else []
        what = "rendered prompt"
        texts = (pc.binary_join_element_wise(*pieces, pa.scalar("", pa.large_string())) if columns
                 else _chunked(pa.repeat(pa.scalar("".join(literal for literal, _ in parts)),
                                         len(df))))
    blank = pc.fill_null(pc.or_(pc.equal(pc.binary_length(texts), 0), pc.utf8_is_space(texts)),
                         False)
    reasons[np.asarray(blank) & (reasons == "")] = f"{what} is empty"
    return texts, reasons


def _text(series: pd.Series, reasons: np.ndarray, what: str, stringify: bool
          ) -> pa.ChunkedArray:
    """A column as Arrow strings; null rows, non-strings (unless ``stringify``) and text that
    is not valid Unicode get a reason."""
    null = series.isna().to_numpy()
    reasons[null & (reasons == "")] = f"{what} is null"
    if isinstance(series.dtype, pd.StringDtype) and series.dtype.storage == "pyarrow":
        return _chunked(pa.array(series)).cast(pa.large_string())  # valid UTF-8 already
    values = series.to_numpy(dtype=object).copy()
    values[null] = None
    if stringify:
        values[~null] = [str(v) for v in values[~null]]
    else:
        wrong = np.fromiter((not isinstance(v, str) for v in values), dtype=bool,
                            count=len(values)) & ~null
        for i in np.flatnonzero(wrong & (reasons == "")):
            reasons[i] = f"{what} is a {type(values[i]).__name__}, not a string"
        values[wrong] = None
    try:
        return _chunked(pa.array(values, type=pa.large_string()))
    except (UnicodeEncodeError, pa.ArrowInvalid):
        for i, v in enumerate(values):
            if v is not None and not _encodable(v):
                reasons[i] = reasons[i] or f"{what} is not valid Unicode text (lone surrogate)"
                values[i] = None
        return _chunked(pa.array(values, type=pa.large_string()))


def _encodable(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def _chunked(array) -> pa.ChunkedArray:
    return array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])


def _label(label):
    """An index label as the user wrote it (``11``, not ``np.int64(11)``)."""
    return label.item() if isinstance(label, np.generic) else label


def describe_invalid(df: pd.DataFrame, reasons: np.ndarray, limit: int = 5) -> str:
    """A message naming the first invalid rows (position and index label) and the fix."""
    bad = np.flatnonzero(reasons != "")
    rows = "; ".join(
        f"row {pos} (index {_label(df.index[pos])!r}): {reasons[pos]}" for pos in bad[:limit]
    )
    more = f"; and {len(bad) - limit} more" if len(bad) > limit else ""
    return (
        f"{len(bad)} of {len(df)} rows have no usable prompt: {rows}{more}. Nothing was "
        "uploaded. Fix or drop those rows, or pass on_invalid='skip' to send the rest and get "
        "these rows back with a 'skipped: ...' status."
    )
