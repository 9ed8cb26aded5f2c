"""Shared pieces of the cache tests: a real redis-server on loopback, store factories, and
the function each process of the multi-process tests runs."""

from __future__ import annotations

import contextlib
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from benchmarks import servers
from llmc.cache import RedisStore, SQLiteStore, Store

StoreFactory = Callable[..., Store]


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Start a throwaway redis-server on a free loopback port; yield its URL."""
    with redis_server_process() as (url, _):
        yield url


@contextlib.contextmanager
def redis_server_process() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A throwaway redis-server (see benchmarks/servers.py); the test is skipped
    without redis-server or redis-py."""
    if servers.REDIS_BINARY is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; .ci/run does)")
    pytest.importorskip("redis", reason="redis-py is not installed: pip install -e '.[redis]'")
    with servers.redis_server() as (url, process):
        yield url, process


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
