"""MCP tool servers as llmc tools, against a real server of the tests' own (tests/mcp_server.py)
started on stdio as a subprocess and on streamable HTTP on loopback."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("mcp", reason="the MCP SDK is not installed (pip install -e '.[mcp]')")

import llmc
from benchmarks.servers import MCP_SERVER, mcp_http_server
from llmc import mcp as llmc_mcp
from llmc.cli import main
from llmc.errors import (
    DependencyError,
    MCPConnectionError,
    MCPToolError,
    ToolArgumentError,
    ToolDefinitionError,
    ToolTimeoutError,
)
from llmc.testing import ScriptedLLM, ScriptedOpenAIServer
from llmc.trace import TaskStatus

SERVER = str(MCP_SERVER)


def test_server() -> llmc_mcp.MCPServer:
    return llmc_mcp.stdio(sys.executable, SERVER, timeout=20.0)


test_server.__test__ = False  # type: ignore[attr-defined]


async def test_tools_come_with_their_signatures_schemas_and_purity() -> None:
    async with test_server() as server:
        tools = {tool.name: tool for tool in server.tools}
        assert tools["add"].signature_line() == "add(a: int, b: int) -> int  # Add two integers."
        assert (
            tools["shout"]
            .signature_line()
            .startswith("shout(text: str, times: int = 1) -> str  # Upper-case a text, repeated.")
        )
        assert tools["shout"].docstring.params == {
            "text": "what to shout.",
            "times": "how many times.",
        }
        # "word-count" is no Python name: the plan's name differs, the server's is kept.
        assert tools["word_count"].remote_name == "word-count"
        assert (
            tools["word_count"]
            .signature_line()
            .startswith("word_count(text: str) -> dict[str, int]")
        )
        # read-only and closed-world: pure; read-only alone (open world by default): not.
        assert tools["add"].pure and not tools["word_count"].pure and not tools["shout"].pure
        schema = tools["shout"].json_schema()["function"]
        assert schema["name"] == "shout"
        assert schema["parameters"]["properties"]["times"]["minimum"] == 1  # the server's own
        assert all(tool.timeout == 20.0 for tool in server.tools)
        assert "7 tools" in repr(server)
    with pytest.raises(MCPConnectionError, match="'async with' block ended"):
        await tools["add"](1, 2)  # the tools outlive the connection; their calls say why not
    with pytest.raises(MCPConnectionError, match="inside 'async with server:'"):
        test_server().tools  # noqa: B018


async def test_a_plan_of_mcp_tools_runs_with_references_errors_and_shared_calls() -> None:
    async with test_server() as server:
        plan = llmc.Plan.parse(
            "1. add(1, 2)\n"
            "2. add($1, 4)\n"
            '3. shout("total $2", times=2)\n'
            '4. word_count("a b c")\n'
            '5. fail("no such record")\n'
            "6. add(1, 2)\n"
            '7. shout("x", times=0)\n'
            '8. shout("$5")\n'
            "join()",
            tools=server.tools,
        )
        result = await llmc.run_plan(plan)
        counts = await llmc.run_plan(
            llmc.Plan.parse('1. calls("add")\n2. calls("shout")\njoin()', tools=server.tools)
        )
    assert result.outputs[1] == 3 and result.outputs[2] == 7
    assert result.outputs[3] == "TOTAL 7 TOTAL 7"
    assert result.outputs[4] == {"words": 3, "characters": 5}
    records = result.trace.tasks
    assert isinstance(records[5].error, MCPToolError)
    assert "no such record" in str(records[5].error)
    assert records[6].served_by == 1  # add is pure: the same call ran once
    # times=0 breaks the server's schema (minimum 1): refused before any call went out
    assert isinstance(records[7].error, ToolArgumentError)
    assert "times" in str(records[7].error) and records[7].attempts == 0
    assert records[8].status is TaskStatus.SKIPPED
    assert isinstance(records[8].error, DependencyError)
    assert counts.outputs == {1: 2, 2: 1}  # add: tasks 1 and 2; shout: task 3 only


async def test_a_slow_tool_times_out_and_the_server_goes_on_serving() -> None:
    async with llmc_mcp.stdio(sys.executable, SERVER, timeout=0.5) as server:
        plan = llmc.Plan.parse("1. slow(30)\n2. add(2, 2)\njoin()", tools=server.tools)
        started = time.perf_counter()
        result = await llmc.run_plan(plan)
        took = time.perf_counter() - started
        after = await llmc.run_plan(llmc.Plan.parse("1. add(5, 5)\njoin()", tools=server.tools))
    assert isinstance(result.trace.tasks[1].error, ToolTimeoutError)
    assert result.outputs[2] == 4
    assert took < 20  # a hang would take the slow call's 30 s
    assert after.outputs[1] == 10


async def test_a_server_that_dies_mid_run_fails_its_calls_and_other_branches_go_on() -> None:
    @llmc.tool
    async def local(text: str) -> str:
        """A tool of this process."""
        await asyncio.sleep(0.5)
        return text.upper()

    async with test_server() as server:
        plan = llmc.Plan.parse(
            "1. slow(30)\n2. die(0.2)\n3. local('still here')\n4. shout('$1')\njoin()",
            tools=[*server.tools, local],
        )
        started = time.perf_counter()
        result = await llmc.run_plan(plan)
        took = time.perf_counter() - started
        later = await llmc.run_plan(llmc.Plan.parse("1. add(1, 1)\njoin()", tools=server.tools))
    records = result.trace.tasks
    for task_id in (1, 2):
        assert isinstance(records[task_id].error, MCPConnectionError)
        assert "mcp_server.py" in str(records[task_id].error)
    assert result.outputs[3] == "STILL HERE"
    assert records[4].status is TaskStatus.SKIPPED
    assert took < 15  # the dead server's calls fail at once, not at the 20 s timeout
    assert isinstance(later.trace.tasks[1].error, MCPConnectionError)


async def test_mcp_tools_fuse_and_cache_like_any_tool(tmp_path: Path) -> None:
    async with test_server() as server:
        tools = {tool.name: tool for tool in server.tools}
        shout_then_count = llmc.fuse(tools["shout"], (tools["word_count"], "text"))
        assert shout_then_count.signature_line().startswith(
            "shout_then_word_count(text: str, times: int = 1) -> dict[str, int]"
        )
        assert await shout_then_count("a b", times=2) == {"words": 4, "characters": 7}
        cache = llmc.Cache(tmp_path / "cache.sqlite3")
        plan = llmc.Plan.parse("1. add(20, 22)\njoin()", tools=server.tools)
        first = await llmc.run_plan(plan, cache=cache)
        second = await llmc.run_plan(plan, cache=cache)
        calls = await llmc.run_plan(llmc.Plan.parse('1. calls("add")\njoin()', tools=server.tools))
    assert first.outputs[1] == second.outputs[1] == 42
    assert not first.trace.tasks[1].cached and second.trace.tasks[1].cached
    assert calls.outputs[1] == 1  # the first run called add; the second took it from the cache


async def test_a_compiler_plans_with_mcp_tools() -> None:
    llm = ScriptedLLM(
        [
            "1. add(19, 23)\n2. shout('answer $1')\njoin()",
            "Thought: the server said so.\nAction: Finish(ANSWER 42)",
        ]
    )
    async with test_server() as server:
        compiler = llmc.Compiler(tools=server.tools, llm=llm)
        answer = await compiler.run("What is 19 + 23, shouted?")
    assert answer.text == "ANSWER 42"
    assert "add(a: int, b: int) -> int" in llm.calls[0].messages[0]["content"]
    assert answer.results[0].outputs == {1: 42, 2: "ANSWER 42"}


@pytest.fixture
def http_server() -> Iterator[str]:
    """The test server on streamable HTTP at a free loopback port; its MCP URL."""
    with mcp_http_server() as url:
        yield url


async def test_streamable_http_server_lists_calls_and_reports_errors(http_server: str) -> None:
    async with llmc_mcp.connect(http_server, timeout=0.5) as server:
        assert {"add", "shout", "word_count", "slow"} <= {tool.name for tool in server.tools}
        plan = llmc.Plan.parse(
            '1. add(40, 2)\n2. fail("over http")\n3. slow(30)\n4. shout("$1")\njoin()',
            tools=server.tools,
        )
        result = await llmc.run_plan(plan)
    assert result.outputs[1] == 42 and result.outputs[4] == "42"
    assert "over http" in str(result.trace.tasks[2].error)
    assert isinstance(result.trace.tasks[3].error, ToolTimeoutError)


async def test_a_server_that_cannot_start_says_so() -> None:
    with pytest.raises(MCPConnectionError, match="cannot connect to MCP server"):
        async with llmc_mcp.stdio(sys.executable, "-c", "pass"):
            pass
    with pytest.raises(MCPConnectionError, match="no-such-mcp-server"):
        async with llmc_mcp.connect("no-such-mcp-server --flag"):
            pass
    with pytest.raises(ToolDefinitionError, match="http://"):
        llmc_mcp.http("127.0.0.1:8000/mcp")
    with pytest.raises(ToolDefinitionError, match="command line or a URL"):
        llmc_mcp.connect("  ")


def _definition(schema: dict[str, Any], name: str = "look-up") -> llmc_mcp.MCPTool:
    return llmc_mcp.MCPTool.from_definition(
        llmc_mcp.stdio("unused"),
        name=name,
        remote_name=name,
        description="Look something up.\n\nLonger text.",
        input_schema=schema,
        output_schema=None,
        server_name="unit",
        pure=False,
    )


def test_schemas_become_signatures_with_python_names_and_validation() -> None:
    tool = _definition(
        {
            "type": "object",
            "properties": {
                "class": {"type": "string", "description": "a class name"},
                "max-items": {"type": "integer", "minimum": 1},
                "mode": {"enum": ["fast", "exact"]},
                "tags": {"type": "array", "items": {"type": "string"}},
                "limit": {"type": ["integer", "null"], "default": 10},
            },
            "required": ["class"],
        }
    )
    assert tool.name == "look_up"
    assert tool.signature_line() == (
        "look_up(class_: str, max_items: int | None = None, mode: Literal['fast', 'exact'] | "
        "None = None, tags: list[str] | None = None, limit: int | None = 10) -> Any  "
        "# Look something up."
    )
    assert tool.renamed == {"class_": "class", "max_items": "max-items"}
    assert tool.docstring.params["class_"] == "a class name"
    bound = tool.bind(("Tree",), {"max_items": "3"})
    assert bound == {"class_": "Tree", "max_items": 3}  # coerced like any tool's arguments
    unset = {"max_items", "mode", "tags"}
    assert tool.wire_arguments({**tool.defaults(), **bound}, unset) == {
        "class": "Tree",
        "max-items": 3,
        "limit": 10,
    }
    with pytest.raises(ToolArgumentError, match="'max_items' does not fit the server's schema"):
        tool.bind(("Tree",), {"max_items": 0})
    with pytest.raises(ToolArgumentError, match="mode"):
        tool.bind(("Tree",), {"mode": "slow"})
    parameters = tool.json_schema()["function"]["parameters"]
    assert set(parameters["properties"]) == {"class_", "max_items", "mode", "tags", "limit"}
    assert parameters["required"] == ["class_"]
    with pytest.raises(ToolDefinitionError, match="not an object"):
        _definition({"type": "string"})


@pytest.fixture(params=["--mcp", "--mcp-url"])
def cli_server(request: pytest.FixtureRequest) -> tuple[str, str]:
    """The tests' MCP server as the command line names it: the flag and its value (a command
    on stdio, or the URL of the server on loopback HTTP)."""
    if request.param == "--mcp":
        return "--mcp", f"{sys.executable} {SERVER}"
    return "--mcp-url", request.getfixturevalue("http_server")


@dataclass(frozen=True)
class Ran:
    """What one ``llmc`` command returned and printed."""

    status: int
    out: str
    err: str


Command = Callable[..., Ran]


@pytest.fixture
def llmc_cli(capsys: pytest.CaptureFixture[str]) -> Command:
    """Runs ``llmc`` with the given arguments in this process, capturing what it prints."""

    def run(*args: str) -> Ran:
        status = main(list(args))
        captured = capsys.readouterr()
        return Ran(status, captured.out, captured.err)

    return run


CANNOT_START = "cannot connect to MCP server 'no-such-mcp-server'"


def test_llmc_run_takes_tools_from_an_mcp_server(
    cli_server: tuple[str, str], llmc_cli: Command, tmp_path: Path
) -> None:
    flag, where = cli_server
    plan = "1. add(19, 23)\n2. word_count('$1 is the answer')\njoin()"
    finish = "Thought: the server answered.\nAction: Finish(42, in 4 words)"
    with ScriptedOpenAIServer([plan, finish]) as llm_server:
        ran = llmc_cli("run", "What is 19 + 23?", "--model", "scripted",
                       "--base-url", llm_server.base_url, "--tools", "math", flag, where,
                       "--trace", str(tmp_path / "run.json"))  # fmt: skip
        prompt = llm_server.requests[0].body["messages"][0]["content"]
    assert ran.status == 0, ran.err
    assert ran.out.strip() == "42, in 4 words"
    assert "add(a: int, b: int) -> int" in prompt  # the server's tools, next to the pack's
    assert "done     $2 word_count" in ran.err
    saved = llmc.Trace.from_json((tmp_path / "run.json").read_text(encoding="utf-8"))
    assert [r.tool for r in saved.tasks.values()] == ["add", "word_count"]
    assert [(s.kind, s.model) for s in saved.spans] == [
        ("planner", "scripted"),
        ("joiner", "scripted"),
    ]


def test_llmc_run_says_when_an_mcp_server_cannot_start(llmc_cli: Command) -> None:
    ran = llmc_cli("run", "anything", "--model", "m", "--base-url", "http://127.0.0.1:9/v1",
                   "--mcp", "no-such-mcp-server")  # fmt: skip
    assert ran.status == 2
    assert CANNOT_START in ran.err


async def test_without_the_sdk_the_error_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "mcp", None)  # import mcp now fails, as if not installed
    with pytest.raises(MCPConnectionError, match=r'pip install -e "\.\[mcp\]"'):
        async with test_server():
            pass


def test_llmc_tools_lists_an_mcp_servers_tools(
    cli_server: tuple[str, str], llmc_cli: Command
) -> None:
    flag, where = cli_server
    ran = llmc_cli("tools", flag, where)
    assert ran.status == 0
    lines = ran.out.splitlines()
    assert lines[0] == f"{where}:"  # the server's label heads its tools; no pack is listed
    assert "  add(a: int, b: int) -> int  # Add two integers." in lines
    assert any(line.startswith("  word_count(text: str) -> dict[str, int]") for line in lines)
    assert "math:" not in lines

    ran = llmc_cli("tools", "math", flag, where)  # a pack named: it and the server
    assert ran.status == 0
    lines = ran.out.splitlines()
    assert lines[0] == "math:"
    assert f"{where}:" in lines


def test_llmc_exec_runs_a_plan_over_an_mcp_servers_tools(
    cli_server: tuple[str, str], llmc_cli: Command, tmp_path: Path
) -> None:
    flag, where = cli_server
    plan = "1. add(19, 23)\n2. word_count('$1 is the answer')\n3. shout('it is $1', 2)"
    trace = tmp_path / "run.json"
    ran = llmc_cli("exec", plan, "--tools", "math", flag, where, "--json", "--trace", str(trace))
    assert ran.status == 0, ran.err
    outputs = json.loads(ran.out)
    assert outputs["1"] == 42
    assert outputs["2"] == {"words": 4, "characters": 16}  # the server's own count
    assert "done     $2 word_count" in ran.err
    saved = llmc.Trace.from_json(trace.read_text(encoding="utf-8"))
    assert [r.tool for r in saved.tasks.values()] == ["add", "word_count", "shout"]
    assert outputs["3"] == "IT IS 42 IT IS 42"


def test_llmc_exec_and_tools_say_when_an_mcp_server_cannot_start(llmc_cli: Command) -> None:
    for args in (["tools"], ["exec", "1. add(1, 2)"]):
        ran = llmc_cli(*args, "--mcp", "no-such-mcp-server")
        assert ran.status == 2
        assert CANNOT_START in ran.err
