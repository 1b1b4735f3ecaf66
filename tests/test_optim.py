"""train.head_lr: the head's own weights train at their own learning rate, the backbone at train.lr."""

from __future__ import annotations

import pytest
from torch import nn

from promptft_cli.config import load_config
from promptft_cli.errors import PromptftError
from promptft_cli.training import optim


class _Model(nn.Module):
    def __init__(self, tie: bool = False) -> None:
        super().__init__()
        self.backbone = nn.Linear(4, 4)
        self.head = nn.Module()
        self.head.out = self.backbone if tie else nn.Linear(4, 2)  # tie: the head reuses a backbone layer


def test_without_head_lr_every_weight_is_in_one_group():
    model = _Model()
    groups = optim.param_groups(model, list(model.parameters()), None)
    assert len(groups) == 1 and len(groups[0]["params"]) == 4


def test_head_lr_puts_the_heads_own_weights_apart():
    model = _Model()
    opt = optim.adamw(model, list(model.parameters()), 1e-5, 0.0, 1e-2)
    body, head = opt.param_groups
    assert body["lr"] == 1e-5 and head["lr"] == 1e-2
    assert {id(p) for p in head["params"]} == {id(p) for p in model.head.out.parameters()}
    assert {id(p) for p in body["params"]} == {id(p) for p in model.backbone.parameters()}


def test_head_lr_on_a_head_without_weights_of_its_own_is_refused():
    model = _Model(tie=True)
    with pytest.raises(PromptftError, match="no trainable weights of its own") as err:
        optim.param_groups(model, list(model.parameters()), 1e-2)
    assert err.value.field == "train.head_lr"


def test_training_moves_the_head_at_head_lr_and_the_body_at_lr(toy_project, tiny_encoder):
    """Body lr 1e-7, head lr 0.1: after one epoch the label vectors moved, the encoder nearly not."""
    from promptft_cli.inference.predict import Predictor
    from promptft_cli.training import loop

    overrides = ["method.name=full", "prompt.verbalizer={negative: [bad], positive: [good]}", "train.epochs=1",
                 "train.lr=1e-7", "train.head_lr=0.1", "train.warmup_ratio=0", "train.temperature_scaling=false"]
    cfg = load_config(toy_project, overrides)
    before = {n: p.detach().clone() for n, p in loop.setup(cfg).model.named_parameters()}
    loop.train(cfg)
    after = dict(Predictor.from_run(cfg.run_dir).model.named_parameters())
    moved = {n: (after[n].detach() - before[n]).abs().max().item() for n in before}
    assert moved["head.vectors"] > 1e-3 and moved["head.log_scale"] > 1e-3
    assert max(v for n, v in moved.items() if n.startswith("backbone.")) < 1e-5
