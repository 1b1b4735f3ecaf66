"""The YAML config: pydantic schema, safe loading, `--set` overrides and friendly validation errors."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from promptft_cli.errors import PromptftError
from promptft_cli.methods import METHODS, MethodOptions
from promptft_cli.runs.layout import write_text_atomic
from promptft_cli.tasks.base import TASKS

# The default for the embedded MiniLM with label descriptions (the similarity head): full fine-tuning at 5e-5,
# chosen on the developer splits of SST-2, SST-5, TREC and SNIPS (benchmarks/results/fewshot_suite_dev*.json);
# see docs/few-shot.md. The train values fill what a config leaves unset whenever it is that combination, so
# naming `method: full` yourself gets them too (the generic defaults lose 1.5 points there: docs/few-shot.md).
RECIPE_METHOD = "full"
RECIPE_TRAIN = {"lr": 5.0e-5, "warmup_ratio": 0.1}
RECIPE_STOPPING = {"patience": 10}  # evaluations: with 10 epochs the best epoch is kept, training never stops early


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, values are checked strictly."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_assignment=True)


class ModelConfig(Section):
    name: str = "default"
    """`default` (the embedded MiniLM encoder, offline), a Hugging Face id, or a local path."""
    max_length: int = Field(128, ge=8, le=8192)
    """Longest input in tokens; data columns are cut to fit, the template never."""
    pooling: Literal["auto", "mean", "cls", "last"] = "auto"
    """How token states become one vector: `auto` reads sentence-transformers' setting, else mean (encoders) or last (decoders)."""
    trust_remote_code: bool = False
    """Allow model code from the model repository to run; off unless you trust the source."""
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """Weights dtype when loading (heads stay float32); bfloat16 halves a large model's memory; float16 only with a frozen backbone."""
    device_map: str | None = None
    """Passed to `from_pretrained` (e.g. `auto`) to spread one large model over a machine's GPUs; one process only (not under a launcher)."""
    load_in_8bit: bool = False
    """Quantise weights to 8 bit with bitsandbytes (CUDA GPU; `pip install 'promptft[quantization]'`; not with full/bitfit)."""
    load_in_4bit: bool = False
    """Quantise weights to 4 bit with bitsandbytes (CUDA GPU; `pip install 'promptft[quantization]'`; not with full/bitfit)."""
    max_target_length: int = Field(128, ge=1, le=8192)
    """Generation: longest target in tokens (with the end token); longer targets are cut and counted in the data report."""


class FewShotConfig(Section):
    k: int = Field(ge=1)
    """Examples per class sampled from train (and, as in LM-BFF, from validation)."""
    seed: int = 42
    """Seed for the sampling when `seeds` is not given."""
    seeds: list[int] | None = None
    """One run per seed; results are reported as mean ± std (LM-BFF uses 13, 21, 42, 87, 100)."""
    unlabeled: int | None = Field(None, ge=1)
    """Also keep N train rows outside the sample, labels dropped, as unlabelled data for `train.self_training` (PET's protocol)."""


