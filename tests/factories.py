"""Builders for tiny random-init models saved as local model folders (no network, a few hundred KB)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import yaml

POSITIVE = ["great", "good", "wonderful", "fine", "lovely", "superb"]
NEGATIVE = ["bad", "terrible", "awful", "poor", "boring", "dull"]
FILLER = ["the movie was", "this film is", "it was", "a review :", "the story is"]


def save_tiny_model(tokenizer, directory: Path, kind: str) -> Path:
    """Save a 2-layer random model of `kind` (encoder, mlm, causal) with its tokenizer to `directory`."""
    import torch
    from transformers import (
        BertConfig,
        BertForMaskedLM,
        BertModel,
        GPT2Config,
        GPT2LMHeadModel,
    )

    torch.manual_seed(0)
    vocab = len(tokenizer)
    if kind == "causal":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=128, n_embd=32, n_layer=2, n_head=2,
                                           bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id))
    else:
        cfg = BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=128, pad_token_id=tokenizer.pad_token_id)
        model = BertForMaskedLM(cfg) if kind == "mlm" else BertModel(cfg)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def toy_sentiment_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """A learnable toy set: the label is carried by one sentiment word."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        label = "positive" if i % 2 == 0 else "negative"
        word = rng.choice(POSITIVE if label == "positive" else NEGATIVE)
        rows.append({"text": f"{rng.choice(FILLER)} {word} {rng.choice(['!', '.', ''])} {i}".strip(), "label": label})
    return rows


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_config(directory: Path, model_dir: Path, **sections) -> Path:
    """A config for the toy data in `directory` (train.csv, optional test.csv) and a tiny model."""
    cfg = {
        "model": {"name": str(model_dir), "max_length": 32},
        "data": {"train": "train.csv"},
        "method": {"name": "head"},
        "train": {"epochs": 2, "batch_size": 8, "seed": 1},
        "output_dir": "run",
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


# Words of the toy translation set (tests/test_generation*.py); the tokenizers below are trained on them.
_GEN_CORPUS = [
    "translate: the cat sleeps => die katze schläft",
    "translate: the dog runs => der hund läuft",
    "translate: a red house => ein rotes haus",
    "translate: good morning => guten morgen",
    "summarise: name alpha, food pizza, area north => alpha serves pizza in the north.",
]


def llama_tokenizer():
    """A Llama-style byte-level BPE tokenizer: `<s>` before every text, no pad token, and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=400, min_frequency=1, special_tokens=["<unk>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(_GEN_CORPUS + _GEN_CORPUS_EXTRA, trainer)
    backend.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                  model_max_length=128)
    tok.chat_template = ("{% for m in messages %}<s>{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
                         "{% if add_generation_prompt %}assistant:{% endif %}")
    return tok


def seq2seq_tokenizer():
    """A T5-style byte-level BPE tokenizer: `</s>` appended to every text, `<pad>` = 0 (T5's decoder start)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    specials = ["<pad>", "</s>", "<unk>", "<s>"]
    trainer = trainers.BpeTrainer(vocab_size=400, min_frequency=1, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(_GEN_CORPUS + _GEN_CORPUS_EXTRA, trainer)
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                   bos_token="<s>", model_max_length=128)


_GEN_CORPUS_EXTRA = [
    "The movie was great. It was fantastic!",
    "Review: a good movie. Sentiment: positive",
]


def save_tiny_generator(tokenizer, directory: Path, arch: str) -> Path:
    """Save a 2-layer random generative model (gpt2, llama, t5, bart) with its tokenizer to `directory`."""
    import torch
    from transformers import (
        BartConfig,
        BartForConditionalGeneration,
        GPT2Config,
        GPT2LMHeadModel,
        LlamaConfig,
        LlamaForCausalLM,
        T5Config,
        T5ForConditionalGeneration,
    )

    torch.manual_seed(0)
    vocab, pad, eos = len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id
    # Wider initial weights than the defaults (0.02): a default tiny model writes the same token whatever
    # its input, which would let a test of padding or reloading pass without looking at the input at all.
    if arch == "gpt2":
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_positions=128, n_embd=32, n_layer=2, n_head=2,
                                           initializer_range=0.3, bos_token_id=tokenizer.bos_token_id, eos_token_id=eos))
    elif arch == "llama":
        model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=128,
                                             initializer_range=0.3, bos_token_id=tokenizer.bos_token_id, eos_token_id=eos,
                                             pad_token_id=pad))
    elif arch == "t5":
        model = T5ForConditionalGeneration(T5Config(vocab_size=vocab, d_model=32, d_kv=16, d_ff=64, num_layers=2,
                                                    num_decoder_layers=2, num_heads=2, pad_token_id=pad,
                                                    initializer_factor=1.5, eos_token_id=eos, decoder_start_token_id=pad))
    elif arch == "bart":
        model = BartForConditionalGeneration(BartConfig(
            vocab_size=vocab, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2,
            decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=128,
            init_std=0.3, pad_token_id=pad, eos_token_id=eos, bos_token_id=tokenizer.bos_token_id,
            decoder_start_token_id=eos, forced_eos_token_id=eos))
    else:
        raise ValueError(arch)
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def toy_translation_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    """A learnable toy 'translation': the target repeats a word chosen by the source."""
    rng = random.Random(seed)
    pairs = [("cat", "katze"), ("dog", "hund"), ("house", "haus"), ("morning", "morgen")]
    rows = []
    for i in range(n):
        en, de = pairs[i % len(pairs)]
        rows.append({"source": f"the {en} {rng.choice(['sleeps', 'runs', 'is red'])} {i}", "target": f"die {de}"})
    return rows
