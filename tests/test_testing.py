"""llmc.testing: the scripted LLM, the scripted OpenAI server, the loopback server base and
event capture."""

from __future__ import annotations

import asyncio
import http.client
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

import llmc
from llmc.llm import LLM, Chunk, GenerateOptions, Message, Usage, generate
from llmc.testing import (
    EventRecorder,
    LoopbackHandler,
    LoopbackServer,
    Pacing,
    Reply,
    ScriptedLLM,
    ScriptedOpenAIServer,
    ScriptExhaustedError,
    estimate_tokens,
)

HI: list[Message] = [{"role": "user", "content": "hi"}]
CHAT: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "hi"}
]  # the same, for the SDK


async def chunks_of(llm: LLM, options: GenerateOptions | None = None) -> list[Chunk]:
    return [chunk async for chunk in llm.stream(HI, options)]


# -- ScriptedLLM -----------------------------------------------------------------------------


async def test_replies_come_from_the_list_in_order() -> None:
    llm = ScriptedLLM(["one", "two"])
    assert isinstance(llm, LLM) and llm.model == "scripted"
    assert (await generate(llm, HI)).text == "one"
    assert llm.remaining == 1
    assert (await generate(llm, HI)).text == "two"
    assert llm.remaining == 0


async def test_running_out_names_how_many_replies_were_scripted() -> None:
    llm = ScriptedLLM(["one", "two"])
    await generate(llm, HI)
    await generate(llm, HI)
    with pytest.raises(ScriptExhaustedError, match=r"scripted with 2 replies.*call number 3"):
        await generate(llm, HI)


async def test_running_out_of_a_one_reply_script() -> None:
    llm = ScriptedLLM(["only"])
    await generate(llm, HI)
    with pytest.raises(ScriptExhaustedError, match="with 1 reply and all were used"):
        await generate(llm, HI)


async def test_a_function_answers_from_the_messages() -> None:
    def echo(messages: Sequence[Message]) -> str:
        return messages[-1]["content"].upper()

    llm = ScriptedLLM(echo)
    assert (await generate(llm, [{"role": "user", "content": "shout"}])).text == "SHOUT"
    assert llm.remaining is None


async def test_an_async_function_answers_too() -> None:
    async def slow_echo(messages: Sequence[Message]) -> Reply:
        await asyncio.sleep(0.01)
        return Reply(f"{len(messages)} messages", finish_reason="length")

    completion = await generate(ScriptedLLM(slow_echo), [*HI, *HI])
    assert (completion.text, completion.finish_reason) == ("2 messages", "length")


async def test_an_exception_in_the_script_is_raised() -> None:
    failure = llmc.errors.LLMRateLimitError("too fast", model="scripted", status=429)
    llm = ScriptedLLM([failure, "after"])
    with pytest.raises(llmc.errors.LLMRateLimitError, match="too fast"):
        await generate(llm, HI)
    assert (await generate(llm, HI)).text == "after"


async def test_replies_stream_in_chunks_of_a_size_or_at_cut_points() -> None:
    by_size = await chunks_of(ScriptedLLM(["abcdefghij"], chunk_size=4))
    assert [c.text for c in by_size] == ["abcd", "efgh", "ij"]
    at_points = await chunks_of(ScriptedLLM(["abcdefghij"], chunk_size=[1, 5, 5, 99]))
    assert [c.text for c in at_points] == ["a", "bcde", "fghij"]
    empty = await chunks_of(ScriptedLLM([""]))
    assert [c.text for c in empty] == [""]
    for chunks in (by_size, at_points, empty):
        assert all(c.usage is None for c in chunks[:-1])
        assert chunks[-1].usage is not None and chunks[-1].finish_reason == "stop"
    with pytest.raises(ValueError, match="chunk_size"):
        await chunks_of(ScriptedLLM(["x"], chunk_size=0))


async def test_delays_before_the_first_chunk_and_between_chunks() -> None:
    llm = ScriptedLLM(["abcdef"], chunk_size=2, first_chunk_delay=0.1, chunk_delay=0.05)
    started = time.perf_counter()
    times = []
    async for _chunk in llm.stream(HI):
        times.append(time.perf_counter() - started)
    assert times[0] >= 0.1
    assert times[1] - times[0] >= 0.05 and times[2] - times[1] >= 0.05
    assert times[2] < 0.5


