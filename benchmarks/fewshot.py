"""Few-shot benchmark: accuracy (mean ± std over seeds) of each head × method at k=16, next to zero-shot.

    python benchmarks/fewshot.py --quick     # minutes: SST-2 only, 2 methods, 2 seeds, 200 test rows
    python benchmarks/fewshot.py             # the table the README quotes (hours on 2 CPU cores)

The LM-BFF protocol through promptft's own few-shot code (`promptft_cli.training.fewshot`): for each seed,
k examples per class for training and k for validation are sampled from the set's train.csv, the model
trains with early stopping on that validation sample, and the set's test.csv (all of it, or a seeded
--test-limit subset) is scored; the validation and test pools are the same for every seed.
Zero-shot scores the same test rows with the template and verbalizer alone (verbalizer head only:
a fresh linear head has nothing to score with before training).

Data is read at run time from ../shared/data/<set>/{train,test}.csv (text,label) next to the
repository, or --data-dir. Results: a rich table per data set on stdout and
benchmarks/results/fewshot.json, rewritten after every finished cell so a long run can be watched
(and continued with --resume).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import random
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

METHODS = ["full", "head", "bitfit", "prompt_tuning", "p_tuning", "prefix_tuning", "lora"]
HEADS = ["linear", "verbalizer"]
SEEDS = [13, 21, 42, 87, 100]

# Templates and label words per data set. The embedded MiniLM is a sentence encoder without an LM
# head, so its verbalizer head compares the embedded text with embedded label words (LM-BFF's
# manual words for SST-2 and TREC).
TASKS: dict[str, dict[str, Any]] = {
    "sst2": {"template": "{text}", "verbalizer": {"positive": "great", "negative": "terrible"}},
    "mr": {"template": "{text}", "verbalizer": {"positive": "great", "negative": "terrible"}},
    "subj": {"template": "{text}", "verbalizer": {"subjective": "subjective", "objective": "objective"}},
    "trec": {"template": "{text}", "verbalizer": {"ABBR": "expression", "DESC": "description", "ENTY": "entity",
                                                  "HUM": "human", "LOC": "location", "NUM": "number"}},
    "snips": {"template": "{text}", "verbalizer": {
        "AddToPlaylist": "playlist", "BookRestaurant": "restaurant", "GetWeather": "weather", "PlayMusic": "music",
        "RateBook": "rating", "SearchCreativeWork": "show", "SearchScreeningEvent": "cinema"}},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="SST-2, methods head+lora, seeds 13 21, 200 test rows, 10 epochs")
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data", help="folder of <set>/{train,test}.csv")
    p.add_argument("--datasets", nargs="+", default=None, choices=sorted(TASKS), help="default: sst2 trec")
    p.add_argument("--methods", nargs="+", default=None, choices=METHODS)
    p.add_argument("--heads", nargs="+", default=None, choices=HEADS)
    p.add_argument("--seeds", nargs="+", type=int, default=None)
    p.add_argument("--k", type=int, default=16, help="examples per class (train and validation)")
    p.add_argument("--epochs", type=int, default=None, help="default 20 (quick: 10)")
    p.add_argument("--test-limit", type=int, default=None, help="score a seeded subset of this many test rows")
    p.add_argument("--demonstrations", choices=["random", "similar"], default=None,
                   help="add one LM-BFF demonstration per class to every input")
    p.add_argument("--model", default="default", help="model.name (default: the embedded MiniLM)")
    p.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "fewshot.json")
    p.add_argument("--work-dir", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    p.add_argument("--resume", action="store_true",
                   help="keep the finished cells of --out (and the finished seeds in --work-dir) and run the rest")
    args = p.parse_args(argv)
    quick = args.quick
    args.datasets = args.datasets or (["sst2"] if quick else ["sst2", "trec"])
    args.methods = args.methods or (["head", "lora"] if quick else METHODS)
    args.heads = args.heads or HEADS
    args.seeds = args.seeds or (SEEDS[:2] if quick else SEEDS)
    args.epochs = args.epochs or (10 if quick else 20)
    args.test_limit = args.test_limit or (200 if quick else None)
    return args


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def write_csv(path: Path, rows: list[dict[str, str]], fields: tuple[str, ...] = ("text", "label")) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def dataset_files(name: str, args: argparse.Namespace, work: Path) -> tuple[Path, Path, int]:
    """The set's train.csv, and its test.csv or a seeded subset of it; returns (train, test, test rows)."""
    folder = args.data_dir / name
    train, test = folder / "train.csv", folder / "test.csv"
    if not train.is_file() or not test.is_file():
        raise SystemExit(f"error: {folder} needs train.csv and test.csv (pass --data-dir)")
    rows = read_csv(test)
    if args.test_limit and len(rows) > args.test_limit:
        rows = random.Random(0).sample(rows, args.test_limit)
        test = write_csv(work / name / "test_subset.csv", rows)
    return train, test, len(rows)


def build_config(name: str, head: str, method: str, train: Path, test: Path, args: argparse.Namespace, out: Path):
    from promptft_cli.config import validate_config

    task = TASKS[name]
    prompt: dict[str, Any] = {"template": task["template"], "verbalizer": task["verbalizer"], "head": head}
    if args.demonstrations:
        prompt["demonstrations"] = {"per_class": 1, "select": args.demonstrations}
    raw = {
        "model": {"name": args.model, "max_length": 128 if args.demonstrations else 64},
        "data": {"train": str(train), "test": str(test), "few_shot": {"k": args.k, "seeds": args.seeds}},
        "prompt": prompt,
        "method": {"name": method},
        # Method default learning rates; small batches because there are only k examples per class.
        "train": {"epochs": args.epochs, "batch_size": 8, "eval_batch_size": 128,
                  "early_stopping": {"patience": 5, "metric": "accuracy"}},
        "output_dir": str(out),
    }
    cfg = validate_config(raw)
    cfg.base_dir = out.parent
    return cfg


