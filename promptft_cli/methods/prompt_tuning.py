"""Prompt tuning (Lester et al., 2021) through peft: trainable vectors prepended to the input."""

from typing import Literal

from pydantic import Field

from promptft_cli.methods import Method, MethodOptions, Prepared


class PromptTuningOptions(MethodOptions):
    num_virtual_tokens: int = Field(20, ge=1, le=512)
    """Soft-prompt length; 10-20 is enough for small models."""
    init: Literal["random", "text"] = "text"
    """Start from the embeddings of `init_text` (converges faster on few examples) or at random."""
    init_text: str = "Classify the sentiment or topic of this text:"
    """Words whose embeddings initialise the soft prompt when `init: text`."""


def apply(backbone, options: PromptTuningOptions, model_kind: str, task_type: str = "FEATURE_EXTRACTION") -> Prepared:
    from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    kwargs = {}
    if options.init == "text":
        kwargs = {
            "prompt_tuning_init": PromptTuningInit.TEXT,
            "prompt_tuning_init_text": options.init_text,
            "tokenizer_name_or_path": backbone.config.name_or_path,
        }
    cfg = PromptTuningConfig(task_type=TaskType[task_type], num_virtual_tokens=options.num_virtual_tokens, **kwargs)
    return Prepared(get_peft_model(backbone, cfg), options.num_virtual_tokens, is_peft=True)


METHOD = Method("prompt_tuning", PromptTuningOptions, 3e-2, "soft prompt prepended to the input (peft)", apply)
