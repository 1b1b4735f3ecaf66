"""Self-training on unlabelled data: pseudo-label the confident part, retrain from the start, repeat.

PET (Schick & Schütze 2021) and Gera et al. (2022, "Zero-shot text classification with self-training")
label in-domain unlabelled text with the prompt model and train on the confident part. With 16
examples per class the labelled set is too small to move a sentence encoder far; a few thousand
pseudo-labelled texts at ~90% precision are not. Measured on SST-2 (benchmarks/sst2_recipe.py), it is
what lifts the 16-shot MiniLM past the supervised few-shot runs.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from promptft_cli import runs
from promptft_cli.data.reading import UNLABELED
from promptft_cli.progress import status
from promptft_cli.runs import model_card, plots
from promptft_cli.tasks import calibration
from promptft_cli.training import distributed

log = logging.getLogger("promptft.self_training")
SUMMARY = "self_training.json"
CALIBRATION = calibration.FILE
BEST_ROUND = ".self-training-best"  # the best round so far, while later rounds train


def select_confident(probs: np.ndarray, share: float) -> list[tuple[int, int]]:
    """(row, label) pairs: per predicted label the most confident rows, `share` of all rows in total.

    Equal quotas per label keep the pseudo-labelled set balanced even when the model leans to one label,
    which would otherwise feed its own bias back (a known failure of naive self-training).
    """
    n, num_labels = probs.shape
    quota = max(1, int(share * n / num_labels))
    predicted, confidence = probs.argmax(1), probs.max(1)
    picks: list[tuple[int, int]] = []
    for label in range(num_labels):
        rows = np.flatnonzero(predicted == label)
        rows = rows[np.argsort(-confidence[rows], kind="stable")][:quota]
        picks += [(int(i), label) for i in rows]
    return sorted(picks)


def run_rounds(s, first, train_round: Callable[[Any, Path], Any]):
    """Run `train.self_training.rounds` rounds after the supervised run `first`; returns the best round's result.

    Each round labels the unlabelled rows with the latest model, then trains a fresh model (same
    initialisation) on the labelled rows plus the confident pseudo-labelled ones, early-stopping on the
    labelled validation split as usual. The round with the best validation score is the run's model: a
    round can drift on its own pseudo-labels, and validation is what tells. A tie goes to the later round:
    a few-shot validation split (k per class) ties often, and only a round that validation shows to be
    worse is evidence against the pseudo-labels it was trained on.
    """
    cfg, run_dir, main = s.cfg, s.cfg.run_dir, distributed.is_main()
    st = cfg.train.self_training
    pool, leaked = without_evaluation_texts(s.data[UNLABELED].rows, [s.data[n].rows for n in ("validation", "test")],
                                            cfg.data.columns)
    if leaked:
        message = f"self-training: dropped {leaked} unlabelled example(s) that repeat a validation or test text"
        status(message)
        log.warning("%s", message)
    pool_encoded = s.encode(pool, labelled=False)
    result, best, total_seconds = first, (0, first), first.train_seconds
    # The metric the loop chose (null in the config: from the train split, see tasks/imbalance.py).
    metric = cfg.train.early_stopping.metric or getattr(first.metrics, "early_stopping_metric", None) or "accuracy"
    rounds = [_round_summary(0, first, None)]
    if main:
        _keep_best(run_dir, 0)
    round_cfg = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": st.epochs})})
    for r in range(1, st.rounds + 1):
        probs = distributed.infer(s.task, s.model, pool_encoded, cfg.train.eval_batch_size)
        picks = select_confident(probs, st.share)
        pseudo = [{**pool[i], "label": s.labels[c]} for i, c in picks]
        counts = Counter(row["label"] for row in pseudo)
        message = (f"self-training round {r}/{st.rounds}: {len(pseudo)} of {len(pool)} unlabelled examples pseudo-labelled "
                   f"({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))})")
        status(message)
        log.info("%s", message)
        if main:
            _archive_round(run_dir, r - 1)
            runs.write_jsonl_atomic(run_dir / runs.DATA / f"pseudo_labeled-round-{r}.jsonl",
                                    [{**row, "confidence": round(float(probs[i].max()), 4)} for row, (i, _) in zip(pseudo, picks)])
        s, result = retrain(s, s.encode(s.data["train"].rows + pseudo), round_cfg, train_round)
        total_seconds += result.train_seconds
        rounds.append(_round_summary(r, result, counts))
        if _improves(result, best[1], metric):
            best = (r, result)
            if main:
                _keep_best(run_dir, r)
    chosen, result = best
    message = f"self-training: keeping round {chosen} (best validation {metric})"
    status(message)
    log.info("%s", message)
    if main:
        _restore_best(run_dir, chosen, st.rounds, result)
    result.train_seconds = total_seconds
    if main:
        runs.write_json_atomic(run_dir / SUMMARY, {"unlabeled": len(pool), "dropped_as_in_validation_or_test": leaked,
                                                   "share": st.share, "selected_round": chosen, "rounds": rounds})
        info = replace(runs.RunInfo.load(run_dir), best_epoch=result.best_epoch, train_seconds=round(total_seconds, 3))
        model_card.write_model_card(run_dir, info)
        info.save(run_dir)
    return result


def retrain(s, train_split, round_cfg, train_round: Callable[[Any, Path], Any]):
    """A fresh model, initialised as the supervised run was, trained on `train_split`; returns (setup, result).

    Rounds differ only in data. Self-training passes labelled + pseudo-labelled rows; PET distillation
    (training/distillation.py) labelled rows + soft-labelled ones (`with_soft_labels`).
    """
    from accelerate.utils import set_seed

    set_seed(s.cfg.train.seed)
    model = s.task.build_model(s.cfg, s.tokenizer, s.labels)
    s = replace(s, cfg=round_cfg, model=model, encoded={**s.encoded, "train": train_split})
    return s, train_round(s, s.cfg.run_dir)


def with_soft_labels(labelled, unlabelled, soft: np.ndarray):
    """One encoded split: the labelled examples (class indices) followed by the unlabelled ones with distributions."""
    from promptft_cli.prompting.encoding import EncodedSplit

    return EncodedSplit(input_ids=labelled.input_ids + unlabelled.input_ids,
                        mask_positions=labelled.mask_positions + unlabelled.mask_positions,
                        soft_positions=labelled.soft_positions + unlabelled.soft_positions,
                        labels=list(labelled.labels) + [[float(v) for v in row] for row in soft],
                        truncated=labelled.truncated + unlabelled.truncated)


def without_evaluation_texts(pool: list[dict], evaluation: list[list[dict]], columns: list[str]) -> tuple[list[dict], int]:
    """The unlabelled rows whose text is in no validation/test row, and how many were dropped.

    Pseudo-labelling a test text and training on it leaks the test set into the model (SST-2's unlabelled
    pools repeat sentences of its dev and test splits). Texts match after case folding and whitespace.
    """
    def key(row):
        return tuple(" ".join(str(row.get(c, "")).split()).casefold() for c in columns)

    seen = {key(row) for rows in evaluation for row in rows}
    kept = [row for row in pool if key(row) not in seen]
    return kept, len(pool) - len(kept)


def _improves(result, best, metric: str) -> bool:
    """Not worse than the best round so far (the loop's strict rule for epochs, reversed: ties keep the later round)."""
    from promptft_cli.training.loop import _better

    return not _better(best.best_validation, result.best_validation, metric)


def _keep_best(run_dir: Path, r: int) -> None:
    """Copy round `r`'s checkpoint and test metrics aside; a later, worse round overwrites the run's own."""
    kept = run_dir / BEST_ROUND
    shutil.rmtree(kept, ignore_errors=True)
    shutil.copytree(run_dir / runs.CHECKPOINT, kept / runs.CHECKPOINT)
    shutil.copy2(run_dir / runs.METRICS, kept / runs.METRICS)
    if (run_dir / CALIBRATION).is_file():  # the round's own calibration goes with its checkpoint
        shutil.copy2(run_dir / CALIBRATION, kept / CALIBRATION)


def _restore_best(run_dir: Path, r: int, last: int, result) -> None:
    """Make round `r` the run's model: its checkpoint, metrics, history and plots (the last round's already are)."""
    kept = run_dir / BEST_ROUND
    if r != last:
        _archive_round(run_dir, last)
        shutil.rmtree(run_dir / runs.CHECKPOINT)
        (kept / runs.CHECKPOINT).rename(run_dir / runs.CHECKPOINT)
        runs.write_bytes_atomic(run_dir / runs.METRICS, (kept / runs.METRICS).read_bytes())
        if (kept / CALIBRATION).is_file():
            runs.write_bytes_atomic(run_dir / CALIBRATION, (kept / CALIBRATION).read_bytes())
        history = run_dir / runs.HISTORY
        shutil.copy2(history.with_name(f"{history.stem}-round-{r}{history.suffix}"), history)
        plots.write_run_plots(run_dir, result.metrics, result.best_epoch)
    shutil.rmtree(kept, ignore_errors=True)


def _round_summary(r: int, result, counts: Counter | None) -> dict[str, Any]:
    return {"round": r, "pseudo_labeled": dict(sorted(counts.items())) if counts else {},
            "best_validation": result.best_validation, "test_accuracy": result.metrics["accuracy"],
            "test_macro_f1": result.metrics["macro_f1"], "train_seconds": round(result.train_seconds, 3)}


def _archive_round(run_dir: Path, r: int) -> None:
    """Keep the finished round's history beside the next one's; its resumable checkpoints are dropped."""
    history = run_dir / runs.HISTORY
    if history.exists():
        history.replace(run_dir / f"{history.stem}-round-{r}{history.suffix}")
    shutil.rmtree(run_dir / runs.CHECKPOINTS, ignore_errors=True)
