"""The training recipe: set up data and model, run the loop, keep the best checkpoint, test it."""

from __future__ import annotations

import logging
import math
import shutil
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

from promptft_cli import runs
from promptft_cli.config import Config, save_config
from promptft_cli.errors import Interrupted, PromptftError
from promptft_cli.methods import METHODS
from promptft_cli.progress import Tracked, TrainProgress, status
from promptft_cli.runs import model_card, plots
from promptft_cli.tasks import calibration, imbalance
from promptft_cli.tasks.base import Encoder, Metrics, Task, get_task
from promptft_cli.training import distributed, optim, tracking

if TYPE_CHECKING:
    import torch
    from accelerate import Accelerator
    from torch import nn
    from transformers import PreTrainedTokenizerBase

    from promptft_cli.data.reading import PreparedData
    from promptft_cli.modeling.feature_cache import FeatureCache
    from promptft_cli.prompting.encoding import EncodedSplit
    from promptft_cli.training.checkpoints import Keeper, LoopState, StopOnSignal

log = logging.getLogger("promptft.train")


@dataclass
class Run:
    """A finished training run: where it was written and what its best checkpoint scored."""

    run_dir: Path
    metrics: Metrics
    """The task's test metrics of the best checkpoint (what metrics.json holds)."""
    best_epoch: int
    best_validation: dict[str, float]
    train_seconds: float
    trainable_parameters: int


@dataclass
class Setup:
    """Everything the loop needs, built once from the config."""

    cfg: Config
    task: Task
    labels: list[str]
    """The run's label set (empty for a task without labels)."""
    tokenizer: "PreTrainedTokenizerBase"
    model: "nn.Module"
    encoded: dict[str, "EncodedSplit"]
    """train / validation / test, encoded once."""
    data: "PreparedData"
    """The prepared splits (rows), for self-training's pseudo-labelled rounds."""
    encode: Encoder
    """rows -> encoded split with this run's template, tokenizer and targets (the task's encoder)."""


def setup(cfg: Config) -> Setup:
    """Seed, prepare the data, encode every split once, build the task's model."""
    from accelerate.utils import set_seed

    from promptft_cli.data.prepare import prepare
    from promptft_cli.modeling.loading import load_tokenizer

    set_seed(cfg.train.seed)
    task = get_task(cfg.task)
    tokenizer = load_tokenizer(cfg.model, cfg.base_dir)
    with distributed.main_process_first():  # the others then read what the main process prepared
        data = prepare(cfg, tokenizer)
    encode = task.encoder(cfg, tokenizer, data)
    # On a first run prepare has just tokenized every split: the encoder cuts those ids, it doesn't tokenize again.
    encoded = {name: encode(Tracked(data[name].rows, f"encoding {name}"), tokens=data[name].tokens)
               for name in ("train", "validation", "test")}
    model = task.build_model(cfg, tokenizer, data.labels)
    return Setup(cfg, task, data.labels, tokenizer, model, encoded, data, encode)


def train(cfg: Config, *, overwrite: bool = False, resume: bool = False) -> Run:
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
            runs.RunInfo("running", [], cfg.method.name, cfg.head, cfg.model.name).save(run_dir)
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


