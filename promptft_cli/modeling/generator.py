"""Generation models: a causal or seq2seq LM, possibly wrapped by a peft method, with its loss and `generate`.

Prompt tuning, p-tuning and prefix tuning are run through the base model here, not peft's own `generate`:
on transformers 5.x peft places the virtual tokens before the left padding and drops the position ids
(peft #1093), and its prefix-tuning path changes a padded row's greedy output (#2821-style cache
trouble). Placing the virtual tokens after the padding (prompt tuning, p-tuning) or feeding the prefix as
an already-filled cache behind placeholder ids (prefix tuning) makes a row's generation independent of
the batch it is in, and equal to what training saw; tests/test_generation_model.py checks both.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from promptft_cli.errors import PromptftError
from promptft_cli.methods import METHODS
from promptft_cli.modeling.loading import _first_line, _hf_config, _placement_kwargs, resolve_model_path

if TYPE_CHECKING:
    from promptft_cli.config import Config, GenerateConfig, ModelConfig

KINDS = ("causal", "seq2seq")
TASK_TYPES = {"causal": "CAUSAL_LM", "seq2seq": "SEQ_2_SEQ_LM"}
_EMBEDDING_PROMPTS = ("PROMPT_TUNING", "P_TUNING")  # peft types whose virtual tokens are input embeddings


def generator_kind(model_cfg: "ModelConfig", base_dir: Path | None = None) -> str:
    """`causal` or `seq2seq`, read from the model's config; any other model is rejected with the reason."""
    hf = _hf_config(model_cfg, base_dir)
    architectures = " ".join(hf.get("architectures") or [])
    if hf.get("is_encoder_decoder") or "ConditionalGeneration" in architectures or "Seq2SeqLM" in architectures:
        return "seq2seq"
    if "CausalLM" in architectures or "LMHeadModel" in architectures:
        return "causal"
    what = architectures or hf.get("model_type", "this model")
    reason = ("an encoder without a language-model head" if not architectures or architectures.endswith("Model")
              else "a classification or masked-LM model")
    raise PromptftError(f"task: generation needs a causal or seq2seq LM, but {what} is {reason} and cannot generate "
                        "text; use e.g. default-lm, GPT-2, SmolLM or T5", field="model.name")


def load_generation_tokenizer(model_cfg: "ModelConfig", kind: str, base_dir: Path | None = None):
    from promptft_cli.modeling.loading import load_tokenizer

    return prepare_generation_tokenizer(load_tokenizer(model_cfg, base_dir), kind)


def prepare_generation_tokenizer(tokenizer, kind: str):
    """Check the end token and set the padding side (load_tokenizer already made pad = end where there is no pad)."""
    if tokenizer.eos_token_id is None:
        raise PromptftError("the model's tokenizer has no end-of-sequence token, so outputs could not end",
                            field="model.name")
    # Decoder-only models continue the last position, so a batch is padded on the left for generation.
    tokenizer.padding_side = "left" if kind == "causal" else "right"
    return tokenizer


