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
from promptft_cli.errors import Interrupted, PromptftError
from promptft_cli.progress import Tracked, TrainProgress, status
from promptft_cli.runs import model_card, plots
from promptft_cli.tasks import calibration, imbalance
from promptft_cli.training import distributed, tracking

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
    data: Any = None
    """The prepared splits (rows), for self-training's pseudo-labelled rounds."""
    encode: Any = None
    """rows -> EncodedSplit with this run's template, tokenizer, demonstrations and label index."""


def setup(cfg: Config) -> Setup:
    """Seed, prepare the data, encode every split once, build backbone + method + head."""
    from accelerate.utils import set_seed

    from promptft_cli.data.prepare import prepare
    from promptft_cli.modeling.classifier import build_classifier
    from promptft_cli.modeling.loading import load_tokenizer
    from promptft_cli.prompting import demonstrations
    from promptft_cli.prompting.encoding import encode_rows
    from promptft_cli.prompting.templates import template_for

    set_seed(cfg.train.seed)
    tokenizer = load_tokenizer(cfg.model, cfg.base_dir)
    with distributed.main_process_first():  # the others then read what the main process prepared
        data = prepare(cfg, tokenizer)
    template = template_for(cfg)
    index = {label: i for i, label in enumerate(data.labels)}
    demos = demonstrations.from_config(cfg, data["train"].rows, data.labels, tokenizer)
    encode_with = demos.encode_rows if demos else encode_rows  # LM-BFF demonstrations, when configured

    def encode(rows, labelled: bool = True):
        return encode_with(rows, template, tokenizer, cfg.model.max_length, index if labelled else None)

    encoded = {name: encode(Tracked(data[name].rows, f"encoding {name}")) for name in ("train", "validation", "test")}
    classifier = build_classifier(cfg, data.labels, tokenizer)
    return Setup(cfg, data.labels, tokenizer, classifier, encoded, data, encode)


def train(cfg: Config, *, overwrite: bool = False, resume: bool = False) -> TrainResult:
    """Train per the config and write a complete run directory; returns the test metrics.

    `resume` continues an interrupted run from its newest complete checkpoint (same config and data).
    """
    from promptft_cli.training.checkpoints import check_resumable

    if cfg.prompt.ensemble:  # the run is PET's final model; its own prompt defaults to the first pair's
        from promptft_cli.training import distillation

        cfg = distillation.final_config(cfg)
    run_dir, main = cfg.run_dir, distributed.is_main()
    distributed.check_supported(cfg)
    tracking.check_installed(cfg.train.report_to)  # before anything is written: a missing tracker is a config problem
    distributed.quiet_replicas()
    if resume:
        if cfg.train.self_training:
            raise PromptftError("--resume does not continue self-training rounds; train again with --overwrite",
                                field="train.self_training")
        check_resumable(cfg)
    else:
        runs.check_output_dir(run_dir, overwrite)
    with distributed.main_process_first():  # under a launcher only the main process writes the run directory
        if main:
            if not resume:
                _reset_run_dir(run_dir)
            save_config(cfg, run_dir / runs.CONFIG)
            runs.RunInfo("running", [], cfg.method.name, cfg.prompt.resolved_head, cfg.model.name).save(run_dir)
    handler = _log_to(run_dir / runs.LOG) if main else logging.NullHandler()
    try:
        s = setup(cfg)
        if cfg.prompt.ensemble:
            return distillation.run(s, train, _run)
        result = _run(s, run_dir, resume)
        if cfg.train.self_training:
            from promptft_cli.training import self_training

            result = self_training.run_rounds(s, result, _run)
        return result
    except (KeyboardInterrupt, Interrupted) as exc:
        if main:
            runs.RunInfo.mark(run_dir, "interrupted", str(exc) or "interrupted before a checkpoint")
        raise
    except Exception as exc:
        if main:
            runs.RunInfo.mark(run_dir, "failed", str(exc))
        raise
    finally:
        logging.getLogger("promptft").removeHandler(handler)
        handler.close()


