"""The default store: one SQLite file, shared safely by threads and processes.

The file lives in a cache directory (``$LLMC_CACHE_DIR``, else ``$XDG_CACHE_HOME/llmc``, else
``~/.cache/llmc``), in WAL mode: readers never wait, writers take turns (each write is one
short ``BEGIN IMMEDIATE`` transaction; a writer waits up to ``busy_timeout`` for its turn
and otherwise skips the write, which for a cache only costs a later miss). Entry and byte
totals are kept by triggers, so checking the size bound costs one row read; the least
recently used entries go first. Reads do not write: the time an entry was used is noted in
memory and written with the next write.

Corruption (a file that is not a database, a malformed page, a foreign schema) is detected
when a statement trips over it: the file is moved aside to ``<name>.corrupt``, a
:class:`~llmc.cache.CacheWarning` says so, and an empty cache takes its place. Each entry
also carries a CRC-32 of its value, so a flipped byte inside a value reads as a miss, not
as a wrong answer.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import threading
import time
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ._store import CacheWarning, Entry, StoreUnavailable, VectorBatch

T = TypeVar("T")

SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    namespace TEXT NOT NULL,
    key TEXT NOT NULL,
    scope TEXT,
    value BLOB NOT NULL,
    checksum INTEGER NOT NULL,
    text TEXT,
    vector BLOB,
    size INTEGER NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    accessed REAL NOT NULL,
    UNIQUE (namespace, key)
);
CREATE INDEX IF NOT EXISTS entries_accessed ON entries (accessed);
CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires) WHERE expires IS NOT NULL;
CREATE INDEX IF NOT EXISTS entries_scope ON entries (namespace, scope, id)
    WHERE scope IS NOT NULL;
CREATE TABLE IF NOT EXISTS totals (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    entries INTEGER NOT NULL,
    bytes INTEGER NOT NULL
);
INSERT OR IGNORE INTO totals VALUES (0, 0, 0);
CREATE TRIGGER IF NOT EXISTS entries_added AFTER INSERT ON entries BEGIN
    UPDATE totals SET entries = entries + 1, bytes = bytes + NEW.size WHERE id = 0;
END;
CREATE TRIGGER IF NOT EXISTS entries_removed AFTER DELETE ON entries BEGIN
    UPDATE totals SET entries = entries - 1, bytes = bytes - OLD.size WHERE id = 0;
END;
"""

#: Writes between two sweeps of expired entries.
_SWEEP_EVERY = 256
#: Uses noted in memory before they are written on their own.
_TOUCH_LIMIT = 512


def default_cache_dir() -> Path:
    """Where caches live: ``$LLMC_CACHE_DIR``, else ``$XDG_CACHE_HOME/llmc``, else
    ``~/.cache/llmc``."""
    explicit = os.environ.get("LLMC_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME")
    return (Path(base).expanduser() if base else Path.home() / ".cache") / "llmc"


