"""Generation benchmark: SmolLM2-135M-Instruct (`default-lm`) on Multi30k en->de, promptft against Trainer + peft.

    python benchmarks/generation.py --quick          # smoke run: a handful of sentences, minutes
    python benchmarks/generation.py                  # the table BENCHMARKS.md quotes
    python benchmarks/generation.py --resume         # keep finished cells of the results file, run the rest

Rows: zero-shot, zero-shot with 3 demonstrations, prompt tuning, prefix tuning, LoRA and full
fine-tuning, each run by promptft (`promptft train` / `promptft evaluate CONFIG` for zero-shot, the
real CLI in a fresh process) and by the hand-written `benchmarks/reference_generation.py`
(transformers.Trainer + peft) on the same files: a seeded train/validation subset of Multi30k's
train.csv and the first rows of its official test set (test_2016_flickr), the same template in the
model's chat template, epochs, batch size, learning rate, lengths, seed and greedy decoding; both
keep the best epoch by validation loss. Each cell runs in a fresh process and reports BLEU and chrF++
(sacreBLEU), train seconds and peak RSS (ru_maxrss of the cell's processes). Throughput: tokens/s of
`promptft predict CONFIG input.csv` against a `transformers.pipeline("text-generation")` script on
the same inputs, both end to end from process start (model load included) and greedy with the same
batch size; generated tokens are counted the same way for both (SmolLM2's tokenizer on the output).

Data is read from ../shared/data/multi30k_en_de next to the repository (or --data-dir). Results:
benchmarks/results/generation.json, rewritten after every cell (--resume continues a run).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from multiprocessing import get_context
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "generation.json"
TEMPLATE = "Translate English to German: {source}"
INIT_TEXT = "Translate English to German:"
ROWS = ["zero_shot", "zero_shot_3_demos", "prompt_tuning", "prefix_tuning", "lora", "full"]
LR = {"prompt_tuning": 3e-2, "prefix_tuning": 1e-2, "lora": 1e-3, "full": 5e-5}
LORA = {"r": 8, "alpha": 16, "dropout": 0.05, "target_modules": ["q_proj", "v_proj"]}
NUM_VIRTUAL_TOKENS = 20
FULL = {"train_size": 256, "val_size": 32, "test_size": 100, "epochs": 1, "max_new_tokens": 64, "throughput_size": 32}
QUICK = {"train_size": 16, "val_size": 8, "test_size": 8, "epochs": 1, "max_new_tokens": 16, "throughput_size": 8}
LENGTHS = {"max_length": 128, "max_target_length": 96, "batch_size": 8, "eval_batch_size": 32, "seed": 42}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = {**(QUICK if args.quick else FULL), **LENGTHS}
    plan.update({k: v for k, v in vars(args).items() if k in plan and v is not None})
    work = Path(args.work_dir or tempfile.mkdtemp(prefix="promptft-genbench-"))
    files = write_subsets(args.data_dir, work / "data", plan)
    payload = _load(args.out) if args.resume else {}
    if payload.get("plan") not in (None, plan):
        sys.exit(f"{args.out} holds cells of another plan; run without --resume or with the same sizes")
    payload.update(plan=plan, machine=machine(), cells=payload.get("cells", {}))
    for other in args.merge:  # cells run in another process (e.g. the two tools side by side) join this file
        extra = _load(other)
        if extra.get("plan") != plan:
            sys.exit(f"{other} was run with another plan; merge only results of the same sizes")
        payload["cells"].update(extra["cells"])
    cells = [] if args.report_only else [(tool, row) for row in args.rows for tool in args.tools]
    cells += [(f"{tool}_throughput", "throughput") for tool in args.tools if args.throughput and not args.report_only]
    for tool, row in cells:
        key = f"{tool}/{row}"
        if key in payload["cells"] and "error" not in payload["cells"][key]:
            continue
        spec = {"tool": tool, "row": row, "files": files, "plan": plan, "work": str(work / tool / row)}
        print(f"[{key}] ...", file=sys.stderr, flush=True)
        result = run_isolated(spec)
        payload["cells"][key] = result
        print(f"[{key}] {_brief(result)}", file=sys.stderr, flush=True)
        _save(args.out, payload)
    payload["summary"] = summarise(payload)
    _save(args.out, payload)
    render(payload)
    args.out.with_suffix(".md").write_text(markdown(payload), encoding="utf-8")
    print(f"results: {args.out}; markdown table: {args.out.with_suffix('.md')}")
    return 0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run: 16 train / 8 test sentences, 16 new tokens")
    p.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "multi30k_en_de")
    p.add_argument("--rows", nargs="+", default=ROWS, choices=ROWS)
    p.add_argument("--tools", nargs="+", default=["promptft", "reference"], choices=["promptft", "reference"])
    p.add_argument("--no-throughput", dest="throughput", action="store_false", help="skip the predict/pipeline cells")
    for name in ("train_size", "val_size", "test_size", "epochs", "max_new_tokens", "throughput_size", "batch_size"):
        p.add_argument(f"--{name.replace('_', '-')}", dest=name, type=int)
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--work-dir", type=Path, help="where subsets and runs go (default: a temporary folder)")
    p.add_argument("--resume", action="store_true", help="keep the finished cells of --out and run the rest")
    p.add_argument("--report-only", action="store_true", help="run nothing: merge, summarise and print what --out holds")
    p.add_argument("--merge", nargs="+", type=Path, default=[], help="also take the cells of these results files (same plan)")
    args = p.parse_args(argv)
    if not (args.data_dir / "train.csv").is_file():
        p.error(f"Multi30k not found in {args.data_dir} (pass --data-dir)")
    return args


def write_subsets(source: Path, target: Path, plan: dict) -> dict[str, str]:
    """A seeded train/validation subset of train.csv and the first test_size rows of the official test set."""
    rows, test = read_pairs(source / "train.csv"), read_pairs(source / "test.csv")
    random.Random(plan["seed"]).shuffle(rows)
    n, v = plan["train_size"], plan["val_size"]
    parts = {"train": rows[:n], "validation": rows[n : n + v], "test": test[: plan["test_size"]],
             "throughput": [{"source": r["source"]} for r in test[: plan["throughput_size"]]]}
    target.mkdir(parents=True, exist_ok=True)
    files = {}
    for name, part in parts.items():
        files[name] = str(target / f"{name}.csv")
        with open(files[name], "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(part[0]))
            writer.writeheader()
            writer.writerows(part)
    return files


def read_pairs(path: Path | str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def run_isolated(spec: dict) -> dict:
    """One cell in a fresh process (spawn), so its peak RSS and warm-up are its own; errors are recorded, not raised."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn"), max_tasks_per_child=1) as pool:
        try:
            return pool.submit(run_cell, spec).result()
        except Exception as exc:  # a failing cell is a result (e.g. a method that breaks generate()), not a crash
            return {"error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[-1] if str(exc).strip() else ''}"}


