"""A small MCP server that llmc's tests start: ``python tests/mcp_server.py [http PORT]``.

Without arguments it serves on stdio; ``http PORT`` serves streamable HTTP on 127.0.0.1.
Its tools cover what the tests look at: typed arguments, annotations that make a tool pure,
a name that is not a Python identifier, a tool error, a slow call and a server that dies.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Annotated

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

server = MCPServer("llmc-test-server", log_level="WARNING")
_calls: dict[str, int] = {}


def _count(name: str) -> None:
    _calls[name] = _calls.get(name, 0) + 1


@server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
def add(a: int, b: int) -> int:
    """Add two integers."""
    _count("add")
    return a + b


@server.tool()
def shout(text: str, times: Annotated[int, Field(ge=1, le=10)] = 1) -> str:
    """Upper-case a text, repeated.

    Args:
        text: what to shout.
        times: how many times.
    """
    _count("shout")
    return " ".join([text.upper()] * times)


@server.tool(name="word-count", annotations=ToolAnnotations(read_only_hint=True))
def word_count(text: str) -> dict[str, int]:
    """Count the words of a text and its characters."""
    _count("word-count")
    return {"words": len(text.split()), "characters": len(text)}


@server.tool()
def fail(message: str) -> str:
    """Always fails with the given message."""
    _count("fail")
    raise ToolError(message)


@server.tool()
async def slow(seconds: float) -> str:
    """Sleep, then say so."""
    _count("slow")
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


@server.tool()
async def die(after: float = 0.0) -> str:
    """End the server's process (to test a server that dies mid-run)."""
    await asyncio.sleep(after)
    os._exit(3)


@server.tool()
def calls(name: str) -> int:
    """How many times the tool ``name`` was called in this server's life."""
    return _calls.get(name, 0)


if __name__ == "__main__":
    if sys.argv[1:2] == ["http"]:
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run("stdio")