def _run(s: Setup, run_dir: Path, resume: bool = False) -> Run:
    """One training run: set up, train epoch by epoch, validate, keep the best checkpoint, test it."""
    from promptft_cli.modeling.weights import load_weights
    from promptft_cli.training.checkpoints import LoopState, StopOnSignal

    cfg, tc, task = s.cfg, s.cfg.train, s.task
    metric = _loss_setup(s)
    p = _prepare(s, run_dir, resume)
    st = p.keeper.resume() if resume else LoopState(labels=s.labels, fingerprint=runs.read_json(run_dir / runs.REPORT)["fingerprint"])
    if p.main:
        runs.RunInfo("running", s.labels, cfg.method.name, cfg.head, cfg.model.name).save(run_dir)
    tracking.start(p.accelerator, cfg.dump(), run_dir)
    _announce(s, p)
    if p.cache:  # encoded here, inside the timed part: this is what training the head costs
        p.cache.fill(s.model, {k: s.encoded[k] for k in ("train", "validation")}, tc.eval_batch_size)
    with TrainProgress(p.steps, tc.epochs) as bar, StopOnSignal() as stop:
        bar.update(st.step)
        for epoch in st.epochs_left(tc.epochs):
            _train_epoch(s, p, st, epoch, run_dir, bar, stop)
            val = task.validation_metrics(_outputs(s, p, "validation"), s.encoded["validation"], s.labels)
            _record_validation(p, run_dir, epoch, st.step, val)
            bar.update(0, val=f"{metric} {val[metric]:.3f}")
            if st.best is None or _better(val, st.best, metric):
                st.best, st.best_epoch, st.waited = val.to_dict(), epoch, 0
                with distributed.full_weights(p.accelerator, p.model):
                    if p.main:
                        _save_checkpoint(p.accelerator.unwrap_model(p.model), run_dir)
            else:
                st.waited += 1
            st.next_epoch(epoch, tc.early_stopping.patience)
            p.keeper.epoch_done(st, stop)
            if st.stopped_early:
                log.info("early stopping after epoch %d (best epoch %d)", epoch, st.best_epoch)
                break  # epochs_left() was evaluated when the loop began
    seconds = p.keeper.elapsed()
    p.accelerator.wait_for_everyone()  # every process loads the best checkpoint the main process wrote
    with distributed.full_weights(p.accelerator, p.model, writeback=True):
        load_weights(p.accelerator.unwrap_model(p.model), run_dir / runs.CHECKPOINT)
    cal = _calibrate(s, p)
    outputs = _outputs(s, p, "test")
    # Timings live in run.json, not here: metrics.json must be identical for the same config and seed.
    metrics = replace(task.test_metrics(cal.apply(outputs) if cal else outputs, s.encoded["test"], s.labels),
                      best_epoch=st.best_epoch)
    if cal is not None:
        metrics = replace(metrics, early_stopping_metric=metric, temperature=cal.temperature)
        if p.main:
            runs.write_json_atomic(run_dir / calibration.FILE, cal.to_json())
    _write_results(s, p, run_dir, metrics, st.step, st.best_epoch, seconds)
    return Run(run_dir, metrics, st.best_epoch, st.best or {}, seconds, p.trainable)


@dataclass
class _Parts:
    """What `_prepare` builds for one run: accelerate's objects, the data loader, the checkpoint keeper."""

    accelerator: "Accelerator"
    model: "nn.Module"
    optimizer: "torch.optim.Optimizer"
    scheduler: "torch.optim.lr_scheduler.LRScheduler"
    params: list["torch.nn.Parameter"]
    loader: "torch.utils.data.DataLoader"
    batches_per_epoch: int
    steps: int
    lr: float
    trainable: int
    keeper: "Keeper"
    cache: "FeatureCache | None"
    main: bool