class DataConfig(Section):
    train: str
    """Labelled training data: CSV, TSV or JSONL (path relative to the config file)."""
    validation: str | None = None
    """Validation data; when missing, a stratified share of train is held out."""
    test: str | None = None
    """Test data; when missing, a stratified share of train is held out."""
    text_column: str | None = None
    """The input column (default `text`); use `text_columns` for pair tasks."""
    text_columns: list[str] | None = None
    """Several input columns (e.g. `[premise, hypothesis]`), inserted by name in the template."""
    label_column: str = "label"
    """The column holding the class label."""
    target_column: str = "target"
    """Generation: the column holding the text the model should produce."""
    references_column: str = "references"
    """Generation: where a file has this column, its ` ||| `-joined references are all scored (multi-reference)."""
    validation_size: float = Field(0.1, gt=0, lt=1)
    """Share of train held out for validation when no validation file is given."""
    test_size: float = Field(0.2, gt=0, lt=1)
    """Share of train held out for test when no test file is given."""
    few_shot: FewShotConfig | None = None
    """Sample k examples per class (the few-shot protocol)."""
    unlabeled: str | None = None
    """Unlabelled texts (same text columns; any label column is ignored) for `train.self_training`."""
    label_examples: bool = False
    """Add each phrase of `prompt.verbalizer` to train as an example of its label (after few-shot sampling); measured in docs/few-shot.md: a small gain on intent data, none elsewhere."""
    encoding: str = "utf-8"
    """Text encoding of the data files (`utf-8` also accepts a BOM)."""

    @model_validator(mode="after")
    def _one_text_setting(self) -> "DataConfig":
        if self.text_column and self.text_columns:
            raise ValueError("give either text_column or text_columns, not both")
        return self

    @property
    def columns(self) -> list[str]:
        """The input columns, in order."""
        return list(self.text_columns or [self.text_column or "text"])


class DemonstrationsConfig(Section):
    per_class: int = Field(1, ge=1, le=8)
    """Filled training examples of each label appended to every input (LM-BFF)."""
    select: Literal["random", "similar"] = "random"
    """`similar` picks the training examples closest to the input by embedding."""


class EnsembleMember(Section):
    template: str | None = None
    """This pattern's template (default: prompt.template)."""
    verbalizer: dict[str, str | list[str]] | None = None
    """This pattern's label words (default: prompt.verbalizer)."""


class PromptConfig(Section):
    template: str | None = None
    """How an example becomes model input, e.g. `{text} It was {mask}.` (see docs/prompts.md)."""
    verbalizer: dict[str, str | list[str]] | None = None
    """Label → label word(s), e.g. `positive: [great, good]`."""
    head: Literal["verbalizer", "linear"] | None = None
    """How labels are scored; default `verbalizer` when a verbalizer is given, else `linear`."""
    combine: Literal["mean", "max"] = "mean"
    """How the scores of several words for one label are combined."""
    init_from_verbalizer: bool = True
    """`linear` head: initialise each class's weights from its label words' embeddings."""
    demonstrations: DemonstrationsConfig | None = None
    """Append training examples to each input (LM-BFF demonstrations); generation puts `per_class` solved examples in total before the input."""
    chat: bool = False
    """Generation: wrap the rendered prompt in the tokenizer's chat template (instruct models) as one user turn."""
    ensemble: list[EnsembleMember] | None = Field(None, min_length=2)
    """PET: several `{template, verbalizer}` pairs; zero-shot their scores are combined, trained one model per pair labels the unlabelled data for one final model (see docs/few-shot.md)."""
    ensemble_weighting: Literal["mean", "accuracy"] = "mean"
    """How ensemble members are combined: equally, or weighted by each pair's accuracy on the labelled train split (PET)."""
    multi_mask: bool = False
    """Masked LM: a label word of n tokens gets n {mask} slots and scores the product of its token probabilities (PET); off: all its tokens are read at the one {mask}, averaged."""
    calibration: Literal["none", "contextual", "batch"] = "none"
    """Correct the label scores: `contextual` divides by the scores of content-free inputs ("N/A", "", mask), `batch` subtracts each label's mean score over the predicted batch (see docs/few-shot.md)."""

    @model_validator(mode="after")
    def _head_needs_verbalizer(self) -> "PromptConfig":
        if self.head == "verbalizer" and not self.verbalizer and not self.ensemble:
            raise ValueError("head 'verbalizer' needs prompt.verbalizer (label → words)")
        if self.calibration != "none" and self.resolved_head == "linear":
            raise ValueError(f"prompt.calibration '{self.calibration}' corrects label-word scores, and the linear head "
                             "has none; set prompt.calibration: none or use head 'verbalizer' with a verbalizer")
        for i, member in enumerate(self.ensemble or []):
            if not (member.verbalizer or self.verbalizer):
                raise ValueError(f"prompt.ensemble[{i}].verbalizer: this pair has no label words, and prompt.verbalizer "
                                 "gives none to inherit")
        if self.ensemble and self.resolved_head != "verbalizer":
            raise ValueError("prompt.ensemble combines label-word scores: it needs head 'verbalizer'")
        return self

    @property
    def resolved_head(self) -> str:
        if self.head is None and self.ensemble:
            return "verbalizer"
        return self.head or ("verbalizer" if self.verbalizer else "linear")


