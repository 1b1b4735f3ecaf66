"""Registry of training methods: each is one module with its typed options and an `apply` function.

Method modules import only pydantic at import time (torch and peft inside `apply`) so the registry,
the config validation and `promptft --help` stay instant.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:
    import torch


class MethodOptions(BaseModel):
    """Base for a method's own options (the keys next to `method.name`)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)


@dataclass
class Prepared:
    """What a method did to the backbone."""

    backbone: "torch.nn.Module"
    virtual_tokens: int = 0
    """Positions the method prepends to the backbone's outputs (prompt tuning, p-tuning)."""
    prefix_positions: int = 0
    """Positions the method's prefix takes in the backbone's position table (prefix tuning on a decoder)."""
    is_peft: bool = False
    """The backbone is a peft model: the checkpoint holds the adapter in peft's format."""


@dataclass(frozen=True)
class Method:
    name: str
    options: type[MethodOptions]
    default_lr: float
    summary: str
    apply: Callable[..., Prepared]
    """apply(backbone, options, model_kind, task_type="FEATURE_EXTRACTION") -> Prepared; model_kind is encoder,
    mlm or causal (classification) or causal/seq2seq (generation, with peft's CAUSAL_LM / SEQ_2_SEQ_LM task type)."""
    frozen_backbone: bool = False
    """The backbone is not trained at all, so its outputs can be computed once and cached."""


def _registry() -> dict[str, Method]:
    from promptft_cli.methods import (
        bitfit,
        full,
        head,
        lora,
        p_tuning,
        prefix_tuning,
        prompt_tuning,
    )

    return {m.METHOD.name: m.METHOD for m in (full, head, bitfit, prompt_tuning, p_tuning, prefix_tuning, lora)}


METHODS: dict[str, Method] = _registry()
