"""What a run would cost before it is submitted, and the guard that refuses (or asks about) a
run over the user's limits.

Input tokens come from Vertex AI's countTokens API on a sample of the requests when it
answers, otherwise from a rule of thumb (about 4 characters per token, Google's own figure
for Gemini). Output tokens cannot be known before the run: the estimate assumes
``output_tokens`` per request (default: the ``max_output_tokens`` of the generation config,
else 256). Prices are list prices in USD per million tokens; override them with ``prices=``.
"""

from __future__ import annotations

import html
import logging
import math
import sys
from dataclasses import dataclass

import numpy as np
import pyarrow.compute as pc

from . import service
from .config import Settings
from .errors import InputError
from .families import Family
from .options import Options
from .prepare import Prepared, of_rows

log = logging.getLogger(__name__)

#: The date the price table was read (docs/runs.md, "Prices", lists the pages and what each
#: said). The services' own pages: https://cloud.google.com/vertex-ai/generative-ai/pricing and
#: https://ai.google.dev/gemini-api/docs/pricing; with no web access here they were read
#: through stored copies and transcriptions of them (the Gemini 2.5 prices were first taken
#: from the Vertex AI page on 2025-06-17).
PRICES_DATE = "2026-12-06"
#: Standard (online) list prices, USD per million tokens, (input, output), for text prompts of
#: up to 200k tokens; output includes thinking tokens. Batch jobs are billed at half of these
#: (BATCH_DISCOUNT), on Vertex AI and on the Gemini Developer API alike.
PRICES: dict[str, tuple[float, float]] = {
    "gemini-3.8-flash": (0.75, 3.75),  # through 2026-12-31; $1.50 / $7.50 from 2027-01-01
    "gemini-3.5-flash": (1.50, 9.00), "gemini-3.5-flash-lite": (0.30, 2.50),
    "gemini-3.1-pro-preview": (2.00, 12.00), "gemini-3-pro-preview": (2.00, 12.00),
    "gemini-3-flash-preview": (0.50, 3.00),
    "gemini-2.5-pro": (1.25, 10.00), "gemini-2.5-flash": (0.30, 2.50),
    "gemini-2.5-flash-lite": (0.10, 0.40),
    "gemini-2.0-flash": (0.15, 0.60), "gemini-2.0-flash-001": (0.15, 0.60),
    "gemini-2.0-flash-lite": (0.075, 0.30), "gemini-2.0-flash-lite-001": (0.075, 0.30),
}
#: Embedding models' online list prices, USD per million input tokens (no output tokens),
#: as of EMBEDDING_PRICES_DATE: gemini-embedding-001 from Google's blog of 2025-09-10 ("$0.15",
#: batch "$0.075"); gemini-embedding-2 and the text-embedding models (billed per 1,000
#: characters, $0.000025, here at 4 characters a token) from third-party tables
#: (embeddings-spec.md §4: no official Vertex AI batch row was found).
EMBEDDING_PRICES_DATE = "2025-09-10"
EMBEDDING_PRICES: dict[str, tuple[float, float]] = {
    "gemini-embedding-001": (0.15, 0.0), "gemini-embedding-2": (0.20, 0.0),
    "text-embedding-005": (0.10, 0.0), "text-embedding-004": (0.10, 0.0),
    "text-multilingual-embedding-002": (0.10, 0.0),
}
BATCH_DISCOUNT = 0.5
CHARS_PER_TOKEN = 4
SAMPLE_SIZE = 20