def _prepare(s: Setup, run_dir: Path, resume: bool) -> _Parts:
    from accelerate import Accelerator
    from transformers import get_linear_schedule_with_warmup

    from promptft_cli.modeling import feature_cache
    from promptft_cli.modeling.batching import EpochBatches, loader
    from promptft_cli.modeling.classifier import trainable_parameters
    from promptft_cli.training.checkpoints import Keeper

    cfg, tc = s.cfg, s.cfg.train
    lr = tc.lr or METHODS[cfg.method.name].default_lr
    accelerator = Accelerator(gradient_accumulation_steps=tc.grad_accum, mixed_precision=tc.mixed_precision,
                              **tracking.accelerator_kwargs(tc.report_to, run_dir), **distributed.accelerator_kwargs(cfg.method.name))
    distributed.check_accelerator(accelerator, tc, resume)
    train = s.encoded["train"]
    sampler = EpochBatches(train.lengths, tc.batch_size, tc.seed)
    cache = (feature_cache.FeatureCache() if feature_cache.applies(cfg.method.name, s.model)
             and not distributed.shards_weights(accelerator) else None)
    pad_id = s.tokenizer.pad_token_id
    train_loader = distributed.shard_loader(accelerator, cache.loader("train", train, sampler) if cache
                                            else loader(len(train), sampler, lambda idx: s.task.collate(train, idx, pad_id)))
    params = [p for p in s.model.parameters() if p.requires_grad]
    if not params:
        raise PromptftError(f"method '{cfg.method.name}' leaves nothing to train with head '{cfg.prompt.resolved_head}'", field="method.name")
    optimizer = optim.adamw(s.model, params, lr, tc.weight_decay, tc.head_lr)
    steps = tc.epochs * math.ceil(len(sampler) / tc.grad_accum)
    scheduler = get_linear_schedule_with_warmup(optimizer, int(tc.warmup_ratio * steps), steps)
    # The loader is already sharded: prepare() would re-shard it with a sampler that drops short batches.
    model, optimizer, scheduler = accelerator.prepare(s.model, optimizer, scheduler)
    params = distributed.clip_params(accelerator, model, params)
    keeper = Keeper(run_dir, tc.checkpoint_every, tc.keep_checkpoints, accelerator.unwrap_model(model), optimizer,
                    scheduler, accelerator.scaler, distributed.keeps_training_state(accelerator))
    return _Parts(accelerator, model, optimizer, scheduler, params, train_loader, len(sampler), steps, lr,
                  trainable_parameters(s.model), keeper, cache, accelerator.is_main_process)


def _announce(s: Setup, p: _Parts) -> None:
    cfg, tc = s.cfg, s.cfg.train
    what = cfg.method.name + (f" + {cfg.prompt.resolved_head} head" if cfg.task == "classification" else "")
    status(f"training {what}: {p.trainable:,} trainable parameters, "
           f"{len(s.encoded['train'])} train / {len(s.encoded['validation'])} validation examples, lr {p.lr:g}")
    log.info("trainable parameters: %d; lr %g%s; steps %d", p.trainable, p.lr,
             f" (head {tc.head_lr:g})" if tc.head_lr else "", p.steps)
    log.info("%s", distributed.describe(p.accelerator, tc, p.batches_per_epoch, p.steps))
    if p.accelerator.num_processes > 1:
        status(distributed.describe(p.accelerator, tc, p.batches_per_epoch, p.steps))


def _train_epoch(s: Setup, p: _Parts, st: "LoopState", epoch: int, run_dir: Path, bar: TrainProgress,
                 stop: "StopOnSignal") -> None:
    """One pass over the training batches (the rest of an interrupted epoch when resuming)."""
    from promptft_cli.training.checkpoints import remaining_batches

    tc, accelerator = s.cfg.train, p.accelerator
    p.model.train()
    tick, seen = time.perf_counter(), 0
    for batch in remaining_batches(accelerator, p.loader, epoch, st.batch):
        with accelerator.accumulate(p.model):
            loss, n = s.task.loss(p.model, batch)
            _check_finite(loss, st.step + 1, run_dir)
            accelerator.backward(loss)
            if tc.max_grad_norm and accelerator.sync_gradients:
                accelerator.clip_grad_norm_(p.params, tc.max_grad_norm)
            p.optimizer.step()
            p.scheduler.step()
            p.optimizer.zero_grad()
        seen += n * accelerator.num_processes
        st.batch += 1
        if accelerator.sync_gradients:
            st.step += 1
            loss = distributed.mean_loss(accelerator, loss)
            lr = p.scheduler.get_last_lr()[0]
            if p.main:
                runs.append_jsonl(run_dir / runs.HISTORY, {"step": st.step, "epoch": epoch, "loss": loss.item(), "lr": lr})
            tracking.log(accelerator, {"train/loss": loss.item(), "train/lr": lr}, st.step)
            bar.update(1, epoch=epoch, loss=loss.item(), lr=lr, eps=seen / (time.perf_counter() - tick))
            p.keeper.step_done(st, stop)


def _outputs(s: Setup, p: _Parts, split: str):
    """The task's inference outputs on a split: from cached features when the cache holds it, else gathered over processes."""
    model = distributed.eval_model(p.accelerator, p.model)
    if p.cache and split in p.cache.tables:
        return p.cache.infer(model, split)
    return distributed.infer(s.task, model, s.encoded[split], s.cfg.train.eval_batch_size)


