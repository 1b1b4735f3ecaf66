"""BitFit (Ben Zaken et al., 2022): train only the bias terms of the backbone, plus the head."""

from promptft_cli.methods import Method, MethodOptions, Prepared


class BitFitOptions(MethodOptions):
    pass


def apply(backbone, options: BitFitOptions, model_kind: str) -> Prepared:
    for name, p in backbone.named_parameters():
        p.requires_grad_(name.endswith(".bias"))
    return Prepared(backbone)


METHOD = Method("bitfit", BitFitOptions, 1e-3, "bias terms only (~0.1% of weights)", apply)
