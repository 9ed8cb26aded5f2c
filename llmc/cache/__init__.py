"""Caching for llmc: exact and semantic caches of tool calls, LLM calls and plans.

::

    cache = llmc.Cache()                                   # ~/.cache/llmc/cache.sqlite3
    cache = llmc.Cache("redis://localhost:6379/0", namespace="tenant-42",
                       embedder=llmc.cache.MiniLM())       # paraphrases reuse plans
    compiler = llmc.Compiler(tools, llm, cache=cache)
    result = await llmc.run_plan(plan, tools, cache=cache)

- :class:`Cache` is the one object users make; see its docstring for what is cached.
- Stores (the :class:`Store` protocol): :class:`SQLiteStore`, one file, the default;
  :class:`RedisStore` for many processes and machines.
- Embedders (the :class:`Embedder` protocol): :class:`MiniLM` (all-MiniLM-L6-v2, offline,
  the ``semantic`` extra), :class:`OpenAIEmbedder` (any ``/v1/embeddings`` endpoint) and
  :class:`HashingEmbedder` (for tests).
- :func:`agree` verifies semantic matches; :func:`calibrate` measures or chooses a
  threshold on labelled :class:`Pair` lists.
- :class:`CachedLLM` wraps an LLM; the compiler does it for you.

The user guide is docs/caching.md.
"""

from ._cache import DEFAULT_THRESHOLD, MISSING, CacheStats, Match, normalize_text
from ._cache import Cache as Cache  # exported from llmc, its one public home
from ._calibrate import Calibration, Pair, calibrate, read_pairs
from ._codec import Codec
from ._embed import Embedder, HashingEmbedder, MiniLM, OpenAIEmbedder
from ._keys import canonical, digest
from ._llm import CachedLLM
from ._redis import RedisStore
from ._sqlite import SQLiteStore, default_cache_dir
from ._store import CacheWarning, Entry, Store, StoreUnavailable, VectorBatch
from ._verify import Features, agree, features

__all__ = [
    "DEFAULT_THRESHOLD",
    "MISSING",
    "CacheStats",
    "CacheWarning",
    "CachedLLM",
    "Calibration",
    "Codec",
    "Embedder",
    "Entry",
    "Features",
    "HashingEmbedder",
    "Match",
    "MiniLM",
    "OpenAIEmbedder",
    "Pair",
    "RedisStore",
    "SQLiteStore",
    "Store",
    "StoreUnavailable",
    "VectorBatch",
    "agree",
    "calibrate",
    "canonical",
    "default_cache_dir",
    "digest",
    "features",
    "normalize_text",
    "read_pairs",
]
