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


def test_a_dask_run_read_without_dask_names_the_extra(staging):
    """Attaching a run made from a Dask frame where Dask is missing says which extra to
    install (instead of a bare ImportError from deep inside)."""
    import dask.dataframe as dd
    import pandas as pd

    import pdbatch  # noqa: F401  (registers ddf.gemini)

    frame = dd.from_pandas(pd.DataFrame({"p": ["a", "b"]}), npartitions=1)
    run = frame.gemini.submit(prompt_col="p", staging=staging, progress=False)
    script = ("import sys\n"
              "sys.modules['dask'] = None  # not installed\n"
              "import pdbatch\n"
              "try:\n"
              "    pdbatch.attach(sys.argv[1], staging=sys.argv[2])\n"
              "except pdbatch.InputError as err:\n"
              "    print(err)\n")
    result = subprocess.run([sys.executable, "-c", script, run.id, staging],
                            capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == (f"{run.id} was made from a Dask frame, and Dask is not "
                                     "installed here: pip install 'pdbatch[dask]'."), result.stderr


def test_every_public_argument_and_result_has_a_type_hint():
    import inspect

    import pdbatch
    import pdbatch.emulator

    def callables(module):
        for name in module.__all__:
            found = getattr(module, name)
            if inspect.isfunction(found):
                yield name, found
            elif inspect.isclass(found) and not issubclass(found, BaseException):
                for attribute, member in vars(found).items():
                    member = member.fget if isinstance(member, property) else member
                    if inspect.isfunction(member) and (attribute == "__init__"
                                                       or not attribute.startswith("_")):
                        yield f"{name}.{attribute}", member

    missing = []
    for module in (pdbatch, pdbatch.emulator):
        for name, function in callables(module):
            signature = inspect.signature(function)
            missing += [f"{name}({p.name})" for p in signature.parameters.values()
                        if p.name not in ("self", "cls") and p.annotation is p.empty]
            if function.__name__ != "__init__" and signature.return_annotation is signature.empty:
                missing.append(f"{name} -> ?")
    assert missing == []