async def test_stop_strings_and_max_tokens_cut_the_reply() -> None:
    llm = ScriptedLLM(["Thought: go\nObservation: x", "a" * 40])
    stopped = await generate(llm, HI, GenerateOptions(stop=("\nObservation:", "zzz")))
    assert (stopped.text, stopped.finish_reason) == ("Thought: go", "stop")
    cut = await generate(llm, HI, GenerateOptions(max_tokens=3))
    assert (cut.text, cut.finish_reason) == ("a" * 12, "length")
    assert cut.usage.completion_tokens == 3


async def test_usage_is_estimated_or_scripted() -> None:
    assert [estimate_tokens(t) for t in ("", "a", "abcd", "abcde")] == [0, 1, 1, 2]
    messages: list[Message] = [
        {"role": "system", "content": "x" * 8},
        {"role": "user", "content": "y" * 5},
    ]
    scripted = Reply("ok", prompt_tokens=50, completion_tokens=7, cached_tokens=32)
    llm = ScriptedLLM(["z" * 9, scripted])
    assert (await generate(llm, messages)).usage == Usage(4, 3, 0, 1)
    assert (await generate(llm, messages)).usage == Usage(50, 7, 32, 1)


async def test_every_call_is_recorded_with_its_messages_and_options() -> None:
    llm = ScriptedLLM(["a", "b"])
    options = GenerateOptions(temperature=0.0, stop=("\n",))
    await generate(llm, [{"role": "system", "content": "plan"}, *HI], options)
    await generate(llm, HI)
    first, second = llm.calls
    assert first.messages == ({"role": "system", "content": "plan"}, *HI)
    assert first.options is options and first.text == "plan\nhi"
    assert second.options == GenerateOptions()
    assert repr(llm) == "ScriptedLLM(model='scripted', calls=2)"


def test_a_script_must_be_a_list_or_a_function() -> None:
    with pytest.raises(TypeError, match="list"):
        ScriptedLLM("just one string")


async def test_a_script_item_that_is_not_text_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="str or Reply"):
        await generate(ScriptedLLM([42]), HI)  # type: ignore[list-item]


# -- ScriptedOpenAIServer ---------------------------------------------------------------------


def test_the_openai_client_streams_from_it_with_usage() -> None:
    reply = Reply("Hello, world!", prompt_tokens=12, cached_tokens=8)
    with ScriptedOpenAIServer([reply, "again"], chunk_size=5) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        stream = client.chat.completions.create(
            model="m", messages=CHAT, stream=True, stream_options={"include_usage": True}
        )
        events = list(stream)
        plain = client.chat.completions.create(model="m", messages=CHAT, stream=True)
        plain_events = list(plain)
        client.close()
    pieces = [c.delta.content for e in events for c in e.choices if c.delta.content]
    assert pieces == ["Hello", ", wor", "ld!"]
    assert [e.choices[0].finish_reason for e in events if e.choices][-1] == "stop"
    usage = events[-1].usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (12, 4)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 8
    assert all(e.usage is None for e in plain_events)  # usage only when asked


def test_the_openai_client_gets_plain_json_replies_and_the_model_list() -> None:
    with ScriptedOpenAIServer(["whole reply"], model="tiny") as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        completion = client.chat.completions.create(model="tiny", messages=CHAT, max_tokens=100)
        models = client.models.list()
        client.close()
    assert completion.choices[0].message.content == "whole reply"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    assert [m.id for m in models.data] == ["tiny"]
    assert [(r.method, r.path) for r in server.requests] == [
        ("POST", "/v1/chat/completions"),
        ("GET", "/v1/models"),
    ]


async def test_it_records_bodies_and_headers_and_scripts_by_body() -> None:
    def answer(body: dict[str, Any]) -> str:
        return f"{body['model']} said {body['messages'][-1]['content']}"

    async with ScriptedOpenAIServer(answer) as server:
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-abc", max_retries=0)
        schema: Any = {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}
        completion = await client.chat.completions.create(
            model="m1", messages=CHAT, response_format=schema
        )
        await client.close()
    assert completion.choices[0].message.content == "m1 said hi"
    (request,) = server.chat_requests()
    assert request.headers["authorization"] == "Bearer sk-abc"
    assert request.body["response_format"] == schema
    assert repr(server) == "ScriptedOpenAIServer(not running, requests=1)"


