"""BitFit (Ben Zaken et al., 2022): train only the bias terms of the backbone, plus the head."""

from promptft_cli.errors import PromptftError
from promptft_cli.methods import Method, MethodOptions, Prepared


class BitFitOptions(MethodOptions):
    pass


def apply(backbone, options: BitFitOptions, model_kind: str, task_type: str = "FEATURE_EXTRACTION") -> Prepared:
    has_bias = False
    for name, p in backbone.named_parameters():
        p.requires_grad_(name.endswith(".bias"))
        has_bias = has_bias or name.endswith(".bias")
    if not has_bias and task_type != "FEATURE_EXTRACTION":
        # A generation model has no head to train beside the biases: without biases nothing would learn.
        raise PromptftError(f"bitfit trains bias terms, and {backbone.config.model_type} has none; choose lora or full",
                            field="method.name")
    return Prepared(backbone)


METHOD = Method("bitfit", BitFitOptions, 1e-3, "bias terms only (~0.1% of weights)", apply)
