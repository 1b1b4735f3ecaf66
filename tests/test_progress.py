"""Progress and log output: bars only on a terminal, library noise dropped, real warnings shown once."""

from __future__ import annotations

import io
import logging
import re
import warnings

import pytest
from rich.console import Console

from promptft_cli import progress


@pytest.fixture
def terminal(monkeypatch):
    """Pretend stderr is a terminal and capture what the progress console draws."""
    buffer = io.StringIO()
    monkeypatch.setattr(progress, "console", Console(file=buffer, force_terminal=True, width=120))
    monkeypatch.setattr(progress.sys.stderr, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(progress, "_quiet", False)
    return buffer


def test_no_bars_when_stderr_is_not_a_terminal(capsys, monkeypatch):
    monkeypatch.setattr(progress, "_quiet", False)
    assert not progress.enabled()  # pytest captures stderr: not a TTY
    assert list(progress.track(range(50), "tokenizing train")) == list(range(50))
    with progress.TrainProgress(10, 2) as bar:
        for _ in range(10):
            bar.update(1, epoch=1, loss=0.5, lr=1e-3, eps=100.0)
    assert capsys.readouterr().err == ""


def test_bars_on_a_terminal(terminal):
    assert list(progress.track(iter(range(30)), "predict", unit="rows")) == list(range(30))
    with progress.TrainProgress(4, 2) as bar:
        bar.update(1, epoch=1, loss=0.25, lr=2e-3, eps=321.0)
        bar.update(0, val="accuracy 0.875")
    out = terminal.getvalue()
    assert "predict" in out and "rows/s" in out
    assert "train" in out and "epoch 1/2" in out and "loss 0.2500" in out and "321 ex/s" in out and "accuracy 0.875" in out
    last_frame = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out).split("\r")[-1]
    assert " 1/1 " in last_frame  # stopped early after 1 of 4 steps: the bar closes at the steps run, no ETA left


def test_quiet_silences_a_terminal(terminal):
    progress.set_quiet(True)
    try:
        list(progress.track(range(5), "tokenizing"))
        progress.status("hello")
    finally:
        progress.set_quiet(False)
    assert terminal.getvalue() == ""


def test_track_stays_silent_under_the_training_bar(terminal):
    with progress.TrainProgress(2, 1):
        before = len(terminal.getvalue())
        list(progress.track(range(3), "tokenizing"))  # a second live display would tear the first
        assert "tokenizing" not in terminal.getvalue()[before:]


def _record(message: str) -> logging.LogRecord:
    return logging.LogRecord("transformers.modeling_utils", logging.WARNING, __file__, 1, message, None, None)


def _load_report(*keys: str) -> str:
    rows = "\n".join(f"{k:<20}| MISSING | " for k in keys)
    return f"\x1b[1mBertModel LOAD REPORT\x1b[0m from: /m\nKey                 | Status  | \n---+---+-\n{rows}\n\nNotes:\n- MISSING: ..."


def test_library_noise_filter():
    noise = progress.LibraryNoise()
    assert not noise.filter(_record("Some weights of BertForMaskedLM were not initialized from the model checkpoint at x"))
    assert not noise.filter(_record(_load_report("classifier.weight", "classifier.bias")))
    assert not noise.filter(_record(_load_report("cls.predictions.bias", "bert.embeddings.position_ids")))
    real = _load_report("encoder.layer.0.attention.self.query.weight", "classifier.bias")
    assert noise.filter(_record(real))  # backbone weights missing: the user must see this
    assert not noise.filter(_record(real))  # ... once
    assert noise.filter(_record("The tokenizer has no padding token"))


def test_configure_sets_levels_and_warning_filters():
    logger = logging.getLogger("promptft")
    saved = logger.handlers[:], logger.level
    try:
        with warnings.catch_warnings(record=True) as caught:
            progress.configure(quiet=True, verbosity=0)
            console_handlers = [h for h in logger.handlers if getattr(h, "_promptft_console", False)]
            assert len(console_handlers) == 1 and console_handlers[0].level == logging.WARNING
            warnings.showwarning = lambda message, *a, **k: caught.append(message)  # undo captureWarnings here
            for _ in range(3):
                warnings.warn("`foo` is deprecated", FutureWarning)
                warnings.warn("Token type ids are not supported", UserWarning)
                warnings.warn("labels look imbalanced", UserWarning)
            assert [str(w) for w in caught] == ["labels look imbalanced"]
        progress.configure(quiet=False, verbosity=1)
        console_handlers = [h for h in logger.handlers if getattr(h, "_promptft_console", False)]
        assert len(console_handlers) == 1 and console_handlers[0].level == logging.INFO
    finally:
        logging.captureWarnings(False)
        logger.handlers[:], logger.level = saved
        progress.set_quiet(False)
