"""Scale-out: one training job over several processes (`accelerate launch`, `torchrun`) and devices.

`train.batch_size` is the batch of one forward/backward pass summed over all processes: each process
takes an equal slice of every batch, so the effective batch per optimiser step (batch_size ×
grad_accum) and the number of optimiser steps are what the config says, on one process or on eight.
Only the main process writes the run directory or prints; evaluation scores each example exactly once,
on one of the processes, and gathers the scores, so its metrics equal a single-process evaluation.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
from typing import TYPE_CHECKING, Any, Iterator, Sequence

from promptft_cli.errors import PromptftError

if TYPE_CHECKING:
    import torch

    from promptft_cli.config import Config, TrainConfig
    from promptft_cli.tasks.base import Task

# Methods that update backbone weights in place: they cannot train 8/4-bit weights, and fp16 weights
# lose AdamW's small updates to rounding (the loss turns NaN within a few steps).
IN_PLACE_METHODS = ("full", "bitfit")


# What torchrun / accelerate launch (and mpirun, for multi-CPU accelerate) tell each process; read without
# importing torch so the CLI can ask cheaply.
_RANK = ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK")
_WORLD = ("WORLD_SIZE", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "MV2_COMM_WORLD_SIZE")


def _env_int(names: tuple[str, ...], default: int) -> int:
    return next((int(os.environ[n]) for n in names if os.environ.get(n, "").isdigit()), default)


def is_main() -> bool:
    """True in the process that writes and prints: rank 0 under a launcher, or the only process."""
    return _env_int(_RANK, 0) == 0


def world_size() -> int:
    """Processes in the job as the launcher set it (1 without a launcher)."""
    return _env_int(_WORLD, 1)


def state():
    """accelerate's view of this process (rank, device, backend), created the same way everywhere."""
    from accelerate import PartialState

    return PartialState(cpu=_cpu_only())


def _cpu_only() -> bool:
    # Launched on a machine without an accelerator, accelerate must be told to join the processes over gloo:
    # otherwise each process silently trains alone on all the data (`accelerate launch --cpu` says so itself).
    import torch

    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return True
    has_accelerator = torch.accelerator.is_available() if hasattr(torch, "accelerator") else torch.cuda.is_available()
    return world_size() > 1 and not has_accelerator


def check_supported(cfg: "Config") -> None:
    """Refuse precision and placement settings this machine or launch cannot honour, before anything is written."""
    import torch

    m, tc = cfg.model, cfg.train
    cuda = torch.cuda.is_available()
    if m.load_in_8bit and m.load_in_4bit:
        raise PromptftError("choose one of model.load_in_8bit and model.load_in_4bit", field="model.load_in_4bit")
    quantized = "model.load_in_8bit" if m.load_in_8bit else "model.load_in_4bit" if m.load_in_4bit else None
    if quantized and cfg.method.name in IN_PLACE_METHODS:
        raise PromptftError(f"method '{cfg.method.name}' trains the backbone's weights, which cannot be 8/4-bit; "
                            "use lora or a prompt method with quantised weights", field=quantized)
    if m.dtype == "float16" and cfg.method.name in IN_PLACE_METHODS:
        raise PromptftError(f"method '{cfg.method.name}' would train float16 weights, whose updates round away "
                            "(NaN loss); use model.dtype bfloat16, or float32 with train.mixed_precision fp16",
                            field="model.dtype")
    if tc.mixed_precision == "fp16" and not cuda:
        raise PromptftError("train.mixed_precision fp16 needs a CUDA GPU (on CPU accelerate would silently train "
                            "in float32); use bf16 or no", field="train.mixed_precision")
    if tc.mixed_precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
        raise PromptftError("this GPU has no bfloat16 support; use train.mixed_precision fp16", field="train.mixed_precision")
    if m.device_map and world_size() > 1:
        raise PromptftError(f"model.device_map spreads one model over the GPUs of a single process; it cannot be "
                            f"combined with {world_size()} launched processes (unset it, or launch one process)",
                            field="model.device_map")
    if tc.batch_size < world_size():
        raise PromptftError(f"train.batch_size {tc.batch_size} is split over {world_size()} processes; "
                            f"use at least {world_size()}", field="train.batch_size")


def single_process_only(what: str, field: str | None = None) -> None:
    """Refuse work that writes outside one run directory when several processes were launched."""
    if world_size() > 1:
        raise PromptftError(f"{what} runs as a single process; start it without accelerate launch / torchrun", field=field)


def main_process_first() -> contextlib.AbstractContextManager:
    """The main process runs the block first (e.g. writes prepared data); the others then run it (and read)."""
    if world_size() == 1:
        return contextlib.nullcontext()
    return state().main_process_first()