class MethodConfig(BaseModel):
    """`name` picks a registered method; the other keys are that method's own options."""

    model_config = ConfigDict(extra="forbid")
    name: str = "prompt_tuning"
    options: MethodOptions = Field(default_factory=MethodOptions)

    @model_validator(mode="before")
    @classmethod
    def _split_options(cls, raw: Any) -> Any:
        if not isinstance(raw, dict):
            return raw
        raw = dict(raw)
        name = raw.pop("name", "prompt_tuning")
        if not isinstance(name, str) or name not in METHODS:
            raise ValueError(f"unknown method '{name}'{_suggest(str(name), METHODS)}; choose one of {', '.join(METHODS)}")
        opts = raw.pop("options", {})
        if not isinstance(opts, dict):
            raise ValueError("method.options must be a mapping of option names to values")
        opts = opts | raw
        return {"name": name, "options": METHODS[name].options.model_validate(opts)}

    def dump(self) -> dict[str, Any]:
        return {"name": self.name, **self.options.model_dump()}


def _check_stopping_metric(metric: str, task: str) -> None:
    accepted = TASKS[task].stopping_metrics
    if metric not in accepted:
        raise ValueError(f"'{metric}' is not a validation metric of task {task}; choose one of: {', '.join(accepted)}")


class EarlyStoppingConfig(Section):
    patience: int = Field(5, ge=1)
    """Evaluations without improvement before training stops (10 with `full` + label descriptions on the embedded MiniLM: the few-shot recipe)."""
    metric: str | None = None
    """Validation metric that picks the best checkpoint: one the task computes (classification: accuracy, macro_f1, loss; generation: chrf, bleu, rouge1/2/L, exact_match, loss); null: classification picks macro_f1 when the train split is imbalanced, else accuracy; generation: chrf."""

    @field_validator("metric")
    @classmethod
    def _a_metric_of_the_task(cls, v: str | None, info: ValidationInfo) -> str | None:
        # validate_config passes the task, so the error names this field and its line; Config checks again.
        task = (info.context or {}).get("task")
        if v is not None and task in TASKS:
            _check_stopping_metric(v, task)
        return v


class SelfTrainingConfig(Section):
    rounds: int = Field(1, ge=1, le=10)
    """Rounds of pseudo-labelling; each labels the unlabelled data with the latest model and retrains from the start."""
    share: float = Field(0.5, gt=0, le=1)
    """Share of the unlabelled examples kept per round: the most confident, in equal numbers per predicted label."""
    epochs: int = Field(2, ge=1)
    """Epochs of each retraining on the labelled + pseudo-labelled examples."""


