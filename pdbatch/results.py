"""Result columns: resolve the output lines per row and join them back onto the frame.

The join is positional: a row's key is its position in the frame, so the result keeps the
original index (duplicates included) and order, and no row is ever dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import orjson
import pandas as pd

from .errors import InputError

log = logging.getLogger(__name__)

#: Result columns and their dtypes (documented in docs/usage.md, "Result columns").
RESULT_COLUMNS: dict[str, str] = {
    "text": "string",
    "finish_reason": "string",
    "status": "string",
    "error_code": "Int64",
    "error_message": "string",
    "prompt_tokens": "Int64",
    "output_tokens": "Int64",
    "response": "object",
    "job": "string",
}


def check_no_clash(df: pd.DataFrame, prefix: str) -> None:
    """Refuse, before any work, to overwrite columns the frame already has."""
    clash = [prefix + c for c in RESULT_COLUMNS if prefix + c in df.columns]
    if clash:
        raise InputError(
            f"The frame already has column(s) {clash}, which the results would overwrite. "
            "Rename them, or pass result_prefix='llm_' to name the result columns llm_text, "
            "llm_status, ..."
        )


def parse_status(status: str) -> tuple[int | None, str | None]:
    """``(code, message)`` from a row status such as ``Bad Request: {"error": {...}}``."""
    if not status:
        return None, None
    _, sep, payload = status.partition(": {")
    if sep:
        try:
            error = orjson.loads("{" + payload).get("error") or {}
            code = error.get("code")
            return (code if isinstance(code, int) else None), error.get("message") or status
        except (orjson.JSONDecodeError, AttributeError):
            pass
    return None, status


def _objects(values) -> np.ndarray:
    """A 1-D object array of ``values`` (never a 2-D one, whatever the values are)."""
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def _winners(lines: np.ndarray, rows: np.ndarray, status, processed_time) -> np.ndarray:
    """One output line per row. Where a row has several lines, prefer a success, then the
    latest ``processed_time``, then the lexically largest status: never the file order."""
    unique, counts = np.unique(rows, return_counts=True)
    if len(unique) == len(rows):
        return lines
    log.warning("%d output lines repeated a row; kept one per row", len(rows) - len(unique))
    repeated = set(unique[counts > 1].tolist())

    def rank(line: int) -> tuple:
        return (status[line] == "", processed_time[line], status[line])

    keep, best = [], {}
    for line, row in zip(lines.tolist(), rows.tolist(), strict=True):
        if row not in repeated:
            keep.append(line)
        elif row not in best or rank(line) > rank(best[row]):
            best[row] = line
    return np.array(keep + list(best.values()), dtype=np.int64)


class ResultBuilder:
    """Per-row result values for a frame of ``n`` rows, filled job by job."""

    def __init__(self, n: int):
        self.values: dict[str, np.ndarray] = {c: np.full(n, None, dtype=object)
                                              for c in RESULT_COLUMNS}

    def skip(self, positions: np.ndarray, reasons: np.ndarray) -> None:
        """Rows that were not sent: status ``skipped: <reason>``."""
        self.values["status"][positions] = ["skipped: " + r for r in reasons]

    def add_job(self, job: str, positions: np.ndarray, parsed: Mapping[str, Sequence]) -> None:
        """Rows sent in ``job`` (``positions``) get their output line from ``parsed`` (the
        columns of ``formats.gemini.parse_lines``), or a ``missing`` status."""
        v = self.values
        n = len(v["status"])
        v["job"][positions] = job
        keys = np.fromiter((k if k is not None and 0 <= k < n else -1 for k in parsed["key"]),
                           dtype=np.int64, count=len(parsed["key"]))
        sent = np.zeros(n, dtype=bool)
        sent[positions] = True
        valid = keys >= 0
        valid[valid] = sent[keys[valid]]
        if not valid.all():
            log.warning("%d output lines had no row key of this job and were ignored",
                        len(keys) - int(valid.sum()))
        lines = np.flatnonzero(valid)
        winners = _winners(lines, keys[lines], parsed["status"], parsed["processed_time"])
        rows = keys[winners]
        for column in ("status", "text", "finish_reason", "prompt_tokens", "output_tokens",
                       "response"):
            v[column][rows] = _objects(parsed[column])[winners]
        for row in rows[v["status"][rows] != ""].tolist():
            v["error_code"][row], v["error_message"][row] = parse_status(v["status"][row])
        answered = np.zeros(n, dtype=bool)
        answered[rows] = True
        missing = positions[~answered[positions]]
        if len(missing):
            log.warning("%d rows of %s have no output line", len(missing), job)
            v["status"][missing] = f"missing: job {job} wrote no output line for this row"

    def join(self, df: pd.DataFrame, prefix: str = "") -> pd.DataFrame:
        """A copy of ``df`` (same index and order) with the result columns added."""
        out = df.copy()
        for column, dtype in RESULT_COLUMNS.items():
            out[prefix + column] = pd.array(self.values[column], dtype=dtype)
        return out