def _run(s: Setup, run_dir: Path, resume: bool = False) -> TrainResult:
    import torch
    from accelerate import Accelerator
    from transformers import get_linear_schedule_with_warmup

    from promptft_cli.modeling import feature_cache
    from promptft_cli.modeling.batching import EpochBatches, loader
    from promptft_cli.modeling.classifier import trainable_parameters
    from promptft_cli.modeling.weights import load_weights, save_weights
    from promptft_cli.training.checkpoints import (
        Keeper,
        LoopState,
        StopOnSignal,
        remaining_batches,
    )

    cfg, tc = s.cfg, s.cfg.train
    method_lr = __import__("promptft_cli.methods", fromlist=["METHODS"]).METHODS[cfg.method.name].default_lr
    lr = tc.lr or method_lr
    accelerator = Accelerator(gradient_accumulation_steps=tc.grad_accum, mixed_precision=tc.mixed_precision,
                              **tracking.accelerator_kwargs(tc.report_to, run_dir), **distributed.accelerator_kwargs(cfg.method.name))
    distributed.check_accelerator(accelerator, tc, resume)
    main = accelerator.is_main_process
    sampler = EpochBatches(s.encoded["train"].lengths, tc.batch_size, tc.seed)
    cache = (feature_cache.FeatureCache() if feature_cache.applies(cfg.method.name, s.classifier)
             and not distributed.shards_weights(accelerator) else None)
    train_loader = distributed.shard_loader(accelerator, cache.loader("train", s.encoded["train"].labels, sampler) if cache
                                            else loader(s.encoded["train"], sampler, s.tokenizer.pad_token_id))
    params = [p for p in s.classifier.parameters() if p.requires_grad]
    if not params:
        raise PromptftError(f"method '{cfg.method.name}' leaves nothing to train with head '{cfg.prompt.resolved_head}'", field="method.name")
    # fused: one kernel per step instead of a dozen passes over every weight; with `full` the unfused step
    # took a third of CPU training time (py-spy), and Trainer defaults to the fused kernel as well.
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=tc.weight_decay, fused=_fused_adamw(params))
    steps = tc.epochs * math.ceil(len(sampler) / tc.grad_accum)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(tc.warmup_ratio * steps), steps)
    # The loader is already sharded: prepare() would re-shard it with a sampler that drops short batches.
    model, optimizer, scheduler = accelerator.prepare(s.classifier, optimizer, scheduler)
    params = distributed.clip_params(accelerator, model, params)
    metric, weights = _loss_setup(s, accelerator.device)
    keeper = Keeper(run_dir, tc.checkpoint_every, tc.keep_checkpoints, accelerator.unwrap_model(model), optimizer,
                    scheduler, accelerator.scaler, distributed.keeps_training_state(accelerator))
    st = keeper.resume() if resume else LoopState(labels=s.labels, fingerprint=runs.read_json(run_dir / runs.REPORT)["fingerprint"])
    if main:
        runs.RunInfo("running", s.labels, cfg.method.name, cfg.prompt.resolved_head, cfg.model.name).save(run_dir)
    tracking.start(accelerator, cfg.dump(), run_dir)

    n_trainable = trainable_parameters(s.classifier)
    status(f"training {cfg.method.name} + {cfg.prompt.resolved_head} head: {n_trainable:,} trainable parameters, "
           f"{len(s.encoded['train'])} train / {len(s.encoded['validation'])} validation examples, lr {lr:g}")
    log.info("trainable parameters: %d; lr %g; steps %d", n_trainable, lr, steps)
    log.info("%s", distributed.describe(accelerator, tc, len(sampler), steps))
    if accelerator.num_processes > 1:
        status(distributed.describe(accelerator, tc, len(sampler), steps))
    if cache:  # encoded here, inside the timed part: this is what training the head costs
        cache.fill(s.classifier, {k: s.encoded[k] for k in ("train", "validation")}, tc.eval_batch_size)
    with TrainProgress(steps, tc.epochs) as bar, StopOnSignal() as stop:
        bar.update(st.step)
        for epoch in st.epochs_left(tc.epochs):
            model.train()
            tick, seen = time.perf_counter(), 0
            for batch in remaining_batches(accelerator, train_loader, epoch, st.batch):
                with accelerator.accumulate(model):
                    labels = batch.pop("labels")
                    loss = imbalance.weighted_loss(model(**batch), labels, weights)
                    _check_finite(loss, st.step + 1, run_dir)
                    accelerator.backward(loss)
                    if tc.max_grad_norm and accelerator.sync_gradients:
                        accelerator.clip_grad_norm_(params, tc.max_grad_norm)
                    optimizer.step()
                    scheduler.step()
                    optimizer.zero_grad()
                seen += labels.size(0) * accelerator.num_processes
                st.batch += 1
                if accelerator.sync_gradients:
                    st.step += 1
                    loss = distributed.mean_loss(accelerator, loss)
                    if main:
                        runs.append_jsonl(run_dir / runs.HISTORY, {"step": st.step, "epoch": epoch, "loss": loss.item(), "lr": scheduler.get_last_lr()[0]})
                    tracking.log(accelerator, {"train/loss": loss.item(), "train/lr": scheduler.get_last_lr()[0]}, st.step)
                    bar.update(1, epoch=epoch, loss=loss.item(), lr=scheduler.get_last_lr()[0], eps=seen / (time.perf_counter() - tick))
                    keeper.step_done(st, stop)
            val = _validate(distributed.eval_model(accelerator, model), s, cache)  # gathered: the same in every process
            if main:
                runs.append_jsonl(run_dir / runs.HISTORY, {"epoch": epoch, "step": st.step, **{f"val_{k}": v for k, v in val.items()}})
            tracking.log(accelerator, {f"val/{k}": v for k, v in val.items()}, st.step)
            log.info("epoch %d: %s", epoch, " ".join(f"{k}={v:.4f}" for k, v in val.items()))
            bar.update(0, val=f"{metric} {val[metric]:.3f}")
            if st.best is None or _better(val, st.best, metric):
                st.best, st.best_epoch, st.waited = val, epoch, 0
                with distributed.full_weights(accelerator, model):
                    if main:
                        _save_checkpoint(accelerator.unwrap_model(model), run_dir, save_weights)
            else:
                st.waited += 1
            st.next_epoch(epoch, tc.early_stopping.patience)
            keeper.epoch_done(st, stop)
            if st.stopped_early:
                log.info("early stopping after epoch %d (best epoch %d)", epoch, st.best_epoch)
                break  # epochs_left() was evaluated when the loop began
    seconds, best_epoch, step = keeper.elapsed(), st.best_epoch, st.step
    accelerator.wait_for_everyone()  # every process loads the best checkpoint the main process wrote
    with distributed.full_weights(accelerator, model, writeback=True):
        load_weights(accelerator.unwrap_model(model), run_dir / runs.CHECKPOINT)
    cal = _calibrate(distributed.eval_model(accelerator, model), s)
    metrics = _test_metrics(distributed.eval_model(accelerator, model), s, cal)
    # Timings live in run.json, not here: metrics.json must be identical for the same config and seed.
    metrics.update(best_epoch=best_epoch, early_stopping_metric=metric, temperature=cal.temperature)
    if main:
        runs.write_json_atomic(run_dir / calibration.FILE, cal.to_json())
        runs.write_json_atomic(run_dir / runs.METRICS, metrics)
    tracking.log(accelerator, {"test/accuracy": metrics["accuracy"], "test/macro_f1": metrics["macro_f1"]}, step)
    tracking.finish(accelerator)
    info = runs.RunInfo("complete", s.labels, cfg.method.name, cfg.prompt.resolved_head, cfg.model.name,
                        best_epoch, round(seconds, 3), n_trainable)
    if main:
        plots.write_run_plots(run_dir, metrics, best_epoch)
        model_card.write_model_card(run_dir, info)
        info.save(run_dir)
        status(f"saved {plots.CURVES}, {plots.CONFUSION} and the model card {model_card.README} in {run_dir}")
    return TrainResult(run_dir, metrics, best_epoch, st.best or {}, seconds, n_trainable)


