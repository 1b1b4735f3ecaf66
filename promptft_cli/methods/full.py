"""Full fine-tuning: every weight of the backbone and the head is trained."""

from promptft_cli.methods import Method, MethodOptions, Prepared


class FullOptions(MethodOptions):
    pass


def apply(backbone, options: FullOptions, model_kind: str, task_type: str = "FEATURE_EXTRACTION") -> Prepared:
    for p in backbone.parameters():
        p.requires_grad_(True)
    return Prepared(backbone)


METHOD = Method("full", FullOptions, 3e-5, "all weights (largest checkpoint)", apply)