def quiet_replicas() -> None:
    """In every process but the main one: no bars, status lines, warnings or library chatter (they would repeat N times)."""
    if is_main():
        return
    import warnings

    from transformers.utils import logging as hf_logging

    from promptft_cli.progress import set_quiet

    set_quiet(True)
    logging.getLogger("promptft").setLevel(logging.ERROR)
    hf_logging.set_verbosity_error()
    warnings.simplefilter("ignore")


def accelerator_kwargs(method: str) -> dict[str, Any]:
    """Tell accelerate that our batches are split over processes, not multiplied by their number.

    With `split_batches` the learning-rate scheduler advances once per optimiser step; otherwise accelerate
    would step it once per process, as it does for loaders it shards itself.
    """
    from accelerate import DataLoaderConfiguration
    from accelerate.utils import DistributedDataParallelKwargs

    # Training the backbone in place also trains weights that never reach the loss (a BERT pooler under
    # mean pooling): DDP must look for them each step or it stops at the second one waiting for their
    # gradients. Adapters, prompts and heads are all used, and the search costs a graph walk per step.
    ddp = DistributedDataParallelKwargs(find_unused_parameters=method in IN_PLACE_METHODS)
    return {"dataloader_config": DataLoaderConfiguration(split_batches=True), "kwargs_handlers": [ddp], "cpu": _cpu_only()}


class ShardedBatches:
    """This process's slice of every batch from `batches`; every process gets the same number of equal slices.

    accelerate's own BatchSamplerShard expects every batch but the last to be full, and silently drops
    examples when a short batch comes earlier, as the length-grouped EpochBatches yields one per pool.
    """

    def __init__(self, batches, num_processes: int, index: int) -> None:
        self.batches, self.num_processes, self.index = batches, num_processes, index

    def set_epoch(self, epoch: int) -> None:
        self.batches.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in self.batches:
            yield shard(batch, self.num_processes, self.index)

    def __len__(self) -> int:
        return len(self.batches)


