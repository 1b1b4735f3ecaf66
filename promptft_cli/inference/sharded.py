"""Batch prediction over several processes (`torchrun` / `accelerate launch` around `promptft predict`).

Process r of n scores rows r, r+n, r+2n, ... (every process reads the input, so all of them check every
row and stop on the same bad one), writes its predictions to a part file next to the output, and the main
process merges the parts back into input order, round-robin, writing the output atomically.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any, Iterable, Iterator

from promptft_cli.errors import PromptftError


def part_path(output: Path, rank: int, world: int) -> Path:
    return output.with_name(f".{output.name}.part-{rank}-of-{world}.jsonl")


def predict_sharded(predictor, inputs: Iterable[tuple[dict, dict]], output: Path | None,
                    batch_size: int | None = None, track=lambda rows, _label: rows) -> int:
    """Score this process's share of `inputs`; the main process merges all shares into `output`.

    Returns the rows written to `output` (on the main process; its own share elsewhere).
    """
    from promptft_cli.inference.predict import predictions, write_predictions
    from promptft_cli.training import distributed

    state = distributed.state()  # joins the processes (gloo on CPU) so they can wait for each other
    world, rank = state.num_processes, state.process_index
    if output is None:
        raise PromptftError(f"predict on {world} processes writes one file: give -o FILE (stdout would interleave)",
                            field="--output")
    mine = (item for i, item in enumerate(inputs) if i % world == rank)
    part = part_path(output, rank, world)
    written = write_predictions(track(predictions(predictor, mine, batch_size), "predict"), part)
    state.wait_for_everyone()
    if rank == 0:
        parts = [part_path(output, r, world) for r in range(world)]
        try:
            written = write_predictions(merge_parts(parts), output)
        finally:
            for p in parts:
                p.unlink(missing_ok=True)
    state.wait_for_everyone()
    return written


def merge_parts(parts: list[Path]) -> Iterator[dict[str, Any]]:
    """Rows of the part files in input order: one from each part in turn (row i is in part i % n)."""
    handles = [p.open(encoding="utf-8") for p in parts]
    missing = object()
    try:
        for line in itertools.chain.from_iterable(itertools.zip_longest(*handles, fillvalue=missing)):
            if line is not missing:
                yield json.loads(line)
    finally:
        for h in handles:
            h.close()
