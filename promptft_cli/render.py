"""Rich tables for results shown in the terminal (stdout); library code never prints."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

console = Console()


def data_report(report: dict[str, Any]) -> None:
    table = Table(title=f"prepared data · template {report.get('template', '')!r}")
    for col in ("split", "rows", "labels", "tokens p50", "p95", "max", f"> max_length ({report.get('max_length')})"):
        table.add_column(col, justify="left" if col in ("split", "labels") else "right")
    for name, s in report["splits"].items():
        labels = ", ".join(f"{k} {v}" for k, v in s["labels"].items())
        t = s["tokens"]
        table.add_row(name, str(s["rows"]), labels, str(t["p50"]), str(t["p95"]), str(t["max"]), f"{t['truncated_share']:.1%}")
    console.print(table)
    dropped = {n: {k: v for k, v in d.items() if isinstance(v, int) and v} for n, d in report.get("dropped", {}).items()}
    notes = [f"{n}: dropped " + ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in d.items()) for n, d in dropped.items() if d]
    for note in notes:
        console.print(note, style="dim")


def metrics(m: dict[str, Any]) -> None:
    head = Table(title="metrics" + (f" · {m['run_dir']}" if "run_dir" in m else ""))
    for col in ("n", "accuracy", "macro-F1"):
        head.add_column(col, justify="right")
    head.add_row(str(m["n"]), f"{m['accuracy']:.4f}", f"{m['macro_f1']:.4f}")
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
