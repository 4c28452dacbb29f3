"""A call's options, typed and frozen, in three groups, bound and checked once at the public
boundary (``bind``):

- ``RequestOptions``: what is sent (the model, prompts, settings, files, schema, dedup, how
  requests are split into jobs); covered by the run's fingerprint;
- ``RunOptions``: where and how the jobs run (project, location, staging, output, endpoint,
  labels, retries, the cost guard, waiting);
- ``ResultOptions``: how the answers are shown (column prefix, raw response, expand).

A run's manifest keeps them as one flat JSON object of argument names (``to_json``; never the
credentials), read back by ``from_json`` with today's defaults for any option an older
manifest lacks and unknown keys ignored, so adding an option never breaks attaching older runs.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np

from .errors import InputError
from .identifiers import whole
from .service.base import RESERVED_LABELS

#: Service limit of requests per job (spec §4).
MAX_REQUESTS_PER_JOB = 200_000
ON_INVALID = ("raise", "skip")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class RequestOptions:
    """What the jobs are sent."""

    prompt_col: str | None = None
    prompt: str | None = None
    model: str = "gemini-2.5-flash"
    system_instruction: str | None = None
    generation_config: Mapping | None = None
    safety_settings: list | None = None
    config_cols: Mapping[str, str] | None = None
    files: Mapping[str, str | None] | None = None
    files_root: str | list | None = None  # folders local files may be read from (None: cwd)
    response_schema: Any = None  # a pydantic model class or a JSON Schema dict
    on_invalid: str = "raise"
    dedup: bool = True
    carry: list | None = None
    max_requests_per_job: int = MAX_REQUESTS_PER_JOB


@dataclass(frozen=True)
class RunOptions:
    """Where and how the jobs run."""

    service: str | None = None  # "vertex" or "gemini-api" (None: PDBATCH_SERVICE, else vertex)
    staging: str | None = None
    output: str | None = None
    project: str | None = None
    location: str | None = None
    api_endpoint: str | None = None
    transport: str = "rest"
    labels: Mapping[str, str] | None = None
    keep_staging: bool = False
    progress: bool | str = True  # bind() folds progress_bar_type in: "tqdm", "tqdm_notebook"
    progress_bar_type: str | None = "auto"
    force: bool = False
    max_cost: float | None = None
    max_rows: int | None = None
    max_retries: int = 0
    retry_expired: bool = False
    reask_invalid: bool = False
    cancel_on_interrupt: bool = False
    max_concurrent_jobs: int | None = None


@dataclass(frozen=True)
class ResultOptions:
    """How the answers are shown."""

    result_prefix: str = ""
    include_response: bool = True
    expand: bool = True


_GROUPS = {"request": RequestOptions, "run": RunOptions, "result": ResultOptions}
#: Every option's group, by argument name.
GROUP_OF = {f.name: group for group, cls in _GROUPS.items() for f in fields(cls)}


@dataclass(frozen=True)
class Options:
    """A call's options; ``credentials`` and ``api_key`` are held for the call only, never
    written."""

    request: RequestOptions = field(default_factory=RequestOptions)
    run: RunOptions = field(default_factory=RunOptions)
    result: ResultOptions = field(default_factory=ResultOptions)
    credentials: Any = field(default=None, repr=False, compare=False)
    api_key: str | None = field(default=None, repr=False, compare=False)

    def replace(self, **changes) -> Options:
        """These options with some changed, by argument name (checked again)."""
        return bind(**{**self.flat(), **changes}, credentials=self.credentials,
                    api_key=self.api_key)

    def flat(self) -> dict[str, Any]:
        """Argument name -> value, without the credentials and API key."""
        return {f.name: getattr(group, f.name)
                for group in (self.request, self.run, self.result) for f in fields(group)}

    def to_json(self) -> dict:
        """The options as JSON for a manifest: a response schema as its JSON Schema."""
        options = self.flat()
        if self.request.response_schema is not None:
            from .structured import schema_of

            options["response_schema"] = schema_of(self.request.response_schema).json_schema
        return json.loads(json.dumps(options, default=str))

    @classmethod
    def from_json(cls, options: Mapping, credentials=None, api_key: str | None = None,
                  **changes) -> Options:
        """Options written by ``to_json`` (by any version: missing options take today's
        defaults, unknown ones are ignored), with ``changes``."""
        known = {k: v for k, v in options.items() if k in GROUP_OF}
        return bind(**{**known, **changes}, credentials=credentials, api_key=api_key)


#: Settings of generation_config that other libraries (BigQuery DataFrames' GeminiTextGenerator,
#: Vertex AI's GenerativeModel) take as arguments of their own.
GENERATION_SETTINGS = ("temperature", "top_p", "top_k", "max_output_tokens", "seed",
                       "candidate_count", "stop_sequences", "presence_penalty",
                       "frequency_penalty", "response_mime_type", "thinking_config")


def unknown_arguments(names: set[str], called: str = "pdbatch.batch_predict") -> None:
    """Refuse keyword arguments the call does not take (TypeError), saying where a generation
    setting such as ``temperature=0.2`` goes instead."""
    if not names:
        return
    unknown = sorted(names)
    hint = f"see help({called}) for the options"
    settings = [n for n in unknown if n in GENERATION_SETTINGS]
    if settings:
        hint = ("generation settings go in generation_config, e.g. generation_config="
                f"{{{', '.join(repr(n) + ': ...' for n in settings)}}}; " + hint)
    raise TypeError(f"{called}() got unexpected keyword argument(s) {unknown}: {hint}.")


def bind(credentials=None, api_key: str | None = None, **arguments) -> Options:
    """Typed, checked options from ``batch_predict``'s keyword arguments; TypeError for an
    unknown argument, InputError for a bad value (before anything is uploaded)."""
    unknown_arguments(set(arguments) - set(GROUP_OF))
    groups = {name: {} for name in _GROUPS}
    for name, value in arguments.items():
        value = value.item() if isinstance(value, np.generic) else value  # numpy scalars
        groups[GROUP_OF[name]][name] = value
    request = RequestOptions(**groups["request"])
    if isinstance(request.carry, tuple):
        request = dataclasses.replace(request, carry=list(request.carry))
    if request.safety_settings is not None and isinstance(request.safety_settings, tuple):
        request = dataclasses.replace(request, safety_settings=list(request.safety_settings))
    options = Options(request, RunOptions(**groups["run"]), ResultOptions(**groups["result"]),
                      credentials, api_key)
    _check(options)
    run = options.run
    if run.progress and run.progress_bar_type != "auto":  # the kind of bar, or none
        shown = run.progress_bar_type or False
        options = dataclasses.replace(options, run=dataclasses.replace(run, progress=shown))
    return options


#: pandas-gbq's progress_bar_type values, and "auto" (a widget in a notebook, else text).
PROGRESS_BAR_TYPES = ("auto", "tqdm", "tqdm_notebook", None)


_TEXT, _FLAG, _WHOLE, _NUMBER = (str,), (bool, np.bool_), (int, np.integer), (int, float)
_MAPPING, _LIST = (Mapping,), (list, tuple)
#: What each option may be (None is allowed where the option's default is None), and how to
#: say it; prompt_col (any column label) and response_schema (checked by structured) aside.
_KINDS = {
    "prompt": (_TEXT, "a template string"), "model": (_TEXT, "a model name"),
    "system_instruction": (_TEXT, "a string"),
    "generation_config": (_MAPPING, "a dict such as {'temperature': 0.2}"),
    "safety_settings": (_LIST, "a list of dicts such as [{'category': "
                               "'HARM_CATEGORY_HATE_SPEECH', 'threshold': 'BLOCK_ONLY_HIGH'}]"),
    "config_cols": (_MAPPING, "a dict of setting -> column such as {'temperature': 'temp'}"),
    "files": (_MAPPING, "a dict of column -> MIME type"),
    "files_root": ((str, os.PathLike, list, tuple), "a folder or a list of folders"),
    "on_invalid": (_TEXT, "'raise' or 'skip'"), "dedup": (_FLAG, "True or False"),
    "carry": (_LIST, "a list of column names"),
    "max_requests_per_job": (_WHOLE, "a whole number"),
    "service": (_TEXT, "'vertex' or 'gemini-api'"), "staging": (_TEXT, "a location"),
    "output": (_TEXT, "a location"), "project": (_TEXT, "a project id"),
    "location": (_TEXT, "a region"), "api_endpoint": (_TEXT, "a host"),
    "transport": (_TEXT, "'rest' or 'grpc'"), "labels": (_MAPPING, "a dict of str -> str"),
    "keep_staging": (_FLAG, "True or False"), "progress": (_FLAG, "True or False"),
    "force": (_FLAG, "True or False"), "max_cost": (_NUMBER, "a number of USD"),
    "max_rows": (_WHOLE, "a whole number"), "max_retries": (_WHOLE, "a whole number"),
    "retry_expired": (_FLAG, "True or False"), "reask_invalid": (_FLAG, "True or False"),
    "cancel_on_interrupt": (_FLAG, "True or False"),
    "max_concurrent_jobs": (_WHOLE, "a whole number"),
    "result_prefix": (_TEXT, "a string such as 'llm_'"),
    "include_response": (_FLAG, "True or False"), "expand": (_FLAG, "True or False"),
}


def _check_types(options: Options) -> None:
    defaults = Options().flat()
    for name, value in options.flat().items():
        if name not in _KINDS or (value is None and defaults[name] is None):
            continue
        kinds, what = _KINDS[name]
        wrong_bool = isinstance(value, (bool, np.bool_)) and kinds in (_WHOLE, _NUMBER)
        if not isinstance(value, kinds) or wrong_bool:
            raise InputError(f"{name}={value!r}: pass {what}, not a {type(value).__name__}.")
    roots = options.request.files_root
    if isinstance(roots, (list, tuple)) and not all(isinstance(r, (str, os.PathLike))
                                                    for r in roots):
        raise InputError(f"files_root={roots!r}: pass a folder or a list of folders (paths).")


def _check(options: Options) -> None:
    _check_types(options)  # the numbers below are ints (not bools) from here on
    request, run = options.request, options.run
    if run.progress_bar_type not in PROGRESS_BAR_TYPES:
        raise InputError(f"progress_bar_type={run.progress_bar_type!r}: choose 'tqdm' (a text "
                         "bar), 'tqdm_notebook' (a notebook widget), None (no bar) or 'auto'.")
    if request.on_invalid not in ON_INVALID:
        raise InputError(f"on_invalid={request.on_invalid!r}: choose one of {ON_INVALID}.")
    limit = request.max_requests_per_job
    if not 0 < limit <= MAX_REQUESTS_PER_JOB:
        raise InputError(f"max_requests_per_job must be between 1 and {MAX_REQUESTS_PER_JOB}.")
    if not 0 <= run.max_retries <= 10:
        raise InputError("max_retries must be a whole number from 0 to 10.")
    cap = run.max_concurrent_jobs
    if cap is not None and cap < 1:
        raise InputError("max_concurrent_jobs must be None or a whole number of at least 1.")
    _check_unicode("system_instruction", request.system_instruction)
    for key, value in (run.labels or {}).items():
        if key in RESERVED_LABELS:
            raise InputError(f"label {key!r} is pdbatch's own: every job carries "
                             f"{' and '.join(RESERVED_LABELS)} to find its run; name yours "
                             "otherwise.")
        if not (whole(_LABEL_KEY, key) and whole(_LABEL_VALUE, value)):
            raise InputError(f"label {key!r}: {value!r} is not a valid Vertex AI label: keys "
                             "start with a lowercase letter; keys and values use lowercase "
                             "letters, digits, '_' and '-', at most 63 characters.")


def _check_unicode(name: str, text: str | None) -> None:
    """InputError when ``text`` is not valid Unicode (a lone surrogate cannot be sent)."""
    if not isinstance(text, str):
        return
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise InputError(f"{name} is not valid Unicode text: it holds a lone surrogate at "
                         f"character {err.start}; remove it or encode the text properly.") from None
