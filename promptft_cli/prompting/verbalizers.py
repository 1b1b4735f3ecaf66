"""From the config to a scoring head: the verbalizer, its start-up report, rejected combinations, the head.

Combinations that cannot work are refused here, before any weights load, naming the field to change.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from promptft_cli.errors import PromptftError
from promptft_cli.prompting.templates import (
    TEMPLATE_FIELD,
    Template,
    Verbalizer,
    build_verbalizer,
)

if TYPE_CHECKING:
    from promptft_cli.config import Config



log = logging.getLogger("promptft.verbalizer")


KIND_NAMES = {"mlm": "masked LM", "causal": "causal LM", "encoder": "encoder"}


def check_combination(cfg: "Config", kind: str, template: Template, tokenizer) -> None:
    """Refuse a head × model × template × method combination that could not train or score."""
    from promptft_cli.methods import METHODS

    head = cfg.prompt.resolved_head
    if head == "verbalizer" and kind == "mlm" and not template.has_mask:
        raise PromptftError("a masked-LM verbalizer reads the label word at {mask}: add it to the template, "
                            "e.g. '{text} It was {mask}.'", field=TEMPLATE_FIELD)
    if head == "verbalizer" and kind == "causal" and template.has_mask:
        raise PromptftError("a causal LM scores the label words as the continuation of the template: remove {mask} "
                            "and end the template where the label word goes, e.g. '{text} Sentiment:'",
                            field=TEMPLATE_FIELD)
    if template.has_mask and (head != "verbalizer" or kind == "encoder"):
        reader = "linear head pools the whole input" if head != "verbalizer" else "similarity head (an encoder) pools the whole input"
        raise PromptftError(f"the {reader} and ignores {{mask}}; remove it from the template (only a masked-LM "
                            "verbalizer reads the label word there)", field=TEMPLATE_FIELD)
    if template.has_mask and tokenizer.mask_token_id is None:
        raise PromptftError("the model's tokenizer has no mask token; remove {mask} from the template",
                            field=TEMPLATE_FIELD)
    frozen = METHODS[cfg.method.name].frozen_backbone
    if frozen and head == "verbalizer" and kind in ("mlm", "causal") and not template.n_soft:
        raise PromptftError(
            f"method '{cfg.method.name}' freezes the backbone, and the {KIND_NAMES[kind]} verbalizer head has no "
            "weights of its own, so nothing would train; pick another method (lora, bitfit, prompt_tuning, ...), "
            "add {soft} vectors to the template, or set prompt.head: linear", field="method.name")


def verbalizer_for(cfg: "Config", labels: list[str], tokenizer, kind: str, report: bool = True) -> Verbalizer | None:
    """The configured verbalizer tokenized for this model (None without one); reports doubtful words."""
    if not cfg.prompt.verbalizer:
        return None
    # An LM predicts the word after a space; the similarity head embeds phrases as plain text.
    leading_space = kind != "encoder" and _space_is_part_of_token(tokenizer)
    verbalizer = build_verbalizer(cfg.prompt.verbalizer, labels, tokenizer, leading_space=leading_space)
    if report:
        for warning in _relevant_warnings(verbalizer, cfg, kind, tokenizer):
            log.warning("verbalizer: %s", warning)
    return verbalizer


def _space_is_part_of_token(tokenizer) -> bool:
    """True unless the tokenizer already marks a bare word as following a space (SentencePiece's '▁')."""
    first = tokenizer.convert_ids_to_tokens(tokenizer("a", add_special_tokens=False)["input_ids"][:1])
    return not (first and str(first[0]).startswith("▁"))


def _relevant_warnings(verbalizer: Verbalizer, cfg: "Config", kind: str, tokenizer) -> list[str]:
    if cfg.prompt.resolved_head == "verbalizer" and kind != "encoder":
        return list(verbalizer.warnings)
    # Embedded as text, a phrase may split into many tokens; only words the tokenizer cannot read matter.
    unk = tokenizer.unk_token_id
    return [f"label '{label}': the tokenizer does not know part of '{word}' (it becomes {tokenizer.unk_token})"
            for label in verbalizer.labels for word, ids in zip(verbalizer.words[label], verbalizer.token_ids[label])
            if unk is not None and unk in ids]
