"""llmc.budget's parts: counting, shares, truncation, the [[N]] parser, prices, the meter."""

from __future__ import annotations

import importlib.util
import math
import time
from pathlib import Path

import pytest

from llmc import Budget, BudgetExceeded, GenerateOptions, Usage
from llmc.budget import (
    DEFAULT_CONTEXT_WINDOW,
    DEFAULT_PRICES,
    ESTIMATE,
    MIN_OUTPUT,
    BackendCounter,
    CachedCounter,
    Estimate,
    Meter,
    Price,
    PriceTable,
    Split,
    Tiktoken,
    allocate,
    context_window_of,
    count_messages,
    count_upto,
    counter_for,
    output_cap,
    parse_budget,
    truncate,
)
from llmc.llm.base import Message
from llmc.testing import ScriptedLLM

PROSE = "The quick brown fox jumps over the lazy dog, and then it rests. " * 20


class WordCounter:
    """An exact counter that counts whitespace-separated words and records what it read."""

    name = "words"
    exact = True

    def __init__(self) -> None:
        self.read = 0

    def count(self, text: str) -> int:
        self.read += len(text)
        return len(text.split())


# -- counting ---------------------------------------------------------------------------------


def test_the_estimate_counts_scripts_and_digits_it_knows_are_dense() -> None:
    assert ESTIMATE.count("") == 0
    assert ESTIMATE.count("a") == 1
    latin = ESTIMATE.count("word " * 200)
    cjk = ESTIMATE.count("文字" * 500)  # as many characters, each about a token
    digits = ESTIMATE.count("7" * 1000)
    assert latin < digits and latin < cjk
    assert 150 <= latin <= 400  # "word " is a token in cl100k_base: within a factor of 2


def test_a_custom_estimate_is_a_linear_formula() -> None:
    four = Estimate(per_char=0.25)
    assert four.count("x" * 400) == 100
    assert Estimate(per_char=0.25, scale=2.0).count("x" * 400) == 200


def test_the_cache_keeps_long_texts_and_forgets_the_oldest() -> None:
    inner = WordCounter()
    cached = CachedCounter(inner, max_chars=3000, min_chars=100)
    text = "alpha beta " * 100  # 1100 characters
    assert cached.count(text) == cached.count(text) == 200
    assert cached.hits == 1 and inner.read == len(text)
    cached.count("short")
    cached.count("short")
    assert cached.hits == 1  # short texts are not cached
    for n in range(3):
        cached.count(f"{n} " + text)  # pushes the first text out
    before = inner.read
    cached.count(text)
    assert inner.read == before + len(text)
    assert cached.name == "words" and cached.exact


def test_count_upto_reads_a_few_kilobytes_of_a_megabyte_to_know_it_is_over() -> None:
    counter = WordCounter()
    huge = "word " * 200_000  # 1 MB
    assert count_upto(counter, huge, 100) > 100
    assert counter.read < 20_000
    small = "word " * 50
    assert count_upto(counter, small, 100) == 50
    estimate = ESTIMATE  # not exact: it just counts, fast
    assert count_upto(estimate, huge, 100) == estimate.count(huge)


