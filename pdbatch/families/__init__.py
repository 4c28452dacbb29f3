"""Model families: each turns prompts into its request lines and parses its output lines.

``resolve(model)`` picks the family from the model name: Gemini (``families.gemini``), Llama
and other MaaS models in the OpenAI chat format (``families.openai``), Claude in the Anthropic
format (``families.anthropic``), and the embedding models in their two formats
(``families.embedding``). What a family can do is declared as flags on ``Family``; the
rest of pdbatch asks the flags, never the family's name.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

import pyarrow as pa

from ..errors import InputError
from ..tasks import Task
from . import anthropic, embedding, gemini, openai
from .lines import Frame, Parser


@dataclass(frozen=True)
class Family:
    """A resolved model: its family, the job's ``model`` resource, its parser and what it
    can do."""

    name: str
    resource: str
    parser: Parser
    make_frame: Callable[..., Frame]
    files: bool = False  # file parts (``files=``) after the prompt
    response_schema: bool = False  # structured output (``response_schema=``)
    row_config: bool = False  # per-row generation settings (``config_cols=``)
    safety_settings: bool = False
    table_input: bool = False  # BigQuery input and output tables
    count_tokens: bool = False  # the countTokens API prices its requests (publisher models)
    #: The settings ``config_cols`` may give per row (None: the generation settings).
    row_settings: tuple[str, ...] | None = None
    #: The size of the task's vector for a call's config (embedding models), else None.
    dims: Callable[[Mapping | None], int] | None = None

    @property
    def task(self) -> Task:
        """What its rows become and what comes back."""
        return self.parser.task

    @property
    def keyed(self) -> bool:
        """Whether its answers carry the row key (else they are matched by their echo)."""
        return self.parser.rekey is None

    def result_types(self, generation_config: Mapping | None) -> dict[str, pa.DataType]:
        """Result columns whose Arrow type a call fixes: an embedding model's vector as a
        fixed-size list of float32 of the call's dimensionality."""
        if self.dims is None or self.task.vector is None:
            return {}
        return {self.task.vector: pa.list_(pa.float32(), self.dims(generation_config))}

    def frame(self, system_instruction: str | None = None,
              generation_config: Mapping | None = None, safety_settings: list | None = None,
              row_config: bool = False) -> Frame:
        """The request line around each prompt, with the settings every row shares."""
        if system_instruction is not None and (not isinstance(system_instruction, str)
                                               or not system_instruction.strip()):
            raise InputError("system_instruction must be a non-empty string.")
        if generation_config is not None and not isinstance(generation_config, Mapping):
            raise InputError("generation_config must be a dict such as {'temperature': 0.2}; "
                             f"got {type(generation_config).__name__}.")
        if safety_settings is not None and not self.safety_settings:
            raise InputError("safety_settings is for Gemini models; other families take "
                             "their provider's defaults.")
        if row_config and not self.row_config:
            raise InputError("config_cols is supported for Gemini models in this version.")
        return self.make_frame(system_instruction, generation_config, safety_settings,
                               row_config)


#: When the lists of batch models below were taken from Google's model pages.
MODELS_DATE = "2026-12-06"
#: Batch-capable models Vertex AI serves, by the short name after ``publishers/*/models/``.
MODELS = {
    "gemini": ("gemini-2.0-flash", "gemini-2.0-flash-001", "gemini-2.0-flash-lite",
               "gemini-2.0-flash-lite-001", "gemini-2.5-flash", "gemini-2.5-flash-lite",
               "gemini-2.5-pro", "gemini-2.5-flash-image", "gemini-3-pro-preview",
               "gemini-3-flash-preview", "gemini-3.1-pro-preview", "gemini-3.1-flash-lite",
               "gemini-3.5-flash", "gemini-3.5-flash-lite", "gemini-3.6-flash",
               "gemini-3.7-flash", "gemini-3.8-flash", "gemini-flash-latest",
               "gemini-flash-lite-latest", "gemini-pro-latest"),
    "openai": ("llama-3.3-70b-instruct-maas", "llama-4-maverick-17b-128e-instruct-maas",
               "llama-4-scout-17b-16e-instruct-maas", "qwen3-235b-a22b-instruct-2507-maas",
               "deepseek-r1-0528-maas", "deepseek-v3.1-maas", "gpt-oss-120b-maas",
               "gpt-oss-20b-maas"),
    "anthropic": ("claude-opus-4-1", "claude-opus-4-1@20250805", "claude-sonnet-4-5",
                  "claude-sonnet-4-5@20250929", "claude-haiku-4-5", "claude-haiku-4-5@20251001",
                  "claude-sonnet-4", "claude-sonnet-4@20250514"),
    "gemini-embedding": ("gemini-embedding-001", "gemini-embedding-2"),
    "text-embedding": ("text-embedding-005", "text-embedding-004",
                       "text-multilingual-embedding-002"),
}