class TextGenerator(nn.Module):
    """A generative backbone (possibly a peft model) + the template's soft prompt: loss on targets, and generate."""

    def __init__(self, backbone: nn.Module, kind: str, tokenizer, soft_prompt: nn.Module | None = None,
                 is_peft: bool = False) -> None:
        super().__init__()
        self.backbone, self.kind, self.soft_prompt, self.is_peft = backbone, kind, soft_prompt, is_peft
        self.pad_token_id, self.eos_token_id = tokenizer.pad_token_id, tokenizer.eos_token_id
        peft_cfg = getattr(backbone, "active_peft_config", None) if is_peft else None
        self.prompt_type = str(getattr(peft_cfg, "peft_type", "")).split(".")[-1] if getattr(peft_cfg, "is_prompt_learning", False) else ""
        self.virtual_tokens = peft_cfg.num_virtual_tokens if self.prompt_type else 0

    # --- training ---

    def forward(self, input_ids, attention_mask, labels, soft_positions=None, **_):
        """Mean cross-entropy over the target tokens (labels == -100 elsewhere)."""
        logits, labels = self.label_logits(input_ids, attention_mask, labels, soft_positions)
        return nn.functional.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)

    def label_logits(self, input_ids, attention_mask, labels, soft_positions=None):
        """(logits, labels) aligned so that logits[b, i] predicts labels[b, i] (teacher forcing)."""
        inputs = self._inputs(input_ids, soft_positions)
        if self.kind == "seq2seq":
            decoder_input_ids = self._base().prepare_decoder_input_ids_from_labels(labels=labels)
            return self.backbone(**inputs, attention_mask=attention_mask, decoder_input_ids=decoder_input_ids).logits, labels
        logits = self.backbone(**inputs, attention_mask=attention_mask).logits
        if self.prompt_type in _EMBEDDING_PROMPTS:
            logits = logits[:, self.virtual_tokens:]  # peft prepended the virtual tokens' outputs
        return logits[:, :-1], labels[:, 1:]

    def _inputs(self, input_ids, soft_positions) -> dict[str, Any]:
        if self.soft_prompt is not None and soft_positions is not None:
            return {"inputs_embeds": self.soft_prompt.embed(self.embeddings(), input_ids, soft_positions)}
        return {"input_ids": input_ids}

    def embeddings(self) -> nn.Module:
        return self._base().get_input_embeddings()

    def _base(self) -> nn.Module:
        """The transformers model under any peft wrapper (LoRA layers stay inside it)."""
        return self.backbone.get_base_model() if self.is_peft else self.backbone

    # --- generation ---

    @torch.inference_mode()
    def generate_ids(self, input_ids, attention_mask, settings: dict[str, Any], soft_positions=None) -> torch.Tensor:
        """New token ids, (batch × num_return_sequences) rows; input rows are left-padded for a causal LM."""
        settings = {**settings, "pad_token_id": self.pad_token_id, "eos_token_id": self.eos_token_id}
        inputs = self._inputs(input_ids, soft_positions)
        if self.prompt_type == "PREFIX_TUNING":
            return self._prefix_generate(input_ids, inputs, attention_mask, settings)
        if self.kind == "seq2seq":
            if self.prompt_type:  # peft prepends the virtual tokens to the encoder input: padding is on the right
                return self.backbone.generate(**inputs, attention_mask=attention_mask, **settings)[:, 1:]
            return self._base().generate(**inputs, attention_mask=attention_mask, **settings)[:, 1:]
        if self.prompt_type in _EMBEDDING_PROMPTS or "inputs_embeds" in inputs:
            embeds = inputs.get("inputs_embeds")
            embeds = self.embeddings()(input_ids) if embeds is None else embeds
            if self.prompt_type:
                embeds, attention_mask = self._insert_after_padding(embeds, attention_mask)
            # Given only embeddings, generate returns only the new tokens.
            return self._generating_model().generate(inputs_embeds=embeds, attention_mask=attention_mask, **settings)
        return self._generating_model().generate(input_ids=input_ids, attention_mask=attention_mask, **settings)[:, input_ids.size(1):]

    def _generating_model(self) -> nn.Module:
        # LoRA lives in the base model's layers, so the base model's generate uses it; prompt methods add nothing there.
        return self._base()

    def _insert_after_padding(self, embeds, attention_mask):
        """[pad..., virtual tokens, prompt] per row, as in training: positions then count from the first real token."""
        n = self.virtual_tokens
        prompts = self.backbone.get_prompt(batch_size=embeds.size(0)).to(embeds.dtype)
        pads = (attention_mask == 0).sum(dim=1).tolist()
        rows = [torch.cat([embeds[b, :p], prompts[b], embeds[b, p:]]) for b, p in enumerate(pads)]
        masks = [torch.cat([attention_mask[b, :p], attention_mask.new_ones(n), attention_mask[b, p:]]) for b, p in enumerate(pads)]
        return torch.stack(rows), torch.stack(masks)

    def _prefix_generate(self, input_ids, inputs, attention_mask, settings):
        """The prefix as a filled cache of n positions; for a causal LM n placeholder ids stand for it, so generate skips them.

        transformers 5.x passes its own `cache` to the model, so peft's injected `past_key_values` is
        ignored in generation (seq2seq) or mispositioned for left-padded rows (causal); here the prefix
        is the generation's cache from the start and the positions count on from n, as in training.
        """
        n, rows = self.virtual_tokens, input_ids.size(0)
        expand = settings.get("num_beams", 1) if settings.get("num_beams", 1) > 1 else settings.get("num_return_sequences", 1)
        cache = self.backbone.get_prompt(batch_size=rows * expand)
        if "inputs_embeds" in inputs:
            raise PromptftError("prefix_tuning with {soft} template vectors is not supported for generation; "
                                "remove {soft} or use prompt_tuning", field="prompt.template")
        base = self._base()
        if self.kind == "seq2seq":
            start = base.generation_config.decoder_start_token_id
            start = base.config.decoder_start_token_id if start is None else start
            # An encoder-decoder's generate feeds every given decoder id (no slicing by the cache): just the start.
            decoder_ids = input_ids.new_full((rows, 1), start)
            out = base.generate(input_ids=input_ids, attention_mask=attention_mask, decoder_input_ids=decoder_ids,
                                cache=cache, **settings)
            return out[:, 1:]
        mask = torch.cat([attention_mask.new_ones(rows, n), attention_mask], dim=1)
        ids = torch.cat([input_ids.new_full((rows, n), self.pad_token_id), input_ids], dim=1)
        out = base.generate(input_ids=ids, attention_mask=mask, cache=cache, **settings)
        return out[:, ids.size(1):]


