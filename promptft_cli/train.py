"""The training recipe: set up data and model, run the loop, keep the best checkpoint, test it."""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from promptft_cli import runs
from promptft_cli.config import Config, save_config
from promptft_cli.errors import PromptftError
from promptft_cli.progress import TrainProgress, status

log = logging.getLogger("promptft.train")


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, Any]
    best_epoch: int
    best_validation: dict[str, Any]
    train_seconds: float
    trainable_parameters: int


@dataclass
class Setup:
    """Everything the loop needs, built once from the config."""

    cfg: Config
    labels: list[str]
    tokenizer: Any
    classifier: Any
    encoded: dict[str, Any]


def setup(cfg: Config) -> Setup:
    """Seed, prepare the data, encode every split once, build backbone + method + head."""
    from accelerate.utils import set_seed

    from promptft_cli.batching import encode_rows
    from promptft_cli.models import build_classifier, load_tokenizer
    from promptft_cli.prepare import prepare, template_for

    set_seed(cfg.train.seed)
    tokenizer = load_tokenizer(cfg.model, cfg.base_dir)
    data = prepare(cfg, tokenizer)
    template = template_for(cfg)
    index = {label: i for i, label in enumerate(data.labels)}
    encoded = {name: encode_rows(data[name].rows, template, tokenizer, cfg.model.max_length, index)
               for name in ("train", "validation", "test")}
    classifier = build_classifier(cfg, data.labels, tokenizer)
    return Setup(cfg, data.labels, tokenizer, classifier, encoded)


def train(cfg: Config, *, overwrite: bool = False) -> TrainResult:
    """Train per the config and write a complete run directory; returns the test metrics."""
    run_dir = cfg.run_dir
    runs.check_output_dir(run_dir, overwrite)
    _reset_run_dir(run_dir)
    save_config(cfg, run_dir / runs.CONFIG)
    handler = _log_to(run_dir / runs.LOG)
    try:
        s = setup(cfg)
        return _run(s, run_dir)
    finally:
        logging.getLogger("promptft").removeHandler(handler)
        handler.close()


