"""Choosing a similarity threshold from labelled question pairs, and measuring it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ._embed import Embedder
from ._verify import agree


@dataclass(frozen=True, slots=True)
class Pair:
    """Two questions and whether a cache may answer one with the other's entry.

    Attributes:
        kind: ``"paraphrase"`` (same meaning: should hit) or the kind of near-miss
            (``"negation"``, ``"swap"``, ``"entity"``, ``"number"``, ``"unit"``, ...).
        first: one question.
        second: the other.
    """

    kind: str
    first: str
    second: str

    @property
    def same(self) -> bool:
        """Whether the two ask the same thing."""
        return self.kind == "paraphrase"


def read_pairs(path: str | os.PathLike[str]) -> list[Pair]:
    """Read pairs from a tab-separated file: ``kind<TAB>question<TAB>question`` per line;
    lines starting with ``#`` are comments."""
    pairs = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != 3:
            raise ValueError(f"{path}:{number}: expected kind, question, question (tabs)")
        pairs.append(Pair(*fields))
    return pairs


@dataclass(frozen=True, slots=True)
class Calibration:
    """How a threshold does on labelled pairs.

    Attributes:
        threshold: the chosen threshold.
        verify: whether matches were verified (:func:`~llmc.cache.agree`).
        precision: of the pairs that hit, the share that were paraphrases.
        hit_rate: of the paraphrases, the share that hit.
        false_hit_rate: of the near-misses, the share that hit.
        false_hits: the near-miss pairs that hit, with their scores.
        scores: every pair's cosine similarity, in the order given.
        curve: (threshold, precision, hit rate, false-hit rate) at each candidate threshold.
    """

    threshold: float
    verify: bool
    precision: float
    hit_rate: float
    false_hit_rate: float
    false_hits: list[tuple[Pair, float]] = field(repr=False)
    scores: list[float] = field(repr=False)
    curve: list[tuple[float, float, float, float]] = field(repr=False)


def calibrate(
    pairs: Sequence[Pair],
    embedder: Embedder | None = None,
    *,
    scores: Sequence[float] | None = None,
    verify: bool = True,
    threshold: float | None = None,
    target_precision: float = 1.0,
) -> Calibration:
    """Measure a threshold on labelled pairs, or choose one.

    With ``threshold=None``, the chosen threshold is the lowest of 0.50, 0.51, ..., 0.99
    whose precision reaches ``target_precision`` (the highest precision found, if none
    does): as many hits as the near-misses allow.

    Args:
        pairs: labelled pairs (:func:`read_pairs`).
        embedder: the embedder the cache uses.
        scores: the pairs' similarities from an earlier calibration (``.scores``), instead
            of embedding them again.
        verify: apply :func:`~llmc.cache.agree` to every match, as the cache does.
        threshold: measure this threshold instead of choosing one.
        target_precision: the precision a chosen threshold must reach.

    Raises:
        ValueError: no pairs, or neither an embedder nor scores.
    """
    import numpy as np

    if not pairs:
        raise ValueError("calibration needs at least one pair")
    if scores is None:
        if embedder is None:
            raise ValueError("calibrate needs an embedder or the scores of an earlier run")
        first = embedder.embed([p.first for p in pairs])
        second = embedder.embed([p.second for p in pairs])
        scores = [float(s) for s in np.sum(first * second, axis=1)]
    similarity = np.asarray(scores, dtype=np.float64)
    same = np.array([p.same for p in pairs])
    passes = np.array([(not verify) or agree(p.first, p.second) for p in pairs])

    def measure(at: float) -> tuple[float, float, float]:
        hit = (similarity >= at) & passes
        true, false = int(np.sum(hit & same)), int(np.sum(hit & ~same))
        precision = true / (true + false) if true + false else 1.0
        return (
            precision,
            true / max(1, int(same.sum())),
            false / max(1, int((~same).sum())),
        )

    candidates = [round(0.5 + i / 100, 2) for i in range(50)]
    curve = [(at, *measure(at)) for at in candidates]
    if threshold is None:
        good = [row for row in curve if row[1] >= target_precision - 1e-12]
        best = max(row[1] for row in curve)
        threshold = (good or [row for row in curve if row[1] == best])[0][0]
    precision, hit_rate, false_rate = measure(threshold)
    false_hits = [
        (pair, float(score))
        for pair, score, ok in zip(pairs, similarity, passes, strict=True)
        if not pair.same and ok and score >= threshold
    ]
    return Calibration(
        threshold,
        verify,
        precision,
        hit_rate,
        false_rate,
        false_hits,
        list(scores),
        curve,
    )
