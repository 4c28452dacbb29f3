"""pdbatch's client-side benchmark: each stage timed beside its baselines, in the same run.

    python benchmarks/run.py                      # 100,000 rows, prints the table
    python benchmarks/run.py --rows 1000000 --write   # and rewrites benchmarks/RESULTS.md

Stages (seeded synthetic frame of ~600-character prompts, a shuffled duplicate-laden index):
  render+serialise  pdbatch's prompt checks and request lines, written to a file in page cache
                    vs json.dumps per row, orjson.dumps per row, and writing the same bytes raw
  stage             upload of the request JSONL to the local Cloud Storage server (fake-gcs)
                    vs one raw upload of the same bytes
  download          reading a Vertex-shaped output file back from the local server vs raw cat
  parse+join        pdbatch's parse of every output line and join onto the frame
                    vs json.loads per line, orjson.loads per line, and reading the bytes raw
  end to end        batch_predict through the emulator (run as separate processes), with the
                    client's peak RSS beside the frame's memory
  emulator          the emulator's own rows/s and peak RSS during that run
  import            `import pdbatch` in a fresh interpreter, with and without pandas loaded

Peak RSS per in-process stage is the process high-water mark (VmHWM) after resetting it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import numpy as np  # noqa: E402
import orjson  # noqa: E402
import pandas as pd  # noqa: E402
import pyarrow as pa  # noqa: E402

HERE = Path(__file__).parent
WORDS = ["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed",
         "tempor", "incididunt", "labore", "magna", "aliqua", "veniam", "nostrud"]
SPECIAL = ["é", "ü", "東京", "😀", "🚀", '"quoted"', "it's", "\\backslash", "C:\\temp", "a\tb",
           "new\nline"]


# ----------------------------------------------------------------------------- measuring
def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _rss(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


@contextmanager
def measured(results: list, stage: str, name: str, nbytes: int | None = None):
    """Time a block and record its peak RSS (whole process) and RSS growth."""
    import gc

    gc.collect()
    _reset_peak()
    before = _rss("VmRSS")
    start, cpu = time.perf_counter(), time.process_time()
    yield
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    results.append({"stage": stage, "name": name, "seconds": seconds, "bytes": nbytes,
                    "peak_rss": _rss("VmHWM"), "delta_rss": _rss("VmHWM") - before,
                    "cpu": cpu})
    print(f"  {stage:<17} {name:<42} {seconds:8.2f} s (CPU {cpu:.2f} s, all threads)",
          flush=True)


# ----------------------------------------------------------------------------- data
def make_frame(rows: int, seed: int = 42) -> pd.DataFrame:
    """~600-character prompts, ~8 % special tokens, shuffled index with duplicates."""
    rng = random.Random(seed)
    vocabulary = WORDS * 12 + SPECIAL  # about 8 % special
    prompts = []
    for i in range(rows):
        words = rng.choices(vocabulary, k=95)
        prompts.append(f"Summarise item {i}: " + " ".join(words))
    index = np.random.default_rng(seed).integers(0, rows, size=rows)
    return pd.DataFrame({"prompt": pd.array(prompts, dtype="str"), "id": np.arange(rows)},
                        index=pd.Index(index, name="label"))


def make_output(requests: list[bytes], seed: int = 43) -> bytes:
    """Output lines as Vertex writes them (shuffled, 1 % failed), from the request lines."""
    rng = random.Random(seed)
    failed = ('Bad Request: {"error": {"code": 400, "message": "Invalid value at '
              "'contents[0].parts[0]'\", \"status\": \"INVALID_ARGUMENT\"}}")
    out = []
    for raw in requests:
        line = orjson.loads(raw)
        record = {"pdbatch_row": line["pdbatch_row"], "status": "",
                  "processed_time": "2026-11-21T12:00:00.123+00:00", "request": line["request"]}
        if rng.random() < 0.01:
            record["status"] = failed
        else:
            text = " ".join(rng.choices(WORDS, k=45))
            record["response"] = {
                "candidates": [{"content": {"role": "model", "parts": [{"text": text}]},
                                "finishReason": "STOP", "avgLogprobs": -0.1}],
                "modelVersion": "gemini-2.5-flash",
                "usageMetadata": {"promptTokenCount": 120, "candidatesTokenCount": 45,
                                  "totalTokenCount": 165}}
        out.append(orjson.dumps(record) + b"\n")
    rng.shuffle(out)
    return b"".join(out)


# ----------------------------------------------------------------------------- stages
def bench_serialise(results, df: pd.DataFrame, folder: Path):
    """pdbatch renders and serialises shard by shard, as batch_predict does."""
    from pdbatch import prompts
    from pdbatch.families import gemini
    from pdbatch.families.lines import string_bytes
    from pdbatch.plan import MAX_REQUESTS_PER_JOB, job_inputs

    system, config = "You are terse.", {"temperature": 0.2, "max_output_tokens": 256}
    shared = {"systemInstruction": {"parts": [{"text": system}]},
              "generationConfig": gemini.camel_case(config)}

    def request(i, text):
        return {"pdbatch_row": i,
                "request": {"contents": [{"role": "user", "parts": [{"text": text}]}], **shared}}

    chunks = []
    with measured(results, "render+serialise", "pdbatch (checks + job_inputs + write)"):
        texts, reasons = prompts.render(df, "prompt", None)
        frame = gemini.frame(system, config)
        with open(folder / "pdbatch.jsonl", "wb") as f:
            for _, lines in job_inputs(texts, reasons == "", frame, MAX_REQUESTS_PER_JOB):
                for chunk in lines.chunks:
                    f.write(string_bytes(chunk))
                chunks += lines.chunks
    size = (folder / "pdbatch.jsonl").stat().st_size
    results[-1]["bytes"] = size

    with measured(results, "render+serialise", "baseline: json.dumps per row", size):
        with open(folder / "json.jsonl", "w", encoding="utf-8") as f:
            for i, text in enumerate(df["prompt"].tolist()):
                f.write(json.dumps(request(i, text), ensure_ascii=False,
                                   separators=(",", ":")) + "\n")
    with measured(results, "render+serialise", "baseline: orjson.dumps per row", size):
        with open(folder / "orjson.jsonl", "wb") as f:
            f.writelines(orjson.dumps(request(i, t)) + b"\n"
                         for i, t in enumerate(df["prompt"].tolist()))
    data = (folder / "pdbatch.jsonl").read_bytes()
    assert (folder / "orjson.jsonl").read_bytes() == data, "pdbatch's bytes differ from orjson's"
    with measured(results, "render+serialise", "baseline: write the same bytes raw", size):
        with open(folder / "raw.jsonl", "wb") as f:
            view = memoryview(data)
            for start in range(0, len(view), 2**20):
                f.write(view[start:start + 2**20])
    for name in ("json.jsonl", "orjson.jsonl", "raw.jsonl"):
        (folder / name).unlink()
    return pa.chunked_array(chunks), data


def bench_storage(results, lines: pa.ChunkedArray, data: bytes, output: bytes, bucket: str,
                  folder: Path) -> None:
    from pdbatch.storage import gcs

    fs = gcs.filesystem()
    with measured(results, "stage", "pdbatch gcs.write_jsonl", len(data)):
        gcs.write_jsonl(fs, f"gs://{bucket}/bench/input.jsonl", lines)
    with measured(results, "stage", "baseline: one raw upload (fs.pipe)", len(data)):
        fs.pipe(f"gs://{bucket}/bench/raw.jsonl", data)
    fs.pipe(f"gs://{bucket}/bench/out/predictions.jsonl", output)
    with measured(results, "download", "pdbatch gcs.download", len(output)):
        gcs.download(fs, f"gs://{bucket}/bench/out/predictions.jsonl", folder / "dl.jsonl")
    assert (folder / "dl.jsonl").stat().st_size == len(output)
    (folder / "dl.jsonl").unlink()
    with measured(results, "download", "baseline: raw fs.cat", len(output)):
        fs.cat(f"gs://{bucket}/bench/out/predictions.jsonl")


def _extract(line: dict) -> tuple:
    response = line.get("response") or {}
    candidate = (response.get("candidates") or [{}])[0]
    parts = (candidate.get("content") or {}).get("parts") or []
    usage = response.get("usageMetadata") or {}
    return (line["pdbatch_row"], line["status"], "".join(p.get("text", "") for p in parts),
            candidate.get("finishReason"), usage.get("promptTokenCount"),
            usage.get("candidatesTokenCount"))


def bench_parse(results, df: pd.DataFrame, output_path: Path) -> None:
    from pdbatch import engine
    from pdbatch.families import gemini, lines
    from pdbatch.join import ResultBuilder
    from pdbatch.tasks.generate import GENERATE

    size = output_path.stat().st_size
    with measured(results, "parse+join", "pdbatch (parse_output + join)", size):
        parsed = lines.parse_output(engine.connect(), gemini.PARSER, [str(output_path)])
        builder = ResultBuilder(len(df), GENERATE)
        builder.add_job("job", np.arange(len(df)), parsed)
        del parsed
        out = builder.join(df)
    assert len(out) == len(df) and out["status"].eq("ok").mean() > 0.98
    del builder, out
    with measured(results, "parse+join", "pdbatch, include_response=False", size):
        parsed = lines.parse_output(engine.connect(), gemini.PARSER, [str(output_path)],
                                    response=False)
        builder = ResultBuilder(len(df), GENERATE, response=False)
        builder.add_job("job", np.arange(len(df)), parsed)
        del parsed
        out = builder.join(df)
    assert "response" not in out.columns and out["status"].eq("ok").mean() > 0.98
    del builder, out

    for name, loads in (("json.loads", json.loads), ("orjson.loads", orjson.loads)):
        with measured(results, "parse+join", f"baseline: {name} per line", size):
            with open(output_path, "rb") as f:
                rows = [_extract(loads(raw)) for raw in f]
        del rows
    buffer = bytearray(2**20)
    with measured(results, "parse+join", "baseline: read the bytes raw (1 MiB readinto)", size):
        with open(output_path, "rb", buffering=0) as f:
            while f.readinto(buffer):
                pass


E2E = """
import json, os, resource, sys, time
import pandas as pd, pdbatch
df = pd.read_parquet(sys.argv[1])
frame = int(df.memory_usage(deep=True).sum())
with open("/proc/self/status") as f:
    before = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
