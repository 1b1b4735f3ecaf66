"""Side-by-side speed benchmark: promptft against a hand-written transformers.Trainer + peft script.

    python benchmarks/speed.py --quick        # a few minutes: small subsets, 1 epoch, 1 repetition
    python benchmarks/speed.py                # the numbers BENCHMARKS.md quotes
    python benchmarks/speed.py --case encoding  # tokenization alone: per row (as before) against batched

Case `train` (the default): both tools train the embedded MiniLM on the same files (a seeded train/validation subset of
../shared/data/<set>/train.csv and the set's test.csv), with the same method, epochs, batch size,
learning rate, max_length and seed, and each run happens in a fresh process of one process pool,
one run at a time. The two tools alternate (A B, then B A on the next repetition) so that machine
noise and warm caches fall on both alike; the table shows medians and promptft/reference ratios.

Case `encoding`: promptft's own encoding of 10,000 rows of <set>/train.csv with the embedded MiniLM's
tokenizer, row by row through the single-row `encode` (what `encode_rows` did before it was batched)
and batched through `encode_rows`, alternating in one process; then zero-shot predict throughput on
2,000 rows with either encoding in front of the same model (results: speed_encoding.json).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import random
import resource
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results" / "speed.json"
ENCODING_RESULTS = REPO / "benchmarks" / "results" / "speed_encoding.json"
METHODS = ("head", "prompt_tuning", "lora", "full")
LR = {"head": 1e-2, "prompt_tuning": 3e-2, "lora": 1e-3, "full": 3e-5}  # promptft's per-method defaults
# The targets, as promptft/reference ratios (memory: at most the reference).
TRAIN_TARGET = {"head": 20.0, "prompt_tuning": 1.5, "lora": 1.5}
PREDICT_TARGET = 2.0
NUM_VIRTUAL_TOKENS = 20
INIT_TEXT = "Classify the sentiment or topic of this text:"
LORA = {"r": 8, "alpha": 16, "dropout": 0.1, "target_modules": ["query", "value"]}

FULL = {"train_size": 1000, "val_size": 200, "test_size": 500, "epochs": 2, "head_epochs": 10, "reps": 3}
QUICK = {"train_size": 128, "val_size": 32, "test_size": 128, "epochs": 1, "head_epochs": 1, "reps": 1}
ENCODING = {"rows": 10_000, "predict_rows": 2_000, "reps": 3, "predict_reps": 1}
# The default template, and a PET-style one whose text pieces the per-row path re-tokenizes for every row.
ENCODING_TEMPLATES = ("{text}", "Review: {text} It was {mask}.")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.case == "encoding":
        return encoding_main(args)
    plan = dict(QUICK if args.quick else FULL)
    plan.update({k: v for k, v in vars(args).items() if k in plan and v is not None})
    work = Path(tempfile.mkdtemp(prefix="promptft-speed-"))
    jobs = []
    for dataset in args.datasets:
        files = write_subsets(args.data_dir / dataset, work / dataset, plan, args.seed)
        for method in args.methods:
            epochs = plan["head_epochs"] if method == "head" else plan["epochs"]
            spec = {"dataset": dataset, "method": method, "files": files, "epochs": epochs, "batch_size": args.batch_size,
                    "lr": LR[method], "max_length": args.max_length, "seed": args.seed, "work": str(work / dataset / method)}
            jobs.append(spec)
    try:
        runs = run_alternating(jobs, plan["reps"])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = summarise(runs)
    payload = {"plan": {**plan, "batch_size": args.batch_size, "max_length": args.max_length, "seed": args.seed,
                        "datasets": args.datasets, "methods": args.methods, "quick": args.quick},
               "machine": machine(), "summary": summary, "runs": runs}
    out = args.out or RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    out.with_suffix(".md").write_text(markdown(summary, payload))
    render(summary, payload)
    print(f"raw runs and summary: {out}; markdown table: {out.with_suffix('.md')}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", choices=("train", "encoding"), default="train",
                   help="train: promptft against the reference; encoding: tokenization per row against batched")
    p.add_argument("--quick", action="store_true", help="small subsets, 1 epoch, 1 repetition (< 5 min on 2 cores)")
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data", help="folder of <set>/{train,test}.csv")
    p.add_argument("--datasets", type=lambda s: s.split(","), default=["sst2", "trec"])
    p.add_argument("--methods", type=lambda s: s.split(","), default=list(METHODS))
    p.add_argument("--reps", type=int, help="repetitions per tool and case")
    p.add_argument("--train-size", dest="train_size", type=int)
    p.add_argument("--val-size", dest="val_size", type=int)
    p.add_argument("--test-size", dest="test_size", type=int)
    p.add_argument("--epochs", type=int, help="epochs for prompt_tuning, lora and full")
    p.add_argument("--head-epochs", dest="head_epochs", type=int, help="epochs for the head method")
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--rows", type=int, default=ENCODING["rows"], help="encoding case: rows encoded per repetition")
    p.add_argument("--predict-rows", dest="predict_rows", type=int, default=ENCODING["predict_rows"],
                   help="encoding case: rows predicted per repetition")
    p.add_argument("--predict-reps", dest="predict_reps", type=int, default=ENCODING["predict_reps"],
                   help="encoding case: repetitions of the predict measurement (the model's forward dominates it)")
    p.add_argument("--out", type=Path, help=f"results file (default {RESULTS.relative_to(REPO)}, "
                                            f"{ENCODING_RESULTS.relative_to(REPO)} for --case encoding)")
    args = p.parse_args(argv)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        p.error(f"unknown method {unknown[0]}; choose from {', '.join(METHODS)}")
    if not args.data_dir.is_dir():
        p.error(f"data folder not found: {args.data_dir} (pass --data-dir)")
    return args


def write_subsets(source: Path, target: Path, plan: dict, seed: int) -> dict[str, str]:
    """Seeded train/validation subsets of train.csv and a test subset, written once for both tools."""
    rows = read_rows(source / "train.csv")
    test = read_rows(source / "test.csv")
    rng = random.Random(seed)
    rng.shuffle(rows)
    rng.shuffle(test)
    n, v = plan["train_size"], plan["val_size"]
    parts = {"train": rows[:n], "validation": rows[n : n + v], "test": test[: plan["test_size"]]}
    target.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, part in parts.items():
        files[name] = str(target / f"{name}.csv")
        with open(files[name], "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=["text", "label"])
            writer.writeheader()
            writer.writerows(part)
    return files


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return [{"text": r["text"], "label": r["label"]} for r in csv.DictReader(fh)]


def run_alternating(jobs: list[dict], reps: int) -> list[dict]:
    """Every job for both tools, `reps` times, one fresh process per run, the tools' order flipping each repetition."""
    order = []
    for rep in range(reps):
        tools = ("promptft", "reference") if rep % 2 == 0 else ("reference", "promptft")
        order += [(rep, tool, spec) for spec in jobs for tool in tools]
    results = []
    # max_tasks_per_child=1: each run starts from a fresh interpreter, so peak RSS and warm-up are its own.
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        for i, (rep, tool, spec) in enumerate(order, 1):
            label = f"[{i}/{len(order)}] {spec['dataset']} {spec['method']} {tool} rep {rep + 1}"
            print(label, "...", file=sys.stderr, flush=True)
            result = pool.submit(run_promptft if tool == "promptft" else run_reference, spec).result()
            result.update(dataset=spec["dataset"], method=spec["method"], tool=tool, rep=rep)
            print(f"{label}: train {result['train_examples_per_s']:.1f} ex/s, predict {result['predict_examples_per_s']:.1f} ex/s, "
                  f"peak {result['peak_rss_mb']:.0f} MB, accuracy {result['accuracy']:.3f}", file=sys.stderr, flush=True)
            results.append(result)
    return results


