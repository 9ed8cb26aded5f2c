"""The OpenAI-compatible backend, through the unmodified ``openai`` client, over loopback HTTP."""

from __future__ import annotations

import asyncio
import itertools
import logging
import socket
import ssl
import time
import traceback
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import httpx2 as httpx
import openai
import pytest
import structlog
from asyncio_throttle.throttler import Throttler

from llmc.errors import LLMConnectionError, LLMRateLimitError, LLMResponseError
from llmc.limits import Backoff, RateLimit
from llmc.llm import LLM, GenerateOptions, Message, OpenAI, Usage, generate, openai_compat
from llmc.testing import LoopbackHandler, LoopbackServer, Reply, ScriptedOpenAIServer

KEY = "sk-llmc-test-KEY-8f3a9c2e1d7b"
FAST = Backoff(base=0.01, max_delay=0.05)
HI: list[Message] = [{"role": "user", "content": "hi"}]


@pytest.fixture
def server() -> Iterator[ScriptedOpenAIServer]:
    with ScriptedOpenAIServer(["Hello, world!"] * 4) as running:
        yield running


def backend(server: ScriptedOpenAIServer, **kwargs: Any) -> OpenAI:
    kwargs.setdefault("backoff", FAST)
    return OpenAI("test-model", base_url=server.base_url, api_key=KEY, **kwargs)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- streaming and usage ---------------------------------------------------------------------


async def test_is_an_llm_and_shows_only_model_and_base_url(server: ScriptedOpenAIServer) -> None:
    llm = backend(server)
    assert isinstance(llm, LLM)
    assert repr(llm) == f"OpenAI(model='test-model', base_url='{server.base_url}')"


async def test_text_streams_in_chunks_as_they_arrive() -> None:
    text = "abcdefghijklmnop"
    async with ScriptedOpenAIServer([text], chunk_size=4, chunk_delay=0.08) as server:
        llm = backend(server)
        arrivals: list[tuple[float, str]] = []
        last = None
        async for chunk in llm.stream(HI):
            if chunk.text:
                arrivals.append((time.perf_counter(), chunk.text))
            last = chunk
        await llm.aclose()
    assert [piece for _, piece in arrivals] == ["abcd", "efgh", "ijkl", "mnop"]
    gaps = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(arrivals)]
    assert all(gap >= 0.05 for gap in gaps), gaps  # one at a time, not all at the end
    assert last is not None and last.text == "" and last.finish_reason == "stop"
    assert last.usage == Usage(prompt_tokens=1, completion_tokens=4, calls=1)


async def test_usage_includes_cached_tokens() -> None:
    reply = Reply("x" * 40, prompt_tokens=100, completion_tokens=10, cached_tokens=64)
    async with ScriptedOpenAIServer([reply]) as server:
        completion = await generate(backend(server), HI)
    assert completion.text == "x" * 40
    assert completion.usage == Usage(100, 10, 64, 1)
    assert server.requests[0].body["stream_options"] == {"include_usage": True}


async def test_a_server_without_usage_reports_zero_tokens_and_one_call() -> None:
    async with ScriptedOpenAIServer(["no usage here"], send_usage=False) as server:
        completion = await generate(backend(server), HI)
    assert completion.text == "no usage here"
    assert completion.usage == Usage(calls=1)
    assert completion.finish_reason == "stop"


async def test_finish_reason_length_is_reported() -> None:
    async with ScriptedOpenAIServer(["a long reply that goes on"]) as server:
        completion = await generate(backend(server), HI, GenerateOptions(max_tokens=2))
    assert completion.text == "a long r"
    assert completion.finish_reason == "length"


async def test_stopping_early_closes_the_reply_and_the_next_call_works(
    server: ScriptedOpenAIServer,
) -> None:
    llm = backend(server)
    async for _chunk in llm.stream(HI):
        break
    assert (await generate(llm, HI)).text == "Hello, world!"
    await llm.aclose()


def test_one_backend_serves_several_event_loops(server: ScriptedOpenAIServer) -> None:
    llm = backend(server)
    first = asyncio.run(generate(llm, HI))
    second = asyncio.run(generate(llm, HI))
    assert first.text == second.text == "Hello, world!"


