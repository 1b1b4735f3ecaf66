"""`promptft init [TEMPLATE]`: commented starter configs that validate as written.

Data paths point at the bundled sample data when it is there (a source checkout), otherwise at
clearly marked placeholders that still validate, so `promptft config show` works before editing.
"""

from __future__ import annotations

import difflib
import os
import textwrap
from dataclasses import dataclass
from pathlib import Path

from promptft_cli.errors import PromptftError

SAMPLE_DATA = Path(__file__).resolve().parents[2] / "sample_data"
PLACEHOLDER = "PLACEHOLDER"


@dataclass(frozen=True)
class Starter:
    summary: str
    sample: str
    """File in sample_data/ the starter trains on."""
    columns: str
    """What the data file must hold, for the placeholder comment."""
    body: str
    """The YAML; `{train}`, `{train_note}`, `{test}`, `{test_note}` and `{output}` are filled in, so literal braces are doubled."""
    command: str = "promptft train"
    """The command the config's first line tells the user to run."""
    test: str | None = None
    """File in sample_data/ the starter tests on (`{test}`, `{test_note}` in the body), if any."""


_HEADER = """# {command} {config}
{summary}
# Check it: `promptft config show {config}` prints it with every default filled in.
# Every key can be overridden without editing: --set train.epochs=3 --set method.name=lora
"""

