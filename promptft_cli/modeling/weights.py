"""Models: resolve `model.name`, load tokenizer and backbone, and assemble backbone + method + head."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptft_cli.errors import PromptftError

if TYPE_CHECKING:

    pass



PROMPT_ENCODER = "prompt_encoder.safetensors"


LABEL_MAP = "label_map.json"


def save_weights(classifier, directory: Path) -> None:
    """Save only what training changed: the peft adapter (peft's format) or trained backbone weights, and the head."""
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    backbone = classifier.backbone
    if classifier.is_peft:
        for peft_cfg in backbone.peft_config.values():
            # The init text only matters before training; dropping it keeps the adapter loadable anywhere.
            if getattr(peft_cfg, "prompt_tuning_init", None) is not None:
                peft_cfg.prompt_tuning_init, peft_cfg.tokenizer_name_or_path = "RANDOM", None
        backbone.save_pretrained(str(directory))
        # peft's adapter keeps only the final prompt of p-tuning / projected prefixes, not the encoder that
        # makes it; keeping the encoder too lets load_weights reproduce the model exactly and resume training.
        encoder = {n: p.detach().contiguous().cpu() for n, p in backbone.named_parameters()
                   if p.requires_grad and n.startswith("prompt_encoder.")}
        if any(".embedding." not in n for n in encoder):
            save_file(encoder, str(directory / PROMPT_ENCODER))
    else:
        trained = {n: p.detach().contiguous().cpu() for n, p in backbone.named_parameters() if p.requires_grad}
        if trained:
            save_file(trained, str(directory / "backbone.safetensors"))
    outside = {n: p.detach().contiguous().cpu() for n, p in classifier.named_parameters()
               if not n.startswith("backbone.")}
    save_file(outside, str(directory / "head.safetensors"))
    # The label order and the model whose tokenizer encodes the input, so a checkpoint explains itself.
    label_map = {"labels": getattr(classifier, "labels", None), "model": getattr(classifier, "model_name", None),
                 "tokenizer": getattr(classifier, "model_path", None)}
    (directory / LABEL_MAP).write_text(json.dumps(label_map, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def load_weights(classifier, directory: Path) -> Any:
    """Load a checkpoint saved by `save_weights` into a freshly built classifier (same config)."""
    from safetensors.torch import load_file

    if classifier.is_peft:
        from peft import set_peft_model_state_dict

        adapter = directory / "adapter_model.safetensors"
        if not adapter.exists():
            raise PromptftError("checkpoint has no adapter_model.safetensors", file=directory)
        if (directory / PROMPT_ENCODER).exists():  # the whole prompt encoder, not just its final output
            missing = _load_strict(classifier.backbone, load_file(str(directory / PROMPT_ENCODER)))
            if missing:
                raise PromptftError(f"checkpoint does not match the model ({missing})", file=directory)
        else:
            set_peft_model_state_dict(classifier.backbone, load_file(str(adapter)))
    elif (directory / "backbone.safetensors").exists():
        missing = _load_strict(classifier.backbone, load_file(str(directory / "backbone.safetensors")))
        if missing:
            raise PromptftError(f"checkpoint does not match the model ({missing})", file=directory)
    head_file = directory / "head.safetensors"
    if not head_file.exists():
        raise PromptftError("checkpoint has no head.safetensors", file=directory)
    missing = _load_strict(classifier, load_file(str(head_file)))
    if missing:
        raise PromptftError(f"checkpoint head does not match the config ({missing})", file=directory)
    return classifier


def _load_strict(module, state: dict) -> str:
    own = dict(module.named_parameters())
    unknown = [k for k in state if k not in own]
    if unknown:
        return f"unexpected {unknown[0]}"
    for k, v in state.items():
        if own[k].shape != v.shape:
            return f"{k} has shape {tuple(v.shape)}, expected {tuple(own[k].shape)}"
    module.load_state_dict(state, strict=False)
    return ""
