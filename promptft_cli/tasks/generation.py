"""Generation: a causal or seq2seq LM writes the target text; metrics are BLEU, chrF++, ROUGE and exact match.

The loop trains on the target tokens' cross-entropy (tasks call it `loss`); inference generates with the
config's `generate` settings and, where targets are known, also measures their loss, so validation
can stop early on `loss` as well as on a text metric.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

from promptft_cli.tasks.base import Encoder, Metrics, Task

if TYPE_CHECKING:
    import torch
    from torch import nn

    from promptft_cli.config import Config
    from promptft_cli.data.reading import PreparedData
    from promptft_cli.prompting.generation import EncodedGeneration


@dataclass
class Generated:
    """What inference returns for one example: its texts (num_return_sequences) and its target loss when known."""

    texts: list[str]
    loss: float | None = None


@dataclass
class GenerationMetrics(Metrics):
    """Test (and evaluation) metrics; `to_dict` gives metrics.json's keys in its order."""

    bleu: float
    chrf: float
    rouge1: float
    rouge2: float
    rougeL: float
    exact_match: float
    n: int
    loss: float | None
    signatures: dict[str, str]
    tokenize: str
    max_references: int
    per_example: dict[str, list[float]] = field(default_factory=dict)
    """Sentence BLEU, chrF++, ROUGE-L and exact match of every example, in the split's order."""
    best_epoch: int | None = None
    zero_shot: bool = False

    def to_dict(self) -> dict[str, Any]:
        out = {**self.scalars(), "n": self.n, "loss": self.loss, "signatures": self.signatures,
               "tokenize": self.tokenize, "max_references": self.max_references}
        if self.best_epoch is not None:
            out["best_epoch"] = self.best_epoch
        if self.zero_shot:
            out["zero_shot"] = True
        out["per_example"] = self.per_example
        return out

    def scalars(self) -> dict[str, float]:
        return {"bleu": self.bleu, "chrf": self.chrf, "rouge1": self.rouge1, "rouge2": self.rouge2,
                "rougeL": self.rougeL, "exact_match": self.exact_match}


@dataclass
class GenerationValidation(Metrics):
    """What early stopping reads after each epoch."""

    bleu: float
    chrf: float
    rouge1: float
    rouge2: float
    rougeL: float
    exact_match: float
    loss: float
    """Mean cross-entropy per target token, averaged over examples."""

    def to_dict(self) -> dict[str, Any]:
        return {"bleu": self.bleu, "chrf": self.chrf, "rouge1": self.rouge1, "rouge2": self.rouge2,
                "rougeL": self.rougeL, "exact_match": self.exact_match, "loss": self.loss}

    def scalars(self) -> dict[str, float]:
        return self.to_dict()


def encoder_for(cfg: "Config", tokenizer, kind: str, train_rows: Sequence[Mapping[str, str]] | None = None) -> Encoder:
    """rows -> EncodedGeneration with the config's template (and demonstrations, drawn from `train_rows`)."""
    from promptft_cli.errors import PromptftError
    from promptft_cli.prompting.generation import (
        check_chat,
        demonstrations_for,
        encode_generation_rows,
        references_of,
    )
    from promptft_cli.prompting.templates import template_for

    template = template_for(cfg)
    check_chat(template, tokenizer, cfg.prompt.chat)
    demos = cfg.prompt.demonstrations
    if demos is not None and demos.select != "random":
        raise PromptftError("generation draws demonstrations at random; set select: random",
                            field="prompt.demonstrations.select")

    def encode(rows: Sequence[Mapping[str, str]], labelled: bool = True) -> "EncodedGeneration":
        rows = list(rows)
        shown = demonstrations_for(rows, train_rows or [], template, demos.per_class, cfg.train.seed, kind) if demos else None
        split = encode_generation_rows(rows, template, tokenizer, kind, cfg.model.max_length, cfg.model.max_target_length,
                                       chat=cfg.prompt.chat, with_targets=labelled, demonstrations=shown)
        split.kind, split.train_on_prompt = kind, cfg.train.train_on_prompt
        if labelled:
            split.references = [references_of(r) for r in rows]
        return split

    return encode