class SQLiteStore:
    """A cache store in one SQLite file (the default store of :class:`~llmc.cache.Cache`).

    Args:
        path: the file; default ``cache.sqlite3`` in :func:`default_cache_dir`. Its folder
            is made (readable by its owner only) if missing.
        max_entries: the most entries the file keeps (None: no bound).
        max_bytes: the most bytes of values, texts and vectors it keeps (None: no bound).
        busy_timeout: seconds a write waits for another process's write before it is
            skipped.

    Attributes:
        path: the file.
        generation: how many times the file was rebuilt after corruption in this process.
    """

    remote = False

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        max_entries: int | None = 250_000,
        max_bytes: int | None = 1 << 30,
        busy_timeout: float = 2.0,
    ) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be at least 1 (or None for no bound)")
        if max_bytes is not None and max_bytes < 1:
            raise ValueError("max_bytes must be at least 1 (or None for no bound)")
        self.path = Path(path) if path is not None else default_cache_dir() / "cache.sqlite3"
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.busy_timeout = busy_timeout
        self.generation = 0
        self._lock = threading.RLock()
        self._touched: dict[tuple[str, str], float] = {}
        self._writes = 0
        self._inode: int | None = None
        self._db: sqlite3.Connection | None = None
        with self._lock:
            try:
                self._open()
            except sqlite3.DatabaseError as exc:
                if not _corrupt(exc):
                    raise
                self._rebuild(exc)

    # -- the connection ----------------------------------------------------------------------

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not self.path.exists():  # an empty file is an empty database; only its owner reads it
            with contextlib.suppress(FileExistsError):
                os.close(os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        db = sqlite3.connect(
            self.path, timeout=self.busy_timeout, isolation_level=None, check_same_thread=False
        )
        self._db = db
        try:
            deadline = time.monotonic() + self.busy_timeout
            while True:  # switching to WAL needs a moment alone with the file
                try:
                    db.execute("PRAGMA journal_mode=WAL")
                    break
                except sqlite3.OperationalError as exc:
                    if not _busy(exc) or time.monotonic() > deadline:
                        raise
                    time.sleep(0.01)
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("BEGIN IMMEDIATE")
            for statement in _statements(_SCHEMA):
                db.execute(statement)
            found = db.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
            if found is None:
                db.execute("INSERT INTO meta VALUES ('schema', ?)", (SCHEMA_VERSION,))
            db.execute("COMMIT")
            if found is not None and found[0] != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"cache schema {found[0]!r}, this llmc uses {SCHEMA_VERSION!r}"
                )
            db.execute("SELECT id FROM entries LIMIT 1").fetchall()
        except BaseException:
            self._db = None
            with contextlib.suppress(sqlite3.Error):
                db.close()
            raise
        self._inode = os.stat(self.path).st_ino

    def _rebuild(self, error: BaseException) -> None:
        """Move a corrupted file aside and start an empty one, with a warning."""
        if self._db is not None:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None
        moved = self.path.with_name(self.path.name + ".corrupt")
        try:
            same_file = self._inode is None or os.stat(self.path).st_ino == self._inode
        except FileNotFoundError:
            same_file = False
        if same_file:  # another process may have rebuilt it already: then just reopen
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.path, moved)
            for suffix in ("-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.remove(self.path.with_name(self.path.name + suffix))
        warnings.warn(
            f"the llmc cache file {self.path} is corrupted ({error}); it was moved to {moved} "
            "and an empty cache replaces it",
            CacheWarning,
            stacklevel=4,
        )
        self.generation += 1
        self._touched.clear()
        self._inode = None
        self._open()

    def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``work`` on the connection; rebuild a corrupted file and try once more.

        Raises:
            StoreUnavailable: the file is busy (another process's write) or cannot be used.
        """
        with self._lock:
            for attempt in (1, 2):
                try:
                    if self._db is None:
                        self._open()
                    assert self._db is not None
                    return work(self._db)
                except sqlite3.DatabaseError as exc:
                    self._rollback()
                    if attempt == 2 or not _corrupt(exc):
                        raise StoreUnavailable(f"SQLite cache {self.path}: {exc}") from exc
                    self._rebuild(exc)
            raise AssertionError("unreachable")

    def _rollback(self) -> None:
        if self._db is not None and self._db.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    # -- the Store protocol ------------------------------------------------------------------

    def get(self, namespace: str, key: str) -> Entry | None:
        """The live entry under ``key``, or None; its use is noted for LRU eviction."""

        def read(db: sqlite3.Connection) -> Entry | None:
            row = db.execute(
                "SELECT value, checksum, text, created, expires FROM entries "
                "WHERE namespace = ? AND key = ?",
                (namespace, key),
            ).fetchone()
            if row is None:
                return None
            value, checksum, text, created, expires = row
            now = time.time()
            if expires is not None and expires <= now:
                return None
            if zlib.crc32(value) != checksum:
                warnings.warn(
                    f"an entry of the llmc cache {self.path} is corrupted (checksum "
                    "mismatch); it was removed",
                    CacheWarning,
                    stacklevel=5,
                )
                self._write(db, lambda: self._delete(db, namespace, key))
                return None
            self._touched[(namespace, key)] = now
            if len(self._touched) >= _TOUCH_LIMIT:
                self._write(db, lambda: None)
            return Entry(bytes(value), text, created, expires)

        return self._run(read)

    def put(
        self,
        namespace: str,
        key: str,
        value: bytes,
        *,
        ttl: float | None = None,
        scope: str | None = None,
        text: str | None = None,
        vector: bytes | None = None,
    ) -> None:
        """Write an entry and evict what the bounds require (see :class:`Store`)."""
        now = time.time()
        expires = None if ttl is None else now + ttl
        size = len(value) + len(vector or b"") + len((text or "").encode())

        def write(db: sqlite3.Connection) -> None:
            def insert() -> None:
                self._delete(db, namespace, key)
                db.execute(
                    "INSERT INTO entries (namespace, key, scope, value, checksum, text, vector, "
                    "size, created, expires, accessed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        namespace,
                        key,
                        scope,
                        value,
                        zlib.crc32(value),
                        text,
                        vector,
                        size,
                        now,
                        expires,
                        now,
                    ),
                )
                self._writes += 1
                if self._writes % _SWEEP_EVERY == 0:
                    db.execute("DELETE FROM entries WHERE expires <= ?", (now,))
                self._evict(db)

            self._write(db, insert)

        self._run(write)

    def delete(self, namespace: str, key: str) -> None:
        """Remove an entry, if there."""
        self._run(lambda db: self._write(db, lambda: self._delete(db, namespace, key)))

    def vectors(self, namespace: str, scope: str, after: int) -> VectorBatch:
        """The live vectors of ``scope`` written after cursor ``after`` (an entry id)."""

        def read(db: sqlite3.Connection) -> VectorBatch:
            db.execute("BEGIN")  # one snapshot for the cursor and the rows
            try:
                found = db.execute(
                    "SELECT seq FROM sqlite_sequence WHERE name = 'entries'"
                ).fetchone()
                cursor = int(found[0]) if found else 0
                start = after if after <= cursor else 0
                rows = db.execute(
                    "SELECT key, vector FROM entries WHERE namespace = ? AND scope = ? "
                    "AND id > ? AND id <= ? AND (expires IS NULL OR expires > ?) ORDER BY id",
                    (namespace, scope, start, cursor, time.time()),
                ).fetchall()
            finally:
                db.execute("COMMIT")
            return VectorBatch([k for k, _ in rows], [bytes(v) for _, v in rows], cursor)

        return self._run(read)

    def clear(self, namespace: str | None = None) -> None:
        """Remove every entry of ``namespace``, or every entry."""

        def clear(db: sqlite3.Connection) -> None:
            if namespace is None:
                self._write(db, lambda: db.execute("DELETE FROM entries"))
                self._touched.clear()
            else:
                self._write(
                    db, lambda: db.execute("DELETE FROM entries WHERE namespace = ?", (namespace,))
                )

        self._run(clear)

    def count(self) -> int:
        """How many entries the file holds."""
        return self._run(lambda db: int(db.execute("SELECT entries FROM totals").fetchone()[0]))

    def size(self) -> int:
        """How many bytes of values, texts and vectors the file holds."""
        return self._run(lambda db: int(db.execute("SELECT bytes FROM totals").fetchone()[0]))

    def check(self) -> bool:
        """Check every page of the file (``PRAGMA quick_check``); rebuild it if corrupted.

        Returns:
            True if the file was sound, False if it was rebuilt.
        """

        def check(db: sqlite3.Connection) -> bool:
            rows = db.execute("PRAGMA quick_check").fetchall()
            if rows != [("ok",)]:
                raise sqlite3.DatabaseError(f"database disk image is malformed: {rows[:3]}")
            return True

        generation = self.generation
        try:
            return self._run(check) and self.generation == generation
        except StoreUnavailable:
            return False

    def close(self) -> None:
        """Write the pending uses and close the file."""
        with self._lock:
            if self._db is None:
                return
            if self._touched:
                with contextlib.suppress(sqlite3.Error, StoreUnavailable):
                    self._write(self._db, lambda: None)
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._db = None

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r})"

    # -- inside a write ----------------------------------------------------------------------

    def _write(self, db: sqlite3.Connection, work: Callable[[], object]) -> None:
        """One write transaction: the pending uses first, then ``work``."""
        db.execute("BEGIN IMMEDIATE")
        try:
            if self._touched:
                db.executemany(
                    "UPDATE entries SET accessed = ? WHERE namespace = ? AND key = ?",
                    [(when, ns, key) for (ns, key), when in self._touched.items()],
                )
            work()
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._touched.clear()

    @staticmethod
    def _delete(db: sqlite3.Connection, namespace: str, key: str) -> None:
        db.execute("DELETE FROM entries WHERE namespace = ? AND key = ?", (namespace, key))

    def _evict(self, db: sqlite3.Connection) -> None:
        """Remove the least recently used entries until the bounds hold."""
        while True:
            entries, size = db.execute("SELECT entries, bytes FROM totals").fetchone()
            excess = 0
            if self.max_entries is not None and entries > self.max_entries:
                excess = entries - self.max_entries
            if self.max_bytes is not None and size > self.max_bytes:
                excess = max(excess, 1 + entries // 100)  # a percent at a time
            if excess <= 0 or entries <= 1:
                return
            db.execute(
                "DELETE FROM entries WHERE id IN "
                "(SELECT id FROM entries ORDER BY accessed, id LIMIT ?)",
                (min(excess, entries - 1),),
            )


def _statements(script: str) -> list[str]:
    """The statements of a script, triggers kept whole."""
    statements: list[str] = []
    current = ""
    for line in script.strip().splitlines():
        current += line + "\n"
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements


def _busy(error: sqlite3.Error) -> bool:
    name = getattr(error, "sqlite_errorname", "") or ""
    return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(error)


def _corrupt(error: sqlite3.Error) -> bool:
    """Whether an error means the file is damaged or foreign (rebuild), not busy (wait)."""
    name = getattr(error, "sqlite_errorname", "") or ""
    if name.startswith(("SQLITE_CORRUPT", "SQLITE_NOTADB")):
        return True
    text = str(error)
    return any(
        part in text
        for part in ("malformed", "not a database", "no such table", "no such column", "schema")
    )
