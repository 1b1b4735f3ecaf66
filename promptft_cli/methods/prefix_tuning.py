"""Prefix tuning (Li & Liang, 2021) through peft: trainable key/value prefixes in every layer."""

from pydantic import Field

from promptft_cli.methods import Method, MethodOptions, Prepared


class PrefixTuningOptions(MethodOptions):
    num_virtual_tokens: int = Field(20, ge=1, le=512)
    """Prefix length per layer."""
    prefix_projection: bool = False
    """Reparameterise the prefix through an MLP (more parameters, often more stable)."""


def apply(backbone, options: PrefixTuningOptions, model_kind: str, task_type: str = "FEATURE_EXTRACTION") -> Prepared:
    from peft import PrefixTuningConfig, TaskType, get_peft_model

    cfg = PrefixTuningConfig(
        task_type=TaskType[task_type],
        num_virtual_tokens=options.num_virtual_tokens,
        prefix_projection=options.prefix_projection,
    )
    # Prefixes enter as past key/values, so outputs keep the input's length.
    return Prepared(get_peft_model(backbone, cfg), 0, is_peft=True)


METHOD = Method("prefix_tuning", PrefixTuningOptions, 1e-2, "key/value prefixes in every layer (peft)", apply)