def shard(batch: Sequence[int], num_processes: int, index: int) -> list[int]:
    """Slice `index` of `num_processes` equal, contiguous slices of `batch` (contiguous: lengths stay grouped).

    A batch that does not divide evenly is filled up by repeating its first examples, as PyTorch's
    DistributedSampler does: processes must run in lockstep, so no slice may be shorter.
    """
    size = -(-len(batch) // num_processes)
    padded = (list(batch) * num_processes)[: size * num_processes]
    return padded[index * size : (index + 1) * size]


def shard_loader(accelerator, loader):
    """The training DataLoader, sliced per process and placed on this process's device (in place of `prepare`)."""
    from accelerate.data_loader import DataLoaderShard

    batches = ShardedBatches(loader.batch_sampler, accelerator.num_processes, accelerator.process_index)
    return DataLoaderShard(loader.dataset, device=accelerator.device, batch_sampler=batches,
                           collate_fn=loader.collate_fn, generator=loader.generator, num_workers=loader.num_workers)


def check_accelerator(accelerator, tc: "TrainConfig", resume: bool = False) -> None:
    """The launch may not change what the config says: gradient accumulation comes from train.grad_accum.

    Under DeepSpeed, also hand it what it would otherwise read from a prepared loader or its own config.
    """
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if resume and kind in (DistributedType.FSDP, DistributedType.DEEPSPEED):
        raise PromptftError(f"--resume restores single-process and DDP runs; under {kind.value} the optimizer state is "
                            "split over the processes and is not checkpointed")
    if kind == DistributedType.FSDP:
        _check_fsdp(accelerator.state.fsdp_plugin)

    if accelerator.gradient_accumulation_steps != tc.grad_accum:
        raise PromptftError(f"the launcher asks for {accelerator.gradient_accumulation_steps} gradient accumulation "
                            f"steps but train.grad_accum is {tc.grad_accum}; promptft takes it from its config (drop "
                            "--gradient_accumulation_steps / gradient_accumulation_steps from the accelerate config)",
                            field="train.grad_accum")
    if accelerator.distributed_type != DistributedType.DEEPSPEED:
        return
    plugin = accelerator.state.deepspeed_plugin
    ds_accum = plugin.get_value("gradient_accumulation_steps")
    if ds_accum not in (None, "auto", tc.grad_accum):
        raise PromptftError(f"the DeepSpeed config sets gradient_accumulation_steps {ds_accum} but train.grad_accum is "
                            f"{tc.grad_accum}; set it to auto there", field="train.grad_accum")
    fill = {"train_micro_batch_size_per_gpu": -(-tc.batch_size // accelerator.num_processes),
            # DeepSpeed clips inside its own step (accelerator.clip_grad_norm_ does nothing there).
            "gradient_clipping": tc.max_grad_norm or 0.0}
    for key, value in fill.items():
        if plugin.is_auto(key):
            plugin.deepspeed_config[key] = value


def _check_fsdp(plugin) -> None:
    # FSDP version 1 can gather every weight into the plain module and write changes back
    # (summon_full_params), which saving and reloading the best checkpoint rely on.
    if plugin.fsdp_version != 1:
        raise PromptftError(f"promptft runs FSDP version 1; the accelerate config asks for fsdp_version "
                            f"{plugin.fsdp_version} (see configs/accelerate/fsdp.yaml)")
    if not plugin.use_orig_params:
        raise PromptftError("FSDP needs fsdp_use_orig_params: true in the accelerate config: frozen backbone weights "
                            "and trained ones share its shards (see configs/accelerate/fsdp.yaml)")


def shards_weights(accelerator) -> bool:
    """True under FSDP: no process holds all the weights outside a forward pass."""
    from accelerate.utils import DistributedType

    return accelerator.distributed_type == DistributedType.FSDP


def keeps_training_state(accelerator) -> bool:
    """Whether this process writes resumable checkpoints (checkpoints/step-N): the main one, unless FSDP or
    DeepSpeed split the optimizer state over the processes (then only the best weights are saved)."""
    from accelerate.utils import DistributedType

    return accelerator.is_main_process and accelerator.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED)


def clip_params(accelerator, model, params: list) -> list:
    """The parameters to clip after prepare(): FSDP clips correctly only over all of its (sharded) parameters."""
    return list(model.parameters()) if shards_weights(accelerator) else params


@contextlib.contextmanager
def full_weights(accelerator, model, writeback: bool = False) -> Iterator[None]:
    """Inside, the plain module (accelerator.unwrap_model) holds every weight in full, so it can be saved or,
    with `writeback`, loaded into. Under FSDP every process must enter; elsewhere nothing happens."""
    if not shards_weights(accelerator):
        yield
        return
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP

    # Saving needs the full weights on the main process only, in CPU memory; loading needs them everywhere.
    with FSDP.summon_full_params(model, writeback=writeback, rank0_only=not writeback, offload_to_cpu=not writeback):
        yield


def describe(accelerator, tc: "TrainConfig", batches_per_epoch: int, steps: int) -> str:
    """One line for train.log and the console: processes, batch per process, effective batch, optimiser steps."""
    n = accelerator.num_processes
    per = -(-tc.batch_size // n)
    where = f"{n} processes ({accelerator.distributed_type.value}, {accelerator.device.type})" if n > 1 else f"1 process ({accelerator.device.type})"
    return (f"{where}: batch {tc.batch_size} = {per} per process; effective batch {tc.batch_size * tc.grad_accum} "
            f"per optimiser step (grad_accum {tc.grad_accum}); {batches_per_epoch} batches per epoch, "
            f"{steps} optimiser steps, mixed precision {accelerator.mixed_precision}")


def mean_loss(accelerator, loss: "torch.Tensor") -> "torch.Tensor":
    """The batch's loss averaged over processes: what one process would have computed on the whole batch."""
    return accelerator.reduce(loss.detach(), reduction="mean")


def eval_model(accelerator, model):
    """The module to score with: FSDP shards weights, so its wrapper must run the forward; otherwise the plain module."""
    return model if shards_weights(accelerator) else accelerator.unwrap_model(model)


def infer(task: "Task", model, split, batch_size: int) -> Any:
    """The task's outputs for every example, in the split's order, computed across all processes.

    The task's inference batches are dealt out round-robin, each scored by one process exactly as a single
    process would score it, then gathered; no example is scored twice or dropped, so metrics equal a
    single-process evaluation, and every process gets the same outputs (and takes the same early-stopping
    decision).
    """
    if state().num_processes == 1:
        return task.infer(model, split, batch_size)
    batches = task.inference_batches(model, split, batch_size)
    n, rank = state().num_processes, state().process_index
    mine = batches[rank::n]
    real = sum(len(b) for b in mine)
    # Sharded weights (FSDP) are gathered inside each forward: every process must run as many as the others.
    filler = [batches[0][:1]] * (math.ceil(len(batches) / n) - len(mine)) if batches else []
    idx, outputs = task.score(model, split, mine + filler)
    return task.assemble(_gather_pieces((idx[:real], outputs[:real]), len(split)), len(split))


def _gather_pieces(piece: tuple[list[int], Any], total: int) -> list[tuple[list[int], Any]]:
    """Every process's (indices, outputs) piece, checked to cover the `total` examples exactly once."""
    from accelerate.utils import gather_object

    pieces = gather_object([piece])  # pickled: outputs may be tensors (probabilities) or lists (texts)
    rows = [i for idx, _ in pieces for i in idx]
    if len(rows) != total or len(set(rows)) != total:
        raise RuntimeError(f"distributed evaluation scored {len(rows)} rows for {total} examples")
    return pieces


def finish() -> None:
    """Close the process group at the end of a launched run (NCCL warns about leaked resources otherwise)."""
    if world_size() > 1:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
