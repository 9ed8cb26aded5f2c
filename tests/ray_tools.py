"""Tools for the Ray executor's tests, in a module Ray's workers import by name."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import llmc


@llmc.tool
def square(x: int) -> int:
    """The square of a number, on whichever process runs it.

    Args:
        x: the number.
    """
    return x * x


@llmc.tool
def where() -> int:
    """The id of the process that runs the call."""
    return os.getpid()


@llmc.tool(placement={"local": True})
def where_local() -> int:
    """The id of the process that runs the call (always the caller's)."""
    return os.getpid()


@llmc.tool
async def where_async(seconds: float) -> int:
    """Wait, then tell the id of the process that waited.

    Args:
        seconds: how long to wait.
    """
    await asyncio.sleep(seconds)
    return os.getpid()


_calls = 0


@llmc.tool(placement={"actor": True, "num_cpus": 0})
def count() -> list[int]:
    """How many calls this process has served so far, and its id."""
    global _calls
    _calls += 1
    return [_calls, os.getpid()]


class InputProblem(ValueError):
    """A tool's own error type, which must reach the caller as itself."""


@llmc.tool
def refuse(reason: str) -> str:
    """Fail with a tool-specific error.

    Args:
        reason: what to say.
    """
    raise InputProblem(f"cannot do it: {reason}")


@llmc.tool(timeout=1.0)
def linger(marker: str) -> str:
    """Run for up to 30 s, leaving ``marker.stopped`` behind when stopped or done.

    Args:
        marker: a path prefix for the files that tell what happened.
    """
    Path(f"{marker}.started").touch()
    try:
        for _ in range(600):
            time.sleep(0.05)
        return "finished"
    finally:
        Path(f"{marker}.stopped").write_text(str(time.time()))


@llmc.tool(retries=1)
def die_once(marker: str) -> int:
    """Kill the worker running the first call; answer on the second.

    Args:
        marker: a file that records the first call.
    """
    path = Path(marker)
    if not path.exists():
        path.write_text("killed")
        os.kill(os.getpid(), signal.SIGKILL)
    return os.getpid()


@llmc.tool
def blob(size: int) -> bytes:
    """Bytes of a given size.

    Args:
        size: how many.
    """
    return b"x" * size


@llmc.tool
def length(data: bytes) -> int:
    """The length of some bytes.

    Args:
        data: the bytes.
    """
    return len(data)


@llmc.tool(placement={"local": True})
def length_local(data: bytes) -> int:
    """The length of some bytes, measured by the calling process.

    Args:
        data: the bytes.
    """
    return len(data)
