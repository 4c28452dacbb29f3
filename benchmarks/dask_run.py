"""pdbatch on Dask: a frame generated on the workers, through the emulator, on a LocalCluster.

    python benchmarks/dask_run.py                              # 1,000,000 rows, 64 partitions
    python benchmarks/dask_run.py --rows 10000000 --partitions 64 --write
    python benchmarks/dask_run.py --rows 10000000 --partitions 64 --to-parquet /tmp/out \
        --memory-limit 1.2GiB                                  # written out as it is joined
    python benchmarks/dask_run.py --count-tasks                # graph sizes, nothing runs

The frame is made partition by partition on the workers (``dd.from_map``), so it never exists
on the client; the result is reduced on the workers to one summary row per partition (or, with
``--to-parquet``, written out with ``to_parquet`` and read back there). The emulator (with its
local Cloud Storage server) runs as a separate process, with its default concurrency quota
unless ``--max-running-jobs`` says otherwise. Recorded: wall time, each worker's peak RSS,
the client's and the emulator's, the emulator's rows/s, the reads of each job's output, the
graph's size, worker restarts, and the machine's load. ``--write`` adds the row to the table
in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import unquote

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import pandas as pd  # noqa: E402

HERE = Path(__file__).parent
ROWS = "<!-- dask rows -->"


def make_partition(number: int, rows: int) -> pd.DataFrame:
    """Partition ``number`` of the synthetic frame: ~70-character prompts."""
    first = number * rows
    ids = pd.RangeIndex(first, first + rows, name="id")
    return pd.DataFrame({"prompt": [f"Describe catalogue item {i} in one short sentence, please."
                                    for i in ids]}, index=ids)


def summarise(part: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({"rows": [len(part)], "ok": [int((part["status"] == "ok").sum())],
                         "echoed": [int((part["text"] == "echo: " + part["prompt"]).sum())]})


def peak_rss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


class OutputReads(logging.Handler):
    """Counts, in a worker, the reads of job output files: gcsfs logs each request; a read of
    a file starts at byte 0 (later range requests of the same read do not)."""

    def __init__(self):
        super().__init__()
        self.counts: Counter = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        found = re.search(r"/o/([^?,' ]*output-\d{5}[^?,' ]*)\?alt=media", text)
        if text.startswith("GET") and found and ("Range" not in text or "bytes=0-" in text):
            self.counts[unquote(found[1])] += 1


def count_output_reads() -> None:
    gcsfs_log = logging.getLogger("gcsfs")
    gcsfs_log.setLevel(logging.DEBUG)
    gcsfs_log.addHandler(OutputReads())


def output_reads() -> dict[str, int]:
    return {name: count for handler in logging.getLogger("gcsfs").handlers
            if hasattr(handler, "counts") for name, count in handler.counts.items()}


def emulator_rows_per_second(rows: int) -> float:
    """Rows answered per second by the emulator: from the first job's start to the last
    job's end (the jobs' own times, as the service reports them)."""
    import json
    import urllib.request

    url = (f"{os.environ['GOOGLE_VERTEX_BASE_URL']}/v1/projects/"
           f"{os.environ['GOOGLE_CLOUD_PROJECT']}/locations/"
           f"{os.environ['GOOGLE_CLOUD_LOCATION']}/batchPredictionJobs?pageSize=100000")
    with urllib.request.urlopen(url) as answer:
        jobs = json.load(answer).get("batchPredictionJobs", [])
    starts = [datetime.fromisoformat(j["startTime"]) for j in jobs if "startTime" in j]
    ends = [datetime.fromisoformat(j["endTime"]) for j in jobs if "endTime" in j]
    return rows / (max(ends) - min(starts)).total_seconds()


def count_tasks(staging: str) -> list[str]:
    """The tasks of ``batch_predict``'s graph (and pdbatch's own) for 64, 640 and 6,400
    partitions, and the client's memory while building them."""
    import dask.dataframe as dd

    lines = []
    for partitions in (64, 640, 6400):
        ddf = dd.from_map(make_partition, range(partitions), rows=1,
                          meta=make_partition(0, 1).iloc[:0])
        start = time.perf_counter()
        out = ddf.gemini.batch_predict(prompt_col="prompt", staging=staging)
        graph = out.__dask_graph__()
        ours = sum(1 for key in graph if "pdbatch-" in str(key))
        lines.append(f"| {partitions:,} | {len(graph):,} | {ours:,} ({ours / partitions:.2f} "
                     f"per partition) | {time.perf_counter() - start:.1f} s | "
                     f"{peak_rss() / 2**20:,.0f} MiB |")
    return lines


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--memory-limit", default="0", help="per worker, e.g. 1.2GiB")
    parser.add_argument("--to-parquet", metavar="PATH", help="write the result out there")
    parser.add_argument("--max-running-jobs", type=int, default=None,
                        help="the emulator's quota (default: its own default)")
    parser.add_argument("--state-dir", help="the emulator's folder: its Cloud Storage objects "
                        "on disk rather than in memory (for runs of more than a few GB)")
    parser.add_argument("--count-tasks", action="store_true", help="graph sizes only")
    parser.add_argument("--write", action="store_true", help="record in benchmarks/RESULTS.md")
    args = parser.parse_args()

    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    import pdbatch  # noqa: F401  (registers ddf.gemini)
    from pdbatch.emulator.stack import read_exports

    per_part = -(-args.rows // args.partitions)
    quota = [] if args.max_running_jobs is None else ["--max-running-jobs",
                                                      str(args.max_running_jobs)]
    if args.state_dir:
        quota += ["--state-dir", args.state_dir]
    load_before = os.getloadavg()
    emulator = subprocess.Popen([sys.executable, "-m", "pdbatch.emulator", *quota],
                                stdout=subprocess.PIPE, text=True)
    try:
        os.environ.update(read_exports(emulator.stdout))
        staging = os.environ["PDBATCH_STAGING"]
        if args.count_tasks:
            print("| partitions | tasks in the graph | pdbatch's tasks | build time | client "
                  "peak RSS |\n|---|---|---|---|---|")
            print("\n".join(count_tasks(staging)))
            return 0
        with LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=None,
                          memory_limit=args.memory_limit) as cluster, \
                Client(cluster) as client:
            ddf = dd.from_map(make_partition, range(args.partitions), rows=per_part,
                              meta=make_partition(0, 1).iloc[:0])
            client.run(count_output_reads)
            workers_before = set(client.scheduler_info()["workers"])
            start = time.perf_counter()
            out = ddf.gemini.batch_predict(prompt_col="prompt", staging=staging,
                                           include_response=False)
            tasks = len(out.__dask_graph__())
            meta = {"rows": "int64", "ok": "int64", "echoed": "int64"}
            if args.to_parquet:
                out.to_parquet(args.to_parquet, write_index=True)
                summary = dd.read_parquet(args.to_parquet, columns=["prompt", "status", "text"]
                                          ).map_partitions(summarise, meta=meta).compute()
            else:
                summary = out.map_partitions(summarise, meta=meta).compute()
            seconds = time.perf_counter() - start
            restarted = len(workers_before - set(client.scheduler_info()["workers"]))
            workers = sorted(client.run(peak_rss).values())
            reads = Counter()
            for counts in client.run(output_reads).values():
                reads.update(counts)
        emulator_peak = peak_rss(emulator.pid)
        emulator_speed = emulator_rows_per_second(args.rows)
    finally:
        emulator.terminate()
        emulator.wait(timeout=60)
    client_peak = peak_rss()
    rows, ok, echoed = (int(summary[c].sum()) for c in ("rows", "ok", "echoed"))
    assert rows == ok == echoed == per_part * args.partitions, (rows, ok, echoed)
    job_reads = Counter()
    for name, count in reads.items():
        job_reads[re.search(r"output-\d{5}", name)[0]] += count
    load_after = os.getloadavg()
    command = (f"`python benchmarks/dask_run.py --rows {args.rows} --partitions "
               f"{args.partitions}" + (f" --to-parquet PATH --memory-limit {args.memory_limit}"
                                       if args.to_parquet else "")
               + (f" --max-running-jobs {args.max_running_jobs}"
                  if args.max_running_jobs is not None else "")
               + (" --state-dir DIR" if args.state_dir else "") + "`")
    row = (f"| {datetime.now(timezone.utc):%Y-%m-%d} | {command} | {rows:,} | "
           f"{args.partitions} × {per_part:,} | {seconds:,.0f} s ({rows / seconds:,.0f}/s) | "
           f"{' / '.join(f'{w / 2**20:,.0f}' for w in workers)} MiB | "
           f"{client_peak / 2**20:,.0f} MiB | {emulator_peak / 2**20:,.0f} MiB, "
           f"{emulator_speed:,.0f} rows/s | {len(job_reads)} jobs, max "
           f"{max(reads.values(), default=0)} read(s) per file | {tasks:,} | {restarted} | "
           f"{load_before[0]:.1f} → {load_after[0]:.1f} |")
    print(row)
    if args.write:
        path = HERE / "RESULTS.md"
        text = path.read_text()
        end = text.index(ROWS)  # the table's end
        path.write_text(text[:end] + row + "\n" + text[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
