"""A store in Redis, for caches shared by many processes and machines.

Keys are ``<prefix>:<namespace hash>:e:<key>`` (a hash: value, checksum, text, vector,
created), so a namespace is a key prefix of its own and never reads another's entries. TTL
is Redis's own (``PEXPIRE``). The size bound is a sorted set of last uses: a write that takes
the store past ``max_entries`` removes the least recently used entries, inside one Lua
script, so concurrent writers agree. Each semantic scope keeps a sorted set of its keys by a
global sequence number, which is the cursor of :meth:`RedisStore.vectors`.

Needs the ``redis`` extra (``pip install -e ".[redis]"`` in llmc's source tree). Redis Cluster
is not supported (the scripts touch keys they do not declare).
"""

from __future__ import annotations

import hashlib
import time
import zlib
from typing import TYPE_CHECKING, Any

from .._extras import require
from ._store import Entry, StoreUnavailable, VectorBatch

if TYPE_CHECKING:
    import redis

# KEYS: entry, lru, sequence, scope index (or "" for exact entries)
# ARGV: member, value, checksum, text, vector, created, ttl_ms (0: none), now, max_entries,
#       prefix, key
_PUT = """
redis.call('DEL', KEYS[1])
local fields = {'v', ARGV[2], 'c', ARGV[3], 'cr', ARGV[6]}
if ARGV[4] ~= '' then table.insert(fields, 't'); table.insert(fields, ARGV[4]) end
if ARGV[5] ~= '' then table.insert(fields, 'x'); table.insert(fields, ARGV[5]) end
redis.call('HSET', KEYS[1], unpack(fields))
if tonumber(ARGV[7]) > 0 then redis.call('PEXPIRE', KEYS[1], ARGV[7]) end
redis.call('ZADD', KEYS[2], ARGV[8], ARGV[1])
if KEYS[4] ~= '' then
    local seq = redis.call('INCR', KEYS[3])
    redis.call('ZADD', KEYS[4], seq, ARGV[11])
end
local limit = tonumber(ARGV[9])
if limit > 0 then
    local excess = redis.call('ZCARD', KEYS[2]) - limit
    if excess > 0 then
        local old = redis.call('ZPOPMIN', KEYS[2], excess)
        for i = 1, #old, 2 do redis.call('DEL', ARGV[10] .. old[i]) end
    end
end
return 1
"""


def _namespace_id(namespace: str) -> str:
    return hashlib.sha256(namespace.encode()).hexdigest()[:16]