def _validate(classifier, s: Setup, cache=None) -> dict[str, float]:
    import numpy as np

    from promptft_cli.tasks.classification import metrics_from_proba
    from promptft_cli.training.distributed import predict_proba

    split = s.encoded["validation"]
    probs = cache.proba(classifier, "validation") if cache else predict_proba(classifier, split, s.cfg.train.eval_batch_size)
    metrics = metrics_from_proba(probs, split.labels, s.labels)
    loss = float(-np.log(np.clip(probs[np.arange(len(split)), split.labels], 1e-12, None)).mean())
    return {"accuracy": metrics["accuracy"], "macro_f1": metrics["macro_f1"], "loss": loss}


def _test_metrics(classifier, s: Setup, cal) -> dict[str, Any]:
    from promptft_cli.tasks.classification import metrics_from_proba
    from promptft_cli.training.distributed import predict_proba

    split = s.encoded["test"]
    return metrics_from_proba(cal.apply(predict_proba(classifier, split, s.cfg.train.eval_batch_size)), split.labels, s.labels)


def _loss_setup(s: Setup, device) -> tuple[str, Any]:
    """The early-stopping metric (macro-F1 by default on an imbalanced train split) and the loss's label weights."""
    import torch

    tc, train_labels = s.cfg.train, s.encoded["train"].labels
    hard = [int(y) for y in train_labels if not isinstance(y, (list, tuple))]  # soft (distilled) labels carry no count
    metric = imbalance.early_stopping_metric(tc.early_stopping.metric, hard, len(s.labels))
    if tc.early_stopping.metric is None and metric == "macro_f1":
        status("the train split is imbalanced: early stopping on validation macro-F1 (set train.early_stopping.metric to change)")
        log.info("train split imbalanced (%s): early stopping on macro_f1", imbalance.label_counts(hard, len(s.labels)))
    weights = imbalance.class_weights(tc.class_weights, s.labels, hard)
    if weights is not None:
        log.info("class weights: %s", dict(zip(s.labels, (round(w, 4) for w in weights))))
    return metric, None if weights is None else torch.tensor(weights, dtype=torch.float32, device=device)


