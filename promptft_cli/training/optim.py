"""The optimiser: AdamW over the trainable weights, with the scoring head in its own group at `train.head_lr`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from promptft_cli.errors import PromptftError

if TYPE_CHECKING:
    import torch


def param_groups(model, params: list["torch.Tensor"], head_lr: float | None) -> list[dict]:
    """One group at the base lr, or the head's own weights (not shared with the backbone) apart at `head_lr`.

    A few-shot head learns from scratch or from label phrases and can move fast, while a pretrained body
    should move slowly (SetFit fits its head at 1e-2 after tuning the body at 2e-5).
    """
    if head_lr is None:
        return [{"params": params}]
    head = getattr(model, "head", None)
    backbone = getattr(model, "backbone", None)
    shared = {id(p) for p in backbone.parameters()} if backbone is not None else set()
    own = {id(p) for p in head.parameters() if id(p) not in shared} if head is not None else set()
    head_params = [p for p in params if id(p) in own]
    if not head_params:
        raise PromptftError("train.head_lr is set, but this model's head has no trainable weights of its own "
                            "(a generation model, or a verbalizer head that reuses the LM's output layer)",
                            field="train.head_lr")
    return [{"params": [p for p in params if id(p) not in own]}, {"params": head_params, "lr": head_lr}]


def adamw(model, params: list["torch.Tensor"], lr: float, weight_decay: float, head_lr: float | None):
    import torch

    groups = [g for g in param_groups(model, params, head_lr) if g["params"]]
    # fused: one kernel per step instead of a dozen passes over every weight; with `full` the unfused step
    # took a third of CPU training time (py-spy), and Trainer defaults to the fused kernel as well.
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay, fused=fused_supported(params))


def fused_supported(params) -> bool:
    """torch's fused AdamW takes floating-point weights on the CPU, CUDA, XPU or MPS (torch >= 2.4 for the CPU)."""
    try:
        from torch.optim.optimizer import (
            _get_fused_kernels_supported_devices as supported,
        )
    except ImportError:  # a private helper of torch: without it, keep the portable implementation
        return False
    return all(p.is_floating_point() and p.device.type in supported() for p in params)