def spy(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[tuple[Any, ...]]:
    """Record the calls of ``owner.name`` (which still runs)."""
    calls: list[tuple[Any, ...]] = []
    original = getattr(owner, name)

    def recorded(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, recorded)
    return calls


async def test_the_client_is_built_with_the_backend_and_http_loads_no_certificates(
    server: ScriptedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    certificates = spy(monkeypatch, ssl.SSLContext, "load_verify_locations")
    clients = spy(monkeypatch, openai.AsyncOpenAI, "__init__")
    llm = backend(server)
    assert len(clients) == 1 and not certificates  # built now, with no TLS set-up
    assert (await generate(llm, HI)).text == (await generate(llm, HI)).text == "Hello, world!"
    assert len(clients) == 1 and not certificates  # the first request found it ready
    await llm.aclose()
    assert (await generate(llm, HI)).text == "Hello, world!"  # closed: a new one, on demand
    assert len(clients) == 2 and not certificates
    await llm.aclose()


def test_an_https_endpoint_gets_the_systems_certificates(monkeypatch: pytest.MonkeyPatch) -> None:
    certificates = spy(monkeypatch, ssl.SSLContext, "load_verify_locations")
    OpenAI("test-model", base_url="https://example.invalid/v1", api_key=KEY)
    assert certificates  # verified TLS, set up when the backend is made


# -- options ---------------------------------------------------------------------------------


async def test_options_reach_the_server(server: ScriptedOpenAIServer) -> None:
    schema = {"title": "Final answer", "type": "object", "properties": {"a": {"type": "string"}}}
    options = GenerateOptions(
        max_tokens=64,
        stop=("Observation:", "\n\n"),
        temperature=0.25,
        json_schema=schema,
        grammar='root ::= "yes" | "no"',
        extra={"top_k": 5},
    )
    await generate(backend(server), [{"role": "system", "content": "be brief"}, *HI], options)
    request = server.requests[0]
    assert request.path == "/v1/chat/completions"
    assert request.headers["authorization"] == f"Bearer {KEY}"
    body = request.body
    assert body["model"] == "test-model"
    assert body["messages"] == [{"role": "system", "content": "be brief"}, *HI]
    assert body["stream"] is True
    assert body["max_tokens"] == 64
    assert body["stop"] == ["Observation:", "\n\n"]
    assert body["temperature"] == 0.25
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Final_answer", "schema": schema, "strict": True},
    }
    assert body["grammar"] == 'root ::= "yes" | "no"'
    assert body["top_k"] == 5


async def test_unset_options_are_not_sent_and_schemas_without_title_get_a_name(
    server: ScriptedOpenAIServer,
) -> None:
    await generate(backend(server), HI, GenerateOptions(json_schema={"type": "object"}))
    body = server.requests[0].body
    assert body["response_format"]["json_schema"]["name"] == "response"
    for absent in ("max_tokens", "stop", "temperature", "grammar"):
        assert absent not in body


async def test_vllm_grammar_goes_through_extra_and_max_completion_tokens_on_request(
    server: ScriptedOpenAIServer,
) -> None:
    llm = backend(server, max_tokens_param="max_completion_tokens")
    await generate(llm, HI, GenerateOptions(max_tokens=9, extra={"guided_grammar": "g"}))
    body = server.requests[0].body
    assert body["guided_grammar"] == "g" and "grammar" not in body
    assert body["max_completion_tokens"] == 9 and "max_tokens" not in body


async def test_default_options_apply_under_each_calls_own(server: ScriptedOpenAIServer) -> None:
    defaults = GenerateOptions(temperature=0.0, stop=("END",), extra={"seed": 1, "top_k": 3})
    llm = backend(server, default_options=defaults)
    await generate(llm, HI, GenerateOptions(max_tokens=5, extra={"top_k": 7}))
    await generate(llm, HI, GenerateOptions(temperature=0.9, stop=("STOP",)))
    first, second = (r.body for r in server.requests)
    assert (first["temperature"], first["stop"], first["max_tokens"]) == (0.0, ["END"], 5)
    assert (first["seed"], first["top_k"]) == (1, 7)
    assert (second["temperature"], second["stop"]) == (0.9, ["STOP"])


# -- configuration ---------------------------------------------------------------------------


async def test_endpoint_key_and_model_come_from_the_environment(
    server: ScriptedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("OPENAI_MODEL", "env-model")
    llm = OpenAI()
    assert (llm.model, llm.base_url) == ("env-model", server.base_url)
    await generate(llm, HI)
    assert server.requests[0].headers["authorization"] == f"Bearer {KEY}"
    assert server.requests[0].body["model"] == "env-model"


async def test_a_local_server_without_a_key_gets_a_placeholder(
    server: ScriptedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    await generate(OpenAI("local", base_url=server.base_url), HI)
    expected = f"Bearer {openai_compat.PLACEHOLDER_API_KEY}"
    assert server.requests[0].headers["authorization"] == expected


def test_a_model_name_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_MODEL", raising=False)
    with pytest.raises(ValueError, match="model"):
        OpenAI()
    with pytest.raises(ValueError, match="rate_limit"):
        OpenAI("m", rate_limit=0)


async def test_a_given_client_is_used_with_its_retries_turned_off(
    server: ScriptedOpenAIServer,
) -> None:
    client = openai.AsyncOpenAI(base_url=server.base_url, api_key=KEY, max_retries=5)
    llm = OpenAI("m", client=client, max_retries=0)
    assert llm.base_url == server.base_url
    server.fail(503)
    with pytest.raises(LLMResponseError):
        await generate(llm, HI)
    assert len(server.requests) == 1
    assert (await generate(llm, HI)).text == "Hello, world!"
    await client.close()


# -- retries ---------------------------------------------------------------------------------


async def test_429_waits_at_least_retry_after_then_succeeds(server: ScriptedOpenAIServer) -> None:
    server.fail(429, retry_after=0.4)
    completion = await generate(backend(server), HI)
    assert completion.text == "Hello, world!"
    first, second = server.requests
    assert 0.4 <= second.time - first.time < 1.2


async def test_retry_after_ms_is_honoured(server: ScriptedOpenAIServer) -> None:
    server.fail(429, retry_after_ms=300)
    await generate(backend(server), HI)
    first, second = server.requests
    assert 0.3 <= second.time - first.time < 1.0


def test_retry_after_reads_seconds_dates_and_milliseconds() -> None:
    read = openai_compat._retry_after
    assert read({"retry-after": "2.5"}) == 2.5
    assert read({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    in_30_s = read({"retry-after": formatdate(time.time() + 30, usegmt=True)})
    assert in_30_s is not None and 28 <= in_30_s <= 31
    assert read({"retry-after": formatdate(time.time() - 30, usegmt=True)}) == 0.0
    assert read({"retry-after": "soon"}) is None
    assert read({}) is None


async def test_server_errors_are_retried(server: ScriptedOpenAIServer) -> None:
    server.fail(500, times=2)
    completion = await generate(backend(server), HI)
    assert completion.text == "Hello, world!"
    assert len(server.requests) == 3


async def test_retries_use_the_backoff_between_attempts(server: ScriptedOpenAIServer) -> None:
    server.fail(502, times=2)
    await generate(backend(server, backoff=Backoff(base=0.15, jitter=0)), HI)
    times = [r.time for r in server.requests]
    assert times[1] - times[0] >= 0.15 and times[2] - times[1] >= 0.3


async def test_rate_limited_after_every_retry_raises_rate_limit_error(
    server: ScriptedOpenAIServer,
) -> None:
    server.fail(429, times=3, retry_after=0.01, message="slow down")
    with pytest.raises(LLMRateLimitError) as caught:
        await generate(backend(server, max_retries=2), HI)
    error = caught.value
    assert (error.status, error.model) == (429, "test-model")
    assert "3 attempts" in str(error) and "slow down" in str(error)
    assert server.base_url in str(error)
    assert len(server.requests) == 3


async def test_a_retry_after_beyond_max_retry_wait_fails_at_once(
    server: ScriptedOpenAIServer,
) -> None:
    server.fail(429, retry_after=120)
    started = time.perf_counter()
    with pytest.raises(LLMRateLimitError, match="wait 120 s"):
        await generate(backend(server, max_retry_wait=5), HI)
    assert time.perf_counter() - started < 1
    assert len(server.requests) == 1


async def test_server_errors_after_every_retry_raise_response_error(
    server: ScriptedOpenAIServer,
) -> None:
    server.fail(500, times=3)
    with pytest.raises(LLMResponseError, match="HTTP 500 after 3 attempts") as caught:
        await generate(backend(server, max_retries=2), HI)
    assert (caught.value.status, caught.value.model) == (500, "test-model")


@pytest.mark.parametrize(
    ("status", "hint"), [(400, "options"), (401, "OPENAI_API_KEY"), (404, "/v1")]
)
async def test_client_errors_are_not_retried_and_say_what_to_check(
    server: ScriptedOpenAIServer, status: int, hint: str
) -> None:
    server.fail(status, message="nope")
    with pytest.raises(LLMResponseError, match=f"HTTP {status}: nope") as caught:
        await generate(backend(server), HI)
    assert hint in str(caught.value) and caught.value.status == status
    assert len(server.requests) == 1


async def test_a_stream_broken_before_any_text_is_retried(server: ScriptedOpenAIServer) -> None:
    server.break_stream(0)
    assert (await generate(backend(server), HI)).text == "Hello, world!"
    assert len(server.requests) == 2


async def test_a_stream_broken_midway_raises_connection_error_with_the_text_so_far() -> None:
    async with ScriptedOpenAIServer(["abcdefghijkl"], chunk_size=4) as server:
        server.break_stream(2)
        received: list[str] = []
        with pytest.raises(LLMConnectionError) as caught:
            async for chunk in backend(server).stream(HI):
                received.append(chunk.text)
    assert received == ["abcd", "efgh"]
    assert "8 characters in 2 chunks" in str(caught.value)
    assert len(server.requests) == 1  # a reply that has started is not retried


async def test_an_unreachable_server_fails_fast_with_advice() -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/v1"
    llm = OpenAI("m", base_url=base_url, api_key=KEY, max_retries=1, backoff=FAST)
    started = time.perf_counter()
    with pytest.raises(LLMConnectionError) as caught:
        await generate(llm, HI)
    assert time.perf_counter() - started < 3
    message = str(caught.value)
    assert base_url in message and "2 attempts" in message
    assert "running" in message and "base_url=" in message
    assert caught.value.model == "m" and caught.value.status is None


async def test_a_server_that_does_not_answer_in_time_is_a_connection_error(
    server: ScriptedOpenAIServer,
) -> None:
    server.stall(2.0)
    started = time.perf_counter()
    with pytest.raises(LLMConnectionError, match=r"did not answer within 0\.2 s"):
        await generate(backend(server, timeout=0.2, max_retries=0), HI)
    assert time.perf_counter() - started < 1.5


class _OddHandler(LoopbackHandler["_OddServer"]):
    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        payload = self.owner.payload
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _OddServer(LoopbackServer):
    """Answers every POST with 200 and ``payload`` as an event stream."""

    def __init__(self, payload: bytes) -> None:
        super().__init__(_OddHandler)
        self.payload = payload


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        (b"data: this is not json\n\n", "not a chat completion stream"),
        (b'data: {"error": {"message": "context too long"}}\n\n', "error.*context too long"),
    ],
    ids=["garbage", "error-event"],
)
async def test_unreadable_replies_and_error_events_are_response_errors(
    payload: bytes, expected: str
) -> None:
    async with _OddServer(payload) as server:
        with pytest.raises(LLMResponseError, match=expected):
            await generate(OpenAI("m", base_url=f"{server.url}/v1", api_key=KEY), HI)


# -- secrets and logs ------------------------------------------------------------------------


async def test_the_api_key_never_appears_in_errors_reprs_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []

    def keep(error: BaseException) -> None:
        texts.extend([str(error), repr(error), "".join(traceback.format_exception(error))])

    with structlog.testing.capture_logs() as logs:
        async with ScriptedOpenAIServer(["ok", "abcdefgh"], chunk_size=4) as server:
            llm = backend(server, max_retries=1)
            texts.append(repr(llm))
            server.fail(401, message=f"Incorrect API key provided: {KEY}")
            server.fail(500, times=2, message=f"key {KEY} is cursed")
            server.fail(429, times=2, retry_after=0.01, message=f"{KEY} is too fast")
            for _ in range(3):
                with pytest.raises((LLMResponseError, LLMRateLimitError)) as caught:
                    await generate(llm, HI)
                keep(caught.value)
            await generate(llm, HI)
            server.break_stream(1)
            with pytest.raises(LLMConnectionError) as broken:
                await generate(llm, HI)
            keep(broken.value)
            await llm.aclose()
        down_url = f"http://127.0.0.1:{closed_port()}/v1"
        down = OpenAI("m", base_url=down_url, api_key=KEY, max_retries=0)
        with pytest.raises(LLMConnectionError) as unreachable:
            await generate(down, HI, GenerateOptions())
        keep(unreachable.value)
        texts.append(repr(down))
    assert any("***" in text for text in texts), "the server's echo of the key is redacted"
    texts.extend(str(entry) for entry in logs)
    texts.append(caplog.text)
    assert logs and caplog.text
    leaks = [text for text in texts if KEY in text]
    assert not leaks


async def test_calls_are_logged_at_debug_when_structlog_is_configured(
    server: ScriptedOpenAIServer,
) -> None:
    server.fail(500)
    with structlog.testing.capture_logs() as logs:
        await generate(backend(server), HI)
    retry, done = logs
    assert retry["event"] == "llm call retrying" and retry["status"] == 500
    assert done["event"] == "llm call finished" and done["log_level"] == "debug"
    assert (done["model"], done["base_url"]) == ("test-model", server.base_url)
    assert (done["prompt_tokens"], done["completion_tokens"], done["attempts"]) == (1, 4, 2)
    assert done["latency"] >= done["time_to_first_token"] > 0


async def test_an_unconfigured_structlog_hears_nothing(
    server: ScriptedOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[str] = []

    class Recorder:
        def debug(self, event: str, **fields: Any) -> None:
            lines.append(event)

    monkeypatch.setattr(openai_compat, "_logger", Recorder())
    monkeypatch.setattr(structlog, "is_configured", lambda: False)
    await generate(backend(server), HI)
    assert lines == []
    monkeypatch.setattr(structlog, "is_configured", lambda: True)
    await generate(backend(server), HI)
    assert lines == ["llm call finished"]


# -- rate limits -----------------------------------------------------------------------------


class RecordingLimiter:
    """A shared Throttler that notes when each request was let go."""

    def __init__(self, rate_limit: int, period: float) -> None:
        self.throttler = Throttler(rate_limit=rate_limit, period=period)
        self.times: list[float] = []

    async def acquire(self) -> None:
        await self.throttler.acquire()
        self.times.append(time.perf_counter())


def _assert_rate(times: list[float], per_window: int, window: float, slack: float) -> None:
    times = sorted(times)
    for earlier, later in zip(times, times[per_window:], strict=False):
        assert later - earlier >= window - slack, times


async def test_a_shared_throttler_limits_two_backends_together() -> None:
    limiter = RecordingLimiter(rate_limit=2, period=0.3)
    async with ScriptedOpenAIServer(["ok"] * 6) as server:
        first = backend(server, rate_limit=limiter)
        second = backend(server, rate_limit=limiter)
        await asyncio.gather(*(generate(llm, HI) for llm in [first, second] * 3))
    assert len(limiter.times) == 6
    _assert_rate(limiter.times, 2, 0.3, slack=0.01)
    arrivals = sorted(r.time for r in server.requests)
    assert arrivals[-1] - arrivals[0] >= 0.5  # three windows of two requests


async def test_a_numeric_rate_limit_is_shared_by_concurrent_calls_of_one_backend() -> None:
    async with ScriptedOpenAIServer(["ok"] * 4) as server:
        llm = backend(server, rate_limit=1, rate_period=0.2)
        await generate(llm, HI)  # connect first: the first request's setup adds latency
        await asyncio.gather(*(generate(llm, HI) for _ in range(3)))
    _assert_rate([r.time for r in server.requests], 1, 0.2, slack=0.05)


class SlowNetwork(httpx.AsyncBaseTransport):
    """A real HTTP transport behind a network that holds the first requests a while."""

    def __init__(self, delays: list[float]) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.delays = delays

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.delays:
            await asyncio.sleep(self.delays.pop(0))
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("limit", [RateLimit(4, 0.5), 4])
async def test_the_rate_limit_holds_for_arrivals_at_the_server(limit: object) -> None:
    # The first four requests take 0.4 s to reach the server, the next ones none: a limiter
    # that counted from acquire() let eight arrive within 0.1 s.
    network = SlowNetwork([0.4] * 4)
    async with ScriptedOpenAIServer(["ok"] * 8) as server:
        client = openai.AsyncOpenAI(
            base_url=server.base_url, api_key=KEY, http_client=httpx.AsyncClient(transport=network)
        )
        llm = OpenAI("m", client=client, rate_limit=limit, rate_period=0.5)  # type: ignore[arg-type]
        await asyncio.gather(*(generate(llm, HI) for _ in range(8)))
        await client.close()
    _assert_rate([r.time for r in server.requests], 4, 0.5, slack=0.02)


async def test_a_rate_limit_that_is_no_limiter_is_refused_with_what_to_pass() -> None:
    with pytest.raises(ValueError, match="acquire"):
        OpenAI("m", rate_limit=object())  # type: ignore[arg-type]
