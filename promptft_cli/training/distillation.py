"""PET's trained ensemble: one model per template/verbalizer pair, their soft labels on unlabelled data, one final model.

Schick & Schütze (2021): each pattern-verbalizer pair is fine-tuned on the labelled examples; the pairs'
combined (optionally accuracy-weighted) distributions over the unlabelled pool become soft targets, and a
single model trained on them, with the labelled examples, distils the ensemble, so prediction costs one
model. The final model is the run itself (its config's top-level template and verbalizer: the first pair's
unless given); the pairs' runs stay in `pattern-<i>/`. Its retraining is self-training's (`retrain`):
the same fresh initialisation, only the training data differ, trained with the soft cross-entropy
(tasks/imbalance.weighted_loss on distributions), which equals the KL to the targets up to a constant.
"""

from __future__ import annotations

import logging
from typing import Any, Callable

import numpy as np

from promptft_cli import runs
from promptft_cli.config import Config
from promptft_cli.data.reading import UNLABELED
from promptft_cli.errors import PromptftError
from promptft_cli.progress import status
from promptft_cli.prompting.ensembles import accuracy_weights, combine, member_configs, member_errors
from promptft_cli.training import distributed

log = logging.getLogger("promptft.distillation")
SUMMARY = "ensemble.json"


def final_config(cfg: Config) -> Config:
    """The run's own config: the top-level template and verbalizer default to the first pair's."""
    first = cfg.prompt.ensemble[0]
    prompt = cfg.prompt.model_copy(update={"template": cfg.prompt.template or first.template,
                                           "verbalizer": cfg.prompt.verbalizer or first.verbalizer})
    out = cfg.model_copy(update={"prompt": prompt})
    return out


def member_run_config(cfg: Config, member: Config, i: int) -> Config:
    """Pair i's own run in `pattern-<i>/`: labelled data only (no pool, no self-training)."""
    data = member.data.model_copy(update={"unlabeled": None, "few_shot": member.data.few_shot and
                                          member.data.few_shot.model_copy(update={"unlabeled": None})})
    out = member.model_copy(update={"data": data, "output_dir": str((cfg.run_dir / f"pattern-{i}").absolute()),
                                    "train": member.train.model_copy(update={"self_training": None})})
    return out


def run(s, train_member: Callable[..., Any], train_round: Callable[[Any, Any], Any]):
    """Train every pair, label the pool with their ensemble, train the final model on the soft labels."""
    cfg = s.cfg
    if UNLABELED not in s.data.splits:
        raise PromptftError("a trained prompt.ensemble distils into one model on unlabelled data: set data.unlabeled "
                            "(a file) or data.few_shot.unlabeled (N rows of train outside the sample)",
                            field="prompt.ensemble")
    pool = s.data[UNLABELED].rows
    train_ids = s.encoded["train"].labels
    pool_probs, train_probs, results = [], [], []
    for i, member in enumerate(member_configs(cfg)):
        member_cfg = member_run_config(cfg, member, i)
        status(f"prompt ensemble: training pair {i + 1}/{len(cfg.prompt.ensemble)} → {member_cfg.run_dir}")
        with member_errors(i):
            results.append(train_member(member_cfg, overwrite=True))
        scored = _scores(member_cfg, s.labels, [pool, s.data["train"].rows])
        pool_probs.append(scored[0])
        train_probs.append(scored[1])
    weights = accuracy_weights(train_probs, train_ids) if cfg.prompt.ensemble_weighting == "accuracy" else None
    soft = combine(pool_probs, weights)
    message = f"prompt ensemble: {len(pool)} unlabelled examples soft-labelled by {len(pool_probs)} pairs" + (
        f" (weights {', '.join(f'{w:.3f}' for w in weights)})" if weights else "")
    status(message)
    log.info("%s", message)
    if distributed.is_main():
        runs.write_jsonl_atomic(cfg.run_dir / runs.DATA / "soft_labeled.jsonl",
                                [{**row, "soft_label": dict(zip(s.labels, map(float, p)))} for row, p in zip(pool, soft)])
    from promptft_cli.training.self_training import retrain, with_soft_labels

    split = with_soft_labels(s.encoded["train"], s.encode(pool, labelled=False), soft)
    _, result = retrain(s, split, cfg, train_round)
    if distributed.is_main():
        runs.write_json_atomic(cfg.run_dir / SUMMARY, {
            "pairs": [{"template": m.template, "run_dir": str(r.run_dir), "test_accuracy": r.metrics["accuracy"]}
                      for m, r in zip(cfg.prompt.ensemble, results)],
            "weights": weights, "unlabeled": len(pool), "final_test_accuracy": result.metrics["accuracy"]})
    return result


def _scores(member_cfg: Config, labels: list[str], row_sets: list[list[dict]]) -> list[np.ndarray]:
    """The trained pair's calibrated probabilities on each set of rows (its own template and verbalizer)."""
    from promptft_cli.modeling.loading import load_tokenizer
    from promptft_cli.modeling.weights import load_weights
    from promptft_cli.tasks.base import get_task
    from promptft_cli.tasks.calibration import Calibration
    from promptft_cli.tasks.classification import encoder_for

    task = get_task(member_cfg.task)
    tokenizer = load_tokenizer(member_cfg.model, member_cfg.base_dir)
    model = task.build_model(member_cfg, tokenizer, labels, report=False)
    load_weights(model, member_cfg.run_dir / runs.CHECKPOINT)
    encode = encoder_for(member_cfg, tokenizer, labels, None)
    cal = Calibration.load(member_cfg.run_dir) or Calibration()
    return [cal.apply(distributed.infer(task, model, encode(rows, labelled=False), member_cfg.train.eval_batch_size))
            for rows in row_sets]