def run_cell(spec: dict) -> dict:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    tool = spec["tool"]
    if tool == "reference":
        return run_reference(spec)
    if tool == "promptft":
        return run_promptft(spec)
    return run_throughput(spec, tool.removesuffix("_throughput"))


def method_of(row: str) -> str:
    return "zero_shot" if row.startswith("zero_shot") else row


def run_reference(spec: dict) -> dict:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import reference_generation

    plan, f, method = spec["plan"], spec["files"], method_of(spec["row"])
    argv = ["--method", method, "--train", f["train"], "--validation", f["validation"], "--test", f["test"],
            "--template", TEMPLATE, "--demonstrations", "3" if spec["row"] == "zero_shot_3_demos" else "0",
            "--epochs", str(plan["epochs"]), "--batch-size", str(plan["batch_size"]),
            "--eval-batch-size", str(plan["eval_batch_size"]), "--lr", str(LR.get(method, 1e-3)),
            "--max-length", str(plan["max_length"]), "--max-target-length", str(plan["max_target_length"]),
            "--max-new-tokens", str(plan["max_new_tokens"]), "--seed", str(plan["seed"]),
            "--num-virtual-tokens", str(NUM_VIRTUAL_TOKENS), "--init-text", INIT_TEXT,
            "--lora-r", str(LORA["r"]), "--lora-alpha", str(LORA["alpha"]), "--lora-dropout", str(LORA["dropout"]),
            "--lora-targets", ",".join(LORA["target_modules"])]
    return reference_generation.main(argv)


def promptft_config(spec: dict) -> dict:
    plan, f, row = spec["plan"], spec["files"], spec["row"]
    method_name = method_of(row)
    method: dict = {"name": "lora" if method_name == "zero_shot" else method_name}  # zero-shot never trains
    if method_name == "prompt_tuning":
        method.update(num_virtual_tokens=NUM_VIRTUAL_TOKENS, init="text", init_text=INIT_TEXT)
    elif method_name == "prefix_tuning":
        method.update(num_virtual_tokens=NUM_VIRTUAL_TOKENS)
    elif method_name == "lora":
        method.update(LORA)
    prompt: dict = {"template": TEMPLATE, "chat": True}
    if row == "zero_shot_3_demos":
        prompt["demonstrations"] = {"per_class": 3}  # generation: 3 solved training pairs in total
    return {
        "task": "generation",
        "model": {"name": "default-lm", "max_length": plan["max_length"], "max_target_length": plan["max_target_length"]},
        "data": {"train": f["train"], "validation": f["validation"], "test": f["test"],
                 "text_column": "source", "target_column": "target"},
        "prompt": prompt,
        "method": method,
        "generate": {"max_new_tokens": plan["max_new_tokens"], "num_beams": 1},
        # Patience = epochs and the loss metric: like the reference, every epoch runs and the best by
        # validation loss is kept.
        "train": {"epochs": plan["epochs"], "batch_size": plan["batch_size"], "eval_batch_size": plan["eval_batch_size"],
                  "lr": LR.get(method_name, 1e-3), "seed": plan["seed"], "warmup_ratio": 0.06,
                  "early_stopping": {"metric": "loss", "patience": plan["epochs"]}},
        "output_dir": spec["work"],
    }