def _quiet_libraries() -> None:
    import os

    # The same for both tools: no weight-loading bars or load reports in the benchmark's output.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def run_reference(spec: dict) -> dict:
    _quiet_libraries()
    sys.path.insert(0, str(REPO / "benchmarks"))
    import reference_trainer

    f = spec["files"]
    return reference_trainer.main([
        "--method", spec["method"], "--train", f["train"], "--validation", f["validation"], "--test", f["test"],
        "--epochs", str(spec["epochs"]), "--batch-size", str(spec["batch_size"]), "--lr", str(spec["lr"]),
        "--max-length", str(spec["max_length"]), "--seed", str(spec["seed"]),
        "--num-virtual-tokens", str(NUM_VIRTUAL_TOKENS), "--init-text", INIT_TEXT,
        "--lora-r", str(LORA["r"]), "--lora-alpha", str(LORA["alpha"]), "--lora-dropout", str(LORA["dropout"]),
        "--lora-targets", ",".join(LORA["target_modules"]),
    ])


def promptft_config(spec: dict) -> dict:
    method: dict = {"name": spec["method"]}
    if spec["method"] == "prompt_tuning":
        method.update(num_virtual_tokens=NUM_VIRTUAL_TOKENS, init="text", init_text=INIT_TEXT)
    elif spec["method"] == "lora":
        method.update(LORA)
    f = spec["files"]
    return {
        "model": {"name": "default", "max_length": spec["max_length"]},
        "data": {"train": f["train"], "validation": f["validation"], "test": f["test"]},
        "method": method,
        # Patience = epochs: both tools run every epoch and keep the best by validation accuracy.
        "train": {"epochs": spec["epochs"], "batch_size": spec["batch_size"], "lr": spec["lr"], "seed": spec["seed"],
                  "warmup_ratio": 0.06, "early_stopping": {"patience": spec["epochs"], "metric": "accuracy"}},
        "output_dir": spec["work"],
    }


