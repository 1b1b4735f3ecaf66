"""LoRA (Hu et al., 2021) through peft: low-rank updates to the attention weights."""

from pydantic import Field

from promptft_cli.methods import Method, MethodOptions, Prepared


class LoraOptions(MethodOptions):
    r: int = Field(8, ge=1, le=1024)
    """Rank of the update; higher: more capacity, more memory."""
    alpha: int = Field(16, ge=1)
    """Scaling numerator (the update is scaled by alpha / r)."""
    dropout: float = Field(0.1, ge=0, lt=1)
    """Dropout on the LoRA input."""
    target_modules: list[str] | None = None
    """Module names to adapt; null uses peft's default for the architecture, else all linear layers."""


def apply(backbone, options: LoraOptions, model_kind: str, task_type: str = "FEATURE_EXTRACTION") -> Prepared:
    from peft import LoraConfig, TaskType, get_peft_model
    from peft.utils.constants import (
        TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING as DEFAULTS,
    )

    targets = options.target_modules or DEFAULTS.get(backbone.config.model_type) or "all-linear"
    cfg = LoraConfig(
        task_type=TaskType[task_type],
        r=options.r,
        lora_alpha=options.alpha,
        lora_dropout=options.dropout,
        target_modules=targets,
    )
    return Prepared(get_peft_model(backbone, cfg), 0, is_peft=True)


METHOD = Method("lora", LoraOptions, 1e-3, "low-rank updates to attention weights (peft)", apply)