def decoding_settings(gen: "GenerateConfig") -> dict[str, Any]:
    """The `generate` section as transformers keyword arguments (sampling knobs only when sampling)."""
    settings: dict[str, Any] = {"max_new_tokens": gen.max_new_tokens, "num_beams": gen.num_beams,
                                "do_sample": gen.do_sample, "num_return_sequences": gen.num_return_sequences,
                                "repetition_penalty": gen.repetition_penalty,
                                "no_repeat_ngram_size": gen.no_repeat_ngram_size}
    if gen.num_beams > 1:
        settings["length_penalty"] = gen.length_penalty
    if gen.do_sample:
        settings.update(temperature=gen.temperature, top_p=gen.top_p, top_k=gen.top_k)
    else:  # unset, so a model's generation_config (e.g. sampling defaults of instruct models) cannot leak in
        settings.update(temperature=None, top_p=None, top_k=None)
    return settings


def load_generation_backbone(model_cfg: "ModelConfig", kind: str, base_dir: Path | None = None) -> nn.Module:
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    path = resolve_model_path(model_cfg.name, base_dir)
    auto = AutoModelForCausalLM if kind == "causal" else AutoModelForSeq2SeqLM
    kwargs: dict[str, Any] = {"trust_remote_code": model_cfg.trust_remote_code, "dtype": getattr(torch, model_cfg.dtype)}
    kwargs.update(_placement_kwargs(model_cfg))
    try:
        return auto.from_pretrained(path, **kwargs)
    except (OSError, ValueError) as exc:
        raise PromptftError(f"cannot load model: {_first_line(exc)}", file=model_cfg.name, field="model.name") from None


def model_context(backbone) -> int | None:
    """Positions the model can attend to (None: relative positions without a hard limit, as in T5)."""
    cfg = getattr(backbone, "config", None)
    for name in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = getattr(cfg, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return None


def check_context(cfg: "Config", kind: str, backbone, virtual_tokens: int) -> None:
    """A causal LM's prompt (model.max_length), virtual tokens and new tokens must fit its positions."""
    limit = model_context(backbone)
    if limit is None:
        return
    needed = (cfg.model.max_length + virtual_tokens + cfg.generate.max_new_tokens if kind == "causal"
              else max(cfg.model.max_length + virtual_tokens, cfg.generate.max_new_tokens + 1))
    if needed > limit:
        raise PromptftError(f"model.max_length {cfg.model.max_length} + {virtual_tokens} virtual tokens + "
                            f"max_new_tokens {cfg.generate.max_new_tokens} need {needed} positions but the model has "
                            f"{limit}; lower generate.max_new_tokens or model.max_length", field="generate.max_new_tokens")


def build_generator(cfg: "Config", tokenizer, kind: str | None = None) -> TextGenerator:
    """Load the backbone for generation and apply the method with peft's CAUSAL_LM / SEQ_2_SEQ_LM task type."""
    from promptft_cli.prompting.soft_prompts import SoftPrompt
    from promptft_cli.prompting.templates import resolve_soft, soft_init_ids, template_for

    kind = kind or generator_kind(cfg.model, cfg.base_dir)
    if cfg.method.name == "head":
        raise PromptftError("method 'head' trains a classification head; generation has none: choose "
                            "prompt_tuning, prefix_tuning, p_tuning, lora, bitfit or full", field="method.name")
    template = resolve_soft(template_for(cfg), tokenizer)
    backbone = load_generation_backbone(cfg.model, kind, cfg.base_dir)
    soft = SoftPrompt(backbone.get_input_embeddings(), soft_init_ids(template, tokenizer)) if template.n_soft else None
    prepared = METHODS[cfg.method.name].apply(backbone, cfg.method.options, kind, TASK_TYPES[kind])
    generator = TextGenerator(prepared.backbone, kind, tokenizer, soft, prepared.is_peft)
    check_context(cfg, kind, backbone, generator.virtual_tokens)
    generator.model_name, generator.model_path = cfg.model.name, resolve_model_path(cfg.model.name, cfg.base_dir)
    generator._no_split_modules = list(getattr(backbone, "_no_split_modules", None) or [])
    return generator
