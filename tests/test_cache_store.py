"""Cache stores: the same behaviour from the SQLite file and from a real Redis server.

Entries round-trip; namespaces never see each other; TTL and the size bound evict (least
recently used first); semantic vectors come back from a cursor; several processes writing at
once lose and corrupt nothing; a corrupted SQLite file is moved aside and rebuilt with a
warning.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
from cache_helpers import StoreFactory, store_factory, write_entries

from llmc.cache import MISSING, Cache, CacheWarning, SQLiteStore, StoreUnavailable


@pytest.fixture(params=["sqlite", "redis"])
def stores(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    url = request.getfixturevalue("redis_url") if request.param == "redis" else None
    return store_factory(request.param, tmp_path, url)


def test_values_round_trip_with_their_types(stores: StoreFactory) -> None:
    cache = Cache(stores())
    values = [
        "text",
        0,
        -1.5,
        float("inf"),
        None,
        False,
        [1, (2, 3)],
        {"a": {1: "int key"}, "$x": b"\x00bytes"},
        {1, 2},
        frozenset({"f"}),
        ("t", ["l"]),
    ]
    for number, value in enumerate(values):
        assert cache.set(f"k{number}", value)
    for number, value in enumerate(values):
        found = cache.get(f"k{number}")
        assert found == value and type(found) is type(value)
    assert cache.get("absent") is MISSING
    assert cache.stats.hits["value"] == len(values) and cache.stats.misses["value"] == 1


def test_values_json_cannot_hold_are_not_stored(stores: StoreFactory) -> None:
    cache = Cache(stores())
    assert not cache.set("k", object())
    assert cache.get("k") is MISSING
    pickled = Cache(stores(), codec="pickle")
    assert pickled.set("k", Path("/x"))
    assert pickled.get("k") == Path("/x")
    assert cache.get("k") is MISSING  # a JSON cache refuses to unpickle


def test_namespaces_never_see_each_other(stores: StoreFactory) -> None:
    alice = Cache(stores(), namespace="alice")
    bob = alice.with_namespace("bob")
    alice.set("k", "alice's")
    assert bob.get("k") is MISSING
    bob.set("k", "bob's")
    assert alice.get("k") == "alice's" and bob.get("k") == "bob's"
    bob.clear()
    assert bob.get("k") is MISSING and alice.get("k") == "alice's"
    carol = Cache(stores(), namespace="carol")  # a second connection to the same store
    assert carol.get("k") is MISSING
    assert Cache(stores(), namespace="alice").get("k") == "alice's"


def test_ttl_expires_entries(stores: StoreFactory) -> None:
    cache = Cache(stores())
    cache.set("short", 1, ttl=0.3)
    cache.set("long", 2, ttl=60)
    cache.set("forever", 3)
    assert cache.get("short") == 1
    time.sleep(0.45)
    assert cache.get("short") is MISSING
    assert cache.get("long") == 2 and cache.get("forever") == 3


def test_size_bound_evicts_the_least_recently_used(stores: StoreFactory) -> None:
    cache = Cache(stores(max_entries=3))
    for key in "abc":
        cache.set(key, key)
        time.sleep(0.01)
    assert cache.get("a") == "a"  # a is now the most recently used
    time.sleep(0.01)
    cache.set("d", "d")
    assert cache.get("b") is MISSING
    assert [cache.get(k) for k in "acd"] == ["a", "c", "d"]
    assert cache.store.count() == 3


def test_sqlite_byte_bound(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "c.sqlite3", max_bytes=10_000)
    cache = Cache(store)
    for number in range(40):
        cache.set(f"k{number}", "x" * 1000)
    assert store.size() <= 10_000
    assert cache.get("k39") == "x" * 1000 and cache.get("k0") is MISSING


def test_vectors_come_back_from_a_cursor(stores: StoreFactory) -> None:
    store = stores()
    store.put("ns", "k1", b"j1", scope="s", text="one", vector=b"\x00" * 8)
    store.put("ns", "k2", b"j2", scope="s", text="two", vector=b"\x01" * 8)
    store.put("ns", "k3", b"j3", scope="other", text="three", vector=b"\x02" * 8)
    store.put("other-ns", "k4", b"j4", scope="s", text="four", vector=b"\x03" * 8)
    first = store.vectors("ns", "s", 0)
    assert first.keys == ["k1", "k2"] and first.vectors == [b"\x00" * 8, b"\x01" * 8]
    assert store.vectors("ns", "s", first.cursor).keys == []
    store.put("ns", "k5", b"j5", scope="s", text="five", vector=b"\x04" * 8)
    assert store.vectors("ns", "s", first.cursor).keys == ["k5"]
    entry = store.get("ns", "k2")
    assert entry is not None and entry.text == "two" and entry.value == b"j2"


def test_processes_writing_at_once_lose_and_corrupt_nothing(
    stores: StoreFactory, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    kind = request.node.callspec.params["stores"]
    if kind == "sqlite":
        where = str(tmp_path / "cache.sqlite3")
    else:
        where = f"{request.getfixturevalue('redis_url')}|test:{uuid.uuid4().hex[:8]}"
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    workers, count = 4, 150
    processes = [
        context.Process(target=write_entries, args=(kind, where, w, count, start))
        for w in range(workers)
    ]
    for process in processes:
        process.start()
    start.set()
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    if kind == "sqlite":
        cache = Cache(SQLiteStore(where), namespace="shared")
        with sqlite3.connect(where) as db:
            assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    else:
        from llmc.cache import RedisStore

        url, prefix = where.split("|")
        cache = Cache(RedisStore(url, prefix=prefix), namespace="shared")
    for worker in range(workers):
        for number in range(count):
            found = cache.get(f"w{worker}-{number}")
            assert found == {"worker": worker, "n": number, "pad": "x" * 200}
    last = cache.get("everyone")
    assert last["n"] == count - 1 and last["worker"] in range(workers)
    assert cache.store.count() == workers * count + 1


# -- SQLite's own ----------------------------------------------------------------------------


def test_sqlite_file_is_private_and_in_the_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMC_CACHE_DIR", str(tmp_path / "dir"))
    store = SQLiteStore()
    assert store.path == tmp_path / "dir" / "cache.sqlite3"
    assert store.path.stat().st_mode & 0o077 == 0
    with sqlite3.connect(store.path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_a_file_that_is_not_a_database_is_rebuilt_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    path.write_bytes(b"this is not SQLite" * 500)
    with pytest.warns(CacheWarning, match="corrupted"):
        cache = Cache(path)
    assert cache.set("k", 1) and cache.get("k") == 1
    assert (tmp_path / "cache.sqlite3.corrupt").exists()


def test_a_damaged_page_is_detected_and_the_file_rebuilt(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    cache = Cache(path)
    for number in range(300):
        cache.set(f"k{number}", "value " * 20)
    cache.close()
    data = bytearray(path.read_bytes())
    page = 4096
    data[page:] = b"\xff" * (len(data) - page)  # every page after the header's
    path.write_bytes(bytes(data))
    with pytest.warns(CacheWarning, match="corrupted"):
        again = Cache(path)
        assert again.get("k1") is MISSING
    assert again.set("k1", "fresh") and again.get("k1") == "fresh"


def test_a_flipped_byte_in_a_value_is_a_miss_not_a_wrong_answer(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    cache = Cache(path)
    cache.set("k", "the right answer")
    with sqlite3.connect(path) as db:
        db.execute("UPDATE entries SET value = CAST('jnot the answer' AS BLOB)")
    with pytest.warns(CacheWarning, match="checksum"):
        assert cache.get("k") is MISSING
    assert cache.store.count() == 0


def test_check_finds_damage_that_reads_do_not_touch(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    store = SQLiteStore(path)
    assert store.check()
    cache = Cache(store)
    for number in range(300):
        cache.set(f"k{number}", "value " * 20)
    store.close()
    data = bytearray(path.read_bytes())
    data[-4096:] = b"\xff" * 4096  # the last page only
    path.write_bytes(bytes(data))
    with pytest.warns(CacheWarning, match="corrupted"):
        store = SQLiteStore(path)
        store.check()
    assert store.generation == 1
    assert store.check() and Cache(store).get("k1") is MISSING


def test_a_busy_file_is_a_miss_not_an_error(tmp_path: Path) -> None:
    path = tmp_path / "cache.sqlite3"
    cache = Cache(SQLiteStore(path, busy_timeout=0.05))
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.warns(CacheWarning, match="locked"):
            assert not cache.set("k", 1)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert cache.set("k", 1) and cache.get("k") == 1
    assert cache.stats.errors == 1


def test_an_unreachable_redis_is_a_miss(tmp_path: Path) -> None:
    pytest.importorskip("redis", reason="redis-py is not installed: pip install -e '.[redis]'")
    from benchmarks.servers import free_port
    from llmc.cache import RedisStore

    cache = Cache(RedisStore(f"redis://127.0.0.1:{free_port()}/0", timeout=0.2))
    with pytest.warns(CacheWarning):
        assert cache.get("k") is MISSING
        assert not cache.set("k", 1)
    with pytest.raises(StoreUnavailable):
        cache.store.get("default", "k")