def check_model(model: str) -> str | None:
    """Refuse a short model name that looks mistyped: not in ``MODELS`` but close to a name
    that is, with the same digits (``gemini-2.5-flsh``), with a did-you-mean; a name that is
    merely unknown (a newer model, ``gemini-2.6-flash``) or a full resource name goes through.
    Returns a warning for an unknown short name (None otherwise)."""
    family = resolve(model)
    if "/" in model:
        return None
    known = MODELS.get(family.name, ())
    if model in known:
        return None
    digits = "".join(c for c in model if c.isdigit())
    close = [name for name in difflib.get_close_matches(model, known, n=3, cutoff=0.85)
             if "".join(c for c in name if c.isdigit()) == digits]
    if close:
        raise InputError(f"model={model!r} is not a batch model Vertex AI serves: did you mean "
                         f"{close[0]!r}? (A model newer than pdbatch's list of {MODELS_DATE} "
                         "goes through: pass its full name, 'publishers/.../models/NAME'.)")
    return (f"model={model!r} is not in pdbatch's list of batch models of {MODELS_DATE}; "
            "sending it as given (the service refuses a model it does not serve).")


def resolve(model: str) -> Family:
    """The family of ``model``; InputError listing the supported forms when no family knows
    the name."""
    if isinstance(model, str):
        found = _embedding(model)
        if found:
            return found
        resource = gemini.model_resource(model)
        if resource:
            return Family("gemini", resource, gemini.PARSER, gemini.frame, files=True,
                          response_schema=True, row_config=True, safety_settings=True,
                          table_input=True,
                          count_tokens=resource.startswith("publishers/"))
        for name, module in (("openai", openai), ("anthropic", anthropic)):
            resource = module.model_resource(model)
            if resource:
                return Family(name, resource, module.PARSER,
                              partial(module.frame, resource=resource))
    raise InputError(
        f"model={model!r} is not a model this version supports. Use a Gemini model "
        "('gemini-2.5-flash', 'publishers/google/models/gemini-2.5-flash', or a tuned model "
        "'projects/P/locations/L/models/ID'), a Llama or other MaaS model "
        "('llama-3.3-70b-instruct-maas', 'publishers/meta/models/llama-3.3-70b-instruct-maas') "
        "or a Claude model ('claude-sonnet-4-5@20250929', "
        "'publishers/anthropic/models/claude-sonnet-4-5@20250929'); to embed: "
        "'gemini-embedding-001', 'gemini-embedding-2' or 'text-embedding-005'."
    )


def _embedding(model: str) -> Family | None:
    """The family of an embedding model, or None."""
    for name, kind, resource_of, make, parser in (
            ("gemini-embedding", "gemini", embedding.gemini_resource, embedding.gemini_frame,
             embedding.GEMINI_PARSER),
            ("text-embedding", "legacy", embedding.legacy_resource, embedding.legacy_frame,
             embedding.LEGACY_PARSER)):
        resource = resource_of(model)
        if resource:
            return Family(name, resource, parser, partial(_embedding_frame, make, resource),
                          row_config=True, row_settings=embedding.ROW_SETTINGS,
                          dims=partial(embedding.dimensions, kind))
    return None


def _embedding_frame(make, resource, system_instruction, config, safety_settings, row_config):
    """An embedding model's frame (no system instruction: ``embed`` sends none)."""
    return make(resource, config, row_config)
