"""Scores for generated text: corpus BLEU and chrF++ (sacreBLEU), ROUGE-1/2/L (rouge-score), exact match.

Scales follow the tools that define them: BLEU and chrF++ are sacreBLEU's 0-100, comparable with
published figures when the signature matches; ROUGE F-measures and exact match are 0-1 shares, like
accuracy. Every example may have several references (a `references` column); their number may vary
from row to row.

ROUGE tokenisation: rouge-score's default tokenizer keeps only `[a-z0-9]` and so silently drops every
non-ASCII letter (all of Chinese, and German umlauts split words). We tokenise instead with the same
rule extended to Unicode: lowercase, runs of letters and digits as words, and each CJK ideograph a
token of its own (Chinese has no spaces; character-level ROUGE is the usual choice for it). On ASCII
text this gives exactly rouge-score's default tokens. No stemming: Porter stemming is English-only.
"""

from __future__ import annotations

import re

from promptft_cli.errors import PromptftError

METRICS = ("bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match")
"""The metric names `generation_metrics` reports (chrf is chrF++: character n-grams plus word bigrams)."""
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
REFERENCE_SEPARATOR = "|||"

# CJK Unified Ideographs with extension A and the compatibility block: what sacreBLEU's `zh` tokenizer splits.
_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CJK_CHAR = re.compile(f"[{_CJK}]")
_TOKEN = re.compile(f"[{_CJK}]|[^\\W_{_CJK}]+")
# A corpus whose references are at least this share CJK ideographs (of all letters and digits) is scored
# as Chinese; a few Latin names or digits in Chinese sentences do not change that.
_CHINESE_SHARE = 0.3


def parse_references(cell: str | None) -> list[str]:
    """Split a `references` cell (`ref one ||| ref two`) into its references, stripped, empty ones dropped."""
    if cell is None:
        return []
    return [part.strip() for part in str(cell).split(REFERENCE_SEPARATOR) if part.strip()]


def default_tokenize(references: list[list[str]]) -> str:
    """sacreBLEU's tokenizer for these references: `zh` when they are mostly Chinese, else its default `13a`."""
    text = "".join(ref for refs in references for ref in refs)
    letters = sum(ch.isalnum() for ch in text)
    if letters and len(_CJK_CHAR.findall(text)) / letters >= _CHINESE_SHARE:
        return "zh"
    return "13a"


def generation_metrics(predictions: list[str], references: list[list[str]], tokenize: str | None = None) -> dict:
    """Corpus scores, sacreBLEU signatures and per-example scores for `predictions` against `references`.

    references: one list per prediction, of one or more reference strings.
    tokenize: sacreBLEU's tokenizer for BLEU; None picks `zh` for Chinese references, else `13a`.
    Returns {"bleu", "chrf", "rouge1", "rouge2", "rougeL", "exact_match", "signatures": {"bleu", "chrf"},
    "tokenize", "examples", "max_references", "per_example": {"bleu", "chrf", "rougeL", "exact_match": [...]}}.
    """
    from sacrebleu.metrics import BLEU, CHRF

    _check(predictions, references)
    tokenize = tokenize or default_tokenize(references)
    if tokenize not in BLEU.TOKENIZERS:
        raise PromptftError(f"unknown sacreBLEU tokenizer '{tokenize}'; choose one of {', '.join(BLEU.TOKENIZERS)}",
                            field="tokenize")
    bleu, chrf = BLEU(tokenize=tokenize), CHRF(word_order=2)
    streams = reference_streams(references)
    corpus_bleu = bleu.corpus_score(predictions, streams)
    corpus_chrf = chrf.corpus_score(predictions, streams)
    # Sentence BLEU needs effective order, or every short sentence without a 4-gram match scores 0.
    sentence_bleu = BLEU(tokenize=tokenize, effective_order=True)
    rouge = rouge_scores(predictions, references)
    exact = [_exact(p, refs) for p, refs in zip(predictions, references)]
    return {
        "bleu": corpus_bleu.score,
        "chrf": corpus_chrf.score,
        **{name: sum(rows) / len(rows) for name, rows in rouge.items()},
        "exact_match": sum(exact) / len(exact),
        "signatures": {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())},
        "tokenize": tokenize,
        "examples": len(predictions),
        "max_references": len(streams),
        "per_example": {
            "bleu": [sentence_bleu.sentence_score(p, refs).score for p, refs in zip(predictions, references)],
            "chrf": [chrf.sentence_score(p, refs).score for p, refs in zip(predictions, references)],
            "rougeL": rouge["rougeL"],
            "exact_match": exact,
        },
    }


def reference_streams(references: list[list[str]]) -> list[list[str | None]]:
    """sacreBLEU's layout: one stream per reference position, rows with fewer references padded with None."""
    width = max(len(refs) for refs in references)
    return [[refs[i] if i < len(refs) else None for refs in references] for i in range(width)]


class UnicodeTokenizer:
    """rouge-score's default tokenisation extended to every script (see the module docstring)."""

    def tokenize(self, text: str) -> list[str]:
        return _TOKEN.findall(text.lower())


def rouge_scores(predictions: list[str], references: list[list[str]]) -> dict[str, list[float]]:
    """Per-example ROUGE-1/2/L F-measure; with several references the best one counts (rouge-score's score_multi)."""
    from rouge_score.rouge_scorer import RougeScorer

    scorer = RougeScorer(list(ROUGE_TYPES), tokenizer=UnicodeTokenizer())
    rows = [scorer.score_multi(refs, pred) for pred, refs in zip(predictions, references)]
    return {name: [row[name].fmeasure for row in rows] for name in ROUGE_TYPES}


def _exact(prediction: str, refs: list[str]) -> bool:
    return prediction.strip() in {ref.strip() for ref in refs}


def _check(predictions: list[str], references: list[list[str]]) -> None:
    if not predictions:
        raise PromptftError("no predictions to score")
    if len(predictions) != len(references):
        raise PromptftError(f"{len(predictions)} predictions but {len(references)} reference lists")
    for row, refs in enumerate(references):
        if isinstance(refs, str) or not refs or not all(isinstance(ref, str) and ref.strip() for ref in refs):
            raise PromptftError("every example needs at least one non-empty reference (a list of strings)", row=row + 1)