STARTERS: dict[str, Starter] = {
    "sentiment": Starter(
        "Sentiment (positive/negative), the recommended few-shot recipe: label descriptions scored by similarity "
        "on the embedded MiniLM, the whole encoder fine-tuned (see docs/few-shot.md for the evidence).",
        "sentiment.csv", "columns: text,label", """task: classification
model:
  name: default              # the embedded MiniLM (offline); or a Hugging Face id / local folder
  max_length: 128            # tokens; longer texts are cut (the template never is)
data:
  train: {train}{train_note}
  # validation: val.csv      # optional; otherwise a stratified 10% of train is held out
  # test: test.csv           # optional; otherwise a stratified 20% of train is held out
  # unlabeled: texts.csv     # unlabelled in-domain texts: add train.self_training below (+2-3 points at k=16)
  text_column: text
  label_column: label
prompt:
  template: "{{text}}"         # an encoder embeds the text itself
  verbalizer:                # label descriptions: a few phrases per label in your data's own terms
    negative: [a bad experience, terrible and disappointing, I would not recommend it]
    positive: [a great experience, excellent and pleasant, I would recommend it]
  head: verbalizer           # cosine similarity to the descriptions: a zero-shot start that training refines
  calibration: none          # contextual | batch correct a label bias (see docs/few-shot.md)
  # `promptft search-verbalizer THIS.yaml` proposes descriptions from the train split
method:
  name: full                 # the encoder itself trains (22M parameters; minutes on a CPU at k=16)
train:
  epochs: 10
  batch_size: 16
  lr: 5.0e-5
  warmup_ratio: 0.1
  seed: 42
  # class_weights: balanced  # when one label is rare
  early_stopping:
    patience: 10             # metric: accuracy, or macro_f1 when the train split is imbalanced
  # self_training: {{rounds: 1, share: 0.5, epochs: 3}}   # needs data.unlabeled
  # report_to: [tensorboard] # logs to <output_dir>/tensorboard; mlflow and wandb work too
output_dir: {output}         # the run directory (relative to this file)
"""),
    "topic": Starter(
        "Topic classification (several classes), the recommended few-shot recipe: each text is compared with "
        "label descriptions on the embedded MiniLM and the whole encoder is fine-tuned (docs/few-shot.md).",
        "topic.csv", "columns: text,label", """task: classification
model:
  name: default              # the embedded MiniLM (offline); or a Hugging Face id / local folder
  max_length: 64             # headlines are short
data:
  train: {train}{train_note}
  text_column: text
  label_column: label
  # few_shot: {{k: 16, seeds: [13, 21, 42, 87, 100]}}  # LM-BFF protocol: k examples per class, one run per seed
  # unlabeled: texts.csv     # unlabelled in-domain texts: add train.self_training below
prompt:
  template: "{{text}}"         # an encoder embeds the text itself
  verbalizer:                # label descriptions: what each topic is about, a few phrases in your data's terms
    business: [business and the economy, companies, markets and earnings]
    politics: [politics and government, elections, diplomacy and lawmakers]
    science: [science and research, a discovery by scientists]
    sports: [sports, a match, a team or an athlete]
  head: verbalizer           # cosine similarity to the descriptions: a zero-shot start that training refines
method:
  name: full                 # the encoder itself trains (22M parameters; minutes on a CPU at k=16)
train:
  epochs: 10
  batch_size: 16
  lr: 5.0e-5
  warmup_ratio: 0.1
  seed: 42
  # class_weights: balanced  # when one topic is rare
  early_stopping:
    patience: 10             # metric: accuracy, or macro_f1 when the train split is imbalanced
  # self_training: {{rounds: 1, share: 0.5, epochs: 3}}   # needs data.unlabeled
output_dir: {output}
"""),
    "pair": Starter(
        "A sentence-pair task (natural-language inference: premise + hypothesis -> label) with LoRA.",
        "nli.jsonl", "fields: premise,hypothesis,label", """task: classification
model:
  name: default              # the embedded MiniLM (offline); or a Hugging Face id / local folder
  max_length: 128
data:
  train: {train}{train_note}
  text_columns: [premise, hypothesis]   # both go into the template by name
  label_column: label
prompt:
  template: "{{premise}} Question: {{hypothesis}}"   # {{column}} inserts a column; see docs/prompts.md
method:
  name: lora
  r: 8
  alpha: 16
train:
  epochs: 8
  batch_size: 16
  lr: 1.0e-3
  seed: 42
  early_stopping:
    metric: accuracy
    patience: 3
output_dir: {output}
"""),
    "zero-shot": Starter(
        "Zero-shot: no training; the template and verbalizer alone pick the label. Run it with "
        "`promptft evaluate CONFIG` (test split) or `promptft predict CONFIG INPUT`.",
        "sentiment.csv", "columns: text,label (labels must be the verbalizer's keys)", """task: classification
model:
  name: default              # the embedded MiniLM: compares the text with each label's words
  max_length: 128
data:
  train: {train}{train_note}
  text_column: text
  label_column: label
prompt:
  template: "{{text}}"         # an encoder embeds the text itself; with a masked LM use "{{text}} It was {{mask}}."
  verbalizer:                # label -> word(s) that express it
    positive: [great, good]
    negative: [terrible, bad]
  head: verbalizer           # on an encoder without LM head: cosine similarity to the label words
  combine: mean              # several words per label: mean (or max) of their scores
method:
  name: head                 # only used if you fine-tune this config later with `promptft train`
output_dir: {output}
""", command="promptft evaluate"),
    "translation": Starter(
        "Translation (English -> German) with a LoRA adapter on the embedded SmolLM2-135M-Instruct. The first "
        "use converts the embedded model once (about half a minute); later runs load it in a second or two.",
        "translation.csv", "columns: source,target", """task: generation
model:
  name: default-lm           # the embedded SmolLM2-135M-Instruct (offline); or a Hugging Face id / local folder
  max_length: 96             # prompt tokens; longer sources are cut (the template never is)
  max_target_length: 64      # target tokens incl. the end token; prepare reports how many were cut
data:
  train: {train}{train_note}
  test: {test}{test_note}
  text_column: source        # goes into the template as {{source}}
  target_column: target      # what the model learns to write
  # references_column: references   # optional: several references per row joined by ' ||| ', all scored
prompt:
  template: "Translate English to German: {{source}}"
  chat: true                 # wrap the prompt in the model's chat template (instruct models)
method:
  name: lora                 # full | bitfit | prompt_tuning | p_tuning | prefix_tuning | lora
  r: 8                       # rank: higher = more capacity, more memory
  alpha: 16
generate:
  max_new_tokens: 48         # the sample sentences are short
  num_beams: 1               # 1 = greedy; 4 = beam search (slower, often a little better)
train:
  epochs: 3
  batch_size: 8
  lr: 1.0e-3
  seed: 42
  # train_on_prompt: false   # true: the prompt tokens are in the loss too (default: only the target)
  early_stopping:
    metric: chrf             # bleu | chrf | rouge1 | rouge2 | rougeL | exact_match | loss, on the validation split
    patience: 2
output_dir: {output}         # the run directory (relative to this file)
""", test="translation_test.csv"),
    "data-to-text": Starter(
        "Data-to-text (WebNLG-style triples -> one English sentence) by prompt tuning the embedded "
        "SmolLM2-135M-Instruct: only 20 soft-prompt vectors are trained.",
        "data_to_text.csv", "columns: source,target", """task: generation
model:
  name: default-lm           # the embedded SmolLM2-135M-Instruct (offline); or a Hugging Face id / local folder
  max_length: 128            # prompt tokens
  max_target_length: 64      # target tokens incl. the end token
data:
  train: {train}{train_note}
  text_column: source        # triples `subject | predicate | object` joined by ` && `
  target_column: target
prompt:
  template: "Write one English sentence that states all of these facts: {{source}}"
  chat: true                 # wrap the prompt in the model's chat template (instruct models)
method:
  name: prompt_tuning
  num_virtual_tokens: 20     # soft-prompt length
  init: text                 # start from the embeddings of init_text
  init_text: "Turn the facts into one fluent English sentence:"
generate:
  max_new_tokens: 64
  num_beams: 1               # 1 = greedy
  # stop: ["\\n"]             # cut the output at the first line break
train:
  epochs: 8
  batch_size: 8
  lr: 3.0e-2                 # soft prompts need a large learning rate
  seed: 42
  early_stopping:
    metric: rougeL           # bleu | chrf | rouge1 | rouge2 | rougeL | exact_match | loss
    patience: 3
output_dir: {output}
"""),
}