def test_faults_come_in_order_and_do_not_use_up_replies() -> None:
    with ScriptedOpenAIServer(["first", "second"], chunk_size=2) as server:
        server.fail(429, retry_after=3, retry_after_ms=2500).fail(500, message="boom")
        server.break_stream(1)
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        with pytest.raises(openai.RateLimitError) as limited:
            client.chat.completions.create(model="m", messages=CHAT)
        assert limited.value.response.headers["retry-after"] == "3"
        assert limited.value.response.headers["retry-after-ms"] == "2500"
        with pytest.raises(openai.InternalServerError, match="boom"):
            client.chat.completions.create(model="m", messages=CHAT)
        received: list[str] = []
        with pytest.raises(openai.APIConnectionError):
            for event in client.chat.completions.create(model="m", messages=CHAT, stream=True):
                received.extend(c.delta.content for c in event.choices if c.delta.content)
        assert received == ["fi"]
        reply = client.chat.completions.create(model="m", messages=CHAT)
        assert reply.choices[0].message.content == "first"
        client.close()
    assert server.remaining == 1 and server.errors == []


def test_a_used_up_script_answers_400_and_notes_it() -> None:
    with ScriptedOpenAIServer(["only"]) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        client.chat.completions.create(model="m", messages=CHAT)
        with pytest.raises(openai.BadRequestError, match="scripted with 1 reply"):
            client.chat.completions.create(model="m", messages=CHAT)
        client.close()
    assert len(server.errors) == 1


def test_a_failing_script_function_answers_500() -> None:
    def broken(body: dict[str, Any]) -> str:
        raise KeyError("nothing")

    with ScriptedOpenAIServer(broken) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        with pytest.raises(openai.InternalServerError, match="KeyError"):
            client.chat.completions.create(model="m", messages=CHAT)
        client.close()
    assert "KeyError" in server.errors[0]


def test_unknown_routes_and_bad_bodies_are_client_errors() -> None:
    with ScriptedOpenAIServer(["x"]) as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request("GET", "/v1/nothing")
        response = connection.getresponse()
        assert response.status == 404 and b"no route" in response.read()
        connection.request("POST", "/v1/chat/completions", body=b"not json")
        response = connection.getresponse()
        assert response.status == 400 and b"messages" in response.read()
        connection.close()
    assert server.requests[1].body is None


# -- clean shutdown --------------------------------------------------------------------------


def _refuses(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def test_closing_stops_threads_and_sockets_even_with_open_connections() -> None:
    before = set(threading.enumerate())
    server = ScriptedOpenAIServer(["slow reply"], chunk_size=1, chunk_delay=1.0).start()
    port = server.port
    idle = http.client.HTTPConnection("127.0.0.1", port, timeout=5)  # kept alive, unused
    idle.request("GET", "/v1/models")
    idle.getresponse().read()
    client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0)
    streaming = client.chat.completions.create(model="m", messages=CHAT, stream=True)
    next(iter(streaming))  # a reply is mid-stream, its thread waiting to send more
    started = time.perf_counter()
    server.close()
    assert time.perf_counter() - started < 1.0
    assert set(threading.enumerate()) <= before
    assert _refuses(port)
    server.close()  # again: nothing to do
    idle.close()
    client.close()


async def test_the_async_context_manager_starts_and_stops_it() -> None:
    before = set(threading.enumerate())
    async with ScriptedOpenAIServer(["hi there"]) as server:
        port = server.port
        client = openai.AsyncOpenAI(base_url=server.base_url, api_key="k", max_retries=0)
        reply = await client.chat.completions.create(model="m", messages=CHAT)
        assert reply.choices[0].message.content == "hi there"
    await client.close()
    assert _refuses(port)
    leftover = {t for t in threading.enumerate() if t not in before}
    assert not [t for t in leftover if t.name.startswith("llmc-test-server")]


def test_it_must_run_before_it_has_an_address() -> None:
    server = ScriptedOpenAIServer(["x"])
    with pytest.raises(RuntimeError, match="not running"):
        server.base_url  # noqa: B018
    with server, pytest.raises(RuntimeError, match="already running"):
        server.start()