def test_counting_a_megabyte_takes_well_under_a_second() -> None:
    text = (PROSE + " 12345, 67890; {'key': [1, 2, 3]}\n") * 1000
    text = (text * (1_000_000 // len(text) + 1))[:1_000_000]
    started = time.perf_counter()
    ESTIMATE.count(text)
    assert time.perf_counter() - started < 1.0  # the benchmark measures ~hundreds of MB/s
    cached = CachedCounter(ESTIMATE)
    cached.count(text)
    started = time.perf_counter()
    for _ in range(100):
        cached.count(text)
    assert time.perf_counter() - started < 1.0


def test_count_messages_adds_the_chat_overhead() -> None:
    messages: list[Message] = [
        {"role": "system", "content": "x" * 40},
        {"role": "user", "content": "y" * 40},
    ]
    four = Estimate(per_char=0.25)
    assert count_messages(four, messages) == 10 + 10 + 2 * 5 + 3


def test_the_counter_for_a_model_that_counts_is_its_own() -> None:
    class Counting:
        model = "mine"

        def count_tokens(self, text: str) -> int:
            return len(text)

    counter = counter_for(Counting())
    assert isinstance(counter.inner, BackendCounter) and counter.exact
    assert counter.count("abc") == 3 and counter.name == "mine tokenizer"
    assert counter_for(ScriptedLLM(["x"])).inner is ESTIMATE
    assert not counter_for(None).exact
    with pytest.raises(TypeError, match="count_tokens"):
        BackendCounter(object())


def test_context_windows_come_from_the_model_the_table_or_the_default() -> None:
    class Own:
        model = "gpt-4o"
        context_window = 1234

    class Named:
        model = "gpt-4o-mini-2024-07-18"

    assert context_window_of(Own()) == 1234
    assert context_window_of(Named()) == 128_000
    assert context_window_of(ScriptedLLM(["x"])) == DEFAULT_CONTEXT_WINDOW
    assert context_window_of(None, default=999) == 999


def _offline_cl100k() -> str | None:
    if importlib.util.find_spec("tiktoken") is None:
        return None
    from llmc.budget._count import _TIKTOKEN_URLS, _cache_key, _cached_folder

    folder = _cached_folder(_TIKTOKEN_URLS["cl100k_base"])
    return None if folder is None else str(folder / _cache_key(_TIKTOKEN_URLS["cl100k_base"]))


@pytest.mark.skipif(_offline_cl100k() is None, reason="tiktoken's cl100k_base is not on disk")
def test_tiktoken_counts_exactly_from_a_file_on_disk() -> None:
    import tiktoken

    path = _offline_cl100k()
    assert path is not None
    counter = Tiktoken("cl100k_base", path=path)
    assert counter.exact and counter.name == "cl100k_base"
    reference = Tiktoken("cl100k_base")
    text = PROSE + " 3.14159 <|endoftext|> 文字"
    assert counter.count(text) == reference.count(text) > 0
    assert isinstance(tiktoken.Encoding, type)


def test_tiktoken_says_what_is_missing() -> None:
    with pytest.raises(ValueError, match="unknown tiktoken encoding"):
        Tiktoken("p50k_base")
    if importlib.util.find_spec("tiktoken") is not None:
        with pytest.raises(ValueError, match="not on disk"):
            Tiktoken("o200k_base", path="/nonexistent/o200k_base.tiktoken")


@pytest.mark.local_model
def test_the_local_model_counts_with_its_own_tokenizer() -> None:
    from llmc.llm import Local

    llm = Local(n_ctx=2048)
    try:
        text = PROSE + " 12345 文字 <|im_end|>"
        assert llm.count_tokens(text) == len(llm._tokenize(text)) > 0
        assert llm.count_tokens("") == 0
        assert llm.context_window == 2048 == context_window_of(llm)
        counter = counter_for(llm)
        assert counter.exact and "SmolLM2" in counter.name
        assert Meter().price(llm) == Price(0, 0, 0)
    finally:
        llm.close()


# -- shares and truncation --------------------------------------------------------------------


def test_allocate_is_max_min_fair() -> None:
    shares = allocate({1: 10, 2: 500, 3: 800}, 600)
    assert shares[1] == 10  # small ones keep all they need
    assert shares[2] == shares[3] == 295
    assert sum(shares.values()) <= 600
    assert allocate({1: 10, 2: 20}, 1000) == {1: 10, 2: 20}
    capped = allocate({1: 500, 2: 500}, 600, {1: 100})
    assert capped == {1: 100, 2: 500}
    assert allocate({}, 100) == {}
    tiny = allocate({1: 500, 2: 500, 3: 500}, 10)
    assert all(share == 16 for share in tiny.values())  # never below a marker's worth


def test_truncate_keeps_head_and_tail_within_the_limit() -> None:
    text = " ".join(f"w{i}" for i in range(5000))
    for counter in (WordCounter(), ESTIMATE):
        out = truncate(text, 300, counter)
        assert counter.count(out) <= 300
        assert out.startswith("w0 w1 w2") and out.endswith("w4998 w4999")
        assert "characters cut to fit a budget of 300 tokens" in out
    assert truncate("short text", 300, ESTIMATE) == "short text"


def test_truncate_of_a_megabyte_is_fast_and_small() -> None:
    text = ("lorem ipsum 12345 dolor sit amet " * 40_000)[:1_000_000]
    counter = WordCounter()
    started = time.perf_counter()
    out = truncate(text, 500, counter)
    assert time.perf_counter() - started < 1.0
    assert counter.count(out) <= 500
    assert counter.read < 100_000  # it never tokenized the whole megabyte


def test_truncate_to_almost_nothing_still_fits() -> None:
    text = "word " * 1000
    out = truncate(text, 16, ESTIMATE)
    assert ESTIMATE.count(out) <= 16 or out == ""


# -- TALE -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Budget: [[50]]", 50),
        ("[[ 75 ]] tokens", 75),
        ("[[1,200]]", 1000),  # clamped to high
        ("[[3]]", 16),  # clamped to low
        ("[[0]]", 16),
        ("[[42.6]]", 43),
        ("The answer needs about [[120]] tokens, maybe [[400]]", 120),  # the first counts
        ("Budget: 64", 64),  # no brackets: a labelled number still counts
        ("I cannot tell.", 256),  # the fallback
        ("", 256),
        ("[[99999999999999999999999]]", 1000),
    ],
)
def test_parse_budget_clamps_and_falls_back(reply: str, expected: int) -> None:
    assert parse_budget(reply, low=16, high=1000) == expected