class GenerationTask(Task):
    name = "generation"

    def encoder(self, cfg: "Config", tokenizer, data: "PreparedData") -> Encoder:
        from promptft_cli.modeling.generator import generator_kind

        return encoder_for(cfg, tokenizer, generator_kind(cfg.model, cfg.base_dir), data["train"].rows)

    def collate(self, split, indices, pad_id):
        from promptft_cli.modeling.decoding import collate_prompts, collate_train

        if split.targets is None:
            return collate_prompts(split, indices, pad_id, split.kind)
        return collate_train(split, indices, pad_id, split.kind, split.train_on_prompt)

    def build_model(self, cfg: "Config", tokenizer, labels: list[str], *, report: bool = True) -> "nn.Module":
        from promptft_cli.modeling.generator import (
            build_generator,
            decoding_settings,
            generator_kind,
            prepare_generation_tokenizer,
        )

        kind = generator_kind(cfg.model, cfg.base_dir)
        model = build_generator(cfg, prepare_generation_tokenizer(tokenizer, kind), kind)
        # Inference needs these and is handed only the model (see Task.score).
        model.tokenizer, model.decoding, model.stop = tokenizer, decoding_settings(cfg.generate), list(cfg.generate.stop)
        return model

    def loss(self, model, batch) -> tuple["torch.Tensor", int]:
        return model(**batch), batch["input_ids"].size(0)

    def inference_batches(self, model, split, batch_size: int) -> list[list[int]]:
        from promptft_cli.modeling.batching import inference_batches

        # Generation memory grows with new tokens too: the token budget counts them.
        new = model.decoding["max_new_tokens"] * model.decoding.get("num_beams", 1)
        return inference_batches(split.lengths, batch_size, extra_tokens=model.virtual_tokens + new)

    def score(self, model, split, batches):
        """Generated texts (and target losses where the split has targets) for the examples of `batches`."""
        import torch

        from promptft_cli.modeling.decoding import generate_batch

        idx = [i for b in batches for i in b]
        out: list[Generated] = []
        model.eval()
        device = next(model.parameters()).device
        for b in batches:
            texts = generate_batch(model, split, b, model.tokenizer, model.decoding, model.stop)
            losses: list[float | None] = [None] * len(b)
            if split.targets is not None:
                with torch.inference_mode():
                    losses = [float(model(**{k: v.to(device) for k, v in self.collate(split, [i], model.pad_token_id).items()}))
                              for i in b]
            out.extend(Generated(t, loss) for t, loss in zip(texts, losses))
        return idx, out

    def assemble(self, pieces, total: int) -> list[Generated]:
        out: list[Any] = [None] * total
        for idx, generated in pieces:
            for i, g in zip(idx, generated):
                out[i] = g
        return out

    def validation_metrics(self, outputs, split, labels: list[str]) -> GenerationValidation:
        m = self.test_metrics(outputs, split, labels)
        return GenerationValidation(m.bleu, m.chrf, m.rouge1, m.rouge2, m.rougeL, m.exact_match, m.loss or 0.0)

    def test_metrics(self, outputs, split, labels: list[str]) -> GenerationMetrics:
        from promptft_cli.tasks.generation_metrics import generation_metrics

        scores = generation_metrics([o.texts[0] for o in outputs], split.references)
        losses = [o.loss for o in outputs if o.loss is not None]
        return GenerationMetrics(scores["bleu"], scores["chrf"], scores["rouge1"], scores["rouge2"], scores["rougeL"],
                                 scores["exact_match"], len(outputs), sum(losses) / len(losses) if losses else None,
                                 scores["signatures"], scores["tokenize"], scores["max_references"], scores["per_example"])

    def predictions(self, outputs, labels: list[str]) -> list[Generated]:
        """Per example, its generated texts (several with `generate.num_return_sequences`)."""
        return list(outputs)

    def prediction_columns(self, outputs, labels: list[str]) -> list[dict[str, Any]]:
        return [{("generation" if j == 0 else f"generation_{j + 1}"): text for j, text in enumerate(o.texts)}
                for o in outputs]
