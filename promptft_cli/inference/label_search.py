"""Label-word search: propose `prompt.verbalizer` words from the labelled train split.

- Masked / causal LM (LM-BFF's automatic label search, Gao et al. 2021; PETAL, Schick et al. 2020): the
  candidates of a label are the vocabulary words most likely at {mask} (or as the continuation) summed over
  that label's train examples under the template;
- similarity head (an encoder without LM head): candidates are each label's frequent, distinctive n-grams
  (1-3 words) of the train texts, scored by the cosine between the embedded phrase and the embedded inputs.

Either way every candidate has a score per example; it is ranked by how well it separates its label
(mean score on the label's examples minus the mean on the others) and pruned, as LM-BFF does, by the
zero-shot accuracy on train of the best assignment with that candidate swapped in for its label.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from promptft_cli.errors import PromptftError

if TYPE_CHECKING:
    from promptft_cli.config import Config

CANDIDATES_PER_LABEL = 30
_WORD = re.compile(r"[^\W\d_][\w'-]*", re.UNICODE)


@dataclass
class Candidate:
    label: str
    word: str
    separation: float
    """Mean score on the label's train examples minus the mean on the others' (log-probability or cosine)."""
    train_accuracy: float
    """Zero-shot accuracy on train of the best words of the other labels with this word for its label."""


def rank(scores: np.ndarray, owners: Sequence[int], words: Sequence[str], y: Sequence[int], labels: Sequence[str],
         keep: int) -> list[Candidate]:
    """Rank candidates (columns of `scores`, (examples, candidates); `owners[j]` its label) per label.

    The `keep` best per label by separation are pruned to their order by train accuracy (ties: separation).
    """
    y = np.asarray(y)
    owners = np.asarray(owners)
    inside = np.stack([y == c for c in range(len(labels))])  # (labels, examples)
    sep = np.array([scores[inside[o], j].mean() - scores[~inside[o], j].mean() if inside[o].any() and (~inside[o]).any()
                    else -np.inf for j, o in enumerate(owners)])
    best = {c: int(np.flatnonzero(owners == c)[np.argmax(sep[owners == c])]) for c in range(len(labels)) if (owners == c).any()}
    if len(best) < len(labels):
        missing = [labels[c] for c in range(len(labels)) if c not in best]
        raise PromptftError(f"no candidate words for label(s) {', '.join(missing)} in the train split", field="data.train")
    out: list[Candidate] = []
    for c, label in enumerate(labels):
        mine = np.flatnonzero(owners == c)
        mine = mine[np.argsort(-sep[mine], kind="stable")][:keep]
        ranked = []
        for j in mine:
            columns = [best[d] if d != c else j for d in range(len(labels))]
            accuracy = float((scores[:, columns].argmax(1) == y).mean())
            ranked.append(Candidate(label, words[j], float(sep[j]), accuracy))
        out += sorted(ranked, key=lambda k: (-k.train_accuracy, -k.separation))
    return out


def ngram_candidates(texts: Sequence[str], y: Sequence[int], num_labels: int, per_label: int) -> list[tuple[int, str]]:
    """(label, phrase): per label the n-grams (1-3 words, seen at least twice) most frequent and most specific to it."""
    counts = [Counter() for _ in range(num_labels)]
    for text, label in zip(texts, y):
        words = _WORD.findall(text.lower())
        grams = {" ".join(words[i:i + n]) for n in (1, 2, 3) for i in range(len(words) - n + 1)}
        counts[label].update(grams)
    total = sum(counts, Counter())
    out = []
    for c in range(num_labels):
        # frequency in the label x share of its occurrences there: common words shared by all labels score low.
        scored = sorted(((n * n / total[g], g) for g, n in counts[c].items() if n >= 2 and len(g) > 1), reverse=True)
        out += [(c, g) for _, g in scored[:per_label]]
    return out


def search(cfg: "Config", words_per_label: int = 3, keep: int = 10) -> dict[str, Any]:
    """Candidates per label (ranked), and the proposed `prompt.verbalizer` (the best `words_per_label` each)."""
    from promptft_cli.data.prepare import prepare
    from promptft_cli.modeling.loading import load_tokenizer, model_kind

    if cfg.prompt.head == "linear":
        raise PromptftError("search-verbalizer proposes label words, and the linear head has none; set prompt.head: "
                            "verbalizer (or remove it)", field="prompt.head")
    tokenizer = load_tokenizer(cfg.model, cfg.base_dir)
    data = prepare(cfg, tokenizer)
    rows = data["train"].rows if "train" in data.splits else []
    if not rows:
        raise PromptftError("search-verbalizer ranks words on the labelled train split, and it has no rows",
                            field="data.train")
    labels = list(data.labels)
    y = [labels.index(r["label"]) for r in rows]
    kind = model_kind(cfg.model, "verbalizer", cfg.base_dir)
    scores, owners, words = (_lm_scores if kind in ("mlm", "causal") else _similarity_scores)(cfg, kind, tokenizer, rows, y, labels)
    ranked = rank(scores, owners, words, y, labels, keep)
    verbalizer = {label: [c.word for c in ranked if c.label == label][:words_per_label] for label in labels}
    return {"kind": kind, "labels": labels, "n_train": len(rows), "candidates": [asdict(c) for c in ranked],
            "verbalizer": verbalizer}


def verbalizer_yaml(verbalizer: dict[str, list[str]]) -> str:
    import yaml

    return yaml.safe_dump({"prompt": {"verbalizer": verbalizer}}, sort_keys=False, allow_unicode=True)


def _template_and_split(cfg: "Config", tokenizer, rows):
    from promptft_cli.prompting.encoding import encode_rows
    from promptft_cli.prompting.templates import template_for

    template = template_for(cfg)
    return template, encode_rows(rows, template, tokenizer, cfg.model.max_length)


def _lm_scores(cfg: "Config", kind: str, tokenizer, rows, y, labels):
    """Log-probability of every whole-word vocabulary token at the read position; candidates: top per label."""
    import torch

    from promptft_cli.modeling.batching import collate, inference_batches
    from promptft_cli.modeling.loading import load_backbone

    template, split = _template_and_split(cfg, tokenizer, rows)
    if kind == "mlm" and not template.has_mask:
        raise PromptftError("a masked LM reads label words at {mask}: add it to the template", field="prompt.template")
    model = load_backbone(cfg.model, kind, cfg.base_dir).eval()
    out = torch.empty(len(rows), len(tokenizer))
    with torch.inference_mode():
        for batch in inference_batches(split.lengths, cfg.train.eval_batch_size):
            t = collate(split, batch, tokenizer.pad_token_id or 0)
            logits = model(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).logits.float()
            read = t["mask_positions"] if kind == "mlm" else t["attention_mask"].sum(1) - 1
            out[batch] = torch.log_softmax(logits[torch.arange(len(batch)), read], dim=-1)[:, :len(tokenizer)]
    logp = out.numpy()
    vocab = [_word_of(tokenizer, i) for i in range(logp.shape[1])]
    usable = np.array([w is not None for w in vocab])
    owners, columns = [], []
    for c in range(len(labels)):
        total = np.where(usable, logp[np.asarray(y) == c].sum(0), -np.inf)
        top = np.argsort(-total, kind="stable")[:CANDIDATES_PER_LABEL]
        owners += [c] * len(top)
        columns += top.tolist()
    return logp[:, columns], owners, [vocab[j] for j in columns]


def _word_of(tokenizer, token_id: int) -> str | None:
    """The word a vocabulary entry stands for when it is a whole word (not a special, piece or number)."""
    if token_id in set(tokenizer.all_special_ids):
        return None
    piece = tokenizer.convert_ids_to_tokens(token_id)
    if piece.startswith("##"):
        return None
    word = piece.lstrip("Ġ▁")
    return word if len(word) > 1 and _WORD.fullmatch(word) else None


def _similarity_scores(cfg: "Config", kind: str, tokenizer, rows, y, labels):
    """Cosine between each embedded input (through the template) and each candidate phrase."""
    import torch

    from promptft_cli.modeling.batching import collate, inference_batches
    from promptft_cli.modeling.heads import encode_phrases, pool
    from promptft_cli.modeling.loading import load_backbone, pooling_mode, resolve_model_path

    texts = [" ".join(str(r[c]) for c in cfg.data.columns) for r in rows]
    found = ngram_candidates(texts, y, len(labels), CANDIDATES_PER_LABEL)
    model = load_backbone(cfg.model, "encoder", cfg.base_dir).eval()
    pooling = pooling_mode(cfg.model, resolve_model_path(cfg.model.name, cfg.base_dir), False)
    _, split = _template_and_split(cfg, tokenizer, rows)
    inputs = torch.empty(len(rows), model.config.hidden_size)
    with torch.inference_mode():
        for batch in inference_batches(split.lengths, cfg.train.eval_batch_size):
            t = collate(split, batch, tokenizer.pad_token_id or 0)
            hidden = model(input_ids=t["input_ids"], attention_mask=t["attention_mask"]).last_hidden_state
            inputs[batch] = pool(hidden, t["attention_mask"], pooling).float()
    phrases = encode_phrases(model, tokenizer, [g for _, g in found], pooling)
    cos = torch.nn.functional.normalize(inputs, dim=-1) @ phrases.T
    return cos.numpy(), [c for c, _ in found], [g for _, g in found]
