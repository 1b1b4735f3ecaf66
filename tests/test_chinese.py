"""Chinese text end to end: prepare keeps it, the template renders it one character per token, truncation
cuts only the review, and predict scores the label characters at [MASK] (configs/chnsenticorp.yaml's setup)."""

from __future__ import annotations

import csv
import json

import pytest
import yaml

from promptft_cli.config import load_config
from promptft_cli.data.prepare import prepare
from promptft_cli.inference.predict import Predictor, predictions, read_inputs, write_predictions
from promptft_cli.prompting.encoding import encode
from promptft_cli.prompting.templates import template_for

# Every character the test texts use; BertNormalizer puts spaces around CJK characters, so each one is a
# token of its own, as in bert-base-chinese's vocabulary.
_CHARS = list("这家酒店房间很干净服务也好总之差太小了早餐不吃书本质量一般价格便宜我喜欢失望。，！")
TEMPLATE = "{text}总之很{mask}。"
ROWS = [
    ("这家酒店很干净，服务也好！", "positive"),
    ("房间太小了，早餐不好吃。", "negative"),
    ("书本质量很好，价格便宜。", "positive"),
    ("服务太差了，我很失望。", "negative"),
    ("我很喜欢这家酒店。", "positive"),
    ("质量一般，不喜欢。", "negative"),
]


@pytest.fixture(scope="module")
def zh_tokenizer():
    """A WordPiece tokenizer built like bert-base-chinese's: [CLS] ... [SEP], CJK characters split apart."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab_list = list(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *_CHARS, "hello"]))
    vocab = {token: i for i, token in enumerate(vocab_list)}
    backend = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(handle_chinese_chars=True, lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    backend.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=64)


@pytest.fixture(scope="module")
def zh_mlm(zh_tokenizer, tmp_path_factory):
    from factories import save_tiny_model

    return save_tiny_model(zh_tokenizer, tmp_path_factory.mktemp("tiny-zh-mlm"), "mlm")


@pytest.fixture
def zh_config(tmp_path, zh_mlm):
    with (tmp_path / "train.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows(ROWS * 4)  # duplicates are dropped by prepare: 6 rows remain
        writer.writerow(["  房间  很干净  ", "positive"])  # whitespace collapsed and stripped, CJK untouched
    cfg = {"model": {"name": str(zh_mlm), "max_length": 16}, "data": {"train": "train.csv", "test_size": 0.25,
           "validation_size": 0.25}, "prompt": {"template": TEMPLATE, "verbalizer": {"positive": "好", "negative": "差"},
           "head": "verbalizer"}, "method": {"name": "bitfit"}, "output_dir": "run"}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return load_config(tmp_path / "config.yaml")


def ids(tokenizer, text: str) -> list[int]:
    return tokenizer.convert_tokens_to_ids(list(text))


def test_template_renders_one_token_per_character(zh_tokenizer, zh_config):
    tok = zh_tokenizer
    enc = encode(template_for(zh_config), {"text": "房间很干净"}, tok, 64)
    expected = [tok.cls_token_id, *ids(tok, "房间很干净总之很"), tok.mask_token_id, *ids(tok, "。"), tok.sep_token_id]
    assert enc.input_ids == expected
    assert tok.unk_token_id not in enc.input_ids
    assert enc.mask_position == 9 and not enc.truncated


def test_truncation_cuts_the_review_never_the_template(zh_tokenizer, zh_config):
    tok = zh_tokenizer
    review = "这家酒店房间很干净服务也好早餐不好吃"  # 18 characters; the template and specials take 7 tokens
    enc = encode(template_for(zh_config), {"text": review}, tok, 16)
    assert len(enc.input_ids) == 16 and enc.truncated
    # The review keeps its first 16 - 7 = 9 characters; the template's tail and [MASK] stay whole.
    assert enc.input_ids == [tok.cls_token_id, *ids(tok, review[:9] + "总之很"), tok.mask_token_id,
                             *ids(tok, "。"), tok.sep_token_id]
    assert enc.input_ids[enc.mask_position] == tok.mask_token_id


def test_prepare_keeps_chinese_text(zh_config, zh_tokenizer):
    data = prepare(zh_config, zh_tokenizer)
    texts = sorted(r["text"] for split in ("train", "validation", "test") for r in data[split].rows)
    assert texts == sorted([t for t, _ in ROWS] + ["房间 很干净"])
    written = (zh_config.run_dir / "data" / "train.jsonl").read_text(encoding="utf-8")
    assert all(json.loads(line)["text"] in texts for line in written.splitlines())
    report = json.loads((zh_config.run_dir / "data_report.json").read_text(encoding="utf-8"))
    # "这家酒店很干净，服务也好！" is 13 characters + 7 template/special tokens = 20 > max_length 16.
    lengths = {t: len(t.replace(" ", "")) + 7 for t in texts}
    over = sum(n > 16 for n in lengths.values())
    splits = report["splits"]
    assert sum(s["tokens"]["truncated"] for s in splits.values()) == over > 0


def test_predict_scores_the_label_characters_at_the_mask(zh_config, zh_tokenizer, tmp_path):
    import torch
    from transformers import BertForMaskedLM

    predictor = Predictor.from_config(zh_config, ["negative", "positive"])
    source = tmp_path / "in.csv"
    source.write_text("id,text\n1,这家酒店很干净\n2,服务太差了\n", encoding="utf-8")
    out = tmp_path / "out.csv"
    assert write_predictions(predictions(predictor, read_inputs(str(source), ["text"])), out) == 2
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["text"] for r in rows] == ["这家酒店很干净", "服务太差了"]
    # The same numbers straight from the masked LM: softmax over the two label characters' logits at [MASK].
    model = BertForMaskedLM.from_pretrained(zh_config.model.name).eval()
    words = ids(zh_tokenizer, "差好")  # negative, positive
    for row in rows:
        enc = encode(template_for(zh_config), {"text": row["text"]}, zh_tokenizer, 16)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([enc.input_ids])).logits[0, enc.mask_position]
        expected = torch.log_softmax(logits, -1)[words].softmax(-1).tolist()
        got = [float(row["prob_negative"]), float(row["prob_positive"])]
        assert got == pytest.approx(expected, abs=1e-5)
        assert row["prediction"] == ["negative", "positive"][expected.index(max(expected))]
