"""Per-row generation settings: ``config_cols={"temperature": "temp"}`` takes each row's
``generationConfig.temperature`` from column ``temp`` (Gemini)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
import pyarrow as pa

from .errors import InputError
from .families.lines import camel_key, snake_key

#: Settings a column may give per row, and whether they are whole numbers.
SETTINGS = {"temperature": False, "top_p": False, "top_k": True, "max_output_tokens": True,
            "seed": True, "presence_penalty": False, "frequency_penalty": False}


def row_config(df: pd.DataFrame, config_cols: Mapping[str, str],
               generation_config: Mapping | None, reasons: np.ndarray,
               allowed: tuple[str, ...] | None = None) -> pa.Table:
    """The per-row settings as an Arrow table whose columns are their REST names; a null or
    unusable value gives its row a reason (like an invalid prompt). ``allowed``: the text
    settings a family takes per row instead of the generation settings (an embedding's
    ``title``: a null title is sent as null)."""
    if allowed is not None:
        return _text_settings(df, config_cols, allowed)
    if not isinstance(config_cols, Mapping) or not config_cols:
        raise InputError("config_cols must be a dict of setting -> column, e.g. "
                         "{'temperature': 'temp'}.")
    given = {snake_key(k) for k in generation_config or {}}
    columns = {}
    for key, column in config_cols.items():
        setting = snake_key(key)
        if setting not in SETTINGS:
            raise InputError(f"config_cols: {key!r} cannot be set per row; use "
                             f"{sorted(SETTINGS)}.")
        if setting in given:
            raise InputError(f"config_cols sets {key!r} per row and generation_config sets it "
                             "for all rows; pass it once.")
        if column not in df.columns:
            raise InputError(f"config_cols[{key!r}] = {column!r} is not a column of the frame.")
        values = pd.to_numeric(df[column], errors="coerce").astype("Float64")
        whole = SETTINGS[setting]
        bad = values.isna().to_numpy(dtype=bool)
        if whole:
            bad = bad | (values.fillna(0) % 1 != 0).to_numpy(dtype=bool)
        for row in np.flatnonzero(bad & (reasons == "")):
            kind = "a whole number" if whole else "a number"
            reasons[row] = f"config column {column!r} ({key}) is not {kind}"
        filled = values.fillna(0).to_numpy(dtype=float)
        columns[camel_key(setting)] = pa.array(filled.astype(np.int64) if whole else filled)
    return pa.table(columns)


def _text_settings(df: pd.DataFrame, config_cols: Mapping[str, str],
                   allowed: tuple[str, ...]) -> pa.Table:
    columns = {}
    for key, column in config_cols.items():
        if snake_key(key) not in allowed:
            raise InputError(f"{key!r} cannot be set per row for this model; use "
                             f"{list(allowed)}.")
        if column not in df.columns:
            raise InputError(f"{key} column {column!r} is not a column of the frame.")
        values = df[column].astype(object).where(df[column].notna(), None)
        columns[snake_key(key)] = pa.array([None if v is None else str(v) for v in values],
                                           pa.string())
    return pa.table(columns)
