"""A fast CLI: `--help` and argument or config errors must not import torch, transformers or peft.

Each check runs in a fresh interpreter (this test process has long imported torch) and reports, at
exit, which heavy modules were loaded. No timing asserts: the import set is what makes it fast.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "peft", "accelerate")
# Runs the real console entry with the given argv, then prints which heavy modules got imported.
PROBE = """
import atexit, sys
atexit.register(lambda: print("HEAVY=" + ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr))
sys.argv = ["promptft", *{argv!r}]
from promptft_cli.cli.commands import main
main()
"""


def run_cli(*argv: str, cwd=None) -> subprocess.CompletedProcess:
    code = PROBE.format(heavy=HEAVY, argv=list(argv))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, timeout=120)


def heavy_loaded(proc: subprocess.CompletedProcess) -> str:
    line = next(line for line in proc.stderr.splitlines() if line.startswith("HEAVY="))
    return line.removeprefix("HEAVY=")


def test_importing_the_cli_does_not_import_torch():
    code = "import sys; from promptft_cli.cli.commands import app; print([m for m in %r if m in sys.modules])" % (HEAVY,)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"]])
def test_help_does_not_import_torch(argv):
    proc = run_cli(*argv)
    assert proc.returncode == 0, proc.stderr
    assert "promptft" in proc.stdout.lower()
    assert heavy_loaded(proc) == ""


def test_argument_errors_do_not_import_torch():
    proc = run_cli("train")  # missing CONFIG
    assert proc.returncode == 2
    assert heavy_loaded(proc) == ""
    proc = run_cli("train", "--no-such-option", "x.yaml")
    assert proc.returncode == 2
    assert heavy_loaded(proc) == ""


def test_config_errors_do_not_import_torch(tmp_path):
    proc = run_cli("train", str(tmp_path / "missing.yaml"))
    assert proc.returncode == 2
    assert "config file not found" in proc.stderr
    assert heavy_loaded(proc) == ""

    config = tmp_path / "config.yaml"
    config.write_text("data:\n  train: train.csv\ntrain:\n  epochs: 2\n")
    proc = run_cli("train", str(config), "--set", "train.epochz=3")
    assert proc.returncode == 2
    assert "epochz" in proc.stderr and "epochs" in proc.stderr  # the closest-name suggestion
    assert heavy_loaded(proc) == ""