def test_parse_budget_checks_its_range_and_clamps_the_fallback() -> None:
    assert parse_budget("nothing", low=10, high=20, fallback=500) == 20
    with pytest.raises(ValueError, match="low <= high"):
        parse_budget("[[5]]", low=10, high=5)
    with pytest.raises(ValueError):
        parse_budget("[[5]]", low=0, high=5)


def test_output_cap_is_the_budget_times_the_slack() -> None:
    assert output_cap(100, 1.5) == 150
    assert output_cap(33, 1.5) == 50
    assert output_cap(1, 1.0) == 1


# -- prices -----------------------------------------------------------------------------------


def test_prices_count_cached_tokens_at_their_own_price() -> None:
    price = Price(1.0, 4.0, 0.5)
    usage = Usage(prompt_tokens=1_000_000, completion_tokens=500_000, cached_tokens=400_000)
    assert price.cost(usage) == pytest.approx(0.6 + 0.2 + 2.0)
    assert Price(1.0, 4.0).cost(usage) == pytest.approx(1.0 + 2.0)
    with pytest.raises(ValueError):
        Price(-1, 0)


def test_a_model_says_its_own_price_and_wrappers_pass_it_on(tmp_path: Path) -> None:
    from llmc.cache import Cache, CachedLLM
    from llmc.llm import Local, OpenAI

    own = Price(3.0, 7.0)
    meter = Meter(Budget(prices={"gpt-4o-mini": Price(9.0, 9.0)}))
    scripted = ScriptedLLM(["x"], model="gpt-4o-mini", price=own)
    assert meter.price(scripted) == own  # its own price over the table's
    assert meter.price(ScriptedLLM(["x"], model="gpt-4o-mini")) == Price(9.0, 9.0)
    assert meter.price(ScriptedLLM(["x"], model="unknown")) is None
    cache = Cache(tmp_path / "cache.sqlite")
    assert meter.price(CachedLLM(CachedLLM(scripted, cache), cache)) == own
    assert meter.price(CachedLLM(ScriptedLLM(["x"]), cache)) is None
    local = Local(n_ctx=512)  # nothing is loaded until a call
    assert meter.price(CachedLLM(local, cache)) == meter.price(local) == Price(0, 0, 0)
    endpoint = OpenAI("gpt-4o-mini", base_url="http://127.0.0.1:9/v1", price=own)
    assert meter.price(endpoint) == own
    assert meter.price(OpenAI("gpt-4o-mini", base_url="http://127.0.0.1:9/v1")) == Price(9, 9)


def test_the_price_table_matches_the_longest_prefix() -> None:
    assert DEFAULT_PRICES.find("gpt-4o-mini-2024-07-18") == DEFAULT_PRICES["gpt-4o-mini"]
    assert DEFAULT_PRICES.find("openai/gpt-4o-2024-08-06") == DEFAULT_PRICES["gpt-4o"]
    assert DEFAULT_PRICES.find("unknown-model") is None
    table = DEFAULT_PRICES | {"mine": Price(1, 2)}
    assert table.find("MINE-v2") == Price(1, 2) and len(table) == len(DEFAULT_PRICES) + 1
    assert PriceTable({"x": (1.0, 2.0, 0.5)}).find("x") == Price(1.0, 2.0, 0.5)
    with pytest.raises(KeyError):
        DEFAULT_PRICES["nothing"]


# -- configuration ----------------------------------------------------------------------------