class RedisStore:
    """A cache store in Redis (redis-py).

    Args:
        url: a Redis URL, e.g. ``redis://localhost:6379/0``; or pass ``client``.
        client: a ``redis.Redis`` to use instead of connecting to ``url``.
        prefix: the start of every key this store writes.
        max_entries: the most entries the store keeps, least recently used out first
            (None: no bound of its own; Redis's ``maxmemory`` policy still applies).
        timeout: seconds a command may take before the cache gives up on it (a miss).

    Raises:
        ImportError: redis-py is not installed.
    """

    remote = True

    def __init__(
        self,
        url: str = "redis://localhost:6379/0",
        *,
        client: redis.Redis | None = None,
        prefix: str = "llmc:cache",
        max_entries: int | None = 250_000,
        timeout: float = 2.0,
    ) -> None:
        if max_entries is not None and max_entries < 1:
            raise ValueError("max_entries must be at least 1 (or None for no bound)")
        if client is None:
            redis = require("redis", extra="redis", needed_by="RedisStore", package="redis-py")
            client = redis.Redis.from_url(
                url, socket_timeout=timeout, socket_connect_timeout=timeout
            )
        self.client = client
        self.prefix = prefix
        self.max_entries = max_entries
        self._put = client.register_script(_PUT)
        self._lru = f"{prefix}:lru"
        self._sequence = f"{prefix}:seq"

    def _entry(self, namespace: str, key: str) -> tuple[str, str]:
        """The entry's Redis key, and its member name in the LRU set."""
        member = f"{_namespace_id(namespace)}:e:{key}"
        return f"{self.prefix}:{member}", member

    def _scope(self, namespace: str, scope: str) -> str:
        return f"{self.prefix}:{_namespace_id(namespace)}:s:{scope}"

    def _call(self, work: Any) -> Any:
        import redis

        try:
            return work()
        except redis.RedisError as exc:
            raise StoreUnavailable(f"Redis cache: {exc}") from exc

    def get(self, namespace: str, key: str) -> Entry | None:
        """The live entry under ``key``, or None; its use is noted for LRU eviction."""
        name, member = self._entry(namespace, key)

        def read() -> Entry | None:
            pipe = self.client.pipeline(transaction=False)
            pipe.hmget(name, ["v", "c", "t", "cr"])
            pipe.pttl(name)
            pipe.zadd(self._lru, {member: time.time()}, xx=True)
            (value, checksum, text, created), ttl_ms, _ = pipe.execute()
            if value is None:
                return None
            if checksum is None or zlib.crc32(value) != int(checksum):
                self.client.delete(name)
                return None
            expires = time.time() + ttl_ms / 1000 if ttl_ms and ttl_ms > 0 else None
            return Entry(
                value, text.decode() if text is not None else None, float(created or 0), expires
            )

        result: Entry | None = self._call(read)
        return result

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
        """Write an entry and evict what the bound requires (see :class:`Store`)."""
        name, member = self._entry(namespace, key)
        now = time.time()
        ttl_ms = 0 if ttl is None else max(1, round(ttl * 1000))
        keys = [name, self._lru, self._sequence, self._scope(namespace, scope) if scope else ""]
        args: list[Any] = [
            member,
            value,
            zlib.crc32(value),
            text or "",
            vector or b"",
            now,
            ttl_ms,
            now,
            self.max_entries or 0,
            f"{self.prefix}:",
            key,
        ]
        self._call(lambda: self._put(keys=keys, args=args))

    def delete(self, namespace: str, key: str) -> None:
        """Remove an entry, if there."""
        name, member = self._entry(namespace, key)

        def remove() -> None:
            pipe = self.client.pipeline(transaction=False)
            pipe.delete(name)
            pipe.zrem(self._lru, member)
            pipe.execute()

        self._call(remove)

    def vectors(self, namespace: str, scope: str, after: int) -> VectorBatch:
        """The vectors of ``scope`` written after sequence number ``after``."""
        index = self._scope(namespace, scope)
        prefix = f"{self.prefix}:{_namespace_id(namespace)}:e:"

        def read() -> VectorBatch:
            cursor = int(self.client.get(self._sequence) or 0)
            start = after if after <= cursor else 0
            found = self.client.zrangebyscore(index, f"({start}", cursor)
            keys = [k.decode() if isinstance(k, bytes) else str(k) for k in found]
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hget(prefix + key, "x")
            vectors = pipe.execute() if keys else []
            live = [(k, v) for k, v in zip(keys, vectors, strict=True) if v]
            gone = [k for k, v in zip(keys, vectors, strict=True) if not v]
            if gone:
                self.client.zrem(index, *gone)
            return VectorBatch([k for k, _ in live], [v for _, v in live], cursor)

        result: VectorBatch = self._call(read)
        return result

    def clear(self, namespace: str | None = None) -> None:
        """Remove every entry of ``namespace``, or every key under the prefix."""
        pattern = f"{self.prefix}:{_namespace_id(namespace)}:*" if namespace else f"{self.prefix}:*"

        def clear() -> None:
            batch: list[bytes] = []
            for name in self.client.scan_iter(match=pattern, count=1000):
                batch.append(name)
                if len(batch) >= 1000:
                    self.client.delete(*batch)
                    batch = []
            if batch:
                self.client.delete(*batch)
            if namespace is not None:
                members = [
                    m
                    for m, _ in self.client.zscan_iter(
                        self._lru, match=f"{_namespace_id(namespace)}:*"
                    )
                ]
                for start in range(0, len(members), 1000):
                    self.client.zrem(self._lru, *members[start : start + 1000])

        self._call(clear)

    def count(self) -> int:
        """How many entries the store tracks (expired ones not yet evicted included)."""
        return int(self._call(lambda: self.client.zcard(self._lru)))

    def close(self) -> None:
        """Close the connection pool."""
        self.client.close()

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r})"
