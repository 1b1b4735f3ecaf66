"""Prefix tuning (Li & Liang, 2021) through peft: trainable key/value prefixes in every layer."""

import inspect

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
    unshifted = _positions_from_zero(backbone)
    return Prepared(get_peft_model(backbone, cfg), 0, prefix_positions=0 if unshifted else options.num_virtual_tokens,
                    is_peft=True)


def _positions_from_zero(backbone) -> bool:
    """Make BERT-style embeddings number the text from position 0 again despite the prefix; True where done.

    transformers (5.x) reads the prefix as a key/value cache and starts BERT/RoBERTa/ELECTRA position ids
    after it (embeddings' `cache_length`), so with 20 virtual tokens [CLS] sat at position 20, where no
    pretrained sentence starts. Their prefix is not text: the encoder's absolute positions must not move.
    A decoder (GPT-2, Llama) numbers the text after the prefix, as peft's own causal-LM prefix tuning does.
    """
    embeddings = [m for m in backbone.modules() if "cache_length" in inspect.signature(m.forward).parameters
                  and hasattr(m, "word_embeddings")]

    def from_zero(module, args, kwargs):
        return args, {**kwargs, "cache_length": 0}

    for module in embeddings:
        module.register_forward_pre_hook(from_zero, with_kwargs=True)
    return bool(embeddings)


METHOD = Method("prefix_tuning", PrefixTuningOptions, 1e-2, "key/value prefixes in every layer (peft)", apply)