def test_splits_and_budgets_check_their_values() -> None:
    assert Split(0.1, 0.5, 0.2, 0.2).context == 0.5
    with pytest.raises(ValueError, match="add up to 1"):
        Split(0.5, 0.5, 0.5, 0.5)
    with pytest.raises(ValueError):
        Budget(max_tokens=-1)
    with pytest.raises(ValueError):
        Budget(joiner_output=0)
    with pytest.raises(ValueError):
        Budget(max_cost=-0.01)
    with pytest.raises(ValueError, match="slack"):
        Budget(slack=0.5)
    with pytest.raises(ValueError, match="tale_range"):
        Budget(tale_range=(100, 10))
    assert Budget(max_cost=1.0).replace(max_cost=2.0).max_cost == 2.0


# -- the meter --------------------------------------------------------------------------------

MESSAGES: list[Message] = [{"role": "user", "content": "x" * 400}]


def test_the_meter_refuses_a_call_past_max_llm_calls() -> None:
    llm = ScriptedLLM(["ok"])
    meter = Meter(Budget(max_llm_calls=1))
    meter.before_llm_call(llm, MESSAGES, GenerateOptions(), kind="planner")
    meter.usage = Usage(calls=1)
    with pytest.raises(BudgetExceeded) as caught:
        meter.before_llm_call(llm, MESSAGES, GenerateOptions(), kind="joiner")
    assert caught.value.limit == "llm_calls" and caught.value.maximum == 1
    assert "joiner" in str(caught.value) and "partial result" in str(caught.value)


def test_the_meter_caps_max_tokens_to_the_tokens_left() -> None:
    llm = ScriptedLLM(["ok"])
    counter = Estimate(per_char=0.25)
    meter = Meter(Budget(max_tokens=500, counter=counter))
    prompt = count_messages(counter, MESSAGES)  # 100 + 8
    options = meter.before_llm_call(llm, MESSAGES, GenerateOptions(max_tokens=1000), kind="x")
    assert options.max_tokens == 500 - prompt
    meter.usage = Usage(prompt_tokens=500 - prompt - MIN_OUTPUT + 1, calls=1)
    with pytest.raises(BudgetExceeded) as caught:
        meter.before_llm_call(llm, MESSAGES, GenerateOptions(), kind="x")
    assert caught.value.limit == "tokens" and caught.value.needed == prompt + MIN_OUTPUT


def test_the_meter_caps_max_tokens_to_the_money_left() -> None:
    llm = ScriptedLLM(["ok"], model="priced")
    counter = Estimate(per_char=0.25)
    budget = Budget(max_cost=0.001, prices={"priced": Price(1.0, 10.0)}, counter=counter)
    meter = Meter(budget)
    prompt = count_messages(counter, MESSAGES)
    options = meter.before_llm_call(llm, MESSAGES, GenerateOptions(), kind="x")
    assert options.max_tokens == math.floor((0.001 - prompt / 1e6) * 1e6 / 10.0)
    meter.cost = 0.001
    with pytest.raises(BudgetExceeded) as caught:
        meter.before_llm_call(llm, MESSAGES, GenerateOptions(), kind="x")
    assert caught.value.limit == "cost"


def test_a_cost_limit_needs_a_price() -> None:
    meter = Meter(Budget(max_cost=1.0))
    with pytest.raises(ValueError, match="needs the price of 'scripted'"):
        meter.before_llm_call(ScriptedLLM(["x"]), MESSAGES, GenerateOptions(), kind="x")


def test_the_meter_keeps_max_tokens_inside_the_window() -> None:
    llm = ScriptedLLM(["ok"])
    meter = Meter(Budget(context_window=200, counter=Estimate(per_char=0.25)))
    options = meter.before_llm_call(llm, MESSAGES, GenerateOptions(max_tokens=1000), kind="x")
    assert options.max_tokens == 200 - count_messages(meter.counter(llm), MESSAGES)
    untouched = GenerateOptions()
    assert meter.before_llm_call(llm, MESSAGES, untouched, kind="x") is untouched


def test_the_meter_counts_tool_calls() -> None:
    meter = Meter(Budget(max_tool_calls=2))
    meter.count_tool_call("a")
    meter.count_tool_call("b")
    with pytest.raises(BudgetExceeded, match="c\\(\\) would be one more"):
        meter.count_tool_call("c")
    assert meter.tool_calls == 2
    executor = object()
    assert Meter(Budget()).gate(executor) is executor  # type: ignore[arg-type]
    assert meter.gate(executor) is not executor
