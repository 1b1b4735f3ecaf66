"""Sentence embeddings from the pretrained backbone, for LM-BFF's `similar` demonstrations (SBERT-style
mean pooling; the embedded MiniLM is an SBERT model), and the demonstrations of a config built with them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

from promptft_cli.prompting import demonstrations
from promptft_cli.prompting.demonstrations import Demonstrations, Embedder

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from promptft_cli.config import Config


def demonstrations_for(cfg: "Config", train_rows: Sequence[Mapping[str, str]], labels: Sequence[str],
                       tokenizer: "PreTrainedTokenizerBase") -> Demonstrations | None:
    """The config's demonstrations drawn from `train_rows` (None when not configured), ordered for the model kind."""
    settings = cfg.prompt.demonstrations
    if settings is None:
        return None
    from promptft_cli.modeling.loading import model_kind

    causal = model_kind(cfg.model, "verbalizer", cfg.base_dir) == "causal"
    embed = backbone_embedder(cfg, tokenizer) if settings.select == "similar" else None
    return demonstrations.from_config(cfg, train_rows, labels, causal=causal, embed=embed)


def backbone_embedder(cfg: "Config", tokenizer: "PreTrainedTokenizerBase") -> Embedder:
    """Texts → unit vectors from the pretrained backbone's pooled states (mean pooling unless the model says otherwise)."""
    import numpy as np
    import torch

    from promptft_cli.modeling.heads import pool
    from promptft_cli.modeling.loading import (
        load_backbone,
        pooling_mode,
        resolve_model_path,
    )

    model = load_backbone(cfg.model, "encoder", cfg.base_dir).eval()
    mode = pooling_mode(cfg.model, resolve_model_path(cfg.model.name, cfg.base_dir), is_decoder=False)
    device = next(model.parameters()).device
    if device.type == "cpu" and torch.cuda.is_available() and not cfg.model.device_map:
        model, device = model.to("cuda"), torch.device("cuda")
    size = cfg.train.eval_batch_size

    def embed(texts: list[str]) -> np.ndarray:
        vectors = [np.zeros((0, model.config.hidden_size), dtype=np.float32)]
        with torch.inference_mode():
            for start in range(0, len(texts), size):
                batch = tokenizer(texts[start: start + size], padding=True, truncation=True,
                                  max_length=cfg.model.max_length, return_tensors="pt")
                mask = batch["attention_mask"].to(device)
                hidden = model(input_ids=batch["input_ids"].to(device), attention_mask=mask).last_hidden_state
                vectors.append(torch.nn.functional.normalize(pool(hidden.float(), mask, mode), dim=-1).cpu().numpy())
        return np.concatenate(vectors)

    return embed
