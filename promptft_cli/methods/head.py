"""Frozen backbone, trained head: the cheapest method, and the one that can cache backbone outputs."""

from promptft_cli.methods import Method, MethodOptions, Prepared


class HeadOptions(MethodOptions):
    pass


def apply(backbone, options: HeadOptions, model_kind: str, task_type: str = "FEATURE_EXTRACTION") -> Prepared:
    backbone.requires_grad_(False)
    return Prepared(backbone)


METHOD = Method("head", HeadOptions, 1e-2, "frozen backbone, trains the head only", apply, frozen_backbone=True)
