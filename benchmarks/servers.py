"""Throwaway servers on this machine, for the benchmarks and the tests.

:func:`serving` starts a command that listens on a free loopback port, waits until the port
accepts connections, yields the process and stops it at the end (thawed first, if a test froze
it). Two servers are made with it: :func:`redis_server` (``redis-server`` without persistence)
and :func:`mcp_http_server` (the tests' MCP server, ``tests/mcp_server.py``, on streamable
HTTP). :func:`ray_cluster` starts a local Ray cluster and shuts it down at the end. Callers
decide what a machine without ``redis-server`` means (:data:`REDIS_BINARY` is None there): a
skipped test, a benchmark row left out.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

#: Where ``redis-server`` is, or None when it is not installed (``apt-get install redis-server``).
REDIS_BINARY = shutil.which("redis-server")

#: The tests' MCP server: ``python tests/mcp_server.py`` on stdio, ``... http PORT`` on HTTP.
MCP_SERVER = Path(__file__).resolve().parents[1] / "tests" / "mcp_server.py"


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listens(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def serving(
    command: Sequence[str], port: int, *, name: str, timeout: float
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``command``, a server that listens on loopback ``port``; yield its process once
    the port accepts connections, and stop it at the end.

    Raises:
        RuntimeError: the server (``name`` in the message) exited first, or did not listen
            within ``timeout`` seconds.
    """
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while not _listens(port):
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited with code {process.returncode} at start")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not listen on port {port} within {timeout:g} s")
            time.sleep(0.05)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)  # (a test may have frozen it)
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start redis-server (``--save ""``, no persistence) on a free loopback port; yield its
    URL and its process.

    Raises:
        RuntimeError: redis-server is not installed, or did not start within 10 s.
    """
    if REDIS_BINARY is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="llmc-redis-") as folder:
        # An empty folder of its own: no dump.rdb to load (and answer LOADING meanwhile).
        command = [REDIS_BINARY, "--port", str(port), "--bind", "127.0.0.1", "--dir", folder]
        command += ["--save", "", "--appendonly", "no"]
        with serving(command, port, name="redis-server", timeout=10) as process:
            yield f"redis://127.0.0.1:{port}/0", process


@contextlib.contextmanager
def mcp_http_server() -> Iterator[str]:
    """Start the tests' MCP server on streamable HTTP at a free loopback port; yield its URL.

    Raises:
        RuntimeError: it did not start within 60 s (the ``mcp`` extra is missing, say).
    """
    port = free_port()
    command = [sys.executable, str(MCP_SERVER), "http", str(port)]
    with serving(command, port, name="the MCP test server on HTTP", timeout=60):
        yield f"http://127.0.0.1:{port}/mcp"


@contextlib.contextmanager
def ray_cluster(num_cpus: int, paths: Sequence[Path]) -> Iterator[None]:
    """Start a local Ray cluster of ``num_cpus`` CPUs in a temporary folder of its own (no
    dashboard, worker logs kept off the driver), whose workers import from ``paths`` too; shut
    it down and remove the folder at the end."""
    import ray

    temp = tempfile.mkdtemp(prefix="llmc-ray-")
    path = os.pathsep.join([*map(str, paths), os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=num_cpus,
        include_dashboard=False,
        log_to_driver=False,
        _temp_dir=temp,
        runtime_env={"env_vars": {"PYTHONPATH": path}},
    )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)
