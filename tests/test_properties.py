"""A property of the whole round trip, on random frames: a call either refuses the frame with
an InputError before anything is uploaded, or gives back every row, with its index, in its
order, each with a status and, when answered, its own answer."""

from __future__ import annotations

import uuid

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pdbatch

#: Any code point, lone surrogates included (hypothesis leaves those out by default): ASCII,
#: astral, right-to-left, NUL and other control characters all come up.
ANY_TEXT = st.text(st.characters(codec=None, categories=None, exclude_categories=()),
                   max_size=40)
CELL = st.one_of(ANY_TEXT, st.sampled_from(["", "   ", "same prompt", "x" * 3000]),
                 st.none(), st.integers(-5, 5))


@st.composite
def frames(draw) -> pd.DataFrame:
    cells = draw(st.lists(CELL, min_size=1, max_size=12))
    n = len(cells)
    dtype = draw(st.sampled_from(["object", "string[python]", "string[pyarrow]", "category"]))
    if dtype != "object":  # typed text columns hold text or nothing
        cells = [c if isinstance(c, str) or c is None else str(c) for c in cells]
        if dtype == "string[pyarrow]" or dtype == "category":  # Arrow refuses surrogates
            cells = [c.encode("utf-8", "replace").decode() if c else c for c in cells]
    index = draw(st.sampled_from(["range", "duplicates", "strings", "multi"]))
    if index == "duplicates":
        labels = pd.Index([i % 3 for i in range(n)])
    elif index == "strings":
        labels = pd.Index([f"r{i}" for i in reversed(range(n))])
    elif index == "multi":
        labels = pd.MultiIndex.from_arrays([[i % 2 for i in range(n)], list(range(n))])
    else:
        labels = pd.RangeIndex(n)
    return pd.DataFrame({"p": pd.Series(cells, dtype=dtype, index=labels),
                         "n": np.arange(n)}, index=labels)


@pytest.mark.filterwarnings("ignore::pandas.errors.PerformanceWarning")
@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(df=frames(), dedup=st.booleans())
def test_every_row_comes_back_with_its_own_answer_or_the_frame_is_refused(df, dedup, stack,
                                                                          fs):
    staging = f"gs://{stack.bucket}/prop-{uuid.uuid4().hex[:12]}"
    try:
        out = df.gemini.batch_predict(prompt_col="p", staging=staging, on_invalid="skip",
                                      dedup=dedup, progress=False)
    except pdbatch.InputError:
        assert not fs.exists(staging) or fs.find(staging) == []  # refused before any upload
        return
    pd.testing.assert_index_equal(out.index, df.index)
    pd.testing.assert_frame_equal(out[df.columns], df)
    assert out["status"].notna().all()
    answered = out["status"] == "ok"
    skipped = out["status"].str.startswith("skipped: ")
    assert (answered | skipped).all()
    for prompt, text in zip(out["p"][answered], out["text"][answered], strict=True):
        assert text == f"echo: {prompt}"  # its own answer
    for prompt in out["p"][skipped]:
        assert not isinstance(prompt, str) or not prompt.strip() or not _utf8(prompt)


def _utf8(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True