@dataclass(frozen=True)
class Estimate:
    """A run's size and estimated batch cost in USD (None when no price is known).

    Attributes:
        model: the model's name.
        rows: the frame's rows.
        requests: the unique requests to send (skipped and repeated rows are not sent).
        input_tokens: the input tokens of those requests.
        output_tokens: the output tokens counted for them.
        cost: the batch cost in USD, or None when no price is known for the model.
        method: how the input tokens were counted.
        prices: where the prices came from, with their date.
    """

    model: str
    rows: int
    requests: int  # unique requests to send (skipped and repeated rows are not sent)
    input_tokens: int
    output_tokens: int
    cost: float | None
    method: str  # how input tokens were counted
    prices: str  # where the prices came from

    def __str__(self) -> str:
        return (f"{self.model}: {self.rows:,} rows, {self.requests:,} requests, "
                f"~{self.input_tokens:,} input and ~{self.output_tokens:,} output tokens, "
                f"estimated batch cost {self.cost_text} ({self.method}; {self.prices})")

    @property
    def cost_text(self) -> str:
        """The cost in dollars, rounded for reading."""
        return usd(self.cost) if self.cost is not None else "unknown (no price)"

    def __repr__(self) -> str:
        return (f"<Estimate {self.model}: {self.cost_text} for {self.requests:,} requests "
                f"({self.rows:,} rows), ~{self.input_tokens:,} input and "
                f"~{self.output_tokens:,} output tokens>")

    def _repr_html_(self) -> str:
        rows = [("model", self.model), ("estimated batch cost", self.cost_text),
                ("rows", f"{self.rows:,}"), ("requests sent", f"{self.requests:,}"),
                ("input tokens", f"~{self.input_tokens:,} ({self.method})"),
                ("output tokens", f"~{self.output_tokens:,}"), ("prices", self.prices)]
        return "<table><caption>Estimate</caption>" + "".join(
            f"<tr><th style='text-align:left'>{html.escape(k)}</th>"
            f"<td style='text-align:left'>{html.escape(v)}</td></tr>" for k, v in rows
        ) + "</table>"


@dataclass(frozen=True)
class Measure:
    """What an estimate is made from: rows, unique requests to send, their characters
    (system instruction included) and an even sample of their prompts for countTokens.
    Measures of parts of a frame (Dask partitions) add up to the frame's."""

    rows: int
    requests: int
    chars: int
    sample: tuple[str, ...]  # each part's sample, thinned to one only when priced

    def __add__(self, other: Measure) -> Measure:
        return Measure(self.rows + other.rows, self.requests + other.requests,
                       self.chars + other.chars, self.sample + other.sample)


def measure(prepared: Prepared) -> Measure:
    """The measure of a prepared call's requests."""
    sent = of_rows(prepared.rows.texts, prepared.sending.send)
    system = prepared.options.request.system_instruction or ""
    chars = int(pc.sum(pc.utf8_length(sent)).as_py() or 0) + len(sent) * len(system)
    picks = np.unique(np.linspace(0, len(sent) - 1, min(SAMPLE_SIZE, len(sent))).astype(int))
    return Measure(len(prepared.df), len(sent), chars, tuple(sent.take(picks).to_pylist()))


def _thinned(sample: tuple[str, ...]) -> tuple[str, ...]:
    """At most ``SAMPLE_SIZE`` prompts, evenly spread over ``sample``."""
    if len(sample) <= SAMPLE_SIZE:
        return sample
    return tuple(sample[i] for i in np.linspace(0, len(sample) - 1, SAMPLE_SIZE).astype(int))


def estimate(prepared: Prepared, output_tokens: int | None = None,
             prices: dict[str, tuple[float, float]] | None = None,
             count_tokens: bool = True) -> Estimate:
    """The estimate of a prepared call (see the module's docstring for the method)."""
    return estimate_of(measure(prepared), prepared.options, prepared.family, prepared.settings,
                       output_tokens, prices, count_tokens)


