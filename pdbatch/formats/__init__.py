"""Model families: each turns prompts into its request lines and parses its output lines.

``resolve(model, ...)`` picks the family from the model name: Gemini (``formats.gemini``),
Llama and other MaaS models in the OpenAI chat format (``formats.openai``), Claude in the
Anthropic format (``formats.anthropic``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..errors import InputError
from . import anthropic, gemini, openai
from .lines import Frame, Parser


@dataclass(frozen=True)
class Family:
    """A resolved model: its family, the job's ``model`` resource, line frame and parser."""

    name: str
    resource: str
    frame: Frame
    parser: Parser


def resolve(model: str, system_instruction: str | None = None,
            generation_config: Mapping | None = None,
            safety_settings: list | None = None, row_config: bool = False) -> Family:
    """The family of ``model``, with its request frame; InputError listing the supported
    forms when no family knows the name."""
    if system_instruction is not None and (not isinstance(system_instruction, str)
                                           or not system_instruction.strip()):
        raise InputError("system_instruction must be a non-empty string.")
    if generation_config is not None and not isinstance(generation_config, Mapping):
        raise InputError("generation_config must be a dict such as {'temperature': 0.2}; "
                         f"got {type(generation_config).__name__}.")
    if isinstance(model, str):
        resource = gemini.model_resource(model)
        if resource:
            return Family("gemini", resource,
                          gemini.frame(system_instruction, generation_config, safety_settings,
                                       row_config),
                          gemini.PARSER)
        if safety_settings is not None:
            raise InputError("safety_settings is for Gemini models; other families take "
                             "their provider's defaults.")
        if row_config:
            raise InputError("config_cols is supported for Gemini models in this version.")
        for name, module in (("openai", openai), ("anthropic", anthropic)):
            resource = module.model_resource(model)
            if resource:
                return Family(name, resource,
                              module.frame(resource, system_instruction, generation_config),
                              module.PARSER)
    raise InputError(
        f"model={model!r} is not a model this version supports. Use a Gemini model "
        "('gemini-2.5-flash', 'publishers/google/models/gemini-2.5-flash', or a tuned model "
        "'projects/P/locations/L/models/ID'), a Llama or other MaaS model "
        "('llama-3.3-70b-instruct-maas', 'publishers/meta/models/llama-3.3-70b-instruct-maas') "
        "or a Claude model ('claude-sonnet-4-5@20250929', "
        "'publishers/anthropic/models/claude-sonnet-4-5@20250929')."
    )
