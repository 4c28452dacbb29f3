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


def test_the_core_install_runs_pandas_frames_without_dask(stack, staging):
    """Dask is the ``dask`` extra: without it, pdbatch imports and runs pandas frames."""
    script = ("import sys\n"
              "sys.modules['dask'] = None  # not installed\n"
              "import pandas as pd, pdbatch\n"
              "out = pd.DataFrame({'p': ['a', 'b']}).gemini.batch_predict(\n"
              "    prompt_col='p', staging=sys.argv[1], progress=False)\n"
              "print(out['status'].tolist())\n")
    result = subprocess.run([sys.executable, "-c", script, staging], capture_output=True,
                            text=True, timeout=120)
    assert result.stdout.strip() == "['ok', 'ok']", result.stderr