def run_promptft(spec: dict) -> dict:
    """promptft through its Python API, timed like the reference: the training loop, then predicting raw rows."""
    started = time.perf_counter()
    _quiet_libraries()
    import gc

    from promptft_cli.config import validate_config
    from promptft_cli.inference.predict import Predictor
    from promptft_cli.progress import set_quiet
    from promptft_cli.training.loop import train

    set_quiet(True)
    cfg = validate_config(promptft_config(spec))
    result = train(cfg, overwrite=True)
    test = read_rows(Path(spec["files"]["test"]))
    gc.collect()  # `promptft predict` is a new process: the training model must not count twice here
    predictor = Predictor.from_run(result.run_dir)
    rows = [{"text": r["text"]} for r in test]
    # The reference predicts with the model its training has already run; a fresh model's first forward
    # pays one-off costs (weights paged in, kernels set up) that belong to loading, so run one first.
    predictor.proba(rows[:16])
    tick = time.perf_counter()
    probs = predictor.proba(rows)
    predict_seconds = time.perf_counter() - tick
    predicted = [predictor.labels[int(p.argmax())] for p in probs]
    n_train = len(read_rows(Path(spec["files"]["train"])))
    epochs_run = spec["epochs"]
    return {
        "tool": "promptft", "method": spec["method"], "train_examples": n_train, "epochs": epochs_run,
        "train_seconds": round(result.train_seconds, 3),
        "train_examples_per_s": round(n_train * epochs_run / result.train_seconds, 2),
        "predict_examples": len(test), "predict_seconds": round(predict_seconds, 3),
        "predict_examples_per_s": round(len(test) / predict_seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "accuracy": round(sum(p == r["label"] for p, r in zip(predicted, test)) / len(test), 4),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "checkpoint_kb": round(sum(p.stat().st_size for p in (result.run_dir / "checkpoint").rglob("*") if p.is_file()) / 1024, 1),
    }


def encoding_main(args: argparse.Namespace) -> int:
    """Rows/s of encoding per row and batched (medians, alternating order), then predict rows/s with each."""
    _quiet_libraries()
    from promptft_cli.config import validate_config
    from promptft_cli.modeling.loading import load_tokenizer
    from promptft_cli.progress import set_quiet
    from promptft_cli.prompting.encoding import encode_rows
    from promptft_cli.prompting.templates import parse_template

    set_quiet(True)
    reps, dataset = args.reps or ENCODING["reps"], args.datasets[0]
    rows = read_rows(args.data_dir / dataset / "train.csv")
    random.Random(args.seed).shuffle(rows)
    rows = [{"text": r["text"]} for r in rows[: args.rows]]
    cfg = validate_config(zero_shot_config(args.max_length))
    tokenizer = load_tokenizer(cfg.model, cfg.base_dir)
    cases = []
    for source in ENCODING_TEMPLATES:
        template = parse_template(source)
        paths = {"per_row": lambda: per_row_split(rows, template, tokenizer, args.max_length),
                 "batched": lambda: encode_rows(rows, template, tokenizer, args.max_length)}
        timings, splits = alternate(paths, reps)
        if splits["per_row"] != splits["batched"]:
            raise SystemExit(f"the two paths encode {source!r} differently")
        cases.append(rates(f"encode {len(rows):,} rows, template {source!r}", len(rows), timings))
    cases.append(predict_case(cfg, rows[: args.predict_rows], args.predict_reps))
    payload = {"plan": {"case": "encoding", "dataset": dataset, "rows": len(rows), "predict_rows": args.predict_rows,
                        "reps": reps, "predict_reps": args.predict_reps, "max_length": args.max_length, "seed": args.seed, "model": "default"},
               "machine": machine(), "cases": cases, "last_train_case_predict": last_predict_figures()}
    out = args.out or ENCODING_RESULTS
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(payload, indent=2) + "\n")
    out.with_suffix(".md").write_text(encoding_markdown(payload))
    print(encoding_markdown(payload))
    print(f"raw timings and medians: {out}; markdown table: {out.with_suffix('.md')}")
    return 0


