"""Scale-out: batch sharding, gathered evaluation, launch checks, and a real 2-process (gloo) training run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from promptft_cli.config import validate_config
from promptft_cli.errors import PromptftError
from promptft_cli.training import distributed

ROOT = Path(__file__).resolve().parents[1]


# --- sharding each batch over processes ---


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_every_example_of_an_epoch_reaches_some_process_in_equal_slices(monkeypatch, n):
    from promptft_cli.modeling import batching

    monkeypatch.setattr(batching, "POOL_BATCHES", 2)  # several short batches, in the middle of the epoch too
    lengths = [5 + (i * 7) % 23 for i in range(75)]
    batches = batching.EpochBatches(lengths, 8, seed=3)
    batches.set_epoch(2)
    per_process = [list(distributed.ShardedBatches(batches, n, rank)) for rank in range(n)]
    assert all(len(p) == len(batches) for p in per_process)  # the processes step in lockstep
    for step, global_batch in enumerate(batches):
        slices = [p[step] for p in per_process]
        assert len({len(s) for s in slices}) == 1
        assert set().union(*map(set, slices)) == set(global_batch)  # nothing dropped
        assert sum(map(len, slices)) - len(global_batch) < n  # at most n-1 repeats fill an uneven batch


def test_accelerates_own_batch_sharding_drops_examples_of_length_grouped_batches(monkeypatch):
    # Why distributed.ShardedBatches exists: BatchSamplerShard skips a short batch that is not the last.
    from accelerate.data_loader import BatchSamplerShard

    from promptft_cli.modeling import batching

    monkeypatch.setattr(batching, "POOL_BATCHES", 2)
    batches = batching.EpochBatches([10] * 75, 8, seed=3)
    covered = []
    for epoch in range(6):  # wherever the short batch lands but last, accelerate drops it
        batches.set_epoch(epoch)
        seen = {i for rank in range(2) for b in BatchSamplerShard(batches, 2, rank, split_batches=True) for i in b}
        ours = {i for rank in range(2) for b in distributed.ShardedBatches(batches, 2, rank) for i in b}
        covered.append((len(seen), len(ours)))
    assert min(theirs for theirs, _ in covered) < 75
    assert all(n == 75 for _, n in covered)


def test_a_slice_is_contiguous_so_lengths_stay_grouped():
    assert distributed.shard([1, 2, 3, 4, 5], 2, 0) == [1, 2, 3]
    assert distributed.shard([1, 2, 3, 4, 5], 2, 1) == [4, 5, 1]
    assert distributed.shard([7], 3, 2) == [7]


# --- gathered evaluation (single-process parts) ---


def test_scored_pieces_come_back_in_the_split_order():
    import torch

    from promptft_cli.tasks.classification import ClassificationTask

    probs = torch.tensor([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7]])
    out = ClassificationTask().assemble([([2, 0], probs[:2]), ([1], probs[2:])], total=3)
    assert (out == probs[[1, 2, 0]].numpy()).all()


def test_gathering_refuses_pieces_that_miss_or_repeat_an_example(monkeypatch):
    import accelerate.utils

    monkeypatch.setattr(accelerate.utils, "gather_object", lambda obj: obj + obj)  # as if two processes sent the same rows
    with pytest.raises(RuntimeError, match="scored 4 rows for 2 examples"):
        distributed._gather_pieces(([0, 1], [0.5, 0.5]), total=2)


def test_single_process_inference_is_the_plain_one(tiny_encoder, bert_tokenizer):
    import numpy as np

    from promptft_cli.modeling.classifier import build_classifier
    from promptft_cli.prompting.encoding import encode_rows
    from promptft_cli.prompting.templates import parse_template
    from promptft_cli.tasks.classification import ClassificationTask

    cfg = validate_config({"model": {"name": str(tiny_encoder)}, "data": {"train": "x.csv"}, "method": "head"})
    classifier = build_classifier(cfg, ["neg", "pos"], bert_tokenizer)
    rows = [{"text": "it was " + "great " * (i % 5)} for i in range(11)]
    split = encode_rows(rows, parse_template("{text}"), bert_tokenizer, 32)
    task = ClassificationTask()
    np.testing.assert_array_equal(distributed.infer(task, classifier, split, 4), task.infer(classifier, split, 4))
    # Other batch compositions change the last bits: why each process scores whole batches, as one process would.
    np.testing.assert_allclose(task.infer(classifier, split, 4), task.infer(classifier, split, 11), atol=1e-6)


# --- what a launch or a machine cannot do ---


def _cfg(**sections):
    raw = {"model": {"name": "default"}, "data": {"train": "x.csv"}, "method": {"name": "lora"}}
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value}
    return validate_config(raw)


@pytest.mark.parametrize("sections, field, match", [
    ({"model": {"load_in_8bit": True, "load_in_4bit": True}}, "model.load_in_4bit", "choose one"),
    ({"model": {"load_in_8bit": True}, "method": {"name": "full"}}, "model.load_in_8bit", "cannot be 8/4-bit"),
    ({"model": {"dtype": "float16"}, "method": {"name": "bitfit"}}, "model.dtype", "float16 weights"),
])
def test_precision_settings_that_cannot_train_are_refused(sections, field, match):
    with pytest.raises(PromptftError, match=match) as err:
        distributed.check_supported(_cfg(**sections))
    assert err.value.field == field


def test_fp16_mixed_precision_without_a_gpu_is_refused_not_silently_ignored():
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present")
    with pytest.raises(PromptftError, match="fp16 needs a CUDA GPU"):
        distributed.check_supported(_cfg(train={"mixed_precision": "fp16"}))
    distributed.check_supported(_cfg(train={"mixed_precision": "bf16"}))  # bf16 autocast works on CPU


def test_device_map_and_tiny_batches_are_refused_under_a_launcher(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(PromptftError, match="device_map") as err:
        distributed.check_supported(_cfg(model={"device_map": "auto"}))
    assert err.value.field == "model.device_map"
    with pytest.raises(PromptftError, match="split over 4 processes"):
        distributed.check_supported(_cfg(train={"batch_size": 2}))


def test_multi_seed_runs_refuse_a_launcher(monkeypatch):
    distributed.single_process_only("seeds")  # one process: fine
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(PromptftError, match="single process; start it without accelerate launch"):
        distributed.single_process_only("seeds", field="data.few_shot.seeds")


def test_rank_and_world_size_come_from_the_launcher(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMI_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert distributed.is_main() and distributed.world_size() == 1
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert not distributed.is_main() and distributed.world_size() == 2
    monkeypatch.delenv("RANK")
    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "0")  # mpirun, as accelerate uses for multi-CPU
    assert distributed.is_main()


def _accelerator(kind: str, accum: int = 1, plugin=None):
    from types import SimpleNamespace

    from accelerate.utils import DistributedType

    state = SimpleNamespace(fsdp_plugin=plugin, deepspeed_plugin=plugin)
    return SimpleNamespace(distributed_type=DistributedType[kind], gradient_accumulation_steps=accum, num_processes=4,
                           state=state, is_main_process=True)


def test_the_launcher_cannot_change_gradient_accumulation():
    tc = _cfg(train={"grad_accum": 2}).train
    distributed.check_accelerator(_accelerator("MULTI_GPU", accum=2), tc)
    with pytest.raises(PromptftError, match="asks for 4 gradient accumulation steps") as err:
        distributed.check_accelerator(_accelerator("MULTI_GPU", accum=4), tc)
    assert err.value.field == "train.grad_accum"


def test_sharded_backends_refuse_what_they_cannot_checkpoint():
    from types import SimpleNamespace

    tc = _cfg().train
    fsdp1 = SimpleNamespace(fsdp_version=1, use_orig_params=True)
    distributed.check_accelerator(_accelerator("FSDP", plugin=fsdp1), tc)
    with pytest.raises(PromptftError, match="--resume restores single-process and DDP runs"):
        distributed.check_accelerator(_accelerator("FSDP", plugin=fsdp1), tc, resume=True)
    with pytest.raises(PromptftError, match="fsdp_version 2"):
        distributed.check_accelerator(_accelerator("FSDP", plugin=SimpleNamespace(fsdp_version=2, use_orig_params=True)), tc)
    with pytest.raises(PromptftError, match="fsdp_use_orig_params: true"):
        distributed.check_accelerator(_accelerator("FSDP", plugin=SimpleNamespace(fsdp_version=1, use_orig_params=False)), tc)
    assert not distributed.keeps_training_state(_accelerator("DEEPSPEED"))
    assert distributed.keeps_training_state(_accelerator("MULTI_GPU"))


def test_deepspeed_gets_micro_batch_and_clipping_from_the_config():
    class Plugin:
        deepspeed_config = {"train_micro_batch_size_per_gpu": "auto", "gradient_clipping": "auto",
                            "gradient_accumulation_steps": "auto"}

        def is_auto(self, key):
            return self.deepspeed_config.get(key) == "auto"

        def get_value(self, key):
            return self.deepspeed_config.get(key)

    plugin = Plugin()
    distributed.check_accelerator(_accelerator("DEEPSPEED", plugin=plugin), _cfg(train={"batch_size": 18, "max_grad_norm": 0.5}).train)
    assert plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == 5  # 18 over 4 processes: slices of 5
    assert plugin.deepspeed_config["gradient_clipping"] == 0.5
    plugin.deepspeed_config["gradient_accumulation_steps"] = 8
    with pytest.raises(PromptftError, match="DeepSpeed config sets gradient_accumulation_steps 8"):
        distributed.check_accelerator(_accelerator("DEEPSPEED", plugin=plugin), _cfg().train)


@pytest.mark.parametrize("name, kind", [("ddp", "MULTI_GPU"), ("fsdp", "FSDP"), ("deepspeed_zero2", "DEEPSPEED")])
def test_example_accelerate_configs_are_valid(name, kind):
    from accelerate.commands.config.config_args import load_config_from_file

    path = ROOT / "configs" / "accelerate" / f"{name}.yaml"
    cfg = load_config_from_file(str(path))
    assert cfg.distributed_type == kind
    assert cfg.mixed_precision == "no"  # promptft's own train.mixed_precision decides
    if name == "fsdp":  # what distributed.check_accelerator requires of an FSDP launch
        assert cfg.fsdp_config["fsdp_version"] == 1 and cfg.fsdp_config["fsdp_use_orig_params"] is True
    if name == "deepspeed_zero2":  # promptft fills these from its config
        assert cfg.deepspeed_config["zero_stage"] == 2 and "gradient_accumulation_steps" not in cfg.deepspeed_config
    assert path.read_text().startswith(f"# accelerate launch --config_file configs/accelerate/{name}.yaml")


# --- a real launch: 2 processes on the CPU, gloo backend ---


def _gloo_available() -> bool:
    import torch.distributed as dist

    return dist.is_available() and dist.is_gloo_available()


@pytest.mark.multiprocess
@pytest.mark.skipif(not _gloo_available(), reason="torch.distributed with the gloo backend is unavailable")
def test_two_process_run_equals_its_single_process_evaluation(toy_project):
    from promptft_cli.inference.evaluate import evaluate_target

    # Odd sizes on purpose: batch 5 splits 3 + 3 (one repeat), the test split's 7 inference batches of 3
    # go 4 / 3 to the processes, and grad_accum 2 leaves a short accumulation window at each epoch end.
    config = _with_train(toy_project, batch_size=5, grad_accum=2, eval_batch_size=3, epochs=2)
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "promptft_cli", "train", str(config), "--json"]
    done = subprocess.run(cmd, cwd=config.parent, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]

    run_dir = config.parent / "run"
    printed = json.loads(done.stdout)  # exactly one JSON document: only the main process printed
    assert [p.name for p in config.parent.iterdir() if p.is_dir()] == ["run"]
    assert json.loads((run_dir / "run.json").read_text())["status"] == "complete"

    # Metrics gathered from both processes equal a one-process evaluation of the saved checkpoint.
    single, _ = evaluate_target(run_dir)
    saved = json.loads((run_dir / "metrics.json").read_text())
    for key in ("accuracy", "macro_f1", "n", "confusion_matrix", "per_class"):
        assert saved[key] == single[key] == printed[key], key
    assert single["n"] == 20

    # The config's numbers, not the launch's: 72 train rows / batch 5 = 15 batches, 8 optimiser steps per epoch.
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    steps = [h["step"] for h in history if "loss" in h]
    assert steps == list(range(1, 2 * math.ceil(15 / 2) + 1))  # no step written twice, none missing
    assert [h["epoch"] for h in history if "val_accuracy" in h] == [1, 2]
    log = (run_dir / "train.log").read_text().splitlines()
    assert len(log) == len(set(log))  # no line written by both processes
    assert sum("epoch 1:" in line for line in log) == 1
    assert any("2 processes (MULTI_CPU" in line and "effective batch 10 per optimiser step" in line
               and "16 optimiser steps" in line for line in log), log


def _with_train(config: Path, **train) -> Path:
    import yaml

    raw = yaml.safe_load(config.read_text())
    raw["method"] = {"name": "bitfit"}  # trains backbone weights: gradients must be synchronised
    raw["train"] = {**raw["train"], **train}
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    return config
