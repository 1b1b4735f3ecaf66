"""`--quantize int8`: dynamic int8 quantization of a loaded model's Linear layers, for CPU inference.

Weights are stored as int8 and activations quantized on the fly per batch (torch's quantize_dynamic);
matrix products then run in int8 kernels (fbgemm/qnnpack), which are CPU-only.
"""

from __future__ import annotations

from typing import Any

from promptft_cli.errors import PromptftError

CHOICES = ("int8",)


def check_quantize(quantize: str | None, cfg) -> None:
    """Refuse, with the reason, a quantization this model or machine cannot take (before anything loads)."""
    if quantize is None:
        return
    if quantize not in CHOICES:
        raise PromptftError(f"unknown quantization '{quantize}'; choose one of: {', '.join(CHOICES)}", field="--quantize")
    import torch

    if torch.cuda.is_available():
        raise PromptftError("--quantize int8 is dynamic quantization for CPU inference (torch has no CUDA kernels "
                            "for it); on a GPU use model.dtype bfloat16/float16 instead", field="--quantize")
    m = cfg.model
    if m.load_in_8bit or m.load_in_4bit or m.device_map:
        raise PromptftError("--quantize int8 needs float weights on the CPU; this run loads its model with "
                            "model.load_in_8bit/load_in_4bit/device_map", field="--quantize")
    if m.dtype != "float32":
        raise PromptftError(f"--quantize int8 quantizes float32 Linear layers; this run loads model.dtype "
                            f"{m.dtype}", field="--quantize")


def quantize_int8(model: Any) -> Any:
    """The model with every nn.Linear replaced by a dynamically quantized int8 one (in place where possible)."""
    import torch
    from torch import nn

    _merge_lora(model)
    linear = sum(isinstance(m, nn.Linear) for m in model.modules())
    if not linear:
        raise PromptftError("--quantize int8 found no Linear layers to quantize in this model", field="--quantize")
    engines = torch.backends.quantized.supported_engines
    if not any(e in engines for e in ("fbgemm", "x86", "qnnpack")):
        raise PromptftError(f"this torch build has no int8 CPU kernels (quantized engines: {engines})", field="--quantize")
    model.eval()
    from torch.ao.quantization import quantize_dynamic

    return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8, inplace=True)


def _merge_lora(model: Any) -> None:
    # peft's LoRA layers read `base_layer.weight` as a tensor in forward; a quantized Linear has none,
    # so the adapters are folded into the base weights first (same outputs, one matmul fewer).
    from torch import nn

    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if hasattr(child, "merge") and isinstance(getattr(child, "base_layer", None), nn.Linear):
                child.merge()
                setattr(parent, name, child.base_layer)