def estimate_of(found: Measure, options: Options, family: Family, settings: Settings,
                output_tokens: int | None = None,
                prices: dict[str, tuple[float, float]] | None = None,
                count_tokens: bool = True) -> Estimate:
    """The estimate of a measured call of ``family``'s model, with ``options``."""
    request = options.request
    system = request.system_instruction or ""
    per_char, method = None, f"about {CHARS_PER_TOKEN} characters per token"
    sample = list(_thinned(found.sample))  # evenly over every part's sample
    if count_tokens and sample:
        per_char = _counted_tokens_per_char(family, settings, options.credentials, sample,
                                            system)
        if per_char is not None:
            method = f"countTokens on {len(sample)} sampled requests"
    input_tokens = math.ceil(found.chars * per_char) if per_char is not None \
        else math.ceil(found.chars / CHARS_PER_TOKEN)
    if output_tokens is None:
        config = request.generation_config or {}
        output_tokens = int(config.get("max_output_tokens", config.get(
            "maxOutputTokens", family.task.default_output_tokens)))
    output_total = output_tokens * found.requests
    name = family.resource.rsplit("/", 1)[-1]
    price, source = price_of(name, prices)
    cost = None
    if price is not None:
        cost = (input_tokens * price[0] + output_total * price[1]) / 1e6 * BATCH_DISCOUNT
    return Estimate(name, found.rows, found.requests, input_tokens, output_total, cost,
                    method, f"{source}, batch discount {BATCH_DISCOUNT:.0%}")


def price_of(model: str, prices: dict[str, tuple[float, float]] | None = None
             ) -> tuple[tuple[float, float] | None, str]:
    """A model's (input, output) list price per million tokens (``prices`` first, then the
    dated tables), and where it came from."""
    if prices and model in prices:
        return prices[model], "prices given"
    if model in EMBEDDING_PRICES:
        return EMBEDDING_PRICES[model], f"list prices of {EMBEDDING_PRICES_DATE}"
    return PRICES.get(model), f"list prices of {PRICES_DATE}"


def guard(found: Estimate, max_cost: float | None, max_rows: int | None) -> None:
    """Refuse a run over ``max_cost`` (USD) or ``max_rows`` (requests to send), before
    anything is uploaded; in an interactive session, ask first."""
    over = []
    if max_rows is not None and found.requests > max_rows:
        over.append(f"{found.requests:,} requests is over max_rows={max_rows:,}")
    if max_cost is not None:
        if found.cost is None:
            over.append(f"no price is known for {found.model}, so max_cost={max_cost} cannot "
                        "be checked (pass prices={...})")
        elif found.cost > max_cost:
            over.append(f"the estimated {usd(found.cost)} is over max_cost={max_cost}")
    if not over:
        return
    message = f"{'; '.join(over)}. Estimate: {found}."
    if _interactive():
        try:
            answer = input(f"{message}\nSubmit anyway? [y/N] ")
        except (EOFError, NotImplementedError, OSError):  # a kernel no one can answer in
            answer = None
        if answer is not None:
            if answer.strip().lower() in ("y", "yes"):
                return
            raise InputError("Not submitted: " + message)
    raise InputError(f"Not submitted: {message} Raise the limit (or pass None) to run it.")


def usd(amount: float) -> str:
    """Dollars, rounded for reading: cents from $1, else four decimals."""
    return f"${amount:,.2f}" if amount >= 1 else f"${amount:.4f}"


def _interactive() -> bool:
    """A person can answer: a terminal on stdin, or a Jupyter kernel we run in."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if getattr(shell, "kernel", None) is not None:
        return True
    return sys.stdin is not None and sys.stdin.isatty()


def _counted_tokens_per_char(family: Family, settings: Settings, credentials,
                             texts: list[str], system: str) -> float | None:
    """Tokens per character of sampled prompts, by the countTokens API; None when the
    family cannot count them or the API does not answer."""
    if not family.count_tokens:
        return None
    try:
        batch = service.open_service(settings, credentials)
        tokens = batch.count_tokens(family.resource, texts, system)
    except Exception as err:  # noqa: BLE001  any failure means: estimate without the API
        log.info("countTokens did not answer (%s); estimating from characters", err)
        return None
    chars = sum(len(t) + len(system) for t in texts)
    return tokens / chars if chars else None