def _record_validation(p: _Parts, run_dir: Path, epoch: int, step: int, val: Metrics) -> None:
    """Validation metrics (the same in every process) into history.jsonl, the trackers and train.log."""
    if p.main:
        runs.append_jsonl(run_dir / runs.HISTORY, {"epoch": epoch, "step": step, **{f"val_{k}": v for k, v in val.items()}})
    tracking.log(p.accelerator, {f"val/{k}": v for k, v in val.items()}, step)
    log.info("epoch %d: %s", epoch, " ".join(f"{k}={v:.4f}" for k, v in val.items()))


def _write_results(s: Setup, p: _Parts, run_dir: Path, metrics: Metrics, step: int, best_epoch: int, seconds: float) -> None:
    """metrics.json, the trackers' test numbers, plots, the model card and the finished run.json."""
    cfg = s.cfg
    if p.main:
        runs.write_json_atomic(run_dir / runs.METRICS, metrics.to_dict())
    tracking.log(p.accelerator, {f"test/{k}": v for k, v in metrics.scalars().items()}, step)
    tracking.finish(p.accelerator)
    info = runs.RunInfo("complete", s.labels, cfg.method.name, cfg.head, cfg.model.name,
                        best_epoch, round(seconds, 3), p.trainable)
    if p.main:
        plots.write_run_plots(run_dir, metrics.to_dict(), best_epoch)
        model_card.write_model_card(run_dir, info)
        info.save(run_dir)
        figures = " and ".join(f for f in (plots.CURVES, plots.CONFUSION) if (run_dir / f).exists())
        status(f"saved {figures} and the model card {model_card.README} in {run_dir}")


def _loss_setup(s: Setup) -> str:
    """The early-stopping metric (classification: macro-F1 on an imbalanced train split) and the task's label weights."""
    from promptft_cli.config import TASKS

    configured = s.cfg.train.early_stopping.metric
    if s.cfg.task != "classification":
        return configured or TASKS[s.cfg.task].stopping_metrics[0]
    import torch

    hard = [int(y) for y in s.encoded["train"].labels if not isinstance(y, (list, tuple))]  # soft labels carry no count
    metric = imbalance.early_stopping_metric(configured, hard, len(s.labels))
    if configured is None and metric == "macro_f1":
        status("the train split is imbalanced: early stopping on validation macro-F1 (set train.early_stopping.metric to change)")
        log.info("train split imbalanced (%s): early stopping on macro_f1", imbalance.label_counts(hard, len(s.labels)))
    weights = imbalance.class_weights(s.cfg.train.class_weights, s.labels, hard)
    if weights is not None:
        log.info("class weights: %s", dict(zip(s.labels, (round(w, 4) for w in weights))))
    s.task.class_weights = None if weights is None else torch.tensor(weights, dtype=torch.float32)
    return metric


def _calibrate(s: Setup, p: "_Parts"):
    """Classification: the contextual prior (prompt.calibration) and validation temperature of the best model."""
    if s.cfg.task != "classification":
        return None
    model = distributed.eval_model(p.accelerator, p.model)

    def predict(split):
        return distributed.infer(s.task, model, split, s.cfg.train.eval_batch_size)

    val = s.encoded["validation"] if s.cfg.train.temperature_scaling else None
    return calibration.calibrate(s.cfg.prompt.calibration, predict, lambda rows: s.encode(rows, labelled=False),
                                 s.cfg.data.columns, s.tokenizer, val)


def _better(val: Mapping[str, float], best: Mapping[str, float], metric: str) -> bool:
    # Only a strict improvement counts, on every metric: a tie keeps the earlier (less trained, less overfit)
    # model and counts toward early-stopping patience.
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


def _save_checkpoint(model, run_dir: Path) -> None:
    """Write the new best checkpoint beside the old one, then swap, so a crash never leaves half a checkpoint."""
    from promptft_cli.modeling.weights import save_weights

    final, tmp = run_dir / runs.CHECKPOINT, run_dir / f".{runs.CHECKPOINT}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    save_weights(model, tmp)
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
