"""Generation metrics agree with sacreBLEU and rouge-score called directly on the same fixed strings."""

from __future__ import annotations

import pytest
import sacrebleu
from rouge_score.rouge_scorer import RougeScorer

from promptft_cli.errors import PromptftError
from promptft_cli.tasks.generation_metrics import generation_metrics, parse_references

HYPS = ["The cat sat on the mat.", "A man is riding a bike down the street.", "Two dogs play in snow", "hello"]
REFS = ["The cat is sitting on the mat.", "A man rides his bicycle down the street.", "Two dogs playing in the snow.",
        "hello"]


def _rouge_mean(hyps, refs_lists, **kwargs):
    scorer = RougeScorer(["rouge1", "rouge2", "rougeL"], **kwargs)
    rows = [scorer.score_multi(refs, hyp) for hyp, refs in zip(hyps, refs_lists)]
    return {k: sum(r[k].fmeasure for r in rows) / len(rows) for k in ("rouge1", "rouge2", "rougeL")}


def test_single_reference_matches_sacrebleu_and_rouge_score():
    m = generation_metrics(HYPS, [[r] for r in REFS])
    assert m["bleu"] == sacrebleu.corpus_bleu(HYPS, [REFS]).score
    assert m["chrf"] == sacrebleu.corpus_chrf(HYPS, [REFS], word_order=2).score
    expected = _rouge_mean(HYPS, [[r] for r in REFS])  # ASCII text: our tokenizer gives rouge-score's tokens
    assert {k: m[k] for k in expected} == pytest.approx(expected, abs=1e-12)
    assert m["exact_match"] == 0.25
    assert m["tokenize"] == "13a" and m["examples"] == 4 and m["max_references"] == 1
    assert m["signatures"]["bleu"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert m["signatures"]["chrf"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:2|space:no|version:")
    per = m["per_example"]
    assert per["bleu"] == [sacrebleu.sentence_bleu(h, [r]).score for h, r in zip(HYPS, REFS)]
    assert per["chrf"] == [sacrebleu.sentence_chrf(h, [r], word_order=2).score for h, r in zip(HYPS, REFS)]
    assert per["exact_match"] == [False, False, False, True] and len(per["rougeL"]) == 4
    assert per["bleu"][3] == pytest.approx(100) and 0 < per["bleu"][0] < 100  # effective order: short rows are not all 0


def test_a_fixed_value():
    m = generation_metrics(["the cat sat on the mat"], [["the cat sat on a mat"]])
    assert m["bleu"] == pytest.approx(53.7284965911771)
    assert m["rouge1"] == pytest.approx(5 / 6)


def test_multi_reference_with_a_varying_count_per_example():
    refs = [[REFS[0], "A cat sat on the mat."], [REFS[1]], [REFS[2], "Two dogs play in the snow.", "Dogs in snow."],
            [" hello "]]
    m = generation_metrics(HYPS, refs)
    streams = [[REFS[0], REFS[1], REFS[2], " hello "], ["A cat sat on the mat.", None, "Two dogs play in the snow.", None],
               [None, None, "Dogs in snow.", None]]
    assert m["bleu"] == sacrebleu.corpus_bleu(HYPS, streams).score
    assert m["chrf"] == sacrebleu.corpus_chrf(HYPS, streams, word_order=2).score
    assert m["bleu"] > generation_metrics(HYPS, [[r[0]] for r in refs])["bleu"]  # extra references can only help
    assert m["max_references"] == 3 and m["signatures"]["bleu"].startswith("nrefs:var|")  # sacreBLEU marks a varying count
    assert {k: m[k] for k in ("rouge1", "rouge2", "rougeL")} == pytest.approx(_rouge_mean(HYPS, refs), abs=1e-12)
    assert m["per_example"]["bleu"] == [sacrebleu.sentence_bleu(h, r).score for h, r in zip(HYPS, refs)]
    assert m["exact_match"] == 0.25  # compared after stripping


class CharTokenizer:
    def tokenize(self, text):
        return [ch for ch in text.lower() if ch.isalnum()]


def test_chinese_uses_the_zh_tokenizer_and_character_rouge():
    hyps = ["我喜欢吃苹果。", "他今天去学校了", "这是一本书。"]
    refs = [["我爱吃苹果。"], ["他今天去上学了。", "今天他去学校了。"], ["这是一本书。"]]
    m = generation_metrics(hyps, refs)
    streams = [["我爱吃苹果。", "他今天去上学了。", "这是一本书。"], [None, "今天他去学校了。", None]]
    assert m["tokenize"] == "zh" and "|tok:zh|" in m["signatures"]["bleu"]
    assert m["bleu"] == sacrebleu.corpus_bleu(hyps, streams, tokenize="zh").score
    assert m["bleu"] != sacrebleu.corpus_bleu(hyps, streams).score  # 13a would see whole sentences as words
    expected = _rouge_mean(hyps, refs, tokenizer=CharTokenizer())
    assert {k: m[k] for k in expected} == pytest.approx(expected, abs=1e-12)
    assert _rouge_mean(hyps, refs)["rouge1"] == 0.0  # what rouge-score's default tokenizer would report
    assert m["exact_match"] == pytest.approx(1 / 3)


def test_tokenize_override():
    hyps, refs = ["我喜欢吃苹果。"], [["我爱吃苹果。"]]
    m = generation_metrics(hyps, refs, tokenize="char")
    assert m["tokenize"] == "char" and m["bleu"] == sacrebleu.corpus_bleu(hyps, [["我爱吃苹果。"]], tokenize="char").score
    assert generation_metrics(["a b"], [["a b c"]], tokenize="none")["signatures"]["bleu"].count("tok:none") == 1


def test_a_few_latin_words_do_not_hide_chinese():
    m = generation_metrics(["我用 iPhone 15 拍照"], [["我用iPhone 15拍了照片。"]])
    assert m["tokenize"] == "zh"
    assert generation_metrics(["Ich sehe 猫"], [["Ich sehe eine Katze."]])["tokenize"] == "13a"


def test_rouge_keeps_non_ascii_words():
    m = generation_metrics(["Ein Mädchen läuft über die Straße"], [["Ein Mädchen läuft über die Straße."]])
    assert m["rouge1"] == m["rougeL"] == 1.0
    m = generation_metrics(["Ein Mädchen"], [["Ein Mann"]])
    assert m["rouge1"] == pytest.approx(0.5)  # rouge-score's default would split "Mädchen" into "m", "dchen"


def test_bad_input_is_a_one_line_error():
    with pytest.raises(PromptftError, match="2 predictions but 1 reference lists"):
        generation_metrics(["a", "b"], [["a"]])
    with pytest.raises(PromptftError, match="at least one non-empty reference") as err:
        generation_metrics(["a", "b"], [["a"], []])
    assert err.value.row == 2
    with pytest.raises(PromptftError, match="at least one non-empty reference"):
        generation_metrics(["a"], ["a"])  # a bare string, not a list of references
    with pytest.raises(PromptftError, match="unknown sacreBLEU tokenizer 'zz'.*13a"):
        generation_metrics(["a"], [["a"]], tokenize="zz")
    with pytest.raises(PromptftError, match="no predictions"):
        generation_metrics([], [])


@pytest.mark.parametrize("cell, refs", [
    ("Ein Hund. ||| Ein Hund läuft.", ["Ein Hund.", "Ein Hund läuft."]),
    ("only one", ["only one"]),
    ("a|||b |||  c ", ["a", "b", "c"]),
    ("x |||  ||| y", ["x", "y"]),
    ("", []),
    (None, []),
])
def test_parse_references(cell, refs):
    assert parse_references(cell) == refs
