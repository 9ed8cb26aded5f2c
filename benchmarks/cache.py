"""Cache benchmarks: lookup latency at 10k and 100k entries, and matching quality.

Run: ``python benchmarks/cache.py`` (a few minutes; needs the ``semantic`` and ``redis``
extras and the redis-server binary, else the Redis rows are skipped).

(a) Exact lookups: a store filled with N entries (JSON values of about 500 bytes), then
    ``Cache.get`` of random keys that are there (hits) and that are not (misses); p50 and
    p99 in microseconds, SQLite file and Redis on loopback.
(b) Semantic lookups: a scope filled with N entries: the labelled questions of
    tests/data/question_pairs.tsv with their real all-MiniLM-L6-v2 vectors, the rest random
    unit vectors (the search costs the same; embedding 100k questions would take an hour
    here). ``Cache.similar`` of the pairs' second questions: embedding (one torch thread),
    exact-text probe, index sync, matrix product, verification, entry read. The first lookup
    loads the scope's vectors into memory; it is reported apart.
(c) Quality on the labelled pairs at the default threshold: precision, hit rate, false-hit
    rate, with and without verification, a threshold sweep, and a 5-fold cross-validated
    estimate (the threshold chosen on four fifths, measured on the fifth).

Results and the exact command are recorded in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path

import numpy as np

import llmc
from benchmarks.servers import REDIS_BINARY
from benchmarks.servers import redis_server as start_redis
from llmc.cache import (
    DEFAULT_THRESHOLD,
    Cache,
    MiniLM,
    Pair,
    RedisStore,
    SQLiteStore,
    Store,
    calibrate,
    digest,
    read_pairs,
)

PAIRS = Path(__file__).resolve().parent.parent / "tests" / "data" / "question_pairs.tsv"
VALUE = {"text": "Thought: look both up.\n" + "1. search('x')\n" * 20, "finish_reason": "stop"}


def percentiles(samples: Sequence[float]) -> tuple[float, float]:
    """p50 and p99 of seconds, in microseconds."""
    values = np.asarray(samples) * 1e6
    return float(np.percentile(values, 50)), float(np.percentile(values, 99))


def timed(calls: Sequence[Callable[[], object]]) -> list[float]:
    samples = []
    for call in calls:
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return samples


@contextlib.contextmanager
def redis_server() -> Iterator[str | None]:
    """A throwaway redis-server's URL, or None without the binary (its rows are left out)."""
    if REDIS_BINARY is None:
        yield None
        return
    with start_redis() as (url, _):
        yield url


def exact(store: Store, size: int, lookups: int, rng: random.Random) -> str:
    cache = Cache(store, namespace="exact")
    start = time.perf_counter()
    for number in range(size):
        cache.set(f"key-{number}", {**VALUE, "n": number})
    fill = time.perf_counter() - start
    present = [f"key-{rng.randrange(size)}" for _ in range(lookups)]
    absent = [f"absent-{n}" for n in range(lookups)]
    hits = timed([partial(cache.get, k) for k in present])
    misses = timed([partial(cache.get, k) for k in absent])
    assert cache.stats.hits["value"] == lookups and cache.stats.misses["value"] == lookups
    (h50, h99), (m50, m99) = percentiles(hits), percentiles(misses)
    return (
        f"    exact     {size:>7}  hit p50 {h50:7.0f} p99 {h99:7.0f}   miss p50 {m50:7.0f} "
        f"p99 {m99:7.0f}   (fill {fill / size * 1e6:.0f} us/entry)"
    )


def semantic(
    store: Store,
    size: int,
    lookups: int,
    embedder: MiniLM,
    pairs: Sequence[Pair],
    vectors: dict[str, np.ndarray],
    rng: random.Random,
) -> str:
    cache = Cache(store, namespace="semantic", embedder=embedder)
    scope = digest("bench-scope", size)
    firsts = list(dict.fromkeys(p.first for p in pairs))
    for text in firsts:
        cache.put_similar(text, scope, VALUE, vector=vectors[text])
    noise = np.random.default_rng(0).standard_normal((size - len(firsts), 384)).astype("f4")
    noise /= np.linalg.norm(noise, axis=1, keepdims=True)
    for number, vector in enumerate(noise):
        cache.put_similar(f"filler question {number}", scope, VALUE, vector=vector)
    queries = [p.second for p in rng.sample(list(pairs), k=min(lookups, len(pairs)))]
    start = time.perf_counter()
    cache.similar("warm up: load the index", scope)
    load = time.perf_counter() - start
    embed = timed([partial(embedder.embed, [q]) for q in queries[:100]])
    total = timed([partial(cache.similar, q, scope, kind="bench") for q in queries])
    (t50, t99), (e50, _) = percentiles(total), percentiles(embed)
    hits = cache.stats.hits["bench"]
    return (
        f"    semantic  {size:>7}  p50 {t50 / 1000:6.1f} ms p99 {t99 / 1000:6.1f} ms "
        f"(embedding p50 {e50 / 1000:.1f} ms)   index load {load:5.2f} s   "
        f"{hits}/{len(queries)} hits"
    )


