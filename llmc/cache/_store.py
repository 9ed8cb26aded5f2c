"""The store seam: where cache entries live, behind one small protocol.

A store keeps entries by namespace and key: bytes for the value, and for semantic entries
the text they were made from, a scope and a vector. It answers exact lookups, lists the
vectors of a scope added since a cursor (the semantic index keeps them in memory and asks
only for what is new), evicts by TTL and by size, and never lets one namespace see
another's entries. :class:`~llmc.cache.SQLiteStore` (one file, the default) and
:class:`~llmc.cache.RedisStore` implement it; a store of your own needs these few methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from ..errors import LLMCError


class StoreUnavailable(LLMCError):
    """A store cannot answer right now (locked, unreachable); the cache treats it as a miss."""


class CacheWarning(UserWarning):
    """Something went wrong in a cache and was repaired (e.g. a corrupted file was rebuilt).

    A cache never fails a run; it warns and carries on, empty if it must.
    """


@dataclass(frozen=True, slots=True)
class Entry:
    """One stored entry, as a lookup returns it.

    Attributes:
        value: the encoded value.
        text: for semantic entries, the text they were made from (the question).
        created: when it was written (seconds since the epoch).
        expires: when it expires (seconds since the epoch), or None.
    """

    value: bytes
    text: str | None = None
    created: float = 0.0
    expires: float | None = None


@dataclass(frozen=True, slots=True)
class VectorBatch:
    """The vectors of a scope written since a cursor.

    Attributes:
        keys: the entries' keys, oldest first.
        vectors: each entry's vector, as float32 bytes.
        cursor: where the next call starts. It only grows while the store lives; a cursor
            smaller than the one asked for means the store was emptied or rebuilt, and the
            caller starts again from zero.
    """

    keys: list[str]
    vectors: list[bytes]
    cursor: int


@runtime_checkable
class Store(Protocol):
    """Where a :class:`~llmc.cache.Cache` keeps its entries.

    Every method may raise :class:`StoreUnavailable` (or any exception): the cache logs it
    and carries on as if the entry were missing. Times are seconds since the epoch.

    Attributes:
        remote: whether calls wait on a network (async callers then run them in a thread).
    """

    remote: bool

    def get(self, namespace: str, key: str) -> Entry | None:
        """The live entry under ``key``, or None (missing or expired); marks it used (LRU)."""
        ...

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
        """Write an entry (replacing one under the same key); ``ttl`` seconds from now it
        expires (None: never). A semantic entry has a ``scope``, its ``text`` and ``vector``.
        May evict the least recently used entries to stay within the store's bounds."""
        ...

    def delete(self, namespace: str, key: str) -> None:
        """Remove an entry, if there."""
        ...

    def vectors(self, namespace: str, scope: str, after: int) -> VectorBatch:
        """The vectors of ``scope`` written after cursor ``after`` (0: all of them)."""
        ...

    def clear(self, namespace: str | None = None) -> None:
        """Remove every entry of ``namespace``, or every entry when None."""
        ...

    def count(self) -> int:
        """How many entries the store holds (expired ones not yet removed included)."""
        ...

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...