class TrainConfig(Section):
    epochs: int = Field(10, ge=1)
    """Passes over the training data."""
    batch_size: int = Field(16, ge=1)
    """Examples per forward/backward pass, split evenly over the processes of a launch (so 1 or 8 GPUs train alike)."""
    eval_batch_size: int = Field(128, ge=1)
    """Examples per forward pass in evaluation and prediction."""
    lr: float | None = Field(None, gt=0)
    """Learning rate; null uses the method's default (see the methods table); 5e-5 with `full` + label descriptions on the embedded MiniLM (the few-shot recipe, docs/few-shot.md)."""
    head_lr: float | None = Field(None, gt=0)
    """Learning rate of the scoring head's own weights (label vectors and scale, linear layer); null: `lr`. A head can move faster than a pretrained body."""
    weight_decay: float = Field(0.0, ge=0)
    """AdamW weight decay."""
    warmup_ratio: float = Field(0.06, ge=0, lt=1)
    """Share of steps with a linear learning-rate warm-up (0.1 with `full` + label descriptions on the embedded MiniLM: the few-shot recipe)."""
    grad_accum: int = Field(1, ge=1)
    """Batches accumulated per optimiser step: the effective batch is batch_size × grad_accum."""
    max_grad_norm: float | None = Field(1.0, gt=0)
    """Gradient clipping norm; null turns clipping off."""
    seed: int = 42
    """Fixes data order and initialisation."""
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    """Keep the best checkpoint by validation metric; stop after `patience` evaluations without gain."""
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    """Mixed precision through accelerate: bf16 (GPU or CPU) or fp16 (CUDA GPU only); overrides the launcher's setting."""
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(default_factory=list)
    """Experiment trackers fed through accelerate; TensorBoard logs go to `<run_dir>/tensorboard/` (`pip install promptft[tensorboard]`)."""
    checkpoint_every: int | None = Field(None, ge=1)
    """Optimiser steps between resumable checkpoints; null saves one at the end of each epoch only."""
    keep_checkpoints: int = Field(2, ge=1)
    """Resumable checkpoints kept in `checkpoints/` (the newest N; older ones are deleted)."""
    class_weights: Literal["none", "balanced"] | dict[str, float] = "none"
    """Weights of the labels in the loss: `balanced` (n / (labels × n_label), as scikit-learn) or `{label: weight}`."""
    temperature_scaling: bool = True
    """After training, fit a temperature on the validation split so `confidence` matches accuracy (saved in calibration.json)."""
    self_training: SelfTrainingConfig | None = None
    """Pseudo-label the unlabelled data (`data.unlabeled` or `data.few_shot.unlabeled`) and retrain on the confident part."""
    train_on_prompt: bool = False
    """Generation with a causal LM: also train on the prompt tokens (by default only the target tokens are in the loss)."""


class GenerateConfig(Section):
    """Decoding settings for generation (passed to transformers' `generate`)."""

    max_new_tokens: int = Field(64, ge=1)
    """Most tokens generated per input; with the prompt it must fit the model's context."""
    num_beams: int = Field(1, ge=1)
    """Beam search width; 1 is greedy (or sampling with `do_sample`)."""
    do_sample: bool = False
    """Sample instead of searching (then temperature, top_p, top_k apply)."""
    temperature: float = Field(1.0, ge=0)
    """Sampling temperature (> 0 when sampling); lower is more conservative."""
    top_p: float = Field(1.0, gt=0, le=1)
    """Nucleus sampling: keep the smallest set of tokens whose probability reaches top_p."""
    top_k: int = Field(50, ge=0)
    """Sample only among the k most likely tokens (0: no limit)."""
    repetition_penalty: float = Field(1.0, gt=0)
    """Above 1 discourages repeating tokens already generated."""
    no_repeat_ngram_size: int = Field(0, ge=0)
    """Never repeat an n-gram of this size (0: off)."""
    length_penalty: float = 1.0
    """Beam search: above 1 favours longer outputs, below 1 shorter ones."""
    num_return_sequences: int = Field(1, ge=1)
    """Outputs per input (predict writes generation, generation_2, ...); at most num_beams unless sampling; metrics score the first."""
    stop: list[str] = Field(default_factory=list)
    """Strings that end an output: the text is cut where the first one appears."""

    @field_validator("temperature")
    @classmethod
    def _positive_when_sampling(cls, v: float, info) -> float:
        if info.data.get("do_sample") and v <= 0:
            raise ValueError("temperature must be > 0 when do_sample is true (use do_sample: false for greedy decoding)")
        return v

    @field_validator("num_return_sequences")
    @classmethod
    def _enough_beams(cls, v: int, info) -> int:
        if not info.data.get("do_sample") and v > info.data.get("num_beams", 1):
            raise ValueError(f"num_return_sequences {v} needs num_beams >= {v} (or do_sample: true)")
        return v

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, v: list[str]) -> list[str]:
        if any(not s for s in v):
            raise ValueError("stop strings must not be empty")
        return v