def run_cell(cfg, keep_seeds: bool = False) -> dict[str, Any]:
    """Train every seed of one head × method; `keep_seeds` keeps seeds a stopped run finished in --work-dir."""
    from promptft_cli import runs
    from promptft_cli.errors import PromptftError
    from promptft_cli.training.fewshot import train_seeds

    started = time.perf_counter()
    try:
        if keep_seeds:  # a parent marked complete would refuse to be written into; its seeds are still kept
            (cfg.run_dir / runs.RUN_INFO).unlink(missing_ok=True)
        summary = train_seeds(cfg, overwrite=not keep_seeds, resume=keep_seeds)
    except PromptftError as exc:
        return {"status": f"rejected: {exc}", "seconds": round(time.perf_counter() - started, 1)}
    return {"status": "ok", "accuracy": summary["accuracy"], "macro_f1": summary["macro_f1"],
            "seconds": round(time.perf_counter() - started, 1)}


def zero_shot(cfg, test: Path) -> dict[str, Any]:
    """Score the test rows with the template and verbalizer alone (no run directory is needed)."""
    from promptft_cli.errors import PromptftError

    started = time.perf_counter()
    try:
        predictor = _zero_shot_predictor(cfg)
    except PromptftError as exc:
        return {"status": f"unavailable: {exc}"}
    from promptft_cli.inference.evaluate import evaluate, labelled_rows

    rows = labelled_rows(test, cfg.data.columns, cfg.data.label_column, predictor.labels, cfg.data.encoding)
    m = evaluate(predictor, rows, cfg.train.eval_batch_size)
    return {"status": "ok", "accuracy": m["accuracy"], "macro_f1": m["macro_f1"], "seconds": round(time.perf_counter() - started, 1)}


def _zero_shot_predictor(cfg):
    """The untrained classifier: backbone + verbalizer head, as `promptft evaluate CONFIG` builds it with no run."""
    from promptft_cli.inference.predict import Predictor

    return Predictor.from_config(cfg, sorted(cfg.prompt.verbalizer))


def cell_key(cell: dict[str, Any]) -> tuple:
    return cell["dataset"], cell["head"], cell["method"]


def save(results: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


def fmt(cell: dict[str, Any] | None) -> str:
    if cell is None:
        return "–"
    if cell["status"] != "ok":
        return "[dim]" + cell["status"].split(":")[0] + "[/]"
    acc = cell["accuracy"]
    if isinstance(acc, dict):
        return f"{100 * acc['mean']:.1f} ± {100 * acc['std']:.1f}"
    return f"{100 * acc:.1f}"


def render(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    meta = results["meta"]
    cells = {cell_key(c): c for c in results["cells"]}
    for name in meta["datasets"]:
        demos = f", demonstrations: {meta['demonstrations']}" if meta.get("demonstrations") else ""
        table = Table(title=f"{name} · k={meta['k']} per class · {len(meta['seeds'])} seeds",
                      caption=f"test accuracy %, mean ± std over seeds {', '.join(map(str, meta['seeds']))}; "
                              f"n_test={meta['n_test'].get(name, '?')}, model {meta['model']}{demos}")
        table.add_column("method")
        for head in meta["heads"]:
            table.add_column(f"{head} head", justify="right")
        table.add_row("zero-shot", *(fmt(cells.get((name, h, "zero-shot"))) for h in meta["heads"]), end_section=True)
        for method in meta["methods"]:
            table.add_row(method, *(fmt(cells.get((name, h, method))) for h in meta["heads"]))
        console.print(table)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    from promptft_cli.progress import configure

    configure(quiet=True)
    previous = json.loads(args.out.read_text()) if args.resume and args.out.is_file() else {"cells": []}
    done = {cell_key(c): c for c in previous["cells"] if c["status"] == "ok"}
    meta = {"datasets": args.datasets, "methods": args.methods, "heads": args.heads, "seeds": args.seeds, "k": args.k,
            "epochs": args.epochs, "test_limit": args.test_limit, "demonstrations": args.demonstrations,
            "model": args.model, "quick": args.quick, "n_test": {},
            "machine": f"{platform.machine()}, {platform.processor() or platform.system()}",
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    results = {"meta": meta, "cells": list(done.values())}
    with tempfile.TemporaryDirectory(prefix="promptft-fewshot-") as tmp:
        work = args.work_dir or Path(tmp)
        for name in args.datasets:
            train, test, meta["n_test"][name] = dataset_files(name, args, work)
            # Method by method, both heads side by side, so a partial run already fills whole table rows.
            plan = [(h, "zero-shot") for h in args.heads if h == "verbalizer"] + \
                   [(h, m) for m in args.methods for h in args.heads]
            for head, method in plan:
                if (name, head, method) in done:
                    continue
                cfg = build_config(name, head, "head" if method == "zero-shot" else method, train, test, args,
                                   work / name / f"{head}-{method}")
                cell = zero_shot(cfg, test) if method == "zero-shot" else run_cell(cfg, keep_seeds=args.resume)
                cell.update(dataset=name, head=head, method=method)
                results["cells"].append(cell)
                print(f"{name} {head:>10} {method:>14}: {fmt(cell)}  ({cell.get('seconds', 0)} s)", file=sys.stderr, flush=True)
                save(results, args.out)
    meta["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    save(results, args.out)
    render(results)
    return results


if __name__ == "__main__":
    main()
