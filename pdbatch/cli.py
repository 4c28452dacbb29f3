"""The ``pdbatch`` command: runs from a terminal, estimates of a file, the offline stack.

    pdbatch runs list [--staging S]
    pdbatch runs show RUN [--staging S] [--project P] [--location L]
    pdbatch runs cancel RUN [--staging S] [--project P] [--location L]
    pdbatch runs results RUN --out answers.parquet [--staging S]
    pdbatch estimate FILE (--prompt-col COL | --prompt TEMPLATE) [--model M] [--project P]
    pdbatch emulator [...]

Exit status: 0 on success, 1 when pdbatch refuses or an expected failure stops it (bad input,
no credentials, no network, a missing bucket, a run that is not there or not finished: one
line on stderr naming the problem and the fix, no traceback), 2 for a command line argparse
cannot read.
"""

from __future__ import annotations

import argparse
import os
import string
import sys
from pathlib import Path

from . import __version__
from .cli_errors import explain

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
        if name != "results":
            _place_options(action)
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
    estimate.add_argument("--model", default="gemini-2.5-flash",
                          help="the model the rows would be sent to (default %(default)s)")
    estimate.add_argument("--system-instruction", help="text sent with every request")
    _place_options(estimate)
    estimate.add_argument("--staging", help="not needed: an estimate stages nothing "
                          "(accepted and ignored)")
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


def _place_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--project", help="the Google Cloud project (default: "
                        "GOOGLE_CLOUD_PROJECT, else your gcloud credentials' project)")
    parser.add_argument("--location", help="the region, such as us-central1 (default: "
                        "GOOGLE_CLOUD_LOCATION)")


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
    except Exception as err:  # noqa: BLE001  an expected failure is one line; others re-raise
        problem = explain(err)
        if problem is None:
            raise
        print(f"pdbatch: {problem}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("pdbatch: interrupted", file=sys.stderr)
        return 130


def _fail(message: str) -> int:
    print(f"pdbatch: {message}", file=sys.stderr)
    return 1


def _in_the_cloud(args: argparse.Namespace) -> bool:
    """Whether the runs are recorded in Cloud Storage or BigQuery (Google credentials read
    them), not in a local folder."""
    from . import storage

    return storage.in_the_cloud(args.staging or os.environ.get("PDBATCH_STAGING") or "")


def _credentials_missing() -> str | None:
    """Why the Google clients would have no credentials, found at once (they would otherwise
    retry for a minute); None when there are some, or the offline stack needs none."""
    if os.environ.get("STORAGE_EMULATOR_HOST") or os.environ.get(
            "GOOGLE_VERTEX_BASE_URL", "").startswith("http://"):
        return None
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    try:
        google.auth.default()
    except DefaultCredentialsError:
        return ("no Google Cloud credentials: run `gcloud auth application-default login` "
                "(or set GOOGLE_APPLICATION_CREDENTIALS to a service account's key file)")
    return None


def _runs(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import recorded

    if _in_the_cloud(args) and (missing := _credentials_missing()):
        return _fail(missing)
    if args.action == "list":
        table = recorded.runs(args.staging, service=args.service)
        with pd.option_context("display.width", 200, "display.max_columns", None):
            print(table.drop(columns=["fingerprint"]).to_string(index=False)
                  if len(table) else "No runs are recorded there.")
        return 0
    if args.action == "results" and args.out.suffix.lower() not in (".parquet", ".csv"):
        print(f"pdbatch: --out {args.out}: name a .parquet or .csv file", file=sys.stderr)
        return 1
    run = recorded.attach(args.run, staging=args.staging, service=args.service,
                     project=getattr(args, "project", None),
                     location=getattr(args, "location", None))
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
    answers = recorded.answers(run.id, staging=args.staging, service=args.service)
    if args.out.suffix.lower() == ".parquet":
        answers.to_parquet(args.out, index=False)
    else:
        answers.to_csv(args.out, index=False)
    print(f"wrote {len(answers):,} answers of {run.id} to {args.out}")
    return 0


def _estimate(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import api, config

    suffix = args.file.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        return _fail(f"{args.file}: pass a .parquet or .csv file")
    if not args.file.is_file():
        return _fail(f"{args.file}: no such file")
    frame = pd.read_parquet(args.file) if suffix == ".parquet" else pd.read_csv(args.file)
    wanted = [args.prompt_col] if args.prompt_col else [
        field for _, field, _, _ in string.Formatter().parse(args.prompt) if field]
    absent = [name for name in wanted if name not in frame.columns]
    if absent:
        option = "--prompt-col" if args.prompt_col else "--prompt"
        return _fail(f"{option}: {args.file} has no column {absent[0]!r}; its columns are "
                     f"{', '.join(map(str, frame.columns))}")
    count_tokens = not args.no_count_tokens
    settings = config.resolve(args.project, args.location, None, service=args.service,
                              staged=False)
    # a key signs the Developer API's countTokens; Vertex AI's needs Google credentials
    if count_tokens and not settings.api_key and (missing := _credentials_missing()):
        print(f"pdbatch: {missing}; estimating from characters instead", file=sys.stderr)
        count_tokens = False
    found = api.estimate(frame, prompt_col=args.prompt_col, prompt=args.prompt,
                         model=args.model, system_instruction=args.system_instruction,
                         project=args.project, location=args.location, service=args.service,
                         count_tokens=count_tokens, on_invalid="skip")
    print(found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
