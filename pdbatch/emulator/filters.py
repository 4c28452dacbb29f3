"""The ``filter`` of ``batchPredictionJobs.list`` (spec §1.7, AIP-160 syntax).

Fields: ``state``, ``display_name``, ``model_display_name`` (``=``, ``!=``, ``:`` with ``*``
wildcards), ``create_time`` (``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=`` against an RFC3339
time), ``labels.KEY`` (``=``, ``!=``, and ``:*`` for presence). Combined with ``AND``, ``OR``
(which binds tighter, as AIP-160 says), ``NOT``/``-`` and parentheses.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable
from datetime import datetime

_TOKEN = re.compile(r'\s*(\(|\)|!=|<=|>=|=|<|>|:|"(?:[^"\\]|\\.)*"|[\w.*\-]+)')
_FIELDS = {"state": "state", "display_name": "displayName", "displayName": "displayName",
           "model_display_name": "modelDisplayName", "create_time": "createTime",
           "createTime": "createTime"}

Predicate = Callable[[dict], bool]


class FilterError(ValueError):
    """A filter the service would refuse with 400 INVALID_ARGUMENT."""


def parse(text: str) -> Predicate:
    """A predicate over REST job dicts; raises ``FilterError`` on bad syntax or fields."""
    tokens, position = [], 0
    while position < len(text.rstrip()):
        match = _TOKEN.match(text, position)
        if not match:
            raise FilterError(f"Invalid filter {text!r} at position {position}.")
        tokens.append(match[1])
        position = match.end()
    parser = _Parser(tokens, text)
    predicate = parser.conjunction()
    if parser.peek() is not None:
        raise FilterError(f"Invalid filter {text!r}: unexpected {parser.peek()!r}.")
    return predicate


class _Parser:
    def __init__(self, tokens: list[str], text: str):
        self.tokens, self.text, self.i = tokens, text, 0

    def peek(self) -> str | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise FilterError(f"Invalid filter {self.text!r}: it ends too early.")
        self.i += 1
        return token

    def conjunction(self) -> Predicate:
        return self._joined("AND", self.disjunction, all)

    def disjunction(self) -> Predicate:
        return self._joined("OR", self.unary, any)

    def _joined(self, word: str, operand: Callable[[], Predicate], combine) -> Predicate:
        """Operands separated by ``word``, combined with ``all`` or ``any``."""
        parts = [operand()]
        while self.peek() == word:
            self.take()
            parts.append(operand())
        return lambda job: combine(p(job) for p in parts)

    def unary(self) -> Predicate:
        token = self.take()
        if token in ("NOT", "-"):
            inner = self.unary()
            return lambda job: not inner(job)
        if token == "(":
            inner = self.conjunction()
            if self.take() != ")":
                raise FilterError(f"Invalid filter {self.text!r}: missing ')'.")
            return inner
        return _comparison(token, self.take(), _unquote(self.take()))


def _unquote(token: str) -> str:
    if token.startswith('"'):
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


def _comparison(name: str, op: str, value: str) -> Predicate:
    if name.startswith("labels."):
        key = name[len("labels."):]
        if op == ":":
            return lambda job: key in (job.get("labels") or {}) and (
                value == "*" or fnmatch.fnmatchcase(job["labels"][key], value))
        return _compare(op, lambda job: (job.get("labels") or {}).get(key), value)
    field = _FIELDS.get(name)
    if field is None:
        raise FilterError(f"Unsupported filter field {name!r}; use one of "
                          f"{sorted(set(_FIELDS) - {'displayName', 'createTime'})} or labels.KEY.")
    if field == "createTime":
        when = _time(value)
        return _compare(op, lambda job: _time(job["createTime"]), when)
    if op == ":":
        return lambda job: fnmatch.fnmatchcase(job.get(field) or "", value)
    return _compare(op, lambda job: job.get(field), value)


_OPS = {"=": lambda a, b: a == b, "!=": lambda a, b: a != b, "<": lambda a, b: a < b,
        "<=": lambda a, b: a <= b, ">": lambda a, b: a > b, ">=": lambda a, b: a >= b}


def _compare(op: str, get: Callable[[dict], object], value) -> Predicate:
    if op not in _OPS:
        raise FilterError(f"Unsupported filter operator {op!r}.")
    if op not in ("=", "!=") and not isinstance(value, datetime):
        raise FilterError(f"Operator {op!r} only applies to create_time.")
    compare = _OPS[op]
    return lambda job: get(job) is not None and compare(get(job), value)


def _time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise FilterError(f"{text!r} is not an RFC3339 time.") from None