class Config(Section):
    task: str = "classification"
    """The task type: one of the registered tasks (classification; generation for text targets: translation, data-to-text)."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    data: DataConfig
    prompt: PromptConfig = Field(default_factory=PromptConfig)
    method: MethodConfig = Field(default_factory=MethodConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    generate: GenerateConfig = Field(default_factory=GenerateConfig)
    """Decoding settings (generation task)."""
    output_dir: str = "runs/run"
    """Run directory (relative to the config file)."""

    @field_validator("method", mode="before")
    @classmethod
    def _method_default(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v

    @field_validator("task")
    @classmethod
    def _known_task(cls, v: str) -> str:
        if v not in TASKS:
            raise ValueError(f"unknown task '{v}'; choose one of: {', '.join(TASKS)}")
        return v

    @model_validator(mode="after")
    def _stopping_metric_of_the_task(self) -> "Config":
        es = self.train.early_stopping
        if es.metric is not None:  # null stays: the loop chooses from the data (tasks/imbalance.py)
            _check_stopping_metric(es.metric, self.task)
        return self

    @model_validator(mode="after")
    def _recipe_by_default(self) -> "Config":
        """Label descriptions on the embedded MiniLM get the measured recipe (docs/few-shot.md), not prompt tuning.

        Without `method:` the method is the recipe's; with `method: full` (named or so defaulted) the train values
        the config leaves unset are the recipe's. `config show` and the run's config.yaml show what was filled in.
        """
        if self.task != "classification" or self.model.name != "default" or self.prompt.resolved_head != "verbalizer":
            return self
        # Set without re-validation: assignment would run this validator again on a half-changed config.
        if "method" not in self.model_fields_set:
            object.__setattr__(self, "method", MethodConfig.model_validate({"name": RECIPE_METHOD}))
            self.model_fields_set.add("method")
        if self.method.name != RECIPE_METHOD:
            return self
        _fill_unset(self.train, RECIPE_TRAIN)
        _fill_unset(self.train.early_stopping, RECIPE_STOPPING)
        return self

    @model_validator(mode="after")
    def _fits_the_task(self) -> "Config":
        if self.task == "generation" and (self.prompt.verbalizer or self.prompt.head):
            raise PromptftError("verbalizers and heads are for classification; remove them for task: generation",
                                field="prompt.verbalizer" if self.prompt.verbalizer else "prompt.head")
        return self

    @model_validator(mode="after")
    def _label_examples_have_descriptions(self) -> "Config":
        if not self.data.label_examples:
            return self
        if not self.prompt.verbalizer:  # generation has none (_fits_the_task refuses one there)
            raise PromptftError("data.label_examples adds the phrases of prompt.verbalizer to train: set "
                                "prompt.verbalizer (classification)", field="data.label_examples")
        if len(self.data.columns) != 1:
            raise PromptftError(f"data.label_examples needs one text column to put each phrase in; this config has "
                                f"{len(self.data.columns)} ({', '.join(self.data.columns)})", field="data.label_examples")
        return self

    @model_validator(mode="after")
    def _unlabeled_pairs_with_self_training(self) -> "Config":
        has_pool = bool(self.data.unlabeled or (self.data.few_shot and self.data.few_shot.unlabeled))
        if self.train.self_training and not has_pool:
            raise ValueError("train.self_training needs unlabelled data: set data.unlabeled (a file) "
                             "or data.few_shot.unlabeled (N rows of train outside the sample)")
        if has_pool and not self.train.self_training and not self.prompt.ensemble:
            raise ValueError("unlabelled data is only used by self-training and prompt ensembles: add "
                             "train.self_training: {rounds: 1}")
        return self

    # Set by the loader so relative paths resolve against the config file, as users expect.
    base_dir: Path = Field(default=Path("."), exclude=True)

    def path(self, value: str) -> Path:
        """Resolve a path from the config relative to the config file's folder."""
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.base_dir / p)

    @property
    def head(self) -> str:
        """The head recorded for the run (tables, model cards): generation has none."""
        return self.prompt.resolved_head if self.task == "classification" else "none"

    @property
    def run_dir(self) -> Path:
        return self.path(self.output_dir)

    def dump(self) -> dict[str, Any]:
        """The resolved config as plain data (method options flattened, as the user writes them)."""
        data = self.model_dump(mode="json", exclude={"base_dir", "method"})
        # Paths become absolute: the copy saved in the run directory must find the same model and files
        # from there (predict and evaluate read only the run directory).
        for split in ("train", "validation", "test", "unlabeled"):
            if data["data"][split]:
                data["data"][split] = str(self.path(data["data"][split]).absolute())
        if self.model.name != "default" and self.path(self.model.name).exists():
            data["model"]["name"] = str(self.path(self.model.name).absolute())
        data["output_dir"] = str(self.run_dir.absolute())
        if self.task != "generation":
            data.pop("generate")  # keeps classification run configs as they were
        return {"task": data.pop("task"), "model": data.pop("model"), "data": data.pop("data"),
                "prompt": data.pop("prompt"), "method": self.method.dump(), **data}


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read, override and validate a config file; every problem becomes a PromptftError."""
    path = Path(path)
    raw = read_yaml(path)
    for item in overrides or []:
        apply_override(raw, item)
    cfg = validate_config(raw, source=path)
    cfg.base_dir = path.resolve().parent
    return cfg


def read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise PromptftError("config file not found", file=path)
    if path.is_dir():
        raise PromptftError("expected a YAML config file, got a directory", file=path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise PromptftError(f"config is not UTF-8 text (byte {exc.start})", file=path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        row = mark.line + 1 if mark else None
        raise PromptftError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=path, row=row) from None
    if raw is None:
        raise PromptftError("config file is empty", file=path)
    if not isinstance(raw, dict):
        raise PromptftError("config must be a mapping of sections (task, model, data, ...)", file=path)
    return raw


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Apply one `section.key=value` override; the value is parsed as YAML so types are checked later."""
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise PromptftError(f"--set expects KEY=VALUE, got '{item}'", field=item)
    keys = key.strip().split(".")
    node = raw
    for k in keys[:-1]:
        child = node.get(k)
        if child is None or isinstance(child, str) and k == "method":
            child = {"name": child} if isinstance(child, str) else {}
            node[k] = child
        if not isinstance(child, dict):
            raise PromptftError(f"cannot set '{key}': '{k}' is not a section", field=key)
        node = child
    node[keys[-1]] = _override_value(value)


