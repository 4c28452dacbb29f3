"""What a run did and cost, from its result frame: rows by status, tokens (prompt, output,
thinking, cached), the cost at batch prices beside the estimate made before the run, and a small
chart for notebooks."""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .columns import SUCCESS
from .costs import BATCH_DISCOUNT, price_of, usd
from .tasks import Task

#: Row outcomes, in the order they are shown, by the status they start with.
OUTCOMES = {"answered": SUCCESS, "invalid": "invalid: ", "skipped": "skipped: ",
            "missing": "missing: "}
_COLOURS = {"answered": "#2e7d32", "failed": "#c62828", "invalid": "#ef6c00",
            "skipped": "#9e9e9e", "missing": "#6a1b9a"}


@dataclass(frozen=True)
class Usage:
    """A run's rows by outcome, its tokens and its cost (USD, at batch prices; None without a
    price), beside the estimate made before it was submitted (None when none was recorded).
    Thinking tokens are priced as output, cached tokens as input (without their discount)."""

    run: str
    model: str
    rows: dict[str, int]
    prompt_tokens: int
    output_tokens: int
    thinking_tokens: int
    cached_tokens: int
    cost: float | None
    estimated_cost: float | None
    output_histogram: tuple[tuple[int, int, int], ...]  # (from, to, rows) of output tokens
    prices: str = ""  # where the prices came from (their date)

    def __repr__(self) -> str:
        rows = ", ".join(f"{n:,} {kind}" for kind, n in self.rows.items() if n)
        extra = "".join(f", {n:,} {name}" for name, n in (
            ("thinking", self.thinking_tokens), ("cached", self.cached_tokens)) if n)
        return (f"<Usage {self.run} {self.model}: {rows or 'no rows'}; "
                f"{self.prompt_tokens:,} prompt and {self.output_tokens:,} output tokens{extra};"
                f" cost {_money(self.cost)} (estimated {_money(self.estimated_cost)}; "
                f"{self.prices})>")

    def _repr_html_(self) -> str:
        rows = [("rows", ", ".join(f"{n:,} {k}" for k, n in self.rows.items() if n) or "0"),
                ("prompt tokens", f"{self.prompt_tokens:,}"),
                ("output tokens", f"{self.output_tokens:,}"),
                ("thinking tokens", f"{self.thinking_tokens:,}"),
                ("cached tokens", f"{self.cached_tokens:,}"),
                (f"cost at batch prices ({self.prices})", _money(self.cost)),
                ("estimated before the run", _money(self.estimated_cost))]
        table = "".join(f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
                        f"<td style='text-align:left'>{html.escape(v)}</td></tr>"
                        for k, v in rows)
        return (f"<div><b>Usage</b> <code>{html.escape(self.run)}</code> · "
                f"{html.escape(self.model)}<table>{table}</table>"
                f"{self._status_bar()}{self._histogram()}</div>")

    def _status_bar(self) -> str:
        """The rows by outcome as one stacked bar (SVG)."""
        total = sum(self.rows.values())
        if not total:
            return ""
        x, parts = 0.0, []
        for kind, n in self.rows.items():
            if n:
                width = 400 * n / total
                parts.append(f"<rect x='{x:.1f}' y='0' width='{width:.1f}' height='18' "
                             f"fill='{_COLOURS[kind]}'><title>{n:,} {kind}</title></rect>")
                x += width
        legend = " · ".join(f"<span style='color:{_COLOURS[k]}'>■</span> {k} {n:,}"
                            for k, n in self.rows.items() if n)
        return (f"<div>rows by outcome</div><svg width='400' height='18' role='img'>"
                f"{''.join(parts)}</svg><div>{legend}</div>")

    def _histogram(self) -> str:
        """Output tokens per answered row, as bars (SVG)."""
        if not self.output_histogram:
            return ""
        top = max(n for _, _, n in self.output_histogram) or 1
        width = min(400 / len(self.output_histogram), 32)
        bars = "".join(
            f"<rect x='{i * width:.1f}' y='{60 - 60 * n / top:.1f}' width='{width - 1:.1f}' "
            f"height='{60 * n / top:.1f}' fill='#1565c0'><title>{low:,}–{high:,} tokens: "
            f"{n:,} rows</title></rect>"
            for i, (low, high, n) in enumerate(self.output_histogram))
        low, high = self.output_histogram[0][0], self.output_histogram[-1][1]
        return (f"<div>output tokens per answered row ({low:,} to {high:,})</div>"
                f"<svg width='400' height='60' role='img'>{bars}</svg>")


def usage_of(status: pd.Series, lines: pa.Table, run: str, model: str, task: Task,
             estimated_cost: float | None = None,
             prices: dict[str, tuple[float, float]] | None = None,
             thoughts_in_output: bool = False) -> Usage:
    """The usage of a run: rows by outcome from its result's ``status`` column, tokens from
    its jobs' output ``lines`` (one per request sent, so a request repeated by several rows
    counts once; the ``task``'s token fields: prompt, then output, thinking and cached where it
    has them), priced at batch prices (thinking tokens as output, unless
    ``thoughts_in_output`` says the output count has them already)."""
    status = status.fillna("")
    rows = {kind: int((status == start).sum()) if start == SUCCESS
            else int(status.str.startswith(start).sum()) for kind, start in OUTCOMES.items()}
    rows = {"answered": rows["answered"], "failed": len(status) - sum(rows.values()),
            **{k: rows[k] for k in ("invalid", "skipped", "missing")}}
    counts = [int(pc.sum(lines.column(name)).as_py() or 0) for name in task.token_fields]
    prompt, output, thinking, cached = (counts + [0, 0, 0])[:4]
    price, source = price_of(model, prices)
    cost = None
    if price is not None:
        billed_output = output + (0 if thoughts_in_output else thinking)
        cost = (prompt * price[0] + billed_output * price[1]) / 1e6 * BATCH_DISCOUNT
    histogram = ()
    if len(task.token_fields) > 1:  # answers with output tokens
        answered = pc.filter(lines.column(task.token_fields[1]),
                             pc.equal(lines.column("status"), ""))
        histogram = _bins(pc.drop_null(answered).to_numpy(zero_copy_only=False)
                          .astype(np.int64))
    return Usage(run, model, rows, prompt, output, thinking, cached, cost, estimated_cost,
                 histogram, source)


def _bins(values: np.ndarray, bins: int = 12) -> tuple[tuple[int, int, int], ...]:
    if not len(values):
        return ()
    counts, edges = np.histogram(values, bins=min(bins, max(1, len(np.unique(values)))))
    return tuple((int(edges[i]), int(edges[i + 1]), int(n)) for i, n in enumerate(counts))


def _money(amount: float | None) -> str:
    return usd(amount) if amount is not None else "unknown"


