"""Read a finished run's answers again from its outputs alone: no job, no cost."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from . import config, engine, formats
from .errors import InputError
from .locations import BigQueryLocation, GcsLocation
from .results import ResultBuilder, check_no_clash
from .runstore import RUN_ID
from .staging import bigquery


def read_results(
    df: pd.DataFrame,
    *,
    run: str,
    output: str | None = None,
    model: str = "gemini-2.5-flash",
    credentials=None,
    result_prefix: str = "",
    include_response: bool = True,
) -> pd.DataFrame:
    """``df`` with the result columns of run ``run`` (``out.attrs["pdbatch_run"]``), read from
    the run's output tables or files. ``df`` must be the frame the run was made from (rows are
    matched by position); ``output`` is where the run wrote (default ``PDBATCH_STAGING``);
    ``model`` the model it used (its family decides how the answers are read).
    Rows with no answer in the outputs get a ``missing`` status; ``job`` names the run.
    """
    if not isinstance(run, str) or not RUN_ID.match(run):
        raise InputError(f"run={run!r} is not a pdbatch run id such as "
                         "'run-20261121-183000-a1b2c3' (see out.attrs['pdbatch_run']).")
    where = config.given_or_environment(
        output, "output", "Pass output= where the run wrote (its staging location, or its "
        "output= location), or set PDBATCH_STAGING.")
    check_no_clash(df, result_prefix, include_response)
    parser = formats.resolve(model).parser
    if where.startswith("bq://"):
        location = BigQueryLocation(where, run, parser, bigquery.client_for(where, credentials),
                                    {}, [])
    else:
        location = GcsLocation(where, run, parser)
    con = engine.connect()
    parts = [location.collect(con, number, output_dir, include_response)
             for number, output_dir in location.written()]
    if not parts:
        raise InputError(f"No outputs of {run} in {where}: pass output= where the run wrote "
                         "(its staging location, or its output= location).")
    results = ResultBuilder(len(df), include_response)
    results.add_job(f"{run} (read from {where})", np.arange(len(df)),
                    pa.concat_tables(parts).sort_by("key"))
    out = results.join(df, result_prefix)
    out.attrs["pdbatch_run"] = run
    return out
