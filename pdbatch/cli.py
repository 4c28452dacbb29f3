"""The ``pdbatch`` command: runs from a terminal, estimates of a file, the offline stack.

    pdbatch runs list [--staging S]
    pdbatch runs show RUN [--staging S]
    pdbatch runs cancel RUN [--staging S]
    pdbatch runs results RUN --out answers.parquet [--staging S]
    pdbatch estimate FILE (--prompt-col COL | --prompt TEMPLATE) [--model M] [--staging S]
    pdbatch emulator [...]

Exit status: 0 on success, 1 when pdbatch refuses (bad input, a run that is not there or not
finished), 2 for a command line argparse cannot read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import PdbatchError

_STAGING_HELP = "the staging location the runs are recorded in (default: PDBATCH_STAGING)"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pdbatch", description="Vertex AI batch prediction over DataFrames: look at, "
        "cancel and collect runs, estimate a file's cost, serve the offline stack.")
    parser.add_argument("--version", action="version", version=f"pdbatch {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    runs = commands.add_parser("runs", help="list, show, cancel or collect runs",
                               description="The runs recorded in a staging location.")
    actions = runs.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="the recorded runs, newest first")
    listing.add_argument("--staging", help=_STAGING_HELP)
    _service_option(listing)
    for name, text in (("show", "a run's state and jobs"),
                       ("cancel", "cancel the jobs of a run that have not ended"),
                       ("results", "write a finished run's answers to a Parquet or CSV file, "
                                   "keyed by row position (no frame needed)")):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("run", help="the run id (run-...) or one of its job names")
        action.add_argument("--staging", help=_STAGING_HELP)
        _service_option(action)
        if name == "results":
            action.add_argument("--out", required=True, type=Path,
                                help="the file to write: .parquet or .csv")

    estimate = commands.add_parser(
        "estimate", help="what a Parquet or CSV file's rows would send and cost",
        description="What batch_predict over a Parquet or CSV file would send and cost; "
        "nothing is uploaded or submitted.")
    estimate.add_argument("file", type=Path, help="a .parquet or .csv file")
    prompt = estimate.add_mutually_exclusive_group(required=True)
    prompt.add_argument("--prompt-col", help="the column holding each row's prompt")
    prompt.add_argument("--prompt", help="a template such as 'Summarise: {review}'")
    estimate.add_argument("--model", default="gemini-2.5-flash")
    estimate.add_argument("--system-instruction")
    estimate.add_argument("--staging", help=_STAGING_HELP)
    _service_option(estimate)
    estimate.add_argument("--no-count-tokens", action="store_true",
                          help="estimate from characters, without asking countTokens")

    commands.add_parser("emulator", add_help=False,
                        help="serve local Cloud Storage and the Vertex AI batch emulator "
                             "(pdbatch emulator --help)")
    return parser


def _service_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", choices=("vertex", "gemini-api"),
                        help="Vertex AI (default, or PDBATCH_SERVICE) or the Gemini Developer "
                             "API, whose runs are kept in a local folder (--staging, default "
                             "PDBATCH_RUNS_FOLDER, else ~/.pdbatch/runs)")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["emulator"]:  # its own parser, with its own --help
        from .emulator.__main__ import main as emulator_main

        return emulator_main(args[1:])
    parsed = _parser().parse_args(args)
    try:
        if parsed.command == "runs":
            return _runs(parsed)
        return _estimate(parsed)
    except PdbatchError as err:
        print(f"pdbatch: {err}", file=sys.stderr)
        return 1


def _runs(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import api

    if args.action == "list":
        table = api.runs(args.staging, service=args.service)
        with pd.option_context("display.width", 200, "display.max_columns", None):
            print(table.drop(columns=["fingerprint"]).to_string(index=False)
                  if len(table) else "No runs are recorded there.")
        return 0
    if args.action == "results" and args.out.suffix.lower() not in (".parquet", ".csv"):
        print(f"pdbatch: --out {args.out}: name a .parquet or .csv file", file=sys.stderr)
        return 1
    run = api.attach(args.run, staging=args.staging, service=args.service)
    if args.action == "show":
        print(f"{run.id}  {run.manifest.model}  {run.manifest.rows:,} rows  "
              f"created {run.manifest.created}")
        status = run.status()
        print(status.summary)
        for info in status.jobs:
            print(f"  {info.name}  {info.state_word}  {info.successful:,} answered, "
                  f"{info.failed:,} failed")
        return 0
    if args.action == "cancel":
        running = [info.name for info in run.status().jobs if not info.done]
        run.cancel()
        print(f"asked to cancel {len(running)} job(s) of {run.id}" if running
              else f"{run.id} has no job left running")
        return 0
    answers = api.answers(run.id, staging=args.staging, service=args.service)
    if args.out.suffix.lower() == ".parquet":
        answers.to_parquet(args.out, index=False)
    else:
        answers.to_csv(args.out, index=False)
    print(f"wrote {len(answers):,} answers of {run.id} to {args.out}")
    return 0


def _estimate(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import api

    suffix = args.file.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        print(f"pdbatch: {args.file}: pass a .parquet or .csv file", file=sys.stderr)
        return 1
    if not args.file.is_file():
        print(f"pdbatch: {args.file}: no such file", file=sys.stderr)
        return 1
    frame = pd.read_parquet(args.file) if suffix == ".parquet" else pd.read_csv(args.file)
    found = api.estimate(frame, prompt_col=args.prompt_col, prompt=args.prompt,
                         model=args.model, system_instruction=args.system_instruction,
                         staging=args.staging, service=args.service,
                         count_tokens=not args.no_count_tokens,
                         on_invalid="skip")
    print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