def quality(pairs: Sequence[Pair], embedder: MiniLM) -> list[str]:
    lines = []
    verified = calibrate(pairs, embedder, threshold=DEFAULT_THRESHOLD)
    plain = calibrate(pairs, scores=verified.scores, threshold=DEFAULT_THRESHOLD, verify=False)
    kinds = sorted({p.kind for p in pairs})
    counts = {k: sum(p.kind == k for p in pairs) for k in kinds}
    lines.append(
        f"(c) {len(pairs)} labelled pairs: " + ", ".join(f"{counts[k]} {k}" for k in kinds)
    )
    lines.append(f"    at the default threshold {DEFAULT_THRESHOLD}:")
    for name, result in (("verified (agree)", verified), ("cosine only", plain)):
        lines.append(
            f"      {name:<17} precision {result.precision:.3f}   hit rate {result.hit_rate:.3f}"
            f"   false-hit rate {result.false_hit_rate:.3f}"
        )
    lines.append("    sweep (verified): threshold  precision  hit rate  false-hit rate")
    for at, precision, hit_rate, false_rate in verified.curve:
        if at in (0.75, 0.8, 0.84, 0.86, 0.88, 0.9, 0.92, 0.95):
            lines.append(
                f"                      {at:.2f}      {precision:.3f}     {hit_rate:.3f}"
                f"     {false_rate:.3f}"
            )
    by_kind = {
        k: [s for p, s in zip(pairs, verified.scores, strict=True) if p.kind == k] for k in kinds
    }
    lines.append(
        "    cosine by kind (min / median / max): "
        + "; ".join(
            f"{k} {min(v):.2f}/{float(np.median(v)):.2f}/{max(v):.2f}" for k, v in by_kind.items()
        )
    )
    folds = 5
    order = list(range(len(pairs)))
    random.Random(7).shuffle(order)
    true = false = positives = negatives = 0
    chosen = []
    for fold in range(folds):
        test = set(order[fold::folds])
        train = [i for i in order if i not in test]
        picked = calibrate([pairs[i] for i in train], scores=[verified.scores[i] for i in train])
        chosen.append(picked.threshold)
        measured = calibrate(
            [pairs[i] for i in sorted(test)],
            scores=[verified.scores[i] for i in sorted(test)],
            threshold=picked.threshold,
        )
        same = sum(pairs[i].same for i in test)
        true += round(measured.hit_rate * same)
        false += round(measured.false_hit_rate * (len(test) - same))
        positives += same
        negatives += len(test) - same
    lines.append(
        f"    5-fold cross-validated (thresholds {', '.join(f'{t:.2f}' for t in chosen)}): "
        f"precision {true / max(1, true + false):.3f}   hit rate {true / positives:.3f}   "
        f"false-hit rate {false / negatives:.3f}"
    )
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--lookups", type=int, default=2000, help="exact lookups per size")
    parser.add_argument("--semantic-lookups", type=int, default=200)
    parser.add_argument("--stores", nargs="+", default=["sqlite", "redis"])
    args = parser.parse_args(argv)
    warnings.simplefilter("error", llmc.cache.CacheWarning)  # a benchmark must not miss quietly
    rng = random.Random(1)
    print(
        f"llmc {llmc.__version__}, Python {platform.python_version()}, {sys.platform}, "
        f"{os.cpu_count()} CPUs"
    )
    embedder = MiniLM(threads=1)
    pairs = read_pairs(PAIRS)
    texts = list(dict.fromkeys([p.first for p in pairs] + [p.second for p in pairs]))
    vectors = dict(zip(texts, embedder.embed(texts), strict=True))
    with tempfile.TemporaryDirectory() as folder, redis_server() as url:
        for kind in args.stores:
            if kind == "redis" and url is None:
                print("    (redis-server not found: Redis rows skipped)")
                continue
            print(f"(a, b) {kind}: lookup latency in microseconds unless marked")
            for size in args.sizes:
                store: Store
                if kind == "sqlite":
                    store = SQLiteStore(
                        Path(folder) / f"bench-{size}.sqlite3", max_entries=None, max_bytes=None
                    )
                else:
                    assert url is not None
                    store = RedisStore(url, prefix=f"bench:{size}", max_entries=None)
                print(exact(store, size, args.lookups, rng), flush=True)
                print(
                    semantic(store, size, args.semantic_lookups, embedder, pairs, vectors, rng),
                    flush=True,
                )
                store.close()
    for line in quality(pairs, embedder):
        print(line)


if __name__ == "__main__":
    main()