def zero_shot_config(max_length: int) -> dict:
    """The SST-2 recipe's zero-shot scorer (MiniLM, label phrases; see sst2_recipe.py), nothing trained."""
    words = {"negative": ["a terrible movie", "a bad film"], "positive": ["a great movie", "a good film"]}
    return {"model": {"name": "default", "max_length": max_length}, "data": {"train": "unused.csv"},
            "prompt": {"template": "{text}", "verbalizer": words, "head": "verbalizer"}}


def per_row_split(rows, template, tokenizer, max_length: int):
    """Encoding as `encode_rows` did before it was batched: the single-row `encode`, one row after the other."""
    from promptft_cli.prompting.encoding import EncodedSplit, encode

    encoded = [encode(template, row, tokenizer, max_length) for row in rows]
    return EncodedSplit([e.input_ids for e in encoded], [e.mask_position for e in encoded],
                        [e.soft_positions for e in encoded], None, sum(e.truncated for e in encoded))


def predict_case(cfg, rows: list[dict], reps: int) -> dict:
    """Zero-shot predict rows/s, raw text to probabilities with the model loaded, behind either encoding."""
    from promptft_cli.inference.predict import Predictor

    predictor = Predictor.from_config(cfg)
    predictor.proba(rows[:16])  # one-off costs of a fresh model's first forward belong to loading (see run_promptft)
    paths = {"per_row": lambda: predictor.infer(per_row_split(rows, predictor.template, predictor.tokenizer, cfg.model.max_length)),
             "batched": lambda: predictor.proba(rows)}
    timings, probs = alternate(paths, reps)
    if not (probs["per_row"] == probs["batched"]).all():
        raise SystemExit("predict gives different probabilities behind the two encodings")
    return rates(f"predict {len(rows):,} rows (zero-shot, encoding included)", len(rows), timings)


def alternate(paths: dict, reps: int) -> tuple[dict[str, dict[str, list[float]]], dict]:
    """Wall and CPU seconds of each path per repetition, the order flipping each time (as the train case does)."""
    timings: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in paths}
    results = {}
    for rep in range(reps):
        for name in (list(paths) if rep % 2 == 0 else list(paths)[::-1]):
            tick, cpu = time.perf_counter(), time.process_time()
            results[name] = paths[name]()
            timings[name]["wall"].append(time.perf_counter() - tick)
            timings[name]["cpu"].append(time.process_time() - cpu)
            print(f"rep {rep + 1}/{reps} {name}: {timings[name]['wall'][-1]:.2f} s ({timings[name]['cpu'][-1]:.2f} s CPU)",
                  file=sys.stderr, flush=True)
    return timings, results