def _run(s: Setup, run_dir: Path) -> TrainResult:
    import torch
    from accelerate import Accelerator
    from transformers import get_linear_schedule_with_warmup

    from promptft_cli.batching import EpochBatches, loader
    from promptft_cli.models import load_weights, save_weights, trainable_parameters

    cfg, tc = s.cfg, s.cfg.train
    method_lr = __import__("promptft_cli.methods", fromlist=["METHODS"]).METHODS[cfg.method.name].default_lr
    lr = tc.lr or method_lr
    accelerator = Accelerator(gradient_accumulation_steps=tc.grad_accum, mixed_precision=tc.mixed_precision)
    sampler = EpochBatches(s.encoded["train"].lengths, tc.batch_size, tc.seed)
    train_loader = loader(s.encoded["train"], sampler, s.tokenizer.pad_token_id)
    params = [p for p in s.classifier.parameters() if p.requires_grad]
    if not params:
        raise PromptftError(f"method '{cfg.method.name}' leaves nothing to train with head '{cfg.prompt.resolved_head}'", field="method.name")
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=tc.weight_decay)
    steps = tc.epochs * math.ceil(len(sampler) / tc.grad_accum)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(tc.warmup_ratio * steps), steps)
    model, optimizer, train_loader, scheduler = accelerator.prepare(s.classifier, optimizer, train_loader, scheduler)

    n_trainable = trainable_parameters(s.classifier)
    status(f"training {cfg.method.name} + {cfg.prompt.resolved_head} head: {n_trainable:,} trainable parameters, "
           f"{len(s.encoded['train'])} train / {len(s.encoded['validation'])} validation examples, lr {lr:g}")
    log.info("trainable parameters: %d; lr %g; steps %d", n_trainable, lr, steps)
    best, best_epoch, best_val, waited, step = None, 0, {}, 0, 0
    started = time.perf_counter()
    with TrainProgress(steps, tc.epochs) as bar:
        for epoch in range(1, tc.epochs + 1):
            model.train()
            sampler.set_epoch(epoch)
            tick, seen = time.perf_counter(), 0
            for batch in train_loader:
                with accelerator.accumulate(model):
                    labels = batch.pop("labels")
                    loss = torch.nn.functional.cross_entropy(model(**batch).float(), labels)
                    accelerator.backward(loss)
                    if tc.max_grad_norm and accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(params, tc.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                seen += labels.size(0)
                if accelerator.sync_gradients:
                    step += 1
                    _check_finite(loss, step)
                    runs.append_jsonl(run_dir / runs.HISTORY, {"step": step, "epoch": epoch, "loss": loss.item(), "lr": scheduler.get_last_lr()[0]})
                    bar.update(1, epoch=epoch, loss=loss.item(), lr=scheduler.get_last_lr()[0], eps=seen / (time.perf_counter() - tick))
            val = _validate(accelerator.unwrap_model(model), s)
            runs.append_jsonl(run_dir / runs.HISTORY, {"epoch": epoch, "step": step, **{f"val_{k}": v for k, v in val.items()}})
            log.info("epoch %d: %s", epoch, " ".join(f"{k}={v:.4f}" for k, v in val.items()))
            bar.update(0, val=f"{tc.early_stopping.metric} {val[tc.early_stopping.metric]:.3f}")
            if best is None or _better(val, best, tc.early_stopping.metric):
                best, best_epoch, best_val, waited = val, epoch, val, 0
                _save_checkpoint(accelerator.unwrap_model(model), run_dir, save_weights)
            else:
                waited += 1
                if waited >= tc.early_stopping.patience:
                    log.info("early stopping after epoch %d (best epoch %d)", epoch, best_epoch)
                    break
    seconds = time.perf_counter() - started
    final = load_weights(accelerator.unwrap_model(model), run_dir / runs.CHECKPOINT)
    metrics = _test_metrics(final, s)
    metrics.update(best_epoch=best_epoch, train_seconds=round(seconds, 3))
    runs.write_json_atomic(run_dir / runs.METRICS, metrics)
    runs.RunInfo("complete", s.labels, cfg.method.name, cfg.prompt.resolved_head, cfg.model.name,
                 best_epoch, round(seconds, 3), n_trainable).save(run_dir)
    return TrainResult(run_dir, metrics, best_epoch, best_val, seconds, n_trainable)


def _validate(classifier, s: Setup) -> dict[str, float]:
    import numpy as np

    from promptft_cli.evaluate import metrics_from_proba
    from promptft_cli.predict import predict_proba

    split = s.encoded["validation"]
    probs = predict_proba(classifier, split, s.cfg.train.eval_batch_size)
    metrics = metrics_from_proba(probs, split.labels, s.labels)
    loss = float(-np.log(np.clip(probs[np.arange(len(split)), split.labels], 1e-12, None)).mean())
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "loss": loss}


def _test_metrics(classifier, s: Setup) -> dict[str, Any]:
    from promptft_cli.evaluate import metrics_from_proba
    from promptft_cli.predict import predict_proba

    split = s.encoded["test"]
    return metrics_from_proba(predict_proba(classifier, split, s.cfg.train.eval_batch_size), split.labels, s.labels)


def _better(val: dict[str, float], best: dict[str, float], metric: str) -> bool:
    # Ties go to the later epoch only on loss; on accuracy the earlier (less overfit) model stays.
    return val[metric] < best[metric] if metric == "loss" else val[metric] > best[metric]


def _check_finite(loss, step: int) -> None:
    import torch

    if not torch.isfinite(loss.detach()).all():
        raise PromptftError(f"training loss became {loss.item()} at step {step}; lower train.lr or check the data "
                            "(the last good checkpoint is kept)", field="train.lr")


def _save_checkpoint(classifier, run_dir: Path, save_weights) -> None:
    """Write the new best checkpoint beside the old one, then swap, so a crash never leaves half a checkpoint."""
    final, tmp = run_dir / runs.CHECKPOINT, run_dir / f".{runs.CHECKPOINT}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_weights(classifier, tmp)
    old = run_dir / f".{runs.CHECKPOINT}.old"
    shutil.rmtree(old, ignore_errors=True)
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)


def _reset_run_dir(run_dir: Path) -> None:
    """Remove what an earlier run left (the finished marker first), keeping prepared data for reuse."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for name in (runs.RUN_INFO, runs.METRICS, runs.HISTORY, runs.LOG):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / runs.CHECKPOINT, ignore_errors=True)


def _log_to(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("promptft")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return handler