def _fill_unset(section: BaseModel, values: dict[str, Any]) -> None:
    """Set the fields the config left unset, without re-validation (a validator of Config is running)."""
    for key, value in values.items():
        if key not in section.model_fields_set:
            object.__setattr__(section, key, value)
            section.model_fields_set.add(key)


def _override_value(value: str) -> Any:
    """A YAML scalar, or a flow list/mapping written with brackets; any other text is the string itself.

    Block YAML on one line would turn a text with ': ' or a leading '- ' into a mapping or list
    (`init_text=Classify this headline: ...`), and `{text}` alone is a YAML set (a mapping to nulls):
    no field takes either, while a string field takes the text.
    """
    text = value.strip()
    if not text:
        return ""
    try:
        parsed = yaml.safe_load(value)
    except yaml.YAMLError:
        return value
    bracketed = text.startswith("[") or (text.startswith("{") and ":" in text)
    return value if isinstance(parsed, (dict, list)) and not bracketed else parsed


def validate_config(raw: dict[str, Any], source: Path | None = None) -> Config:
    try:
        return Config.model_validate(raw, context={"task": raw.get("task", "classification")})
    except ValidationError as exc:
        raise _friendly(exc, raw, source) from None
    except PromptftError as exc:  # raised by a validator that checks several sections together
        if exc.file is None and source is not None:
            exc.file, exc.row = str(source), _line_of(source, (exc.field or "").split("."))
        raise


