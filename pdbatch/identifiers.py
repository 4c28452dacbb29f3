"""The one way pdbatch checks a string against a pattern before it goes into a path, a table
name, a label, a filter or a URL: the whole string, or no match (``re.match`` with ``$`` would
accept a trailing newline)."""

from __future__ import annotations

import re


def whole(pattern: re.Pattern, text) -> re.Match | None:
    """``pattern``'s match of all of ``text``; None when ``text`` is not a string or does not
    match from its first character to its last."""
    return pattern.fullmatch(text) if isinstance(text, str) else None
