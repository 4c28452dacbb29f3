"""The documentation site's API reference (docs/reference/*.md, rendered by mkdocstrings)
covers every public name: ``pdbatch.__all__`` and ``pdbatch.emulator.__all__``."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

import pdbatch

ROOT = Path(__file__).parent.parent
REFERENCE = ROOT / "docs" / "reference"
_DIRECTIVE = re.compile(r"^:::\s+(\S+)\s*$")
_MEMBERS = re.compile(r"^\s+members:\s*\[([^\]]*)\]\s*$")


def documented(pages: dict[str, str]) -> set[str]:
    """The dotted paths the reference pages render: each ``::: path`` directive, and each
    name of its ``members: [...]`` option as ``path.name``."""
    found: set[str] = set()
    for text in pages.values():
        current = None
        for line in text.splitlines():
            if match := _DIRECTIVE.match(line):
                current = match.group(1)
                found.add(current)
            elif current and (match := _MEMBERS.match(line)):
                found |= {f"{current}.{name.strip()}" for name in match.group(1).split(",")
                          if name.strip()}
            elif line and not line.startswith(" "):
                current = None
    return found


def resolve(path: str):
    """The object a dotted path names (the longest importable module, then attributes)."""
    parts = path.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            obj = getattr(obj, name)
        return obj
    raise ImportError(path)


def missing(module, paths: set[str]) -> list[str]:
    """The names of ``module.__all__`` no path renders (by the object it names, so
    ``pdbatch.recorded.runs`` documents ``pdbatch.runs``)."""
    objects = []
    for path in paths:
        try:
            objects.append(resolve(path))
        except (ImportError, AttributeError):
            continue
    return [name for name in module.__all__
            if not any(obj is getattr(module, name) for obj in objects)]


def _pages() -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(REFERENCE.glob("*.md"))}


def test_the_reference_covers_every_public_name():
    emulator = pytest.importorskip("pdbatch.emulator")
    paths = documented(_pages())
    assert not missing(pdbatch, paths), "add to docs/reference/: " + str(missing(pdbatch, paths))
    assert not missing(emulator, paths), ("add to docs/reference/emulator.md: "
                                          + str(missing(emulator, paths)))


def test_every_directive_names_something_that_exists():
    unresolved = []
    for path in documented(_pages()):
        try:
            resolve(path)
        except (ImportError, AttributeError):
            unresolved.append(path)
    assert not unresolved


def test_the_check_fails_when_a_name_is_left_out():
    pages = _pages()
    pages["functions.md"] = pages["functions.md"].replace("::: pdbatch.submit\n", "")
    assert missing(pdbatch, documented(pages)) == ["submit"]
    pages["runs.md"] = "::: pdbatch.runs.handle\n    options:\n      members: [RunStatus]\n"
    assert "BatchRun" in missing(pdbatch, documented(pages))
    assert "RunStatus" not in missing(pdbatch, documented(pages))


def test_the_site_config_names_every_reference_page_and_both_service_names():
    config = (ROOT / "mkdocs.yml").read_text()
    for page in _pages():
        assert f"reference/{page}" in config
    assert "Vertex AI batch prediction" in " ".join(config.split())
    assert "Gemini Enterprise Agent Platform" in config
