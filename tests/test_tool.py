"""@llmc.tool: schemas from hints and docstrings, validation, sync and async calls."""

from __future__ import annotations

import asyncio
import inspect
import subprocess
import sys
import threading
from pathlib import Path
from typing import Literal

import pytest

import llmc
from llmc.limits import RateLimit, RateLimiter
from llmc.tool import parse_docstring


@llmc.tool
async def search(query: str, k: int = 3) -> str:
    """Search the encyclopedia.

    Longer text that the planner's one-line signature leaves out.

    Args:
        query: a topic, e.g. "Eiffel Tower".
        k: how many results to
            return at most.
    """
    return f"{k} results for {query}"


@llmc.tool(name="add_numbers", timeout=5, retries=2, max_concurrency=3, rate_limit=10)
def add(a: float, b: float = 0.0) -> float:
    """Add two numbers."""
    return a + b


def test_signature_line_is_one_line_with_summary() -> None:
    assert search.signature_line() == (
        "search(query: str, k: int = 3) -> str  # Search the encyclopedia."
    )
    assert (
        add.signature_line() == "add_numbers(a: float, b: float = 0.0) -> float  # Add two numbers."
    )


def test_json_schema_is_openai_function_form() -> None:
    schema = search.json_schema()
    assert schema["type"] == "function"
    function = schema["function"]
    assert function["name"] == "search"
    assert function["description"].startswith("Search the encyclopedia.")
    params = function["parameters"]
    assert params["type"] == "object"
    assert params["required"] == ["query"]
    assert params["properties"]["query"] == {
        "type": "string",
        "description": 'a topic, e.g. "Eiffel Tower".',
    }
    assert params["properties"]["k"]["description"] == "how many results to return at most."
    assert params["properties"]["k"]["default"] == 3
    assert params["additionalProperties"] is False


def test_options_are_kept() -> None:
    assert add.name == "add_numbers"
    assert (add.timeout, add.retries, add.max_concurrency) == (5, 2, 3)
    assert isinstance(add.rate_limit, RateLimit) and add.rate_limit.calls == 10


def test_original_function_stays_reachable() -> None:
    assert inspect.unwrap(add)(1, 2) == 3  # functools' __wrapped__
    assert add.__doc__ == "Add two numbers."
    assert asyncio.run(inspect.unwrap(search)("x")) == "3 results for x"


def test_call_validates_and_coerces() -> None:
    assert add("1.5", 2) == 3.5
    assert asyncio.run(search("Mariana", k="2")) == "2 results for Mariana"


@pytest.mark.parametrize(
    ("args", "kwargs", "parameter", "words"),
    [
        ((1, "x"), {}, "b", "expects float, got 'x'"),
        ((), {}, "a", "missing required argument 'a'"),
        ((1,), {"c": 2}, "c", "unexpected argument 'c'"),
        ((1, 2, 3), {}, None, "takes 2 argument(s) but 3 were given"),
        ((1,), {"a": 2}, "a", "two values for 'a'"),
    ],
)
def test_bad_arguments_name_tool_and_parameter(args, kwargs, parameter, words) -> None:
    calls = []

    @llmc.tool(name="add_numbers")
    def spy(a: float, b: float = 0.0) -> float:
        calls.append((a, b))
        return a + b

    with pytest.raises(llmc.ToolArgumentError) as info:
        spy(*args, **kwargs)
    assert info.value.tool == "add_numbers"
    assert info.value.parameter == parameter
    assert words in str(info.value)
    assert "add_numbers" in str(info.value)
    assert calls == []


def test_nested_types_validate_with_path() -> None:
    @llmc.tool
    def total(prices: list[float], unit: Literal["usd", "eur"] = "usd") -> float:
        """Sum prices."""
        return sum(prices)

    assert total(["1", 2]) == 3.0
    with pytest.raises(llmc.ToolArgumentError, match=r"'prices'\[1\] expects list\[float\]"):
        total([1, "two"])
    with pytest.raises(llmc.ToolArgumentError, match="unit"):
        total([1], unit="gbp")
    assert "unit: Literal['usd', 'eur'] = 'usd'" in total.signature_line()