# -- LoopbackServer --------------------------------------------------------------------------


class _Handler(LoopbackHandler["_Server"]):
    def do_GET(self) -> None:
        if self.path == "/json":
            self.send_json(201, {"path": self.path}, {"X-Extra": "yes"})
        elif self.path == "/stream":
            self.begin_stream("text/plain")
            for piece in (b"a", b"bc", b""):
                self.write_chunk(piece)
        elif self.path == "/wait":
            self.owner.waiting.set()
            self.owner.woke.append(self.owner.sleep(30.0))
            self.send_json(200, {})
        else:
            raise ValueError(f"no route for {self.path}")


class _Server(LoopbackServer):
    def __init__(self) -> None:
        super().__init__(_Handler)
        self.waiting = threading.Event()
        self.woke: list[bool] = []


def test_a_loopback_server_answers_json_and_chunked_streams_on_one_connection() -> None:
    with _Server() as server:
        assert server.running and server.url == f"http://127.0.0.1:{server.port}"
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request("GET", "/json")
        reply = connection.getresponse()
        assert (reply.status, reply.getheader("X-Extra")) == (201, "yes")
        assert reply.read() == b'{"path": "/json"}'
        connection.request("GET", "/stream")  # the same connection: kept alive
        reply = connection.getresponse()
        assert reply.getheader("Transfer-Encoding") == "chunked"
        assert reply.getheader("Content-Type") == "text/plain" and reply.read() == b"abc"
        connection.close()
    assert not server.running and server.errors == []


def test_what_a_handler_raises_is_recorded_in_errors() -> None:
    with _Server() as server:
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        connection.request("GET", "/nowhere")
        with pytest.raises((http.client.HTTPException, OSError)):
            connection.getresponse()
        connection.close()
    assert server.errors == ["ValueError: no route for /nowhere"]


def test_closing_wakes_a_sleeping_handler_and_leaves_nothing_behind() -> None:
    before = set(threading.enumerate())
    server = _Server().start()
    port = server.port
    client = threading.Thread(
        target=lambda: http.client.HTTPConnection("127.0.0.1", port, timeout=5).request(
            "GET", "/wait"
        )
    )
    client.start()
    assert server.waiting.wait(5.0)
    started = time.perf_counter()
    server.close()
    assert time.perf_counter() - started < 1.0
    assert server.woke == [True] and server.closing
    client.join()
    assert set(threading.enumerate()) <= before
    assert _refuses(port)
    with pytest.raises(RuntimeError, match="_Server is not running"):
        server.port  # noqa: B018


def test_a_loopback_server_starts_once_and_can_start_again_after_closing() -> None:
    server = _Server()
    with server, pytest.raises(RuntimeError, match="already running"):
        server.start()
    with server:
        assert server.running and not server.closing


# -- EventRecorder ---------------------------------------------------------------------------


async def test_event_recorder_collects_a_runs_events() -> None:
    @llmc.tool
    async def double(x: int) -> int:
        """Double a number.

        Args:
            x: the number.
        """
        return 2 * x

    plan = llmc.Plan(tools=[double])
    plan.add(double, plan.add(double, 1))
    events = EventRecorder()
    result = await llmc.run_plan(plan, on_event=events)
    assert result.outputs[2] == 4
    names = events.types()
    assert names[0] == "RunStarted" and names[-1] == "RunFinished"
    assert [e.task_id for e in events.of_type(llmc.TaskFinished)] == [1, 2]
    assert list(events) == events.events
    events.clear()
    assert events.events == [] and events  # still truthy: ``on_event or default`` keeps it


def test_pacing_gives_each_piece_its_wait_and_a_bad_size_fails_at_once() -> None:
    pacing = Pacing(chunk_size=2, chunk_delay=0.1, first_chunk_delay=0.5)
    assert pacing.pieces("abcde") == [(0.5, "ab"), (0.1, "cd"), (0.1, "e")]
    assert Pacing(chunk_size=[1, 3]).pieces("abcd") == [(0.0, "a"), (0.0, "bc"), (0.0, "d")]
    assert ScriptedLLM(["x"], chunk_size=3).pacing == Pacing(3)
    with pytest.raises(ValueError, match="chunk_size"):
        ScriptedOpenAIServer(["x"], chunk_size=0)
