"""Prompts from a frame: a prompt column or a ``{column}`` template, and per-row checks."""

from __future__ import annotations

import string

import numpy as np
import pandas as pd

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
) -> tuple[np.ndarray, np.ndarray]:
    """Each row's prompt text and, per row, why it cannot be sent ("" when it can).

    Returns two object arrays of ``len(df)``: prompts (None where invalid) and reasons.
    """
    if (prompt_col is None) == (prompt is None):
        raise InputError("Pass exactly one of prompt_col='column' or "
                         "prompt='template with {column} fields'.")
    if prompt_col is not None:
        _check_columns(df, [prompt_col], "prompt_col refers to")
        values = df[prompt_col].to_numpy(dtype=object, na_value=None)
        return _checked(values, f"column {prompt_col!r}")

    parts = template_parts(prompt)
    fields = [field for _, field in parts if field is not None]
    _check_columns(df, fields, "prompt template refers to")
    reasons = np.full(len(df), "", dtype=object)
    for field in dict.fromkeys(fields):
        null = df[field].isna().to_numpy()
        reasons[null & (reasons == "")] = f"template field {field!r} is null"
    rendered = pd.Series([""] * len(df), dtype=object)
    for literal, field in parts:
        rendered = rendered + literal
        if field is not None:
            rendered = rendered + df[field].astype(str).to_numpy(dtype=object)
    texts = rendered.to_numpy(dtype=object, copy=True)
    texts[reasons != ""] = None
    prompts, empty = _checked(texts, "rendered prompt")
    return prompts, np.where(reasons != "", reasons, empty)


def _checked(values: np.ndarray, what: str) -> tuple[np.ndarray, np.ndarray]:
    reasons = np.full(len(values), "", dtype=object)
    for i, v in enumerate(values):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            reasons[i] = f"{what} is null"
        elif not isinstance(v, str):
            reasons[i] = f"{what} is a {type(v).__name__}, not a string"
        elif not v.strip():
            reasons[i] = f"{what} is empty"
    prompts = values.copy()
    prompts[reasons != ""] = None
    return prompts, reasons


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