start = time.perf_counter()
out = df.gemini.batch_predict(prompt_col="prompt", progress=False)
seconds = time.perf_counter() - start
assert (out["status"] == "ok").all() and len(out) == len(df)
print(json.dumps({"seconds": seconds, "frame": frame, "before": before,
                  "result": int(out.memory_usage(deep=True).sum()) - frame,
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
from google.auth.credentials import AnonymousCredentials
from google.cloud.aiplatform_v1 import JobServiceClient
client = JobServiceClient(transport="rest", credentials=AnonymousCredentials(),
                          client_options={"api_endpoint": os.environ["GOOGLE_VERTEX_BASE_URL"]})
jobs = [client.get_batch_prediction_job(name=n) for n in out["job"].unique()]
print(json.dumps({"emulator_seconds": (max(j.end_time for j in jobs)
                                       - min(j.start_time for j in jobs)).total_seconds()}))
"""


def bench_end_to_end(results, df: pd.DataFrame, folder: Path) -> None:
    from pdbatch.emulator.stack import read_exports

    path = folder / "frame.parquet"
    df.to_parquet(path)
    emulator = subprocess.Popen([sys.executable, "-m", "pdbatch.emulator"],
                                stdout=subprocess.PIPE, text=True)
    try:
        env = {**os.environ, **read_exports(emulator.stdout)}
        done = subprocess.run([sys.executable, "-c", E2E, str(path)], env=env, check=True,
                              capture_output=True, text=True)
        with open(f"/proc/{emulator.pid}/status") as f:
            emulator_peak = next(int(x.split()[1]) * 1024 for x in f if x.startswith("VmHWM:"))
    finally:
        emulator.terminate()
        emulator.wait(timeout=30)
    figures, timing = (json.loads(x) for x in done.stdout.strip().splitlines()[-2:])
    results.append({"stage": "end to end", "name": f"batch_predict, {len(df):,} rows, emulator",
                    "seconds": figures["seconds"], "bytes": None,
                    "peak_rss": figures["peak_rss"],
                    "delta_rss": figures["peak_rss"] - figures["before"],
                    "note": (f"client process: {figures['before'] / 2**20:.0f} MiB before the "
                             f"call (frame loaded: {figures['frame'] / 2**20:.0f} MiB), peak "
                             f"{figures['peak_rss'] / 2**20:.0f} MiB; the result columns "
                             f"alone take {figures['result'] / 2**20:.0f} MiB")})
    print(f"  end to end        {figures['seconds']:.2f} s; {results[-1]['note']}")
    seconds = timing["emulator_seconds"]
    results.append({"stage": "emulator", "name": f"answering {len(df):,} rows (first job start "
                    "to last job end)", "seconds": seconds, "bytes": None,
                    "peak_rss": emulator_peak, "delta_rss": None,
                    "note": f"{len(df) / seconds:,.0f} rows/s; the emulator process peaked at "
                            f"{emulator_peak / 2**20:.0f} MiB (fake-gcs-server not included)"})
    print(f"  emulator          {seconds:.2f} s; {results[-1]['note']}")


def make_embedding_output(path: Path, rows: int, dims: int, seed: int = 44) -> int:
    """Vertex AI's Gemini embedding output for ``rows`` keyed rows (spec §1.1): ``{"key",
    "request", "response": {"tokenCount", "embedding": {"values": [...]}}}``, lines shuffled
    as the service writes them. Returns the file's size."""
    import orjson

    rng = np.random.default_rng(seed)
    order = rng.permutation(rows)
    with path.open("wb") as out:
        for start in range(0, rows, 10_000):
            keys = order[start:start + 10_000]
            values = rng.standard_normal((len(keys), dims), dtype=np.float32)
            out.write(b"".join(orjson.dumps(
                {"key": str(int(k)), "request": {"content": {"parts": [{"text": f"text {k}"}]},
                 "embed_content_config": {"output_dimensionality": dims}},
                 "response": {"tokenCount": "2", "embedding": {"values": v}}},
                option=orjson.OPT_SERIALIZE_NUMPY) + b"\n"
                for k, v in zip(keys, values, strict=True)))
    return path.stat().st_size


def bench_embed(results, rows: int, dims: int, folder: Path) -> None:
    """Parse+join of an embedding job's output into the result frame (``pdbatch.vectors``
    then reshapes without a copy), beside orjson per line + ``np.asarray`` and reading the
    bytes raw."""
    import orjson

    from pdbatch import engine
    from pdbatch.embedding import vectors
    from pdbatch.families import lines as family_lines
    from pdbatch.families.embedding import GEMINI_PARSER
    from pdbatch.join import ResultBuilder
    from pdbatch.vector_sink import VectorSink

    path = folder / "embeddings.jsonl"
    size = make_embedding_output(path, rows, dims)
    print(f"  embedding output: {size / 2**30:.2f} GiB for {rows:,} x {dims}")
    frame = pd.DataFrame(index=pd.RangeIndex(rows))
    with measured(results, "embed", "read the bytes raw (64 MiB blocks)", size):
        with path.open("rb") as source:
            while source.read(64 << 20):
                pass
    with measured(results, "embed", "orjson.loads per line + np.asarray", size):
        matrix = np.empty((rows, dims), dtype=np.float32)
        with path.open("rb") as source:
            for line in source:
                answer = orjson.loads(line)
                matrix[int(answer["key"])] = np.asarray(
                    answer["response"]["embedding"]["values"], dtype=np.float32)
    del matrix
    _bench_parse_floors(results, path, size, rows, dims)
    with measured(results, "embed", "pdbatch: parse+join (+ vectors())", size):
        kind = pa.list_(pa.float32(), dims)
        sink = VectorSink(rows, "embedding", kind)  # as join.vector_sink makes it
        parsed = family_lines.parse_output(engine.connect(), GEMINI_PARSER, [str(path)],
                                           response=False,
                                           per_batch=sink.job(np.arange(rows)).take)
        builder = ResultBuilder(rows, GEMINI_PARSER.task, False, {"embedding": kind}, sink)
        builder.add_job("job", np.arange(rows), parsed)
        del parsed
        out = builder.join(frame)
        matrix = vectors(out)
    assert matrix.shape == (rows, dims)
    del out, matrix


def _bench_parse_floors(results, path: Path, size: int, rows: int, dims: int) -> None:
    """What the float parsing alone costs, read and discarded: DuckDB's JSON reader (pdbatch's
    parser) on one thread and on all, and pysimdjson per line where it is installed (it is
    not a dependency)."""
    import importlib.util

    from pdbatch import engine
    from pdbatch.families.embedding import GEMINI_PARSER

    sql = ("SELECT TRY_CAST(key AS BIGINT) AS key, response.embedding.\"values\" AS v "
           "FROM read_ndjson($paths, columns = {'key': 'VARCHAR', "
           f"'response': '{GEMINI_PARSER.response_type}'}})")
    for threads in (1, os.cpu_count()):
        con = engine.connect()
        con.execute(f"SET threads = {int(threads)}")
        with measured(results, "embed", f"DuckDB's JSON reader alone, {threads} thread(s)", size):
            for _ in con.sql(sql, params={"paths": [str(path)]}).to_arrow_reader(65_536):
                pass
        con.close()
    if importlib.util.find_spec("simdjson") is None:
        print("  embed             pysimdjson: not installed (pip install pysimdjson), skipped")
        return
    import simdjson

    with measured(results, "embed", "pysimdjson per line + as_buffer (one thread)", size):
        parser, matrix = simdjson.Parser(), np.empty((rows, dims), dtype=np.float32)
        with path.open("rb") as source:
            for line in source:
                answer = parser.parse(line)
                matrix[int(answer["key"])] = np.frombuffer(
                    answer["response"]["embedding"]["values"].as_buffer(of_type="d"))
                del answer  # the parser reuses its document
    del matrix


def bench_import(results, repeats: int = 5) -> None:
    for name, setup in (("import pdbatch (cold, pandas included)", ""),
                        ("import pdbatch after import pandas", "import pandas;")):
        code = (f"{setup}import time; t = time.perf_counter(); import pdbatch; "
                "print(time.perf_counter() - t)")
        times = [float(subprocess.run([sys.executable, "-c", code], check=True,
                                      capture_output=True, text=True).stdout)
                 for _ in range(repeats)]
        results.append({"stage": "import", "name": name, "seconds": statistics.median(times),
                        "bytes": None, "peak_rss": None, "delta_rss": None})
        print(f"  import            {name:<42} {results[-1]['seconds']:8.3f} s")


# ----------------------------------------------------------------------------- report
def table(results: list, rows: int) -> str:
    reference = {}
    for r in results:
        reference.setdefault(r["stage"], r["seconds"])  # pdbatch's figure comes first
    out = ["| stage | what | seconds | vs pdbatch | MB/s | CPU s | peak RSS | Δ RSS |",
           "|---|---|---|---|---|---|---|---|"]
    for r in results:
        ratio = r["seconds"] / reference[r["stage"]] if reference[r["stage"]] else float("nan")
        mbs = f"{r['bytes'] / r['seconds'] / 1e6:.0f}" if r["bytes"] else ""
        peak = f"{r['peak_rss'] / 2**20:.0f} MiB" if r["peak_rss"] else ""
        delta = f"{r['delta_rss'] / 2**20:+.0f} MiB" if r["delta_rss"] is not None else ""
        seconds = f"{r['seconds']:.3f}" if r["stage"] == "import" else f"{r['seconds']:.2f}"
        cpu = f"{r['cpu']:.2f}" if r.get("cpu") is not None else ""
        out.append(f"| {r['stage']} | {r['name']} | {seconds} | {ratio:.2f}× | {mbs} | "
                   f"{cpu} | {peak} | {delta} |")
    out += [f"\n{r['stage']}: {r['note']}." for r in results if r.get("note")]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--e2e-rows", type=int, default=None,
                        help="rows for the end-to-end run (default: --rows)")
    parser.add_argument("--write", action="store_true", help="rewrite benchmarks/RESULTS.md")
    parser.add_argument("--embed-rows", type=int, default=None,
                        help="rows of the embed stage (768 dims; default: --rows)")
    parser.add_argument("--only-embed", action="store_true", help="run the embed stage alone")
    args = parser.parse_args()
    if args.only_embed:
        results: list = []
        with tempfile.TemporaryDirectory() as tmp:
            bench_embed(results, args.embed_rows or args.rows, 768, Path(tmp))
        print("\n" + table(results, args.embed_rows or args.rows))
        return 0

    from pdbatch.emulator.stack import FakeGCS

    results: list = []
    print(f"pdbatch benchmark, {args.rows:,} rows")
    df = make_frame(args.rows)
    frame_bytes = int(df.memory_usage(deep=True).sum())
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        lines, data = bench_serialise(results, df, folder)
        output = make_output(data.splitlines(keepends=True))
        (folder / "output.jsonl").write_bytes(output)
        gcs_server = FakeGCS().start()
        try:
            os.environ["STORAGE_EMULATOR_HOST"] = gcs_server.url
            gcs_server.create_bucket("bench", "bench")
            bench_storage(results, lines, data, output, "bench", folder)
        finally:
            os.environ.pop("STORAGE_EMULATOR_HOST", None)
            gcs_server.stop()
        del lines, data, output
        bench_parse(results, df, folder / "output.jsonl")
        e2e = df if not args.e2e_rows else make_frame(args.e2e_rows)
        bench_end_to_end(results, e2e, folder)
        bench_embed(results, args.embed_rows or args.rows, 768, folder)
    bench_import(results)

    report = table(results, args.rows)
    print("\n" + report)
    if args.write:
        write_results(report, args.rows, frame_bytes)
    return 0


def write_results(report: str, rows: int, frame_bytes: int) -> None:
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, "
               f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, "
               f"Python {platform.python_version()}, pandas {pd.__version__}")
    text = (HERE / "RESULTS.md").read_text() if (HERE / "RESULTS.md").exists() else ""
    head, marker, _ = text.partition("<!-- results -->")
    body = (f"{marker or '<!-- results -->'}\n\nRun of {datetime.now(timezone.utc):%Y-%m-%d}: "
            f"`python benchmarks/run.py --rows {rows} --write` on {machine}. Frame: {rows:,} "
            f"rows, {frame_bytes / 2**20:.0f} MiB (`memory_usage(deep=True)`).\n\n{report}\n")
    (HERE / "RESULTS.md").write_text((head or "# Benchmark results\n\n") + body)


if __name__ == "__main__":
    sys.exit(main())