async def test_sync_tool_runs_in_a_thread_without_blocking_the_loop() -> None:
    started = threading.Event()
    release = threading.Event()

    @llmc.tool
    def blocking() -> tuple[str, bool]:
        """Wait for release."""
        started.set()
        return threading.current_thread().name, release.wait(5)

    call = asyncio.create_task(blocking.invoke({}))
    assert await asyncio.to_thread(started.wait, 5)
    await asyncio.sleep(0.01)  # the loop still turns while the tool blocks its thread
    release.set()
    thread, released = await call
    assert thread != threading.main_thread().name
    assert released  # had it held the loop, nothing could have released it in time


@pytest.mark.parametrize(
    ("definition", "words"),
    [
        (lambda: llmc.tool(name="f")(lambda *items: None), "*items"),
        (lambda: llmc.tool(name="not valid")(lambda: None), "not a Python identifier"),
        (lambda: llmc.tool(name="f", timeout=0)(lambda: None), "timeout"),
        (lambda: llmc.tool(name="f", retries=-1)(lambda: None), "retries"),
        (lambda: llmc.tool(rate_limit=0)(lambda: None), "rate_limit"),
        (lambda: llmc.tool(rate_limit="4/s")(lambda: None), "acquire"),  # type: ignore[call-overload]
        (lambda: llmc.tool(rate_limit=SyncLimiter())(lambda: None), "async acquire"),  # type: ignore[call-overload]
        (lambda: llmc.tool(42), "needs a function"),  # type: ignore[call-overload]
    ],
)
def test_bad_definitions_say_what_to_fix(definition, words) -> None:
    with pytest.raises(llmc.ToolDefinitionError, match=words.replace("*", r"\*")):
        definition()


class SyncLimiter:
    def acquire(self) -> None:
        """Not awaitable: the scheduler could not wait on it."""


class CountingLimiter:
    """A limiter that is neither llmc's nor asyncio_throttle's."""

    def __init__(self) -> None:
        self.acquired = 0

    async def acquire(self) -> None:
        self.acquired += 1


async def test_any_rate_limiter_is_kept_and_obeyed() -> None:
    limiter = CountingLimiter()
    limited = llmc.tool(name="limited", rate_limit=limiter)(lambda x: x)
    assert limited.rate_limit is limiter and isinstance(limiter, RateLimiter)
    plan = llmc.Plan()
    for i in range(3):
        plan.add("limited", i)
    result = await llmc.run_plan(plan, tools=[limited])
    assert result.ok and limiter.acquired == 3


def test_version_is_stable_and_tracks_the_signature() -> None:
    def f(x: int) -> int:
        return x

    def g(x: str) -> int:
        return 0

    assert llmc.tool(f).version == llmc.tool(f).version
    assert llmc.tool(f).version != llmc.tool(name="f")(g).version
    assert llmc.tool(version="2")(f).version == "2"


def test_docstring_parsing() -> None:
    doc = parse_docstring(
        """Summary line
        continues here.

        Body.

        Args:
            first (int): one.
            second: two,
                wrapped.

        Returns:
            nothing: really.
        """
    )
    assert doc.summary == "Summary line continues here."
    assert doc.params == {"first": "one.", "second": "two, wrapped."}


def test_unknown_options_are_refused() -> None:
    with pytest.raises(llmc.ToolDefinitionError, match=r"unknown tool option.*timout"):
        llmc.tool(timout=3)  # type: ignore[call-overload]


@pytest.mark.timeout(900)  # mypy reads llmc; a cold cache on a loaded machine takes minutes
def test_type_checkers_check_the_options(tmp_path: Path) -> None:
    pytest.importorskip("mypy")
    program = tmp_path / "options.py"
    program.write_text(
        "import llmc\n"
        "@llmc.tool(timeout='soon')\n"
        "def late() -> None: ...\n"
        "@llmc.tool(timout=1)\n"
        "def typo() -> None: ...\n"
        "@llmc.tool(timeout=1.5, retries=2, rate_limit=4, batch_fallback=True)\n"
        "def fine() -> None: ...\n"
        "options: llmc.ToolOptions = {'retries': 1, 'pure': True}\n"
        "bad: llmc.ToolOptions = {'retries': 'many'}\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", str(program)],
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
    )
    lines = result.stdout.splitlines()
    errors = {int(line.split(":")[1]) for line in lines if ": error:" in line}
    assert errors == {2, 4, 9}, result.stdout
    assert any(":4:" in line and '"timout"' in line for line in lines), result.stdout
