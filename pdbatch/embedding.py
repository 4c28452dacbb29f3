"""Embedding every row: ``embed`` (``df.gemini.embed``) binds its arguments into the same
``Options`` a generate call has (the text column as the prompt, the embedding settings as the
config, a title column as a per-row setting) and runs through the same drivers;
``vectors`` gives the result's vectors as one NumPy array."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import costs, families
from . import options as opts
from .api import is_dask
from .errors import InputError
from .prepare import prepare
from .runs import local

if TYPE_CHECKING:
    import dask.dataframe as dd

    from .runs.handle import BatchRun

#: ``batch_predict`` options that an embedding call binds itself or has no use for.
_NOT_TAKEN = ("prompt_col", "prompt", "generation_config", "config_cols", "system_instruction",
              "safety_settings", "files", "files_root", "response_schema", "expand",
              "reask_invalid", "dedup", "carry", "include_response")


def embed_options(*, text_col: str, model: str = "gemini-embedding-001",
                  task_type: str | None = None, title_col: str | None = None,
                  output_dimensionality: int | None = None, auto_truncate: bool | None = None,
                  **options: Any) -> opts.Options:
    """The ``Options`` of an embedding call (see ``embed``)."""
    taken = sorted(set(options) & set(_NOT_TAKEN))
    if taken:
        raise InputError(f"embed takes no {taken}: the text is text_col=, a title title_col=, "
                         "identical texts are embedded once and the vector is the result.")
    if not isinstance(model, str):
        raise InputError(f"model={model!r}: pass a model name such as 'gemini-embedding-001'.")
    family = families.resolve(model)
    if family.task.vector is None:
        raise InputError(f"model={model!r} generates text: embed with an embedding model "
                         "('gemini-embedding-001', 'gemini-embedding-2', 'text-embedding-005'), "
                         "or use batch_predict.")
    config: dict[str, Any] = {"output_dimensionality": output_dimensionality
                              if output_dimensionality is not None else family.dims(None)}
    if task_type is not None:
        config["task_type"] = task_type
    if auto_truncate is not None:
        config["auto_truncate"] = auto_truncate
    return opts.bind(prompt_col=text_col, model=model, generation_config=config,
                     config_cols={"title": title_col} if title_col is not None else None,
                     include_response=False, dedup=True, **options)


def embed(df: pd.DataFrame | dd.DataFrame, *, text_col: str, model: str = "gemini-embedding-001",
          task_type: str | None = None, title_col: str | None = None,
          output_dimensionality: int | None = None, auto_truncate: bool | None = None,
          **options: Any) -> pd.DataFrame | dd.DataFrame:
    """Embed every row's ``text_col`` with a batch job; return the frame with the columns
    ``embedding`` (one float32 vector per row, a fixed-size list as ``pd.ArrowDtype``; null
    where the row failed), ``status``, ``error_code``, ``error_message``, ``token_count``,
    ``truncated`` (where the service says it) and ``job`` (``attempts`` with
    ``max_retries``), in the frame's index and order.

    Args:
        text_col: the column of texts (null, empty or non-string cells: an error naming the
            row, or ``on_invalid="skip"``).
        model: ``gemini-embedding-001`` (default), ``gemini-embedding-2`` (Vertex AI and
            ``service="gemini-api"``), or ``text-embedding-005``,
            ``text-multilingual-embedding-002``, ``text-embedding-004`` (Vertex AI).
        task_type: e.g. ``"RETRIEVAL_DOCUMENT"``, ``"RETRIEVAL_QUERY"``, ``"CLUSTERING"``
            (not for ``gemini-embedding-2``: write it into the text).
        title_col: a column of titles, sent with each row (``RETRIEVAL_DOCUMENT``).
        output_dimensionality: the vector size (Gemini embedding models: 128 to 3072, default
            3072; text-embedding models: 768).
        auto_truncate: Vertex AI: whether a text over the model's input limit is cut (the
            service's default) or fails its row.
        **options: ``batch_predict``'s run options: ``staging``, ``service``, ``project``,
            ``location``, ``api_key``, ``max_retries``, ``max_cost``, ``force``, ``labels``,
            ``on_invalid``, ``result_prefix``, ``progress``, ... (not its prompt, generation,
            file or schema options).

    Identical texts (with the same title) are embedded once; the same call made again
    re-attaches to its run instead of paying twice. A Dask frame gets a lazy frame back.
    """
    bound = embed_options(text_col=text_col, model=model, task_type=task_type,
                          title_col=title_col, output_dimensionality=output_dimensionality,
                          auto_truncate=auto_truncate, **options)
    if is_dask(df):
        from .runs import dask as on_dask

        _check_dask(bound)
        return on_dask.batch_predict(df, bound)
    return local.start(prepare(df, bound)).result()


def submit_embed(df: pd.DataFrame | dd.DataFrame, **arguments: Any) -> BatchRun:
    """Like ``embed`` (same arguments), but returns the ``BatchRun`` as soon as its jobs
    exist (``status()``, ``wait()``, ``result()``; ``pdbatch.attach`` in another process)."""
    bound = embed_options(**arguments)
    if is_dask(df):
        from .runs import dask as on_dask

        _check_dask(bound)
        return on_dask.submit(df, bound)
    return local.start(prepare(df, bound))


def estimate_embed(df: pd.DataFrame, *, prices: Mapping[str, tuple[float, float]] | None = None,
                   count_tokens: bool = True, **arguments: Any) -> costs.Estimate:
    """What ``embed`` with these arguments would send and cost (see ``pdbatch.estimate``)."""
    prepared = prepare(df, embed_options(**arguments))
    return costs.estimate(prepared, 0, dict(prices or {}), count_tokens)


def vectors(out: pd.DataFrame, column: str = "embedding") -> np.ndarray:
    """The vectors of an ``embed`` result as one ``(rows, dims)`` float32 array: a view of the
    column's Arrow buffer where it is one chunk without nulls (else a copy, with NaN rows where
    a row has no vector)."""
    series = out[column] if isinstance(out, pd.DataFrame) else out
    dtype = series.dtype
    if not (isinstance(dtype, pd.ArrowDtype) and hasattr(dtype.pyarrow_dtype, "list_size")):
        raise InputError(f"{column!r} is not an embedding column (a fixed-size list of floats, "
                         "as embed returns).")
    size = dtype.pyarrow_dtype.list_size
    chunks = series.array.__arrow_array__().chunks
    if len(chunks) == 1 and chunks[0].null_count == 0:
        array = chunks[0]
        flat = array.values.slice(array.offset * size, len(array) * size)
        if flat.null_count == 0:
            return flat.to_numpy(zero_copy_only=True).reshape(len(array), size)
    matrix = np.full((len(series), size), np.nan, dtype=np.float32)
    start = 0
    for chunk in chunks:
        valid = np.flatnonzero(chunk.is_valid().to_numpy(zero_copy_only=False))
        if len(valid):
            block = chunk.values.slice(chunk.offset * size, len(chunk) * size)
            block = block.to_numpy(zero_copy_only=False).reshape(len(chunk), size)
            matrix[start + valid] = block[valid]
        start += len(chunk)
    return matrix


def _check_dask(options: opts.Options) -> None:
    if not families.resolve(options.request.model).keyed:
        raise InputError(f"{options.request.model} answers carry no row key, so a Dask run "
                         "could not route them to its partitions: embed a pandas frame "
                         "(ddf.compute()), or use gemini-embedding-001.")
