"""The rules that keep pdbatch one engine (docs/architecture.md): no import cycle among its
modules (imports inside functions included), no use of another module's private names, the
scheme of a location examined only in ``pdbatch.storage``, family differences asked of the
family's flags, and the emulator and the client kept apart."""

from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import pdbatch
from pdbatch import api
from pdbatch.options import Options

PACKAGE = Path(pdbatch.__file__).parent


def _modules() -> dict[str, ast.Module]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = ast.parse(path.read_text(), str(path))
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return (PACKAGE.parent / name.replace(".", "/") / "__init__.py").exists()


def _imports(name: str, tree: ast.Module) -> list[tuple[str, list[str], ast.AST]]:
    """Every pdbatch module ``name`` imports (anywhere in it), with the names it takes."""
    package = name if _is_package(name) else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node) for a in node.names if a.name.startswith("pdbatch")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            if not module.startswith("pdbatch"):
                continue
            names = [a.name for a in node.names]
            submodules = [f"{module}.{n}" for n in names if f"{module}.{n}" in MODULES]
            if submodules:
                found += [(sub, [], node) for sub in submodules]
            others = [n for n in names if f"{module}.{n}" not in MODULES]
            if others or not submodules:
                found.append((module, others, node))
    return found


def _graph() -> dict[str, set[str]]:
    return {name: {target for target, _, _ in _imports(name, tree)
                   if target in MODULES and target != name}
            for name, tree in MODULES.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_checker_finds_a_cycle_and_an_import_of_a_private_name():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    tree = ast.parse("from .join import _winners\nfrom . import plan\nplan._x()\n")
    assert _private_uses("pdbatch.api", tree) == ["pdbatch.join._winners", "pdbatch.plan._x"]


def test_no_import_cycle_among_pdbatch_modules():
    assert _cycles(_graph()) == []


def _private_uses(name: str, tree: ast.Module) -> list[str]:
    """``from other import _x`` and ``other._x`` where ``other`` is another pdbatch module."""
    uses, aliases = [], {}
    for target, names, node in _imports(name, tree):
        if target == name:
            continue
        uses += [f"{target}.{n}" for n in names if n.startswith("_") and not n.startswith("__")]
        for alias in node.names if not names else []:  # a module bound to a name
            if target == alias.name or target.endswith("." + alias.name):
                aliases[alias.asname or alias.name.rsplit(".", 1)[-1]] = target
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                and node.value.id in aliases and node.attr.startswith("_")
                and not node.attr.startswith("__")):
            uses.append(f"{aliases[node.value.id]}.{node.attr}")
    return uses


def test_no_module_uses_another_modules_private_names():
    uses = {name: _private_uses(name, tree) for name, tree in MODULES.items()}
    assert {name: found for name, found in uses.items() if found} == {}


def _source_lines(skip: tuple[str, ...]) -> list[tuple[str, int, str]]:
    lines = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = str(path.relative_to(PACKAGE))
        if relative.startswith(skip):
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            lines.append((relative, number, line))
    return lines


def test_the_scheme_of_a_location_is_examined_only_in_storage():
    scheme = re.compile(r"""startswith\(\s*\(?\s*["'](gs|bq)://|["'](gs|bq)://["']\s*(in|==)""")
    found = [f"{f}:{n}" for f, n, line in _source_lines(("storage/", "emulator/"))
             if scheme.search(line)]
    assert found == []


def test_family_differences_are_flags_not_name_checks():
    check = re.compile(r"""\.name\s*[!=]=\s*["'](gemini|openai|anthropic)["']""")
    found = [f"{f}:{n}" for f, n, line in _source_lines(("emulator/",)) if check.search(line)]
    assert found == []


_SERVICE_CHECK = re.compile(
    r"""(==|!=|\bin)\s*\(?\s*(config\.)?(GEMINI_API|VERTEX|SERVICES)\b"""
    r"""|\b(GEMINI_API|VERTEX)\s*(==|!=)"""
    r"""|["'](vertex|gemini-api)["']\s*(==|!=|in\b)|(==|!=)\s*["'](vertex|gemini-api)["']"""
    r"""|\.service\s*(==|!=)""")


def test_the_service_check_finds_a_comparison_of_service_names():
    for line in ('if settings.service == config.GEMINI_API:', 'if name != VERTEX:',
                 'x = s.service == "gemini-api"', 'if GEMINI_API == s:', 'if s in (VERTEX,):'):
        assert _SERVICE_CHECK.search(line), line
    assert not _SERVICE_CHECK.search('batch = service.kind(settings)')


def test_service_differences_are_asked_of_the_service_not_name_checks():
    """Only ``service/`` and the settings module (``config.py``) look at a service's name."""
    found = [f"{f}:{n}" for f, n, line in _source_lines(("service/", "config.py", "emulator/"))
             if _SERVICE_CHECK.search(line)]
    assert found == []


def test_the_emulator_and_the_client_import_nothing_of_each_other():
    for name, tree in MODULES.items():
        emulator = name.startswith("pdbatch.emulator")
        targets = {t for t, _, _ in _imports(name, tree)}
        crossing = {t for t in targets if t.startswith("pdbatch.emulator") != emulator
                    and t != "pdbatch"}
        if name == "pdbatch.cli":  # the command line starts the emulator
            crossing -= {"pdbatch.emulator.__main__"}
        if name == "pdbatch.pytest_plugin":  # the pytest fixture is the offline stack
            crossing -= {"pdbatch.emulator"}
        assert crossing == set(), name


def test_no_module_is_over_400_lines():
    """Small modules with one job each (the emulator's included)."""
    long = {name: len(path.read_text().splitlines()) for name, path in
            ((str(p.relative_to(PACKAGE)), p) for p in PACKAGE.rglob("*.py"))}
    assert {name: n for name, n in long.items() if n > 400} == {}


def test_batch_predict_defaults_are_the_options_defaults():
    defaults = Options().flat()
    parameters = inspect.signature(api.batch_predict).parameters
    assert set(defaults) <= set(parameters)
    assert {n: parameters[n].default for n in defaults} == defaults


def test_the_accessor_methods_show_the_api_functions_signatures_and_docstrings():
    import pandas as pd

    from pdbatch.accessor import GeminiAccessor

    frame = pd.DataFrame({"prompt": ["hi"]})
    options = list(inspect.signature(api.batch_predict).parameters.values())[1:]
    for name in ("batch_predict", "submit", "estimate", "read_results"):
        function = getattr(pdbatch, name)
        own = [p for p in inspect.signature(function).parameters.values()
               if p.kind is not p.VAR_KEYWORD][1:]
        method = getattr(frame.gemini, name)
        expected = own + (options if name in ("submit", "estimate") else [])
        assert list(inspect.signature(method).parameters.values()) == expected, name
        assert method.__doc__ == function.__doc__ and method.__doc__
        assert getattr(GeminiAccessor, name).__qualname__ == f"GeminiAccessor.{name}"


def test_a_positional_or_misplaced_argument_gets_a_hint():
    import pandas as pd
    import pytest

    frame = pd.DataFrame({"prompt": ["hi"]})
    with pytest.raises(TypeError, match=r"keyword arguments only, e\.g\. df\.gemini"):
        frame.gemini.batch_predict("prompt")
    with pytest.raises(TypeError, match=r"generation_config=\{'temperature': \.\.\.\}"):
        frame.gemini.batch_predict(prompt_col="prompt", temperature=0.2)
    with pytest.raises(TypeError, match=r"generation_config=\{'top_k': \.\.\.\}"):
        frame.gemini.submit(prompt_col="prompt", top_k=3)
