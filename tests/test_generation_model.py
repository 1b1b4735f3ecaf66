"""Generation models on tiny random GPT-2 / Llama / T5 / BART: loss masking, training, padding, save and reload."""

from __future__ import annotations

import pytest
import torch

from promptft_cli.config import validate_config
from promptft_cli.errors import PromptftError
from promptft_cli.modeling.decoding import IGNORE, collate_prompts, collate_train, generate_texts
from promptft_cli.modeling.generator import build_generator, decoding_settings, load_generation_tokenizer
from promptft_cli.modeling.weights import load_weights, save_weights
from promptft_cli.prompting.generation import encode_generation_rows
from promptft_cli.prompting.templates import template_for

ROWS = [{"source": "the cat sleeps", "target": "die katze"}, {"source": "a red house in the north", "target": "ein haus"},
        {"source": "good", "target": "guten morgen"}, {"source": "the dog runs fast and far", "target": "der hund"}]
METHODS = {"full": {}, "bitfit": {}, "lora": {"r": 4}, "prompt_tuning": {"num_virtual_tokens": 3, "init": "random"},
           "p_tuning": {"num_virtual_tokens": 3, "encoder_hidden_size": 16},
           "prefix_tuning": {"num_virtual_tokens": 3}}
NO_BIAS = {"llama", "t5"}  # bitfit has nothing to train there (tested below)
CASES = [(arch, m) for arch in ("gpt2", "llama", "t5", "bart") for m in METHODS if not (m == "bitfit" and arch in NO_BIAS)]


def make(path, method="lora", template="translate: {source} =>", **extra):
    cfg = validate_config({"task": "generation", "model": {"name": str(path), "max_length": 32, "max_target_length": 16},
                           "data": {"train": "train.csv", "text_column": "source"}, "prompt": {"template": template},
                           "method": {"name": method, **METHODS.get(method, {})},
                           "generate": {"max_new_tokens": 6}, **extra})
    torch.manual_seed(0)
    from promptft_cli.modeling.generator import generator_kind

    kind = generator_kind(cfg.model)
    tokenizer = load_generation_tokenizer(cfg.model, kind)
    generator = build_generator(cfg, tokenizer, kind)
    encoded = encode_generation_rows(ROWS, template_for(cfg), tokenizer, kind, 32, 16)
    return cfg, tokenizer, generator, encoded


def greedy(generator, tokenizer, encoded, cfg, batch_size=4):
    return generate_texts(generator, encoded, tokenizer, decoding_settings(cfg.generate), batch_size)


def test_causal_loss_covers_exactly_the_target_tokens(tiny_generators):
    _, tokenizer, generator, encoded = make(tiny_generators["gpt2"])
    batch = collate_train(encoded, [0, 1], tokenizer.pad_token_id, "causal")
    for row, i in enumerate([0, 1]):
        labelled = batch["labels"][row][batch["labels"][row] != IGNORE].tolist()
        assert labelled == encoded.targets[i]  # target ids + end token, nothing of the prompt or padding
        assert encoded.targets[i][-1] == tokenizer.eos_token_id
        assert tokenizer.decode(encoded.targets[i][:-1]) == " " + ROWS[i]["target"]
    with_prompt = collate_train(encoded, [0], tokenizer.pad_token_id, "causal", train_on_prompt=True)
    assert (with_prompt["labels"][0] != IGNORE).sum() == encoded.lengths[0] + len(encoded.targets[0])


def test_causal_loss_equals_mean_target_token_nll(tiny_generators):
    _, tokenizer, generator, encoded = make(tiny_generators["gpt2"], method="full")
    batch = collate_train(encoded, [0], tokenizer.pad_token_id, "causal")
    logits = generator.backbone(input_ids=batch["input_ids"]).logits[0].log_softmax(-1)
    n = encoded.lengths[0]
    expected = -torch.stack([logits[n - 1 + j, t] for j, t in enumerate(encoded.targets[0])]).mean()
    torch.testing.assert_close(generator(**batch), expected)


def test_seq2seq_labels_are_the_target_and_end_token(tiny_generators):
    _, tokenizer, _, encoded = make(tiny_generators["t5"])
    batch = collate_train(encoded, [0, 2], tokenizer.pad_token_id, "seq2seq")
    assert batch["labels"][0][batch["labels"][0] != IGNORE].tolist() == encoded.targets[0]
    assert tokenizer.decode(encoded.targets[0], skip_special_tokens=True) == ROWS[0]["target"]
    assert encoded.input_ids[0][-1] == tokenizer.eos_token_id  # T5 reads "... </s>" as its tokenizer writes it


