"""Model families: each turns prompts into its request lines and parses its output lines.

``resolve(model)`` picks the family from the model name: Gemini (``families.gemini``), Llama
and other MaaS models in the OpenAI chat format (``families.openai``), Claude in the Anthropic
format (``families.anthropic``). What a family can do is declared as flags on ``Family``; the
rest of pdbatch asks the flags, never the family's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial

from ..errors import InputError
from . import anthropic, gemini, openai
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


def resolve(model: str) -> Family:
    """The family of ``model``; InputError listing the supported forms when no family knows
    the name."""
    if isinstance(model, str):
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
        "'publishers/anthropic/models/claude-sonnet-4-5@20250929')."
    )