def _friendly(exc: ValidationError, raw: dict[str, Any], source: Path | None) -> PromptftError:
    errors = exc.errors()
    # An unknown key explains a "missing" one better (a typo in a section name), so report it first.
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    loc = [str(p) for p in err["loc"] if not str(p).startswith("function-")]
    if loc[:2] and loc[0] == "method" and len(loc) > 1 and loc[1] == "options":
        loc = ["method", *loc[2:]]
    if err["type"] not in ("extra_forbidden", "missing"):
        loc = _keys_in(raw, loc)  # drops pydantic's union-member tags such as 'str' or 'list[str]'
    field = ".".join(loc) or None
    if err["type"] == "extra_forbidden":
        valid = _valid_keys(loc[:-1], raw)
        msg = f"unknown key '{loc[-1]}'{_suggest(loc[-1], valid)}"
    elif err["type"] == "missing":
        msg = "required key is missing"
    else:
        msg = err["msg"].removeprefix("Value error, ")
        if "input" in err and not isinstance(err["input"], dict) and err["type"] != "value_error":
            msg += f" (got {err['input']!r})"
        if err["type"] == "string_type" and isinstance(err.get("input"), bool):
            msg += "; YAML reads unquoted yes/no/on/off as booleans, so quote the word"
    return PromptftError(msg, file=source, row=_line_of(source, loc), field=field)


def _keys_in(raw: Any, loc: list[str]) -> list[str]:
    """The longest start of `loc` that names keys (or list positions) really present in the raw config."""
    kept: list[str] = []
    for part in loc:
        if isinstance(raw, dict) and part in raw:
            raw = raw[part]
        elif isinstance(raw, list) and part.isdigit() and int(part) < len(raw):
            raw = raw[int(part)]
        else:
            break
        kept.append(part)
    return kept or loc


def _valid_keys(loc: list[str], raw: dict[str, Any]) -> list[str]:
    model: Any = Config
    for part in loc:
        if model is MethodConfig or part == "method":
            name = raw.get("method", {}).get("name", "prompt_tuning") if isinstance(raw.get("method"), dict) else raw.get("method")
            return ["name", *METHODS[name].options.model_fields] if name in METHODS else ["name"]
        info = getattr(model, "model_fields", {}).get(part)
        if info is None:
            return []
        model = _section_type(info.annotation)
    return list(getattr(model, "model_fields", {}))


def _section_type(annotation: Any) -> Any:
    for candidate in (annotation, *getattr(annotation, "__args__", ())):
        if isinstance(candidate, type) and issubclass(candidate, BaseModel):
            return candidate
    return None


def _suggest(word: str, choices: Any) -> str:
    close = difflib.get_close_matches(word, [c for c in choices if c != "base_dir"], n=1, cutoff=0.5)
    return f"; did you mean '{close[0]}'?" if close else ""


def _line_of(source: Path | None, loc: list[str]) -> int | None:
    """1-based line of the deepest key of `loc` present in the YAML file, for error messages."""
    if source is None or not source.exists():
        return None
    try:
        node = yaml.compose(source.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    line = None
    for key in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        match = next(((k, v) for k, v in node.value if getattr(k, "value", None) == key), None)
        if match is None:
            break
        line, node = match[0].start_mark.line + 1, match[1]
    return line


def save_config(cfg: Config, path: Path) -> None:
    """Write the resolved config (every default filled in) as YAML."""
    write_text_atomic(path, yaml.safe_dump(cfg.dump(), sort_keys=False, allow_unicode=True))