def run_promptft(spec: dict) -> dict:
    """The real CLI in child processes: `promptft train CONFIG --json` (zero-shot: `promptft evaluate CONFIG --json`)."""
    import yaml

    started = time.perf_counter()
    work = Path(spec["work"])
    work.mkdir(parents=True, exist_ok=True)
    config = work.parent / f"{spec['row']}.yaml"
    config.write_text(yaml.safe_dump(promptft_config(spec), sort_keys=False))
    zero = spec["row"].startswith("zero_shot")
    command = ["evaluate", str(config)] if zero else ["train", str(config), "--overwrite"]
    out = _cli(command + ["--json"])
    metrics = _find_metrics(out)
    return {
        "tool": "promptft", "row": spec["row"], "train_examples": 0 if zero else spec["plan"]["train_size"],
        "train_seconds": 0.0 if zero else round(float(out.get("train_seconds", 0.0)), 3),
        "test_examples": spec["plan"]["test_size"], "bleu": round(metrics["bleu"], 2), "chrf": round(metrics["chrf"], 2),
        "signatures": metrics.get("signatures"),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "wall_seconds": round(time.perf_counter() - started, 3),
    }


def _cli(argv: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-m", "promptft_cli", *argv], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"promptft {argv[0]} exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    return json.loads(proc.stdout)  # --json prints one (indented) JSON object on stdout, nothing else


def _find_metrics(out: dict) -> dict:
    """bleu/chrf wherever the JSON puts them (top level, or under a metrics/test key)."""
    if "bleu" in out and "chrf" in out:
        return out
    for value in out.values():
        if isinstance(value, dict):
            found = _find_metrics(value)
            if found:
                return found
    return {}


def run_throughput(spec: dict, tool: str) -> dict:
    """End-to-end tokens/s from process start to the written outputs, zero-shot, greedy, the same batch size."""
    import yaml

    plan, work = spec["plan"], Path(spec["work"])
    work.mkdir(parents=True, exist_ok=True)
    out_csv = work / "out.csv"
    tick = time.perf_counter()
    if tool == "promptft":
        config = work / "zero_shot.yaml"
        config.write_text(yaml.safe_dump(promptft_config({**spec, "row": "zero_shot"}), sort_keys=False))
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        proc = subprocess.run([sys.executable, "-m", "promptft_cli", "predict", str(config), spec["files"]["throughput"],
                               "-o", str(out_csv), "--quiet"], capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise RuntimeError(f"promptft predict exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    else:
        code = PIPELINE_SCRIPT.format(repo=str(REPO), input=spec["files"]["throughput"], output=str(out_csv),
                                      template=TEMPLATE, batch=plan["eval_batch_size"], new=plan["max_new_tokens"])
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"pipeline script exited {proc.returncode}: {proc.stderr.strip()[-500:]}")
    seconds = time.perf_counter() - tick
    texts = [r["generation"] for r in read_pairs(out_csv)]
    tokens = count_tokens(texts)
    return {"tool": tool, "row": "throughput", "inputs": len(texts), "generated_tokens": tokens,
            "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
            "samples": texts[:3]}


# What a practitioner writes from the pipeline docs: chat messages in, greedy, batched, left padding.
PIPELINE_SCRIPT = """
import csv, sys
sys.path.insert(0, {repo!r})
from transformers import AutoModelForCausalLM, AutoTokenizer, pipeline
from promptft_cli.modeling.embedded_lm import resolve_default_lm
folder = resolve_default_lm()
tok = AutoTokenizer.from_pretrained(folder, padding_side="left")
pipe = pipeline("text-generation", model=AutoModelForCausalLM.from_pretrained(folder), tokenizer=tok)
rows = list(csv.DictReader(open({input!r}, encoding="utf-8")))
chats = [[{{"role": "user", "content": {template!r}.format(source=r["source"])}}] for r in rows]
outs = pipe(chats, batch_size={batch}, max_new_tokens={new}, do_sample=False, return_full_text=False)
with open({output!r}, "w", newline="", encoding="utf-8") as fh:
    w = csv.writer(fh); w.writerow(["source", "generation"])
    w.writerows([r["source"], o[0]["generated_text"].strip()] for r, o in zip(rows, outs))
"""


def count_tokens(texts: list[str]) -> int:
    """Generated tokens as SmolLM2 tokenizes the output text, plus the end token: one rule for both tools."""
    sys.path.insert(0, str(REPO))
    from transformers import AutoTokenizer

    from promptft_cli.modeling.embedded_lm import resolve_default_lm

    tok = AutoTokenizer.from_pretrained(resolve_default_lm())
    return sum(len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts)


def summarise(payload: dict) -> dict:
    cells = payload["cells"]
    rows = []
    for row in ROWS:
        entry = {"row": row}
        for tool in ("promptft", "reference"):
            cell = cells.get(f"{tool}/{row}")
            if cell:
                entry[tool] = {k: cell.get(k) for k in ("bleu", "chrf", "train_seconds", "peak_rss_mb", "error")
                               if cell.get(k) is not None}
        if len(entry) > 1:
            rows.append(entry)
    throughput = {tool: cells[f"{tool}_throughput/throughput"] for tool in ("promptft", "reference")
                  if f"{tool}_throughput/throughput" in cells}
    ratio = None
    if all("tokens_per_s" in throughput.get(t, {}) for t in ("promptft", "reference")):
        ratio = round(throughput["promptft"]["tokens_per_s"] / throughput["reference"]["tokens_per_s"], 2)
    return {"rows": rows, "throughput": throughput, "throughput_ratio": ratio}


def render(payload: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    plan, summary = payload["plan"], payload["summary"]
    table = Table(title=f"SmolLM2-135M-Instruct on Multi30k en→de · {plan['train_size']} train / {plan['test_size']} test · "
                        f"{plan['epochs']} epoch · {payload['machine']['nproc']} cores")
    for col in ("row", "BLEU\npromptft / ref", "chrF++\npromptft / ref", "train s\npromptft / ref", "peak RSS MB\npromptft / ref"):
        table.add_column(col)
    for entry in summary["rows"]:
        p, r = entry.get("promptft", {}), entry.get("reference", {})
        table.add_row(entry["row"], *(f"{_fmt(p, k)} / {_fmt(r, k)}" for k in ("bleu", "chrf", "train_seconds", "peak_rss_mb")))
    Console().print(table)
    for tool, cell in summary["throughput"].items():
        print(f"throughput {tool}: {cell.get('tokens_per_s', cell.get('error'))} tokens/s "
              f"({cell.get('generated_tokens')} tokens in {cell.get('seconds')} s)")


def markdown(payload: dict) -> str:
    """The table BENCHMARKS.md quotes, from the results file."""
    plan, summary = payload["plan"], payload["summary"]
    names = {"zero_shot": "zero-shot", "zero_shot_3_demos": "zero-shot + 3 demonstrations", "prompt_tuning": "prompt tuning",
             "prefix_tuning": "prefix tuning", "lora": "LoRA", "full": "full fine-tuning"}
    lines = [f"{plan['train_size']} train / {plan['val_size']} validation pairs (seeded subset of Multi30k train), "
             f"the first {plan['test_size']} sentences of test_2016_flickr, {plan['epochs']} epoch, batch {plan['batch_size']}, "
             f"greedy, at most {plan['max_new_tokens']} new tokens; {payload['machine']['date']}.", "",
             "| row | BLEU promptft / reference | chrF++ promptft / reference | train s promptft / reference "
             "| peak RSS MB promptft / reference |", "| --- | --- | --- | --- | --- |"]
    for entry in summary["rows"]:
        p, r = entry.get("promptft", {}), entry.get("reference", {})
        cols = [f"{_fmt(p, k)} / {_fmt(r, k)}" for k in ("bleu", "chrf", "train_seconds", "peak_rss_mb")]
        lines.append(f"| {names[entry['row']]} | " + " | ".join(cols) + " |")
    for tool, cell in summary["throughput"].items():
        lines.append(f"\nThroughput, {tool}: {cell.get('tokens_per_s', cell.get('error'))} tokens/s "
                     f"({cell.get('generated_tokens')} tokens for {cell.get('inputs')} inputs in {cell.get('seconds')} s, end to end).")
    return "\n".join(lines) + "\n"


def _fmt(cell: dict, key: str) -> str:
    if "error" in cell:
        return "error"
    value = cell.get(key)
    return "–" if value is None else f"{value:,.1f}"


def _brief(result: dict) -> str:
    if "error" in result:
        return f"error: {result['error']}"
    keys = ("bleu", "chrf", "train_seconds", "tokens_per_s", "peak_rss_mb", "wall_seconds")
    return ", ".join(f"{k} {result[k]}" for k in keys if k in result)


def machine() -> dict:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {"python": platform.python_version(), "platform": platform.platform(), "nproc": os.cpu_count(),
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS"), "load_average_1min_at_save": load,
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")}


def _load(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def _save(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(payload, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
