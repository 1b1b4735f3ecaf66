"""Generation examples as token ids: the rendered prompt (the template, optionally in a chat template) and the target.

A causal LM reads prompt + target + end token and is trained on the target positions only; a seq2seq
model reads the prompt and is trained to produce target + end token. Targets are cut at
`model.max_target_length` tokens (the end token included) and counted.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from promptft_cli.errors import PromptftError
from promptft_cli.prompting.templates import TEMPLATE_FIELD, Template, Text, _special_tokens_around, encode, fill_text

TARGET = "target"
"""The key of a prepared row's target text (whatever the data's target column is called)."""
REFERENCES = "references"
"""The key of a prepared row's ` ||| `-joined references, where the data has them."""
REFERENCE_SEPARATOR = " ||| "


@dataclass
class EncodedGeneration:
    """Token ids of every example of a split: prompts, and targets (with the end token) when known."""

    input_ids: list[list[int]]
    soft_positions: list[list[int]]
    targets: list[list[int]] | None = None
    truncated: int = 0
    """Prompts cut to model.max_length."""
    targets_truncated: int = 0
    """Targets cut to model.max_target_length."""
    kind: str = "causal"
    """causal or seq2seq: how training rows are laid out (see modeling/decoding.py)."""
    train_on_prompt: bool = False
    references: list[list[str]] | None = None
    """Every reference of each example (metrics), where targets are known."""
    lengths: list[int] = field(init=False)
    """Prompt lengths (what generation batches are sorted by)."""

    def __post_init__(self) -> None:
        self.lengths = [len(ids) for ids in self.input_ids]

    def __len__(self) -> int:
        return len(self.input_ids)

    def train_lengths(self) -> list[int]:
        """Tokens a training row costs (a causal LM reads the target after the prompt)."""
        if self.targets is None:
            return self.lengths
        return [p + t for p, t in zip(self.lengths, map(len, self.targets))]


def check_template(template: Template) -> None:
    if template.has_mask:
        raise PromptftError("{mask} marks a label word in classification; a generation template has none "
                            "(the model writes after the prompt): remove it", field=TEMPLATE_FIELD)


def target_prefix(template: Template, kind: str, chat: bool) -> str:
    """What separates a causal LM's prompt from its target: the whitespace the template ends with, else a space.

    Rendering drops a template's trailing whitespace (see templates._piece_texts); a byte-level BPE
    tokenizer glues a space to the word after it, so the target brings the separator itself.
    """
    if kind != "causal" or chat:
        return ""
    last = template.parts[-1] if template.parts else None
    if isinstance(last, Text) and last.text != last.text.rstrip():
        return last.text[len(last.text.rstrip()):]
    return " "


def encode_generation_rows(rows: Sequence[Mapping[str, str]], template: Template, tokenizer, kind: str,
                           max_length: int, max_target_length: int, *, chat: bool = False,
                           with_targets: bool = True, demonstrations: Sequence[Sequence[str]] | None = None) -> EncodedGeneration:
    """Prompt ids (and target ids + end token) for every row; `demonstrations[i]`: solved examples put before row i."""
    check_template(template)
    prompts, softs, truncated = [], [], 0
    for i, row in enumerate(rows):
        demos = demonstrations[i] if demonstrations else ()
        ids, soft, cut = _prompt_ids(template, row, tokenizer, max_length, chat, demos)
        prompts.append(ids)
        softs.append(soft)
        truncated += cut
    if not with_targets:
        return EncodedGeneration(prompts, softs, None, truncated)
    prefix = target_prefix(template, kind, chat)
    targets, cut_targets = [], 0
    for row in rows:
        ids = tokenizer(prefix + row[TARGET], add_special_tokens=False)["input_ids"]
        cut_targets += len(ids) + 1 > max_target_length
        targets.append(list(ids[: max_target_length - 1]) + [tokenizer.eos_token_id])
    return EncodedGeneration(prompts, softs, targets, truncated, cut_targets)


def target_length(text: str, tokenizer, prefix: str = "") -> int:
    """Tokens of a target with its end token, uncut (for the data report)."""
    return len(tokenizer(prefix + text, add_special_tokens=False)["input_ids"]) + 1


def _prompt_ids(template: Template, row: Mapping[str, str], tokenizer, max_length: int, chat: bool,
                demos: Sequence[str] = ()):
    if not chat:
        encoded = encode(template, row, tokenizer, max_length)
        ids, soft = encoded.input_ids, encoded.soft_positions
        if demos:
            # The input keeps its full share of max_length; demonstrations fill what is left, dropped from the end.
            front = len(_special_tokens_around(tokenizer)[0])
            shown = _fitting(demos, tokenizer, max_length - len(ids))
            extra = tokenizer("".join(shown), add_special_tokens=False)["input_ids"] if shown else []
            ids, soft = ids[:front] + extra + ids[front:], [p + len(extra) for p in soft]
        return ids, soft, encoded.truncated
    text = tokenizer.apply_chat_template([{"role": "user", "content": "".join(demos) + fill_text(template, row)}],
                                         add_generation_prompt=True, tokenize=False)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    # The end holds the generation prompt ("<|im_start|>assistant\n"), which must stay: cut from the start.
    return list(ids[-max_length:]), [], len(ids) > max_length


def _fitting(demos: Sequence[str], tokenizer, budget: int) -> list[str]:
    shown, used = [], 0
    for demo in demos:
        n = len(tokenizer(demo, add_special_tokens=False)["input_ids"])
        if used + n > budget:
            break
        shown.append(demo)
        used += n
    return shown


def demonstrations_for(rows: Sequence[Mapping[str, str]], pool: Sequence[Mapping[str, str]], template: Template,
                       k: int, seed: int, kind: str) -> list[list[str]]:
    """k solved training examples per row (in-context learning), drawn with a seed and the row's own text.

    A row gets the same demonstrations in training, evaluation and prediction, and never itself.
    """
    if not pool:
        raise PromptftError("demonstrations need training rows to draw from", field="prompt.demonstrations")
    prefix = target_prefix(template, kind, False) if kind == "causal" else " "
    rendered = [fill_text(template, d).strip() + prefix + d[TARGET] + "\n\n" for d in pool]
    out = []
    for row in rows:
        key = "\x1f".join(str(row.get(c, "")) for c in template.columns)
        rng = random.Random(f"{seed}\x1e{key}")
        others = [i for i, d in enumerate(pool) if "\x1f".join(str(d.get(c, "")) for c in template.columns) != key]
        out.append([rendered[i] for i in rng.sample(others, min(k, len(others)))])
    return out


def check_chat(template: Template, tokenizer, chat: bool) -> None:
    if not chat:
        return
    if template.n_soft:
        raise PromptftError("{soft} vectors cannot go through a chat template (it renders text); remove {soft} "
                            "or set prompt.chat: false", field="prompt.chat")
    if not getattr(tokenizer, "chat_template", None):
        raise PromptftError("the model's tokenizer has no chat template; set prompt.chat: false", field="prompt.chat")


def references_of(row: Mapping[str, str]) -> list[str]:
    """Every reference of a row: its ` ||| `-joined references where given, else its target."""
    joined = row.get(REFERENCES)
    if joined:
        return [r.strip() for r in joined.split(REFERENCE_SEPARATOR.strip()) if r.strip()]
    return [row[TARGET]]