def rates(case: str, n: int, timings: dict[str, dict[str, list[float]]]) -> dict:
    """Rows per wall second, and per CPU second of this process (all its threads), which a busy machine disturbs less."""
    out: dict = {"case": case, "rows": n}
    for clock, suffix in (("wall", "rows_per_s"), ("cpu", "rows_per_cpu_s")):
        per_row, batched = (round(n / statistics.median(timings[k][clock]), 1) for k in ("per_row", "batched"))
        out.update({f"per_row_{suffix}": per_row, f"batched_{suffix}": batched, f"ratio_{clock}": round(batched / per_row, 2)})
    out["seconds"] = {k: {c: [round(t, 3) for t in v] for c, v in clocks.items()} for k, clocks in timings.items()}
    return out


def last_predict_figures() -> dict:
    """promptft's predict rows/s in the last train-case results (speed.json), for comparison."""
    if not RESULTS.exists():
        return {}
    last = json.loads(RESULTS.read_text())
    return {"date": last["machine"]["date"], "test_size": last["plan"]["test_size"],
            "predict_examples_per_s": {f"{r['dataset']} {r['method']}": r["promptft"]["predict_examples_per_s"]
                                       for r in last["summary"]}}


def encoding_markdown(payload: dict) -> str:
    plan, m = payload["plan"], payload["machine"]
    lines = [f"Medians of {plan['reps']} alternating repetitions (predict: {plan['predict_reps']}); "
             f"{plan['dataset']} train.csv rows (seed {plan['seed']}); "
             f"max_length {plan['max_length']}; embedded MiniLM; {m['nproc']} cores ({m['cpu']}), "
             f"{m['torch_threads']} torch threads; {m['date']}.", "",
             "| case | per row (before) rows/s | batched (after) rows/s | ratio | per row / batched rows per CPU-s | CPU ratio |",
             "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {c['case']} | {c['per_row_rows_per_s']:,.1f} | {c['batched_rows_per_s']:,.1f} | {c['ratio_wall']:.2f}× | "
              f"{c['per_row_rows_per_cpu_s']:,.1f} / {c['batched_rows_per_cpu_s']:,.1f} | {c['ratio_cpu']:.2f}× |"
              for c in payload["cases"]]
    return "\n".join(lines) + "\n"


def summarise(runs: list[dict]) -> list[dict]:
    """Medians per (dataset, method, tool) and the promptft/reference ratios with their targets."""
    rows = []
    cases = sorted({(r["dataset"], r["method"]) for r in runs}, key=lambda c: (c[0], METHODS.index(c[1])))
    for dataset, method in cases:
        med = {}
        for tool in ("promptft", "reference"):
            mine = [r for r in runs if (r["dataset"], r["method"], r["tool"]) == (dataset, method, tool)]
            med[tool] = {k: statistics.median(r[k] for r in mine)
                         for k in ("train_examples_per_s", "predict_examples_per_s", "peak_rss_mb", "accuracy", "wall_seconds")}
            if tool == "promptft":
                med[tool]["checkpoint_kb"] = statistics.median(r["checkpoint_kb"] for r in mine)
        p, r = med["promptft"], med["reference"]
        ratios = {"train": p["train_examples_per_s"] / r["train_examples_per_s"],
                  "predict": p["predict_examples_per_s"] / r["predict_examples_per_s"],
                  "memory": p["peak_rss_mb"] / r["peak_rss_mb"]}
        targets = {"train": TRAIN_TARGET.get(method), "predict": PREDICT_TARGET, "memory": 1.0}
        met = {"train": targets["train"] is None or ratios["train"] >= targets["train"],
               "predict": ratios["predict"] >= PREDICT_TARGET, "memory": ratios["memory"] <= 1.0}
        rows.append({"dataset": dataset, "method": method, "promptft": p, "reference": r,
                     "ratios": {k: round(v, 3) for k, v in ratios.items()}, "targets": targets, "met": met,
                     "accuracy_delta": round(p["accuracy"] - r["accuracy"], 4)})
    return rows


