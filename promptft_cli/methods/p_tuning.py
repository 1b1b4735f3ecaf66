"""P-tuning (Liu et al., 2021) through peft: soft prompt produced by a small trainable encoder."""

from typing import Literal

from pydantic import Field

from promptft_cli.methods import Method, MethodOptions, Prepared


class PTuningOptions(MethodOptions):
    num_virtual_tokens: int = Field(20, ge=1, le=512)
    """Soft-prompt length."""
    encoder_hidden_size: int = Field(128, ge=1)
    """Hidden size of the prompt encoder."""
    encoder_type: Literal["MLP", "LSTM"] = "MLP"
    """Prompt-encoder architecture (the paper uses an LSTM; the MLP trains faster)."""


def apply(backbone, options: PTuningOptions, model_kind: str, task_type: str = "FEATURE_EXTRACTION") -> Prepared:
    from peft import PromptEncoderConfig, TaskType, get_peft_model

    cfg = PromptEncoderConfig(
        task_type=TaskType[task_type],
        num_virtual_tokens=options.num_virtual_tokens,
        encoder_hidden_size=options.encoder_hidden_size,
        encoder_reparameterization_type=options.encoder_type,
    )
    return Prepared(get_peft_model(backbone, cfg), options.num_virtual_tokens, is_peft=True)


METHOD = Method("p_tuning", PTuningOptions, 1e-2, "soft prompt from a prompt encoder (peft)", apply)
