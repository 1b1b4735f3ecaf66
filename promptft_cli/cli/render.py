"""Rich tables for results shown in the terminal (stdout); library code never prints."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


def data_report(report: dict[str, Any]) -> None:
    table = Table(title=f"prepared data · template {report.get('template', '')!r}")
    generation = "max_target_length" in report
    columns = ("split", "rows", "tokens p50", "p95", "max", f"> max_length ({report.get('max_length')})",
               "target p50", "p95", "max", f"> max_target_length ({report.get('max_target_length')})") if generation else \
        ("split", "rows", "labels", "tokens p50", "p95", "max", f"> max_length ({report.get('max_length')})")
    for col in columns:
        table.add_column(col, justify="left" if col in ("split", "labels") else "right")
    for name, s in report["splits"].items():
        t = s["tokens"]
        cells = [str(t["p50"]), str(t["p95"]), str(t["max"]), f"{t['truncated_share']:.1%}"]
        if generation:
            g = s["target_tokens"]
            table.add_row(name, str(s["rows"]), *cells, str(g["p50"]), str(g["p95"]), str(g["max"]), f"{g['truncated_share']:.1%}")
        else:
            table.add_row(name, str(s["rows"]), ", ".join(f"{k} {v}" for k, v in s["labels"].items()), *cells)
    console.print(table)
    if report.get("label_examples"):
        console.print(f"train: {report['label_examples']} label descriptions added as examples (data.label_examples)", style="dim")
    dropped = {n: {k: v for k, v in d.items() if isinstance(v, int) and v} for n, d in report.get("dropped", {}).items()}
    notes = [f"{n}: dropped " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in d.items()) for n, d in dropped.items() if d]
    for note in notes:
        console.print(note, style="dim")
    for name, kept in report.get("notes", {}).items():  # kept but worth a look: numeric texts, cut texts
        for key, count in kept.items():
            if not key.endswith("_lines"):
                lines = ", ".join(map(str, kept.get(f"{key}_lines", [])))
                console.print(f"{name}: {count} {key.replace('_', ' ')} (lines {lines})", style="yellow")


def generation_metrics(m: dict[str, Any]) -> None:
    head = Table(title="metrics" + (f" · {m['run_dir']}" if "run_dir" in m else "") + (" · zero-shot" if m.get("zero_shot") else ""))
    names = ("n", "BLEU", "chrF++", "ROUGE-1", "ROUGE-2", "ROUGE-L", "exact match", "target loss")
    for col in names:
        head.add_column(col, justify="right")
    head.add_row(str(m["n"]), *(f"{m[k]:.2f}" for k in ("bleu", "chrf")),
                 *(f"{m[k]:.4f}" for k in ("rouge1", "rouge2", "rougeL", "exact_match")), _num(m.get("loss")))
    console.print(head)
    for metric, signature in (m.get("signatures") or {}).items():
        console.print(f"{metric} signature: {signature}", style="dim")


def metrics(m: dict[str, Any]) -> None:
    if "chrf" in m:
        return generation_metrics(m)
    head = Table(title="metrics" + (f" · {m['run_dir']}" if "run_dir" in m else ""))
    for col in ("n", "accuracy", "macro-F1", "ECE"):
        head.add_column(col, justify="right")
    head.add_row(str(m["n"]), f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}", _num(m.get("ece")))
    console.print(head)
    per = Table(title="per class")
    for col in ("label", "precision", "recall", "F1", "support"):
        per.add_column(col, justify="left" if col == "label" else "right")
    for label, s in m["per_class"].items():
        per.add_row(label, f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f1']:.3f}", str(s["support"]))
    console.print(per)
    cm = Table(title="confusion matrix (rows: true, columns: predicted)")
    cm.add_column("")
    for label in m["labels"]:
        cm.add_column(label, justify="right")
    for label, row in zip(m["labels"], m["confusion_matrix"]):
        cm.add_row(label, *map(str, row))
    console.print(cm)


def _num(value, fmt: str = "{:.4f}", std=None) -> str:
    if value is None:
        return "-"
    return fmt.format(value) + (f" ± {std:.3f}" if std is not None else "")


def _duration(seconds) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(float(seconds), 60)
    return f"{secs:.1f}s" if not minutes else f"{int(minutes)}m{secs:02.0f}s" if minutes < 60 else f"{int(minutes // 60)}h{int(minutes % 60):02d}m"


def _count(n) -> str:
    if n is None:
        return "-"
    return f"{n:,}" if n < 100_000 else f"{n / 1e6:.1f}M" if n >= 1e6 else f"{n / 1e3:.0f}k"


_STATUS_STYLE = {"complete": "green", "running": "cyan", "failed": "red", "interrupted": "yellow"}


def _run_cells(r) -> dict[str, str]:
    from promptft_cli.runs.table import human_bytes

    short = {"accuracy": "acc", "macro_f1": "F1", "chrf": "chrF", "bleu": "BLEU"}.get(r.best_metric or "", r.best_metric)
    best = f"{short} {_num(r.best_validation, '{:.3f}')}" if r.best_validation is not None else "-"
    model = r.model if not r.model or "/" not in r.model or r.model.count("/") == 1 and not r.model.startswith("/") else "…/" + r.model.rstrip("/").rsplit("/", 1)[-1]
    status = f"[{_STATUS_STYLE.get(r.status, 'dim')}]{r.status}[/]"
    return {"name": r.name, "task": r.task or "-", "model": model or "-", "method": r.method or "-", "head": r.head or "-",
            "k/seeds": r.shots or "all", "best val": best, **_test_cells(r), "time": _duration(r.train_seconds),
            "params": _count(r.trainable_parameters),
            "ckpt": human_bytes(r.checkpoint_bytes), "status": status}


def _test_cells(r) -> dict[str, str]:
    if r.test_accuracy is None and r.test_scores:  # a generation run: its headline scores in the same two columns
        return {"test acc": f"chrF {r.test_scores.get('chrf', 0):.2f}", "macro-F1": f"BLEU {r.test_scores.get('bleu', 0):.2f}"}
    return {"test acc": _num(r.test_accuracy, std=r.test_accuracy_std), "macro-F1": _num(r.test_macro_f1, std=r.test_macro_f1_std)}


def runs_table(rows, root: str = "") -> None:
    """`promptft runs`: one row per run directory."""
    if not rows:
        console.print(f"no runs under {root}" if root else "no runs")
        return
    from rich import box

    # A light box with one space between columns: thirteen columns fit a 120-column terminal.
    table = Table(title=f"runs under {root}" if root else "runs", box=box.SIMPLE_HEAD, show_edge=False, padding=0)
    cells = [_run_cells(r) for r in rows]
    for col in cells[0]:
        numeric = col in ("best val", "test acc", "macro-F1", "time", "params", "ckpt")
        # On a narrow terminal the text columns fold; numbers stay whole.
        table.add_column(col, justify="right" if numeric else "left", overflow="fold", no_wrap=numeric or col == "status")
    for c in cells:
        table.add_row(*c.values())
    _wide().print(table)


def comparison(cmp, show_all: bool = False) -> None:
    """`promptft compare`: runs as columns; best result per row in green, differing config keys in yellow."""
    table = Table(title="comparison (config keys that differ in [bold yellow]yellow[/])", show_lines=False)
    table.add_column("")
    for r in cmp.rows:
        table.add_column(r.name, justify="right", overflow="fold")
    cells = [_run_cells(r) for r in cmp.rows]
    for key in ("status", "method", "head", "model", "k/seeds", "best val", "test acc", "macro-F1", "time", "params", "ckpt"):
        values = [c[key] for c in cells]
        table.add_row(key, *_mark_best(key, values, cmp.rows))
    table.add_section()
    for key, values in cmp.differences.items():
        table.add_row(f"[bold yellow]{key}[/]", *(f"[bold yellow]{_fmt_value(v)}[/]" for v in values))
    if show_all:
        for key, value in cmp.same.items():
            table.add_row(f"[dim]{key}[/]", *([f"[dim]{_fmt_value(value)}[/]"] * len(cmp.rows)))
    _wide().print(table)
    if not show_all and cmp.same:
        console.print(f"{len(cmp.same)} config keys are the same in every run (--all shows them)", style="dim")


def _wide() -> Console:
    # Piped output has no width; rich's 80-column default would fold a 13-column table into a mess.
    return console if console.is_terminal else Console(width=max(console.width, 160))


def _mark_best(key: str, values: list[str], rows) -> list[str]:
    attr = {"test acc": "test_accuracy", "macro-F1": "test_macro_f1", "best val": "best_validation"}.get(key)
    if attr is None:
        return values
    numbers = [getattr(r, attr) for r in rows]
    if key == "best val" and len({r.best_metric for r in rows}) > 1:
        return values  # different metrics are not comparable
    known = [n for n in numbers if n is not None]
    if len(known) < 2:
        return values
    best = min(known) if key == "best val" and rows[0].best_metric == "loss" else max(known)
    return [f"[bold green]{v}[/]" if n == best else v for v, n in zip(values, numbers)]


def _fmt_value(value) -> str:
    from rich.markup import escape

    if value is None:
        return "null"
    if isinstance(value, (dict, list)):
        import json

        return escape(json.dumps(value, ensure_ascii=False))
    return escape(str(value))


def seed_summary(s: dict[str, Any]) -> None:
    """The few-shot protocol's result: each seed's test metrics, then mean ± std over the seeds."""
    generation = "chrf" in s
    k = f"k={s['k']}{' examples' if generation else ' per class'} · " if "k" in s else ""
    table = Table(title=f"{k}{len(s['seeds'])} seeds · {s.get('run_dir', '')}")
    shown = (("bleu", "BLEU"), ("chrf", "chrF++"), ("rougeL", "ROUGE-L")) if generation else \
        (("accuracy", "accuracy"), ("macro_f1", "macro-F1"))
    for col in ("seed", *(label for _, label in shown)):
        table.add_column(col, justify="right")
    for i, seed in enumerate(s["seeds"]):
        table.add_row(str(seed), *(f"{s[m]['per_seed'][i]:.4f}" for m, _ in shown), end_section=i == len(s["seeds"]) - 1)
    table.add_row("[bold]mean ± std[/]", *(f"[bold]{s[m]['mean']:.4f} ± {s[m]['std']:.4f}[/]" for m, _ in shown))
    console.print(table)


def label_search(found: dict[str, Any]) -> None:
    """The ranked candidates per label, then the ready `prompt.verbalizer` block."""
    table = Table(title=f"label-word candidates · {found['kind']} · {found['n_train']} train examples")
    for col in ("label", "rank", "word", "separation", "train acc."):
        table.add_column(col, justify="left" if col in ("label", "word") else "right")
    rank = {}
    for c in found["candidates"]:
        rank[c["label"]] = rank.get(c["label"], 0) + 1
        table.add_row(c["label"], str(rank[c["label"]]), c["word"], f"{c['separation']:.4f}", f"{c['train_accuracy']:.3f}")
    console.print(table)
    console.print(found["yaml"], markup=False, highlight=False)
    if found.get("output"):
        console.print(f"wrote {found['output']}")
