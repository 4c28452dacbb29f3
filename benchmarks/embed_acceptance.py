"""Issue 26's acceptance scenario, run once (not in the suite: it embeds 30,000 rows).

``python benchmarks/embed_acceptance.py [--rows 10000]``: against the offline stack (with its
local BigQuery, so Python 3.11+ with the emulator extra), the ``embed`` call on one frame of
``--rows`` texts (every 7th repeats an earlier text, every 97th is null) for each of the three
shapes: ``gemini-embedding-001`` on Vertex AI (Cloud Storage staging), ``text-embedding-005``
on Vertex AI with BigQuery staging, and ``gemini-embedding-001`` on the Developer API. Every
job gets row faults (``emulator-row-errors=429-3_500-2``: 5 % of the rows fail per pass) and
the call ``max_retries=2``. Checked: every text row comes back "ok" with its own vector (the
emulator's deterministic vector of its text) or, after three failed passes, with its error
(none is lost), null rows come back "skipped", and the same call made again creates no job.
Prints one line per shape and exits non-zero when a check fails."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np
import pandas as pd

import pdbatch
from pdbatch.emulator import LocalStack
from pdbatch.emulator.embeddings import vector

WORDS = ("river water fish boat credit loan money bank shore tree cloud rain stone field "
         "song dance paper ink").split()


def frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(26)
    texts = [" ".join(rng.choice(WORDS, 6)) + f" {i}" for i in range(rows)]
    for i in range(7, rows, 7):
        texts[i] = texts[i - 7]  # a repeat
    df = pd.DataFrame({"text": texts}, index=pd.RangeIndex(5000, 5000 + rows))
    df.loc[df.index[::97], "text"] = None
    return df


def jobs(stack) -> int:
    """Every job and batch the emulator has created."""
    vertex = stack.service.list(f"projects/{stack.project}/locations/{stack.location}", 1000, "")
    batches = stack.gemini.batches.list(0, 1000)
    return len(vertex.get("batchPredictionJobs", [])) + len(batches.get("operations", []))


def check(name: str, df: pd.DataFrame, call, dims: int, stack) -> bool:
    start = time.perf_counter()
    out = call()
    seconds = time.perf_counter() - start
    null = df["text"].isna().to_numpy()
    ok = (out["status"] == "ok").to_numpy()
    failed = ~ok & ~null
    matrix = pdbatch.vectors(out)
    expected = np.stack([vector(t, dims) for t in df.loc[ok, "text"]])
    own = bool(np.allclose(matrix[ok], expected, atol=1e-6))
    skipped = bool(out.loc[null, "status"].str.startswith("skipped: ").all())
    explained = bool(out.loc[failed, "error_code"].isin([429, 500]).all()
                     and (out.loc[failed, "attempts"] == 3).all())
    before = jobs(stack)
    again = call()
    created = jobs(stack) - before
    same = again.attrs["pdbatch_run"] == out.attrs["pdbatch_run"]
    passed = own and skipped and explained and created == 0 and same and \
        out.index.equals(df.index)
    print(f"{name:<46} {seconds:6.1f} s  ok {ok.sum():,}  failed after 3 passes "
          f"{failed.sum()} (429/500: {explained})  skipped {null.sum()}  own vectors {own}  "
          f"retried rows {(out['attempts'] > 1).sum():,}  again: {created} new jobs, same run "
          f"{same}  -> {'PASS' if passed else 'FAIL'}", flush=True)
    return passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    args = parser.parse_args()
    df = frame(args.rows)
    print(f"{len(df):,} rows, {df['text'].nunique():,} distinct texts, "
          f"{df['text'].isna().sum()} null", flush=True)
    common = {"text_col": "text", "on_invalid": "skip", "max_retries": 2, "progress": False}
    results = []
    with LocalStack(bigquery=True) as stack, tempfile.TemporaryDirectory() as runs:
        stack.service.fault_labels = {"emulator-row-errors": "429-3_500-2"}
        dataset = f"acceptance_{int(time.time())}"
        from google.cloud import bigquery

        from pdbatch.storage.bigquery import client

        ref = bigquery.Dataset(f"{stack.project}.{dataset}")
        ref.location = stack.location
        client(stack.project).create_dataset(ref)
        results.append(check("gemini-embedding-001, Vertex AI, Cloud Storage", df, lambda:
                             df.gemini.embed(model="gemini-embedding-001",
                                             output_dimensionality=768, **common), 768, stack))
        results.append(check("text-embedding-005, Vertex AI, BigQuery staging", df, lambda:
                             df.gemini.embed(model="text-embedding-005",
                                             staging=f"bq://{stack.project}.{dataset}",
                                             **common), 768, stack))
        results.append(check("gemini-embedding-001, Developer API", df, lambda:
                             df.gemini.embed(model="gemini-embedding-001",
                                             output_dimensionality=768, service="gemini-api",
                                             staging=runs, **common), 768, stack))
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
