"""Shared fixtures: tiny tokenizers built in memory, so the suite needs no network and no downloads."""

from __future__ import annotations

import os

import pytest

# Tiny models run fastest on one thread (OpenMP start-up dominates otherwise, ~10x on 2 shared cores);
# set before torch is imported so subprocesses started by tests inherit it too.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Enough WordPiece vocabulary for the test sentences; single letters and their "##" forms let any
# lowercase ASCII word tokenize without [UNK] (slowly, letter by letter).
_BERT_WORDS = (
    "it was great terrible good bad the movie film a an this is not and review sentiment : . , ! ? ' \" - "
    "yes no maybe question answer premise hypothesis fan ##tas ##tic"
).split()
_LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)] + [str(d) for d in range(10)]

_GPT2_CORPUS = [
    "The movie was great. It was fantastic!",
    "The film was terrible. It was bad.",
    "Review: a good movie. Sentiment: positive",
    "Review: a bad film. Sentiment: negative",
    "Question: is it good? Answer: yes, no or maybe.",
]


@pytest.fixture(scope="session")
def bert_tokenizer():
    """A BERT-style WordPiece tokenizer (lowercasing, [CLS] ... [SEP], a [MASK] token)."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        processors,
    )
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab_list = list(dict.fromkeys(specials + _BERT_WORDS + _LETTERS + ["##" + c for c in _LETTERS]))
    vocab = {token: i for i, token in enumerate(vocab_list)}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    # Built from a `tokenizers` object rather than BertTokenizerFast(vocab_file=...): transformers 5
    # silently ignores vocab_file there and falls back to a five-token vocabulary.
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
        model_max_length=128,
    )


@pytest.fixture(scope="session")
def gpt2_tokenizer():
    """A GPT-2-style byte-level BPE tokenizer: no specials added, no mask, no pad, unk = bos = eos."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        min_frequency=1,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte: nothing is ever unknown
    )
    backend.train_from_iterator(_GPT2_CORPUS, trainer)
    end = "<|endoftext|>"
    return PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token=end, eos_token=end, unk_token=end, model_max_length=128
    )


# --- tiny random-init models saved as local model folders (see tests/factories.py) ---


@pytest.fixture(scope="session")
def tiny_encoder(bert_tokenizer, tmp_path_factory):
    """A 2-layer BERT without head (like the embedded MiniLM), as a local model path."""
    from factories import save_tiny_model

    return save_tiny_model(bert_tokenizer, tmp_path_factory.mktemp("tiny-encoder"), "encoder")


@pytest.fixture(scope="session")
def tiny_mlm(bert_tokenizer, tmp_path_factory):
    """A 2-layer BERT with a masked-LM head."""
    from factories import save_tiny_model

    return save_tiny_model(bert_tokenizer, tmp_path_factory.mktemp("tiny-mlm"), "mlm")


@pytest.fixture(scope="session")
def tiny_gpt2(gpt2_tokenizer, tmp_path_factory):
    """A 2-layer GPT-2 (causal LM)."""
    from factories import save_tiny_model

    return save_tiny_model(gpt2_tokenizer, tmp_path_factory.mktemp("tiny-gpt2"), "causal")


@pytest.fixture
def toy_project(tmp_path, tiny_encoder):
    """A folder with toy train/test CSVs and a config for the tiny encoder; returns the config path."""
    from factories import toy_sentiment_rows, write_config, write_csv

    write_csv(tmp_path / "train.csv", toy_sentiment_rows(80))
    write_csv(tmp_path / "test.csv", toy_sentiment_rows(20, seed=1))
    return write_config(tmp_path, tiny_encoder, data={"train": "train.csv", "test": "test.csv"})


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, tiny_encoder):
    """One real tiny LoRA training (2 epochs, TensorBoard on), shared by the tests of what a run leaves behind.

    Returns the run directory; tests that change files in it should copy it first.
    """
    from factories import toy_sentiment_rows, write_config, write_csv

    from promptft_cli.config import load_config
    from promptft_cli.training.loop import train

    root = tmp_path_factory.mktemp("trained-run")
    write_csv(root / "train.csv", toy_sentiment_rows(80))
    write_csv(root / "test.csv", toy_sentiment_rows(20, seed=1))
    config = write_config(root, tiny_encoder, data={"train": "train.csv", "test": "test.csv"},
                          method={"name": "lora", "r": 4}, train={"report_to": ["tensorboard"]}, output_dir="runs/lora")
    return train(load_config(config)).run_dir


# --- tiny generative models (tests/test_generation*.py) ---


@pytest.fixture(scope="session")
def tiny_generators(gpt2_tokenizer, tmp_path_factory):
    """Local folders of 2-layer random GPT-2 and Llama (causal) and T5 and BART (seq2seq) models, by name."""
    from factories import llama_tokenizer, save_tiny_generator, seq2seq_tokenizer

    root = tmp_path_factory.mktemp("tiny-generators")
    s2s = seq2seq_tokenizer()
    tokenizers = {"gpt2": gpt2_tokenizer, "llama": llama_tokenizer(), "t5": s2s, "bart": s2s}
    return {arch: save_tiny_generator(tok, root / arch, arch) for arch, tok in tokenizers.items()}