def render(summary: list[dict], payload: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    plan = payload["plan"]
    table = Table(title=f"promptft vs transformers.Trainer + peft · medians of {plan['reps']} · "
                        f"{plan['train_size']} train / {plan['test_size']} test · {payload['machine']['nproc']} cores")
    for col in ("set", "method", "train ex/s\npromptft / ref", "train\nratio", "predict ex/s\npromptft / ref", "predict\nratio",
                "peak RSS MB\npromptft / ref", "memory\nratio", "accuracy\npromptft / ref", "ckpt KB"):
        table.add_column(col, justify="left" if col in ("set", "method") else "right")
    for row in summary:
        p, r, q, met, t = row["promptft"], row["reference"], row["ratios"], row["met"], row["targets"]
        table.add_row(
            row["dataset"], row["method"],
            f"{p['train_examples_per_s']:.1f} / {r['train_examples_per_s']:.1f}", _ratio(q["train"], met["train"], t["train"]),
            f"{p['predict_examples_per_s']:.1f} / {r['predict_examples_per_s']:.1f}", _ratio(q["predict"], met["predict"], t["predict"]),
            f"{p['peak_rss_mb']:.0f} / {r['peak_rss_mb']:.0f}", _ratio(q["memory"], met["memory"], t["memory"], "≤"),
            f"{p['accuracy']:.3f} / {r['accuracy']:.3f}", f"{p['checkpoint_kb']:,.0f}",
        )
    Console(width=150).print(table)
    print("ratio = promptft / reference; green: target met, red: missed (target in brackets); train ratios without a target are plain")


def markdown(summary: list[dict], payload: dict) -> str:
    """The same table in Markdown, for BENCHMARKS.md."""
    plan, m = payload["plan"], payload["machine"]
    lines = [f"Medians of {plan['reps']} runs per tool; {plan['train_size']} train / {plan['val_size']} validation / "
             f"{plan['test_size']} test examples; epochs {plan['epochs']} (head {plan['head_epochs']}); batch {plan['batch_size']}; "
             f"{m['nproc']} cores ({m['cpu']}); {m['date']}.", "",
             "| set | method | train ex/s promptft / ref | train ratio | predict ex/s promptft / ref | predict ratio "
             "| peak RSS MB promptft / ref | memory ratio | accuracy promptft / ref | checkpoint KB |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in summary:
        p, r, q, met, t = row["promptft"], row["reference"], row["ratios"], row["met"], row["targets"]

        def cell(key: str, sign: str = "≥") -> str:
            if t[key] is None:
                return f"{q[key]:.2f}×"
            return f"{q[key]:.2f}× {'✅' if met[key] else '❌'} ({sign}{t[key]:g})"

        lines.append(f"| {row['dataset']} | {row['method']} | {p['train_examples_per_s']:.1f} / {r['train_examples_per_s']:.1f} | "
                     f"{cell('train')} | {p['predict_examples_per_s']:.1f} / {r['predict_examples_per_s']:.1f} | {cell('predict')} | "
                     f"{p['peak_rss_mb']:.0f} / {r['peak_rss_mb']:.0f} | {cell('memory', '≤')} | "
                     f"{p['accuracy']:.3f} / {r['accuracy']:.3f} | {p['checkpoint_kb']:,.1f} |")
    return "\n".join(lines) + "\n"


def _ratio(value: float, met: bool, target: float | None, sign: str = "≥") -> str:
    if target is None:
        return f"{value:.2f}×"
    colour = "green" if met else "red"
    return f"[{colour}]{value:.2f}×[/] [dim]({sign}{target:g})[/]"


def machine() -> dict:
    import os

    import peft
    import torch
    import transformers

    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"nproc": len(os.sched_getaffinity(0)), "cpu": cpu, "python": platform.python_version(), "torch": torch.__version__,
            "transformers": transformers.__version__, "peft": peft.__version__, "torch_threads": torch.get_num_threads(),
            "date": time.strftime("%Y-%m-%d %H:%M:%S")}


if __name__ == "__main__":
    sys.exit(main())
