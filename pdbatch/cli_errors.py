"""The ``pdbatch`` command's one-line messages for expected failures: pdbatch's own refusals
(reworded from Python's ``staging=...`` to the command's ``--staging ...``), and what the
Google clients, the network or a file raise (no credentials, no network, a missing bucket or
object, no permission, an unreadable file). Anything else is a bug and keeps its traceback."""

from __future__ import annotations

import re

from .errors import PdbatchError

#: Python spellings in pdbatch's messages, and the command's (the first match wins).
_CLI_TERMS = (
    (re.compile(r"pass staging='([^']*)'(?: \(or '([^']*)'\))?"),
     lambda m: f"pass --staging {m[1]}" + (f" (or {m[2]})" if m[2] else "")),
    (re.compile(r"pass project='([^']*)'"), lambda m: f"pass --project {m[1]}"),
    (re.compile(r"pass location='([^']*)'"), lambda m: f"pass --location {m[1]}"),
    (re.compile(r"pass service='([^']*)'"), lambda m: f"pass --service {m[1]}"),
    (re.compile(r"pass api_key='\.\.\.' or set"), lambda m: "set"),
    (re.compile(r"([Pp]ass) staging= "), lambda m: f"{m[1]} --staging "),
    (re.compile(r"\b(staging|project|location|service|model|prompt_col|prompt)=(['\"])"
                r"([^'\"]*)\2"), lambda m: "--" + m[1].replace("_", "-") + " " + m[3]),
)

_NO_NETWORK = ("cannot reach Google Cloud ({detail}): check the network connection (or start "
               "the offline stack: pdbatch emulator)")


def in_cli_terms(message: str) -> str:
    """``message`` with each Python argument spelled as the command's option."""
    for pattern, replacement in _CLI_TERMS:
        message = pattern.sub(replacement, message)
    return message


def explain(err: BaseException) -> str | None:
    """One line naming the problem and its fix, or None for an unexpected error."""
    if isinstance(err, PdbatchError):
        return in_cli_terms(str(err))
    found = _google(err) or _network(err) or _file(err)
    return found


def _google(err: BaseException) -> str | None:
    try:
        from google.api_core import exceptions as api
        from google.auth import exceptions as auth
    except ImportError:  # pragma: no cover - core dependencies
        return None
    if isinstance(err, auth.DefaultCredentialsError):
        return ("no Google Cloud credentials: run `gcloud auth application-default login` "
                "(or set GOOGLE_APPLICATION_CREDENTIALS to a service account's key file)")
    if isinstance(err, auth.RefreshError):
        return (f"your Google Cloud credentials were refused ({_first_line(err)}): run "
                "`gcloud auth application-default login` again")
    if isinstance(err, auth.TransportError):
        return _NO_NETWORK.format(detail=_first_line(err))
    if isinstance(err, (api.Forbidden, api.PermissionDenied)):
        return (f"permission denied ({_first_line(err)}): the account needs the Vertex AI "
                "User role and read/write access to the staging bucket (docs/install.md, "
                "\"Set up Google Cloud\")")
    if isinstance(err, api.NotFound):
        return f"not found: {_first_line(err)} (check --staging, --project and --location)"
    if isinstance(err, api.GoogleAPICallError):
        return f"the service refused the call: {_first_line(err)}"
    return None


def _network(err: BaseException) -> str | None:
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - gcsfs brings it
        aiohttp = None
    if aiohttp is not None and isinstance(err, aiohttp.ClientError):
        return _NO_NETWORK.format(detail=_first_line(err))
    try:
        import requests
    except ImportError:  # pragma: no cover - google-auth brings it
        requests = None
    if requests is not None and isinstance(err, requests.ConnectionError):
        return _NO_NETWORK.format(detail=_first_line(err))
    if isinstance(err, (ConnectionError, TimeoutError)):
        return _NO_NETWORK.format(detail=_first_line(err))
    return None


def _file(err: BaseException) -> str | None:
    import pandas as pd
    import pyarrow as pa

    if isinstance(err, FileNotFoundError):
        where = str(err.filename or _first_line(err))
        bucket = re.match(r"(?:gs://|b/)?([a-z0-9][a-z0-9._-]{1,220})(?:/o\b|/|$)", where)
        if bucket and not err.filename:  # gcsfs: "b/BUCKET/o" or "BUCKET/path"
            return (f"gs://{bucket[1]} does not exist or cannot be read: create it (gcloud "
                    f"storage buckets create gs://{bucket[1]} --location REGION) or pass "
                    "another --staging")
        return f"{where}: no such file"
    if isinstance(err, PermissionError):
        return f"permission denied: {_first_line(err)}"
    if isinstance(err, (pd.errors.ParserError, pd.errors.EmptyDataError, pa.ArrowInvalid,
                        UnicodeDecodeError)):
        return f"cannot read the file: {_first_line(err)} (pass a .parquet or UTF-8 .csv file)"
    if isinstance(err, OSError):
        return f"{_first_line(err)}"
    return None


def _first_line(err: BaseException) -> str:
    text = str(err).strip() or type(err).__name__
    line = text.splitlines()[0]
    return line if len(line) <= 200 else line[:197] + "..."
