"""Result columns: resolve the output lines per row and join them back onto the frame.

The join is positional: a row's key is its position in the frame, so the result keeps the
original index (duplicates included) and order, and no row is ever dropped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import orjson
import pandas as pd

from .errors import InputError

log = logging.getLogger(__name__)

#: Result columns and their dtypes (documented in docs/results.md).
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


def _rank(record: Mapping[str, Any]) -> tuple:
    """Order of preference among lines for the same row: a success, then the latest, then
    the lexically largest status, so the choice never depends on file order."""
    return (record["status"] == "", record["processed_time"], record["status"])


def best_per_row(records: Iterable[Mapping[str, Any]], expected: set[int]) -> dict[int, Mapping]:
    """One record per expected row key; lines for other keys are counted and logged."""
    chosen: dict[int, Mapping] = {}
    duplicates = strays = 0
    for record in records:
        key = record["key"]
        if key not in expected:
            strays += 1
            continue
        if key in chosen:
            duplicates += 1
            if _rank(record) <= _rank(chosen[key]):
                continue
        chosen[key] = record
    if duplicates:
        log.warning("%d output lines repeated a row; kept one per row", duplicates)
    if strays:
        log.warning("%d output lines had no row key of this job and were ignored", strays)
    return chosen


class ResultBuilder:
    """Per-row result values for a frame of ``n`` rows, filled job by job."""

    def __init__(self, n: int):
        self.values: dict[str, np.ndarray] = {c: np.full(n, None, dtype=object)
                                              for c in RESULT_COLUMNS}

    def skip(self, positions: np.ndarray, reasons: np.ndarray) -> None:
        """Rows that were not sent: status ``skipped: <reason>``."""
        self.values["status"][positions] = ["skipped: " + r for r in reasons]

    def add_job(self, job: str, positions: np.ndarray, records: Iterable[Mapping]) -> None:
        """Rows sent in ``job``: their chosen output line, or a ``missing`` status."""
        chosen = best_per_row(records, set(positions.tolist()))
        v = self.values
        v["job"][positions] = job
        for key, record in chosen.items():
            v["status"][key] = record["status"]
            v["error_code"][key], v["error_message"][key] = parse_status(record["status"])
            for column in ("text", "finish_reason", "prompt_tokens", "output_tokens", "response"):
                v[column][key] = record[column]
        missing = [p for p in positions.tolist() if p not in chosen]
        if missing:
            log.warning("%d rows of %s have no output line", len(missing), job)
            v["status"][missing] = f"missing: job {job} wrote no output line for this row"

    def join(self, df: pd.DataFrame, prefix: str = "") -> pd.DataFrame:
        """A copy of ``df`` (same index and order) with the result columns added."""
        out = df.copy()
        for column, dtype in RESULT_COLUMNS.items():
            out[prefix + column] = pd.array(self.values[column], dtype=dtype)
        return out
