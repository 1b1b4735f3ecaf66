"""The classifier: backbone (possibly wrapped by a peft method) + soft prompt + scoring head, built from the config."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from promptft_cli.errors import PromptftError
from promptft_cli.methods import METHODS
from promptft_cli.modeling.heads import LinearHead, LMVerbalizerHead, SimilarityHead, label_phrase_vectors
from promptft_cli.modeling.loading import is_decoder, load_backbone, model_kind, pooling_mode, resolve_model_path
from promptft_cli.prompting import verbalizers
from promptft_cli.prompting.soft_prompts import SoftPrompt
from promptft_cli.prompting.templates import VERBALIZER_FIELD, Verbalizer, resolve_soft, soft_init_ids, template_for

if TYPE_CHECKING:
    from promptft_cli.config import Config


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
            # The outputs start with the virtual tokens' states; the heads pool over the text's own tokens only
            # (cls is the real [CLS], mean excludes the soft prompt), which is also how encode_phrases embeds
            # the similarity head's label phrases: bare, so both sides of its cosine are pooled the same way.
            hidden = attention_mask.new_zeros(attention_mask.size(0), self.virtual_tokens)
            attention_mask = torch.cat([hidden, attention_mask], dim=1)
        # A backbone loaded in bf16/fp16 (model.dtype) feeds a float32 head: its weights stay full precision.
        return self.head.features(outputs, attention_mask, read).float()

    def forward(self, input_ids=None, attention_mask=None, mask_positions=None, soft_positions=None, features=None, **_):
        # `features` from a FeatureCache (frozen backbone) skip the backbone: see feature_cache.py.
        if features is None:
            features = self.features(input_ids, attention_mask, mask_positions, soft_positions)
        return self.head.classify(features)


def build_classifier(cfg: "Config", labels: list[str], tokenizer, *, report: bool = True) -> Any:
    """Load the backbone, apply the method, attach the head; the config decides each part.

    `report` logs the verbalizer's doubtful words (at training and zero-shot start-up, not on reload).
    """
    kind = model_kind(cfg.model, cfg.prompt.resolved_head, cfg.base_dir)
    template = resolve_soft(template_for(cfg), tokenizer)
    verbalizers.check_combination(cfg, kind, template, tokenizer)
    verbalizer = verbalizers.verbalizer_for(cfg, labels, tokenizer, kind, report)
    backbone = load_backbone(cfg.model, kind, cfg.base_dir)
    path = resolve_model_path(cfg.model.name, cfg.base_dir)
    decoder = kind == "causal" or is_decoder(backbone.config.to_dict())
    pooling = pooling_mode(cfg.model, path, decoder)
    head = build_head(cfg, kind, backbone, tokenizer, labels, pooling, verbalizer)
    soft = SoftPrompt(backbone.get_input_embeddings(), soft_init_ids(template, tokenizer)) if template.n_soft else None
    if soft is not None:
        head.cacheable_features = False  # soft vectors feed the backbone: its output changes as they train
    method = METHODS[cfg.method.name]
    prepared = method.apply(backbone, cfg.method.options, kind)
    _check_positions(cfg, kind, backbone.config, verbalizer, prepared.virtual_tokens + prepared.prefix_positions)
    classifier = PromptClassifier(prepared.backbone, head, kind, prepared.virtual_tokens, soft)
    classifier.is_peft = prepared.is_peft
    classifier.num_labels = len(labels)
    classifier.labels, classifier.model_name, classifier.model_path = list(labels), cfg.model.name, path
    classifier.pad_token_id = tokenizer.pad_token_id
    # FSDP (configs/accelerate/fsdp.yaml) shards per transformer block by the backbone's own block classes.
    classifier._no_split_modules = list(getattr(backbone, "_no_split_modules", None) or [])
    return classifier


def trainable_parameters(module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def build_head(cfg: "Config", kind: str, backbone, tokenizer, labels: list[str], pooling: str,
               verbalizer: Verbalizer | None) -> Any:
    """The head for `prompt.head` on this backbone kind, initialised before any method wraps the backbone."""
    combine = cfg.prompt.combine
    if cfg.prompt.resolved_head == "linear":
        head = LinearHead(backbone.config.hidden_size, len(labels), pooling)
        if verbalizer is not None and cfg.prompt.init_from_verbalizer:
            vectors, _ = label_phrase_vectors(backbone, tokenizer, verbalizer, pooling, "mean")
            head.init_from_embeddings(vectors)
        return head
    if verbalizer is None:  # the config schema already requires it; a clear message if called directly
        raise PromptftError("head 'verbalizer' needs prompt.verbalizer (label → words)", field=VERBALIZER_FIELD)
    if kind in ("mlm", "causal"):
        return LMVerbalizerHead(verbalizer, combine, causal=kind == "causal")
    vectors, owners = label_phrase_vectors(backbone, tokenizer, verbalizer, pooling, combine)
    return SimilarityHead(vectors, owners, len(labels), pooling, combine)


def _check_positions(cfg: "Config", kind: str, hf_config, verbalizer: Verbalizer | None, virtual: int) -> None:
    """Every position the backbone sees must fit its position table, else it fails deep inside the forward pass.

    The budget: model.max_length (template, {soft} vectors and specials are inside it), plus the method's
    virtual tokens that take positions (prompt_tuning, p_tuning; prefix_tuning on a decoder), plus on a
    causal LM the label-word tokens appended after the template (all but the last).
    """
    limit = getattr(hf_config, "max_position_embeddings", None) or getattr(hf_config, "n_positions", None)
    if not limit:
        return
    label_tokens = 0
    if kind == "causal" and cfg.prompt.resolved_head == "verbalizer" and verbalizer is not None:
        label_tokens = max(len(ids) for words in verbalizer.token_ids.values() for ids in words) - 1
    total = cfg.model.max_length + virtual + label_tokens
    if total <= limit:
        return
    parts = [f"model.max_length {cfg.model.max_length}"]
    if virtual:
        parts.append(f"method.num_virtual_tokens {virtual}")
    if label_tokens:
        parts.append(f"{label_tokens} label-word token(s) after the template")
    fix = "lower model.max_length" + (" or method.num_virtual_tokens" if virtual else "")
    raise PromptftError(f"{' + '.join(parts)} = {total} positions, but the model has {limit}; {fix}",
                        field="model.max_length")
