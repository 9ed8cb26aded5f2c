"""The cache facade: one object for tool calls, LLM calls and plans over one store."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
import time
import warnings
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from .._closing import Closing
from ._codec import Codec, Unencodable
from ._embed import Embedder
from ._index import Index
from ._keys import Unkeyable, digest
from ._sqlite import SQLiteStore
from ._store import CacheWarning, Store
from ._verify import agree

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from ..llm.base import LLM, GenerateOptions, Message
    from ..tool import Tool

T = TypeVar("T")

#: The similarity a semantic match needs (all-MiniLM-L6-v2, cosine), besides passing
#: :func:`~llmc.cache.agree`: the lowest threshold at which no labelled near-miss of
#: ``tests/data/question_pairs.tsv`` hits, rounded up (see docs/caching.md).
DEFAULT_THRESHOLD = 0.88


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


#: What a lookup returns on a miss (a cached value may be None or False).
MISSING: Any = _Missing()


@dataclass(slots=True)
class CacheStats:
    """What a cache did since it was made, by kind (``"tool"``, ``"llm"``, ``"plan"``, ...).

    Attributes:
        hits: lookups answered from the cache.
        misses: lookups that found nothing usable.
        writes: entries written.
        rejected: semantic candidates above the threshold that failed verification.
        errors: store operations that failed (each was taken as a miss or a skipped write).
        skipped: store operations not tried, because the store kept failing (see
            :class:`Breaker`); each was taken as a miss or a skipped write.
    """

    hits: Counter[str] = field(default_factory=Counter)
    misses: Counter[str] = field(default_factory=Counter)
    writes: Counter[str] = field(default_factory=Counter)
    rejected: Counter[str] = field(default_factory=Counter)
    errors: int = 0
    skipped: int = 0


@dataclass(frozen=True, slots=True)
class Match:
    """A semantic hit.

    Attributes:
        value: the cached value.
        text: the text it was stored under (the earlier question).
        score: the cosine similarity (1.0 for the same text).
    """

    value: Any
    text: str
    score: float


def normalize_text(text: str) -> str:
    """Lower case, single spaces, no trailing punctuation: what counts as the same text."""
    return " ".join(text.lower().split()).rstrip("?.!;: ")


class Cache(Closing):
    """Exact and semantic caching of tool calls, LLM calls and plans, over one store.

    Pass one to ``llmc.Compiler(..., cache=cache)`` or ``llmc.run_plan(..., cache=cache)``.
    What it caches, each switchable:

    - **tool calls** (``tools``): key = tool name + ``tool.version`` + the canonical
      arguments. Pure tools are cached forever; ``@llmc.tool(cache=True, cache_ttl=3600)``
      caches others, ``cache=False`` never; ``tool_ttl`` overrides per tool name.
    - **LLM calls** (``llm``): key = backend, endpoint, model, every message and every
      generation option. Calls at a temperature above 0 (or unset) bypass the cache unless
      ``sampled=True``.
    - **plans** (``plans``): the planner's plan for a question, found again for the same
      question or, with an ``embedder``, for a paraphrase (similarity at least
      ``threshold`` and, with ``verify``, agreeing numbers, units, names and negation).
      Scoped by namespace, model, tools and prompt. A cached plan is re-validated against
      the current tools and run again; only the planner call is saved.

    Entries of one ``namespace`` (a user, a tenant) are never seen from another; keys are
    hashes, never the prompts or arguments themselves. A failing store never fails a run:
    the cache warns (:class:`CacheWarning`) and misses.

    Args:
        store: a :class:`Store`, a path for a :class:`SQLiteStore`, a ``redis://`` URL for
            a :class:`RedisStore`, or None for the SQLite file in the default cache folder.
        namespace: whose entries these are.
        embedder: finds paraphrased questions (e.g. :class:`MiniLM`); None: a plan is
            reused only for the same question (case and spacing aside).
        threshold: the cosine similarity a paraphrase needs.
        verify: check numbers, units, names, negation and directions of every semantic
            match that is not the same text (:func:`agree`).
        tools: cache tool calls.
        llm: cache LLM calls.
        plans: cache plans.
        sampled: cache LLM calls at a temperature above 0 too.
        ttl: seconds LLM and plan entries live (None: until evicted).
        tool_ttl: per tool name, seconds its calls live (None: forever; 0: not cached),
            overriding the tool's own options.
        codec: ``"json"`` (default, safe to share) or ``"pickle"`` (any value; trusted
            stores only).
    """

    def __init__(
        self,
        store: Store | str | os.PathLike[str] | None = None,
        *,
        namespace: str = "default",
        embedder: Embedder | None = None,
        threshold: float = DEFAULT_THRESHOLD,
        verify: bool = True,
        tools: bool = True,
        llm: bool = True,
        plans: bool = True,
        sampled: bool = False,
        ttl: float | None = None,
        tool_ttl: Mapping[str, float | None] | None = None,
        codec: Literal["json", "pickle"] = "json",
    ) -> None:
        if not -1.0 <= threshold <= 1.0:
            raise ValueError("threshold is a cosine similarity, between -1 and 1")
        if ttl is not None and ttl <= 0:
            raise ValueError("ttl must be a positive number of seconds (or None)")
        if not isinstance(namespace, str) or not namespace:
            raise ValueError("namespace must be a non-empty string")
        self.store = _store(store)
        self.namespace = namespace
        self.embedder = embedder
        self.threshold = threshold
        self.verify = verify
        self.tools = tools
        self.llm = llm
        self.plans = plans
        self.sampled = sampled
        self.ttl = ttl
        self.tool_ttl = dict(tool_ttl or {})
        self.codec = Codec(codec)
        self.stats = CacheStats()
        self._shared = _Shared()

    def with_namespace(self, namespace: str) -> Cache:
        """The same cache (store, embedder, settings) for another namespace.

        Example:
            >>> alice = cache.with_namespace("alice")    # doctest: +SKIP
        """
        other = Cache.__new__(Cache)
        other.__dict__.update(self.__dict__)
        if not isinstance(namespace, str) or not namespace:
            raise ValueError("namespace must be a non-empty string")
        other.namespace = namespace
        other.stats = CacheStats()
        return other

    # -- exact entries -----------------------------------------------------------------------

    @staticmethod
    def key(*parts: Any) -> str | None:
        """The key of ``parts`` (a hash of their canonical form), or None if a part has none.

        Example:
            >>> Cache.key("weather", "Paris", 2024) == Cache.key("weather", "Paris", 2024)
            True
        """
        try:
            return digest(*parts)
        except Unkeyable:
            return None

    def get(self, key: str, *, kind: str = "value") -> Any:
        """The value stored under ``key`` in this namespace, or :data:`MISSING`."""
        entry = self._safe(lambda: self.store.get(self.namespace, key), None)
        value = MISSING if entry is None else self._decode(key, entry.value)
        (self.stats.misses if value is MISSING else self.stats.hits)[kind] += 1
        return value

    def set(self, key: str, value: Any, *, ttl: float | None = None, kind: str = "value") -> bool:
        """Store ``value`` under ``key`` for ``ttl`` seconds (None: until evicted).

        Returns:
            whether it was stored (False: the codec cannot store it, or the store failed).
        """
        try:
            data = self.codec.encode(value)
        except Unencodable:
            return False

        def put() -> bool:
            self.store.put(self.namespace, key, data, ttl=ttl)
            return True

        ok = self._safe(put, False)
        if ok:
            self.stats.writes[kind] += 1
        return bool(ok)

    async def aget(self, key: str, *, kind: str = "value") -> Any:
        """:meth:`get` for async code (a remote store's call runs in a thread)."""
        if self.store.remote:
            return await asyncio.to_thread(self.get, key, kind=kind)
        return self.get(key, kind=kind)

    async def aset(
        self, key: str, value: Any, *, ttl: float | None = None, kind: str = "value"
    ) -> bool:
        """:meth:`set` for async code (a remote store's call runs in a thread)."""
        if self.store.remote:
            return await asyncio.to_thread(self.set, key, value, ttl=ttl, kind=kind)
        return self.set(key, value, ttl=ttl, kind=kind)

    # -- tool calls --------------------------------------------------------------------------

    def tool_policy(self, tool: Tool) -> tuple[bool, float | None]:
        """Whether calls of ``tool`` are cached, and for how many seconds (None: forever).

        ``tool_ttl`` decides first; then the tool's ``cache`` option; a tool that says
        nothing is cached when it is pure or has a ``cache_ttl``.
        """
        if not self.tools:
            return False, None
        if tool.name in self.tool_ttl:
            ttl = self.tool_ttl[tool.name]
            return (ttl is None or ttl > 0), ttl
        wanted = getattr(tool, "cache", None)
        ttl = getattr(tool, "cache_ttl", None)
        if wanted is None:
            wanted = tool.pure or ttl is not None
        return bool(wanted), ttl

    def tool_key(self, tool: Tool, arguments: Mapping[str, Any]) -> str | None:
        """The key of a call if its tool is cached and its arguments have a canonical form."""
        if not self.tool_policy(tool)[0]:
            return None
        return self.key("tool", tool.name, tool.version, dict(arguments))

    async def get_tool(self, key: str) -> Any:
        """The cached output of a tool call, or :data:`MISSING`."""
        return await self.aget(key, kind="tool")

    async def put_tool(self, key: str, tool: Tool, output: Any) -> None:
        """Store a tool call's output for as long as the tool's policy says."""
        await self.aset(key, output, ttl=self.tool_policy(tool)[1], kind="tool")

    # -- LLM calls ---------------------------------------------------------------------------

    def llm_key(
        self, llm: LLM, messages: Sequence[Message], options: GenerateOptions | None
    ) -> str | None:
        """The key of an LLM call, or None when it bypasses the cache (sampled, disabled,
        or options without a canonical form)."""
        if not self.llm:
            return None
        temperature = options.temperature if options is not None else None
        if not self.sampled and (temperature is None or temperature > 0):
            return None
        backend = f"{type(llm).__module__}.{type(llm).__qualname__}"
        base_url = getattr(llm, "base_url", None)
        follows = None
        if options is not None and options.next_grammar is not None:
            # What it returns follows from the output: its kind stands for it in the key.
            follows = type(options.next_grammar).__qualname__
            options = dataclasses.replace(options, next_grammar=None)
        return self.key(
            "llm",
            backend,
            str(base_url) if base_url is not None else None,
            llm.model,
            [dict(message) for message in messages],
            options,
            *([follows] if follows else []),
        )

    # -- semantic entries --------------------------------------------------------------------

    def similar(self, text: str, scope: str, *, kind: str = "similar") -> Match | None:
        """The entry of ``scope`` stored under ``text`` or, with an embedder, under a text
        similar enough (and agreeing, with ``verify``); None if there is none.

        The same text (case, spacing and final punctuation aside) is found without
        embedding anything.
        """
        key = self._similar_key(text, scope)
        if key is None:
            return None
        entry = self._safe(lambda: self.store.get(self.namespace, key), None)
        if entry is not None:
            value = self._decode(key, entry.value)
            if value is not MISSING:
                self.stats.hits[kind] += 1
                return Match(value, entry.text or text, 1.0)
        match = self._search(text, scope, kind) if self.embedder is not None else None
        (self.stats.hits if match is not None else self.stats.misses)[kind] += 1
        return match

    def put_similar(
        self,
        text: str,
        scope: str,
        value: Any,
        *,
        ttl: float | None = None,
        kind: str = "similar",
        vector: npt.NDArray[np.float32] | None = None,
    ) -> bool:
        """Store ``value`` under ``text`` in ``scope`` (with its vector, given an embedder).

        Args:
            text: what later lookups are compared with.
            scope: where the entry belongs.
            value: what to store.
            ttl: seconds it lives (None: until evicted).
            kind: the name its writes are counted under in :attr:`stats`.
            vector: the text's embedding, if already computed (unit length, this cache's
                embedder's).

        Returns:
            whether it was stored.
        """
        key = self._similar_key(text, scope)
        if key is None:
            return False
        try:
            data = self.codec.encode(value)
        except Unencodable:
            return False
        raw: bytes | None = None
        vector_scope: str | None = None
        if self.embedder is not None:
            embedded = vector if vector is not None else self._safe(lambda: self._embed(text), None)
            if embedded is not None:
                raw = embedded.astype("float32").tobytes()
                vector_scope = self._vector_scope(scope)

        def put() -> bool:
            self.store.put(
                self.namespace, key, data, ttl=ttl, scope=vector_scope, text=text, vector=raw
            )
            return True

        ok = bool(self._safe(put, False))
        if ok:
            self.stats.writes[kind] += 1
        return ok

    def _similar_key(self, text: str, scope: str) -> str | None:
        return self.key("similar", scope, normalize_text(text))

    def _vector_scope(self, scope: str) -> str:
        assert self.embedder is not None
        return digest("vectors", scope, self.embedder.name)

    def _embed(self, text: str) -> npt.NDArray[np.float32]:
        assert self.embedder is not None
        normal = normalize_text(text)
        recent = self._shared.vectors
        with self._shared.lock:
            found = recent.get((self.embedder.name, normal))
            if found is not None:
                recent.move_to_end((self.embedder.name, normal))
                return found
        vector: npt.NDArray[np.float32] = self.embedder.embed([text])[0]
        with self._shared.lock:
            recent[(self.embedder.name, normal)] = vector
            while len(recent) > 256:
                recent.popitem(last=False)
        return vector

    def _index(self, scope: str) -> Index:
        name = (self.namespace, self._vector_scope(scope))
        with self._shared.lock:
            index = self._shared.indexes.get(name)
            if index is None:
                index = self._shared.indexes[name] = Index(*name)
            return index

    def _search(self, text: str, scope: str, kind: str) -> Match | None:
        query = self._safe(lambda: self._embed(text), None)
        if query is None:
            return None
        index = self._index(scope)

        def sync() -> bool:
            index.sync(self.store)
            return True

        with index.lock:
            if not self._safe(sync, False):
                return None
            candidates = index.search(query, self.threshold, limit=8)
        for key, score in candidates:
            entry = self._safe(partial(self.store.get, self.namespace, key), None)
            if entry is None:
                with index.lock:
                    index.remove(key)
                continue
            earlier = entry.text or ""
            same = normalize_text(earlier) == normalize_text(text)
            if self.verify and not same and not agree(text, earlier):
                self.stats.rejected[kind] += 1
                continue
            value = self._decode(key, entry.value)
            if value is not MISSING:
                return Match(value, earlier, score)
        return None

    # -- plans -------------------------------------------------------------------------------

    def plan_scope(self, model: str, tools: Iterable[Tool], prompt: str, *, json: bool) -> str:
        """The scope of a planner's plans: its model, its tools and their versions, its
        system prompt and whether it writes JSON."""
        names = sorted((tool.name, tool.version) for tool in tools)
        return digest("plan-scope", model, names, prompt, json)

    async def find_plan(self, question: str, scope: str) -> Match | None:
        """A plan stored for ``question`` or a paraphrase of it (see :meth:`similar`)."""
        if not self.plans:
            return None
        return await asyncio.to_thread(self.similar, question, scope, kind="plan")

    async def put_plan(self, question: str, scope: str, plan: str) -> None:
        """Store a plan's text for ``question``."""
        if self.plans:
            await asyncio.to_thread(
                self.put_similar, question, scope, plan, ttl=self.ttl, kind="plan"
            )

    # -- housekeeping ------------------------------------------------------------------------

    def clear(self) -> None:
        """Remove every entry of this namespace."""
        self._safe(lambda: self.store.clear(self.namespace), None)
        with self._shared.lock:
            for name in [n for n in self._shared.indexes if n[0] == self.namespace]:
                del self._shared.indexes[name]

    def close(self) -> None:
        """Close the store (for every namespace view of it)."""
        self.store.close()

    def __repr__(self) -> str:
        return f"<Cache {self.store!r} namespace={self.namespace!r}>"

    # -- failures are misses -----------------------------------------------------------------

    def _safe(self, work: Callable[[], T], default: T) -> T:
        breaker = self._shared.breaker
        if breaker.is_open():
            self.stats.skipped += 1
            return default  # a store that keeps failing is not asked again for a while
        try:
            result = work()
        except Exception as exc:
            self.stats.errors += 1
            warnings.warn(
                f"llmc cache: {type(exc).__name__}: {exc}; going on without the cache for "
                "this lookup",
                CacheWarning,
                stacklevel=3,
            )
            if breaker.failed():
                warnings.warn(
                    f"llmc cache: {breaker.failures} store calls failed in a row; the cache "
                    f"is skipped (every lookup a miss) for {breaker.pause:g} s at a time until "
                    "a call succeeds again",
                    CacheWarning,
                    stacklevel=3,
                )
            return default
        breaker.succeeded()
        return result

    def _decode(self, key: str, data: bytes) -> Any:
        try:
            return self.codec.decode(data)
        except Exception:
            self._safe(lambda: self.store.delete(self.namespace, key), None)
            return MISSING


class Breaker:
    """A circuit breaker for a store: after ``threshold`` failures in a row, calls are skipped
    for ``pause`` seconds; then one call may try again (success closes it, failure opens it
    for twice as long, up to ``max_pause``).

    Without it a frozen store (a Redis that accepts connections and never answers) costs
    every lookup its whole timeout, and a large cached run takes minutes.

    Attributes:
        failures: failures in a row so far.
        pause: the current pause, in seconds.
    """

    def __init__(self, threshold: int = 3, pause: float = 5.0, max_pause: float = 60.0) -> None:
        self.threshold = threshold
        self.first_pause = pause
        self.max_pause = max_pause
        self.pause = pause
        self.failures = 0
        self.warned = False
        self._until = 0.0
        self._lock = threading.Lock()

    def is_open(self) -> bool:
        """Whether calls are being skipped now."""
        return self._until > 0 and time.monotonic() < self._until

    def failed(self) -> bool:
        """Count a failure; True the first time it opens the breaker (warn then)."""
        with self._lock:
            self.failures += 1
            if self.failures < self.threshold:
                return False
            if self._until > 0:  # a retry after a pause failed: pause longer
                self.pause = min(self.pause * 2, self.max_pause)
            self._until = time.monotonic() + self.pause
            first, self.warned = not self.warned, True
            return first

    def succeeded(self) -> None:
        """A call worked: close the breaker."""
        if self.failures:
            with self._lock:
                self.failures, self._until, self.pause = 0, 0.0, self.first_pause


class _Shared:
    """What the namespace views of one cache share: semantic indexes, recent vectors, and the
    store's circuit breaker."""

    def __init__(self) -> None:
        self.breaker = Breaker()
        self.lock = threading.Lock()
        self.indexes: dict[tuple[str, str], Index] = {}
        self.vectors: OrderedDict[tuple[str, str], npt.NDArray[np.float32]] = OrderedDict()


def _store(store: Store | str | os.PathLike[str] | None) -> Store:
    if store is None:
        return SQLiteStore()
    if isinstance(store, str) and store.startswith(("redis://", "rediss://", "unix://")):
        from ._redis import RedisStore

        return RedisStore(store)
    if isinstance(store, str | os.PathLike):
        return SQLiteStore(store)
    if not isinstance(store, Store):
        raise TypeError(f"store must be a Store, a path or a redis:// URL, not {store!r}")
    return store