@pytest.mark.parametrize("arch,method", CASES)
def test_each_method_lowers_the_target_loss(tiny_generators, arch, method):
    cfg, tokenizer, generator, encoded = make(tiny_generators[arch], method)
    batch = collate_train(encoded, range(len(ROWS)), tokenizer.pad_token_id, generator.kind)
    params = [p for p in generator.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=1e-2 if method in ("full", "lora", "bitfit") else 1e-1)
    generator.train()
    with torch.no_grad():
        before = generator(**batch).item()
    for _ in range(8):
        loss = generator(**batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    generator.eval()
    with torch.no_grad():
        assert generator(**batch).item() < before - 0.05


@pytest.mark.parametrize("arch,method", CASES)
def test_padding_does_not_change_a_rows_greedy_generation(tiny_generators, arch, method):
    cfg, tokenizer, generator, encoded = make(tiny_generators[arch], method)
    _perturb(generator)
    alone = [greedy(generator, tokenizer, encoded, cfg, batch_size=1)]
    together = greedy(generator, tokenizer, encoded, cfg, batch_size=4)  # rows of 2-9 tokens: heavy padding
    assert together == alone[0]
    if generator.kind == "causal":
        batch = collate_prompts(encoded, [0, 2], tokenizer.pad_token_id, "causal")
        assert batch["attention_mask"][1, 0] == 0  # the short row really was padded on the left


@pytest.mark.parametrize("arch,method", CASES)
def test_generation_continues_what_training_scores(tiny_generators, arch, method):
    """Greedy tokens are the argmax of the training forward pass (teacher-forced on them): virtual tokens,
    prefixes and positions are the same in both (peft #1093, #2821)."""
    cfg, tokenizer, generator, encoded = make(tiny_generators[arch], method)
    _perturb(generator)
    generator.eval()
    batch = collate_prompts(encoded, [2], tokenizer.pad_token_id, generator.kind)
    new = generator.generate_ids(batch["input_ids"], batch["attention_mask"], decoding_settings(cfg.generate))[0].tolist()
    encoded.targets[2] = new  # the generated ids as the target
    train = collate_train(encoded, [2], tokenizer.pad_token_id, generator.kind)
    with torch.no_grad():
        logits, labels = generator.label_logits(**train)
    picked = logits[0][labels[0] != IGNORE].argmax(-1).tolist()
    if arch == "bart":  # BART's forced_eos_token_id replaces the last token at max_new_tokens
        picked, new = picked[:-1], new[:-1]
    assert picked == new


@pytest.mark.parametrize("arch,method", CASES)
def test_reloaded_weights_generate_the_same_text(tiny_generators, arch, method, tmp_path):
    cfg, tokenizer, generator, encoded = make(tiny_generators[arch], method)
    _perturb(generator)
    expected = greedy(generator, tokenizer, encoded, cfg)
    save_weights(generator, tmp_path / "checkpoint")
    assert (tmp_path / "checkpoint" / ("adapter_model.safetensors" if generator.is_peft else "backbone.safetensors")).exists()
    batch = collate_train(encoded, range(len(ROWS)), tokenizer.pad_token_id, generator.kind)
    with torch.no_grad():
        trained_loss = generator.eval()(**batch)
        _, _, fresh, _ = make(tiny_generators[arch], method)
        assert fresh.eval()(**batch) != trained_loss  # the untrained model really differs
        load_weights(fresh, tmp_path / "checkpoint")
        torch.testing.assert_close(fresh(**batch), trained_loss)
    assert greedy(fresh, tokenizer, encoded, cfg) == expected


def test_p_tuning_encoder_is_saved_whole(tiny_generators, tmp_path):
    """peft's adapter keeps only the prompt the encoder made (#1607, #2256): the encoder must be saved too."""
    _, _, generator, _ = make(tiny_generators["gpt2"], "p_tuning")
    save_weights(generator, tmp_path)
    assert (tmp_path / "prompt_encoder.safetensors").exists()


def test_soft_template_vectors_train_and_generate(tiny_generators):
    cfg, tokenizer, generator, encoded = make(tiny_generators["gpt2"], "lora", template="{soft:2} {source} =>")
    assert encoded.soft_positions[0] == [0, 1]
    _perturb(generator)
    assert greedy(generator, tokenizer, encoded, cfg, batch_size=1) == greedy(generator, tokenizer, encoded, cfg)


def test_bitfit_on_a_model_without_biases_is_a_config_error(tiny_generators):
    with pytest.raises(PromptftError, match="no.*bias|has none") as err:
        make(tiny_generators["llama"], "bitfit")
    assert err.value.field == "method.name"


def test_encoder_only_model_is_rejected_with_the_reason(tiny_encoder, tiny_mlm):
    for path in (tiny_encoder, tiny_mlm):
        with pytest.raises(PromptftError, match="cannot generate") as err:
            make(path)
        assert err.value.field == "model.name"


def test_mask_in_a_generation_template_is_an_error(tiny_generators):
    with pytest.raises(PromptftError, match="mask") as err:
        make(tiny_generators["gpt2"], template="{source} It was {mask}.")
    assert err.value.field == "prompt.template"


def test_context_too_small_for_prompt_and_new_tokens(tiny_generators):
    with pytest.raises(PromptftError, match="positions") as err:
        make(tiny_generators["gpt2"], generate={"max_new_tokens": 100})
    assert err.value.field == "generate.max_new_tokens"


def _perturb(generator):
    """Random-init trainable weights are often zero (LoRA B) or tiny; move them so a method changes the output."""
    torch.manual_seed(1)
    with torch.no_grad():
        for p in generator.parameters():
            if p.requires_grad:
                p.add_(torch.randn_like(p) * 0.5)
