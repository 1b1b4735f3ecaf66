"""The baseline promptft's generation task is measured against: transformers.Trainer + peft, written by hand.

    python benchmarks/reference_generation.py --method lora --train train.csv --validation val.csv --test test.csv --lr 1e-3

Same job as `promptft train` on a generation config with the embedded SmolLM2-135M-Instruct
(`model.name: default-lm`, the folder promptft converts from the GGUF file) and `prompt.chat: true`:
each source goes into the template, the template into one user turn of the chat template; the model
reads prompt + target + end token and is trained on the target positions only (prompt labels -100).
Methods: `zero_shot` (no training; `--demonstrations N` puts the first N training pairs before the
input as earlier user/assistant turns), `prompt_tuning`, `prefix_tuning` and `lora` through peft with
task CAUSAL_LM, and `full`. Written the way the transformers and peft docs show it: Trainer defaults,
validation loss every epoch with the best checkpoint kept, then greedy `model.generate` on the test
sources in batches (left padding), scored with sacreBLEU (BLEU, chrF++) against every reference.
Prints one JSON line: train time, generation time and tokens/s, peak RSS, BLEU, chrF.
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = "Translate English to German: {source}"


def read_pairs(path: str) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def references(row: dict[str, str]) -> list[str]:
    joined = row.get("references")
    return [r.strip() for r in joined.split("|||") if r.strip()] if joined else [row["target"]]


def prompt_ids(tokenizer, args, source: str, demos: list[dict[str, str]]) -> list[int]:
    messages = []
    for demo in demos:
        messages += [{"role": "user", "content": args.template.format(source=demo["source"])},
                     {"role": "assistant", "content": demo["target"]}]
    messages.append({"role": "user", "content": args.template.format(source=source)})
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return tokenizer(text, add_special_tokens=False)["input_ids"][-args.max_length:]


class CausalExamples:
    """prompt + target + end token; the loss sees only the target (and end) positions."""

    def __init__(self, tokenizer, args, rows) -> None:
        self.items = []
        for row in rows:
            prompt = prompt_ids(tokenizer, args, row["source"], [])
            target = tokenizer(row["target"], add_special_tokens=False)["input_ids"][: args.max_target_length - 1]
            target = target + [tokenizer.eos_token_id]
            self.items.append({"input_ids": prompt + target, "labels": [-100] * len(prompt) + target})

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


def collate(pad_id: int):
    import torch

    def pad(batch):
        width = max(len(b["input_ids"]) for b in batch)
        ids = [b["input_ids"] + [pad_id] * (width - len(b["input_ids"])) for b in batch]
        labels = [b["labels"] + [-100] * (width - len(b["labels"])) for b in batch]
        mask = [[1] * len(b["input_ids"]) + [0] * (width - len(b["input_ids"])) for b in batch]
        return {"input_ids": torch.tensor(ids), "labels": torch.tensor(labels), "attention_mask": torch.tensor(mask)}

    return pad


def build_model(args, folder: str):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    if args.method in ("zero_shot", "full"):
        return model
    from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, PromptTuningInit, TaskType, get_peft_model

    if args.method == "prompt_tuning":
        cfg = PromptTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=args.num_virtual_tokens,
                                 prompt_tuning_init=PromptTuningInit.TEXT, prompt_tuning_init_text=args.init_text,
                                 tokenizer_name_or_path=folder)
    elif args.method == "prefix_tuning":
        cfg = PrefixTuningConfig(task_type=TaskType.CAUSAL_LM, num_virtual_tokens=args.num_virtual_tokens)
    else:
        cfg = LoraConfig(task_type=TaskType.CAUSAL_LM, r=args.lora_r, lora_alpha=args.lora_alpha,
                         lora_dropout=args.lora_dropout, target_modules=args.lora_targets.split(","))
    return get_peft_model(model, cfg)


def train(args, model, tokenizer) -> float:
    from transformers import Trainer, TrainingArguments

    train_rows, val_rows = read_pairs(args.train), read_pairs(args.validation)
    with tempfile.TemporaryDirectory() as out:
        training_args = TrainingArguments(
            output_dir=out, num_train_epochs=args.epochs, learning_rate=args.lr,
            per_device_train_batch_size=args.batch_size, per_device_eval_batch_size=args.batch_size,
            warmup_steps=args.warmup_ratio, weight_decay=0.0, max_grad_norm=1.0, seed=args.seed,
            eval_strategy="epoch", save_strategy="epoch", load_best_model_at_end=True,
            metric_for_best_model="eval_loss", greater_is_better=False, save_total_limit=1,
            logging_strategy="no", report_to="none", use_cpu=True, disable_tqdm=True,
        )
        trainer = Trainer(model=model, args=training_args, train_dataset=CausalExamples(tokenizer, args, train_rows),
                          eval_dataset=CausalExamples(tokenizer, args, val_rows),
                          data_collator=collate(tokenizer.pad_token_id))
        tick = time.perf_counter()
        trainer.train()
        return time.perf_counter() - tick


def generate(args, model, tokenizer, prompts: list[list[int]]) -> tuple[list[str], int, float]:
    """Greedy decoding in file order, batches of --eval-batch-size, left-padded: (texts, new tokens, seconds)."""
    import torch

    model.eval()
    texts, new_tokens = [], 0
    tick = time.perf_counter()
    for start in range(0, len(prompts), args.eval_batch_size):
        batch = prompts[start : start + args.eval_batch_size]
        width = max(map(len, batch))
        ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in batch])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in batch])
        with torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=args.max_new_tokens,
                                 do_sample=False, pad_token_id=tokenizer.pad_token_id)
        for row in out[:, width:].tolist():
            if tokenizer.eos_token_id in row:
                row = row[: row.index(tokenizer.eos_token_id)]
            new_tokens += len(row) + 1
            texts.append(tokenizer.decode(row, skip_special_tokens=True).strip())
    return texts, new_tokens, time.perf_counter() - tick


def score(hyps: list[str], rows: list[dict[str, str]]) -> dict:
    from sacrebleu.metrics import BLEU, CHRF

    refs = [references(r) for r in rows]
    streams = [[r[i] if i < len(r) else None for r in refs] for i in range(max(map(len, refs)))]
    bleu, chrf = BLEU(), CHRF(word_order=2)
    return {"bleu": round(bleu.corpus_score(hyps, streams).score, 2), "chrf": round(chrf.corpus_score(hyps, streams).score, 2),
            "signatures": {"bleu": str(bleu.get_signature()), "chrf": str(chrf.get_signature())}}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    sys.path.insert(0, str(REPO))
    from transformers import AutoTokenizer, set_seed

    from promptft_cli.modeling.embedded_lm import resolve_default_lm

    set_seed(args.seed)
    folder = resolve_default_lm()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = build_model(args, folder)
    train_seconds = 0.0 if args.method == "zero_shot" else train(args, model, tokenizer)
    test_rows = read_pairs(args.test)
    demos = read_pairs(args.train)[: args.demonstrations]
    prompts = [prompt_ids(tokenizer, args, r["source"], demos) for r in test_rows]
    hyps, new_tokens, gen_seconds = generate(args, model, tokenizer, prompts)
    return {
        "tool": "reference", "method": args.method, "demonstrations": args.demonstrations,
        "train_examples": len(read_pairs(args.train)) if args.method != "zero_shot" else 0, "epochs": args.epochs,
        "train_seconds": round(train_seconds, 3), "test_examples": len(test_rows),
        "generate_seconds": round(gen_seconds, 3), "generated_tokens": new_tokens,
        "generate_tokens_per_s": round(new_tokens / gen_seconds, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        **score(hyps, test_rows), "wall_seconds": round(time.perf_counter() - started, 3),
        "samples": [{"source": r["source"], "generation": h} for r, h in list(zip(test_rows, hyps))[:3]],
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--method", choices=["zero_shot", "prompt_tuning", "prefix_tuning", "lora", "full"], required=True)
    p.add_argument("--train", required=True, help="CSV with source,target")
    p.add_argument("--validation", required=True)
    p.add_argument("--test", required=True, help="CSV with source,target and optionally references")
    p.add_argument("--template", default=TEMPLATE)
    p.add_argument("--demonstrations", type=int, default=0, help="zero_shot: solved training pairs before each input")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--eval-batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--max-target-length", type=int, default=96)
    p.add_argument("--max-new-tokens", type=int, default=64)
    p.add_argument("--warmup-ratio", type=float, default=0.06)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--num-virtual-tokens", type=int, default=20)
    p.add_argument("--init-text", default="Translate English to German:")
    p.add_argument("--lora-r", type=int, default=8)
    p.add_argument("--lora-alpha", type=int, default=16)
    p.add_argument("--lora-dropout", type=float, default=0.05)
    p.add_argument("--lora-targets", default="q_proj,v_proj")
    return p.parse_args(argv)


if __name__ == "__main__":
    sys.stdout.write(json.dumps(main()) + "\n")