def names() -> list[str]:
    return list(STARTERS)


def render(name: str, config_path: Path) -> str:
    """The starter's text for a config written to `config_path` (data paths are relative to it)."""
    starter = _get(name)
    train, note = _data_path(starter.sample, "train", f"your labelled CSV/TSV/JSONL ({starter.columns})", config_path)
    test, test_note = _data_path(starter.test or starter.sample, "test",
                                 f"your held-out CSV/TSV/JSONL ({starter.columns})", config_path)
    summary = "\n".join("# " + line for line in textwrap.wrap(starter.summary, 98))
    header = _HEADER.format(command=starter.command, config=config_path.name, summary=summary)
    return header + starter.body.format(train=train, train_note=note, test=test, test_note=test_note,
                                        output=f"runs/{config_path.stem}")


def _data_path(sample_name: str, split: str, what: str, config_path: Path) -> tuple[str, str]:
    """(path, trailing comment) for a data file: the bundled sample when it is there, else a marked placeholder."""
    sample = SAMPLE_DATA / sample_name
    if sample.exists():
        return _relative(sample, config_path.parent), "   # sample data shipped with promptft; point it at yours"
    return f"data/{split}{Path(sample_name).suffix}", f"   # {PLACEHOLDER}: {what}"


def write(name: str, path: Path, force: bool = False) -> Path:
    """Write starter `name` to `path`; an existing file is kept unless `force`."""
    if path.exists() and not force:
        raise PromptftError("file exists; pass --force to replace it or choose another path with -o", file=path)
    if path.is_dir():
        raise PromptftError("expected a file path for the config, got a directory", file=path)
    text = render(name, path)
    from promptft_cli.runs.layout import write_text_atomic

    write_text_atomic(path, text)
    return path


def _get(name: str) -> Starter:
    if name not in STARTERS:
        close = difflib.get_close_matches(name, STARTERS, n=1, cutoff=0.5)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise PromptftError(f"unknown starter '{name}'{hint}; choose one of {', '.join(STARTERS)}")
    return STARTERS[name]


def _relative(target: Path, start: Path) -> str:
    try:
        return Path(os.path.relpath(target, start.resolve())).as_posix()
    except ValueError:  # another drive on Windows
        return target.as_posix()
