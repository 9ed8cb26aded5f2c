"""Shared pieces of the cache tests: a real redis-server on loopback, store factories, and
the function each process of the multi-process tests runs."""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmc.cache import RedisStore, SQLiteStore, Store

StoreFactory = Callable[..., Store]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Start a throwaway redis-server on a free loopback port; yield its URL."""
    with redis_server_process() as (url, _):
        yield url


@contextlib.contextmanager
def redis_server_process() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start a throwaway redis-server on a free loopback port; yield its URL and process."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does)")
    pytest.importorskip("redis", reason="redis-py is not installed: pip install -e '.[redis]'")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        import redis

        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        client.close()
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)  # (a test may have frozen it)
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def store_factory(kind: str, tmp_path: Path, redis_url: str | None) -> StoreFactory:
    """Make stores of one kind; each factory's stores share one file or one key prefix."""
    prefix = f"test:{uuid.uuid4().hex[:8]}"

    def make(**options: Any) -> Store:
        if kind == "sqlite":
            return SQLiteStore(tmp_path / "cache.sqlite3", **options)
        assert redis_url is not None
        return RedisStore(redis_url, prefix=prefix, **options)

    return make


def write_entries(kind: str, where: str, worker: int, count: int, start: Any) -> None:
    """One process of the concurrency test: write ``count`` entries of its own and overwrite
    a shared one, all starting together."""
    from llmc.cache import Cache

    store: Store
    if kind == "sqlite":
        store = SQLiteStore(where, busy_timeout=30)
    else:
        url, prefix = where.split("|")
        store = RedisStore(url, prefix=prefix)
    cache = Cache(store, namespace="shared")
    start.wait()
    for number in range(count):
        assert cache.set(f"w{worker}-{number}", {"worker": worker, "n": number, "pad": "x" * 200})
        assert cache.set("everyone", {"worker": worker, "n": number})
    cache.close()
