"""pdbatch's pytest plugin (the ``pytest11`` entry point ``pdbatch``): test your own pipeline
offline in one line. Loaded by pytest wherever pdbatch is installed; the offline stack starts
only in a session whose tests ask for its fixture.

    def test_my_pipeline(pdbatch_stack):
        out = my_pipeline(pd.DataFrame({"prompt": ["hi"]}))  # calls df.gemini.batch_predict
        assert (out["status"] == "ok").all()

``pdbatch_stack`` is a session-scoped ``pdbatch.emulator.LocalStack`` (local Cloud Storage and
the Vertex AI and Gemini Developer API batch emulators, which answer with an echo of each
prompt): while the session runs, ``os.environ`` carries ``pdbatch_stack.env``
(``STORAGE_EMULATOR_HOST``, ``GOOGLE_VERTEX_BASE_URL``, ``PDBATCH_STAGING``, ...), so code
that calls ``batch_predict`` without a staging location, project or credentials runs against
it; the previous environment comes back at the end. Its jobs finish in about a tenth of a
second. It needs the ``emulator`` extra: ``pip install 'pdbatch[emulator]'``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .emulator import LocalStack


@pytest.fixture(scope="session")
def pdbatch_stack() -> Iterator[LocalStack]:
    """The offline stack for the test session, with its environment set (and restored)."""
    try:
        from .emulator import LocalStack, Timing
    except ImportError as err:
        pytest.fail(f"pdbatch_stack needs the emulator extra: pip install 'pdbatch[emulator]' "
                    f"({err})", pytrace=False)
    with LocalStack(timing=Timing(pending=0.05, running=0.05)) as stack:
        yield stack