def _calibrate(classifier, s: Setup):
    """Contextual prior (prompt.calibration) and validation temperature (train.temperature_scaling) of the best model."""
    from promptft_cli.training.distributed import predict_proba

    def predict(split):
        return predict_proba(classifier, split, s.cfg.train.eval_batch_size)

    val = s.encoded["validation"] if s.cfg.train.temperature_scaling else None
    return calibration.calibrate(s.cfg.prompt.calibration, predict, lambda rows: s.encode(rows, labelled=False),
                                 s.cfg.data.columns, s.tokenizer, val)


def _fused_adamw(params) -> bool:
    """torch's fused AdamW takes floating-point weights on the CPU, CUDA, XPU or MPS (torch >= 2.4 for the CPU)."""
    try:
        from torch.optim.optimizer import (
            _get_fused_kernels_supported_devices as supported,
        )
    except ImportError:  # a private helper of torch: without it, keep the portable implementation
        return False
    return all(p.is_floating_point() and p.device.type in supported() for p in params)


def _better(val: dict[str, float], best: dict[str, float], metric: str) -> bool:
    # Ties go to the later epoch only on loss; on accuracy the earlier (less overfit) model stays.
    return val[metric] < best[metric] if metric == "loss" else val[metric] > best[metric]


def _check_finite(loss, step: int, run_dir: Path) -> None:
    """Stop before a NaN/inf loss reaches the weights; nothing after the last good checkpoint is saved."""
    import torch

    if not torch.isfinite(loss.detach()).all():
        from promptft_cli.training.checkpoints import latest

        good = latest(run_dir / runs.CHECKPOINTS)
        kept = f"the last good checkpoint is {good}" if good else "no checkpoint was saved before it"
        raise PromptftError(f"training loss became {loss.item()} at step {step}; lower train.lr or check the data ({kept})",
                            field="train.lr")


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
    for name in (runs.RUN_INFO, runs.METRICS, runs.HISTORY, runs.LOG, plots.CURVES, plots.CONFUSION, model_card.README):
        (run_dir / name).unlink(missing_ok=True)
    for stale in run_dir.glob("evaluation*.*"):  # `promptft evaluate` results of the model being replaced
        stale.unlink()
    shutil.rmtree(run_dir / runs.CHECKPOINT, ignore_errors=True)
    shutil.rmtree(run_dir / runs.CHECKPOINTS, ignore_errors=True)
    shutil.rmtree(run_dir / tracking.TENSORBOARD_DIR, ignore_errors=True)


def _log_to(path: Path) -> logging.Handler:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("promptft")
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    return handler
