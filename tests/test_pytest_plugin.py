"""pdbatch's pytest plugin, as a user meets it: a three-line test of their own, in a project
of its own, run by pytest with no conftest, finds ``pdbatch_stack`` through the entry point."""

from __future__ import annotations

import os
import subprocess
import sys

USER_TEST = '''\
def test_my_pipeline(pdbatch_stack):
    import pandas as pd, pdbatch  # noqa: E401
    assert (pd.DataFrame({"p": ["hi"]}).gemini.batch_predict(prompt_col="p").status == "ok").all()
'''


def test_a_users_own_test_runs_offline_with_the_pdbatch_stack_fixture(tmp_path):
    (tmp_path / "test_mine.py").write_text(USER_TEST)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("GOOGLE_", "STORAGE_EMULATOR", "PDBATCH_", "GEMINI_"))}
    env["PYTEST_ADDOPTS"] = ""
    result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                             str(tmp_path)], capture_output=True, text=True, cwd=tmp_path,
                            env=env, timeout=180)
    assert result.returncode == 0 and "1 passed" in result.stdout, result.stdout + result.stderr


def test_the_fixture_sets_the_stacks_environment(stack):
    assert os.environ["PDBATCH_STAGING"] == f"gs://{stack.bucket}/runs"
    assert all(os.environ[name] == value for name, value in stack.env.items())
