"""`import pdbatch` registers the accessor and leaves Google's heavy libraries unimported."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import sys, pandas as pd, pdbatch
heavy = [m for m in ("google.cloud.aiplatform_v1", "google.cloud.aiplatform", "gcsfs",
                     "google.auth", "tqdm", "dask", "duckdb") if m in sys.modules]
assert not heavy, heavy
assert hasattr(pd.DataFrame({"a": [1]}), "gemini")
print("ok")
"""


def test_import_is_lazy_and_registers_the_accessor():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True)
    assert result.stdout.strip() == "ok", result.stderr
