"""Test helpers for code built on llmc: scripted LLMs, a scripted OpenAI server, event capture.

Three doubles, from the cheapest to the most realistic:

- :class:`ScriptedLLM` implements the :class:`~llmc.llm.LLM` protocol in memory. It answers
  from a list of replies or a function of the messages, streams each reply in chunks with
  optional delays, reports estimated :class:`~llmc.llm.Usage`, and records every call::

      llm = ScriptedLLM(["1. search('x')\\n2. join()"], chunk_size=4)
      answer = await llmc.llm.generate(llm, [{"role": "user", "content": "hi"}])
      assert llm.calls[0].messages[0]["content"] == "hi"

- :class:`ScriptedOpenAIServer` is a real HTTP server on loopback that speaks the OpenAI chat
  completions API (streaming and not), so a real client, :class:`llmc.llm.OpenAI` included,
  talks to it unmodified. It records the requests it got and can fail on purpose (429 with
  ``Retry-After``, 500, a stream that breaks off, a slow answer)::

      with ScriptedOpenAIServer(["Paris"]) as server:
          llm = llmc.llm.OpenAI("test", base_url=server.base_url)
          ...
          assert server.requests[0].body["stream"] is True

- :class:`EventRecorder` collects a run's :class:`~llmc.trace.Event` objects: pass it as
  ``on_event``.

Token counts are estimates (:func:`estimate_tokens`: a token per four characters, rounded
up), the same in both doubles, so tests of budgets and usage are deterministic.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import socket
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self, TypeVar

from .llm.base import Chunk, GenerateOptions, Message, Usage
from .trace import Event

if TYPE_CHECKING:
    from .budget import Price

__all__ = [
    "EventRecorder",
    "RecordedRequest",
    "Reply",
    "ScriptExhaustedError",
    "ScriptedCall",
    "ScriptedLLM",
    "ScriptedOpenAIServer",
    "estimate_tokens",
]

E = TypeVar("E", bound=Event)

#: How a reply is cut into chunks: a chunk length in characters, or absolute cut positions.
ChunkSpec = int | Sequence[int]


# -- replies ---------------------------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """Estimate the tokens of ``text`` as one per four characters, rounded up (0 for "")."""
    return (len(text) + 3) // 4


def _estimate_prompt(messages: Sequence[Any]) -> int:
    """Estimated prompt tokens: the sum over the messages' contents."""
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            total += estimate_tokens(content)
    return total


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted reply, when a plain string is not enough.

    Attributes:
        text: what the model says.
        finish_reason: why it ended, unless a stop string or ``max_tokens`` cut it first.
        prompt_tokens: prompt tokens to report (None: estimated from the messages).
        completion_tokens: completion tokens to report (None: estimated from the text sent).
        cached_tokens: prompt tokens to report as served from the server's prompt cache.
    """

    text: str
    finish_reason: str = "stop"
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cached_tokens: int = 0


def _as_reply(value: object) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return Reply(value)
    raise TypeError(f"a script must give str or Reply, not {type(value).__name__}: {value!r}")


def _shape(reply: Reply, stop: Sequence[str], max_tokens: int | None) -> tuple[str, str]:
    """Apply stop strings and ``max_tokens`` as a server would: the text sent and why it ended."""
    text, finish = reply.text, reply.finish_reason
    cuts = [text.find(s) for s in stop if s and s in text]
    if cuts:
        text, finish = text[: min(cuts)], "stop"
    if max_tokens is not None and estimate_tokens(text) > max_tokens:
        text, finish = text[: max(0, max_tokens) * 4], "length"
    return text, finish


def _usage(reply: Reply, messages: Sequence[Any], text: str) -> Usage:
    return Usage(
        prompt_tokens=(
            _estimate_prompt(messages) if reply.prompt_tokens is None else reply.prompt_tokens
        ),
        completion_tokens=(
            estimate_tokens(text) if reply.completion_tokens is None else reply.completion_tokens
        ),
        cached_tokens=reply.cached_tokens,
        calls=1,
    )


def _cut(text: str, chunks: ChunkSpec) -> list[str]:
    """Split ``text`` into pieces: every ``chunks`` characters, or at the given positions."""
    if isinstance(chunks, int):
        if chunks < 1:
            raise ValueError("chunk_size must be at least 1 character")
        return [text[i : i + chunks] for i in range(0, len(text), chunks)] or [""]
    points = sorted({p for p in chunks if 0 < p < len(text)})
    bounds = [0, *points, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)] or [""]


class ScriptExhaustedError(AssertionError):
    """A scripted double was called more often than its script has replies."""


class _Script:
    """Replies in order from a list, or computed by a function; thread-safe."""

    def __init__(self, script: object, what: str) -> None:
        self._lock = threading.Lock()
        self._what = what
        self.function: Callable[..., Any] | None = None
        self.replies: list[object] = []
        if callable(script):
            self.function = script
        elif isinstance(script, str | Reply):
            raise TypeError(f"{what} needs a list of replies or a function; wrap one in a list")
        else:
            self.replies = list(script)  # type: ignore[call-overload]
        self.used = 0

    @property
    def remaining(self) -> int | None:
        return None if self.function is not None else len(self.replies) - self.used

    def take(self, argument: object, *, consume: bool = True) -> object:
        """The next reply (a function's result may still be awaitable)."""
        if self.function is not None:
            return self.function(argument)
        with self._lock:
            if self.used >= len(self.replies):
                raise ScriptExhaustedError(
                    f"{self._what} was scripted with {len(self.replies)} "
                    f"repl{'y' if len(self.replies) == 1 else 'ies'} and all were used; "
                    f"call number {self.used + 1} has none (add replies to the script)"
                )
            reply = self.replies[self.used]
            self.used += consume
            return reply


# -- the in-memory LLM -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ScriptedCall:
    """One call a :class:`ScriptedLLM` received.

    Attributes:
        messages: the messages, as sent.
        options: the options (``GenerateOptions()`` when the caller passed none).
    """

    messages: tuple[Message, ...]
    options: GenerateOptions

    @property
    def text(self) -> str:
        """Every message's content, joined by newlines: handy for ``"x" in call.text``."""
        return "\n".join(m["content"] for m in self.messages)


ScriptFunction = Callable[[Sequence[Message]], "str | Reply | Awaitable[str | Reply]"]


class ScriptedLLM:
    """An in-memory :class:`~llmc.llm.LLM` that answers from a script.

    Each call takes the next reply of a list, or calls a function of the messages (sync or
    async) for it. A script item that is an exception is raised instead, to test how callers
    handle a failing model. The reply streams in chunks, after ``first_chunk_delay`` and with
    ``chunk_delay`` between chunks. Like a server, it cuts the reply at the first of
    ``options.stop`` (finish reason ``"stop"``) and at ``options.max_tokens`` estimated tokens
    (finish reason ``"length"``). Usage is estimated (:func:`estimate_tokens`) unless a
    :class:`Reply` gives the counts.

    Attributes:
        model: the model name it reports, "scripted" by default.
        price: what its tokens cost (:class:`llmc.budget.Price`), or None.
        calls: every call received, in order: messages and options.
    """

    def __init__(
        self,
        script: Sequence[str | Reply | BaseException] | ScriptFunction,
        *,
        model: str = "scripted",
        price: Price | None = None,
        chunk_size: ChunkSpec = 8,
        chunk_delay: float = 0.0,
        first_chunk_delay: float = 0.0,
    ) -> None:
        """Script the replies.

        Args:
            script: the replies in order, or a function from the messages to a reply.
            model: the model name to report.
            price: what its tokens cost (None: the price table decides by ``model``).
            chunk_size: characters per chunk, or the positions at which to cut each reply.
            chunk_delay: seconds to wait before every chunk after the first.
            first_chunk_delay: seconds to wait before the first chunk (time to first token).
        """
        self.model = model
        self.price = price
        self.chunk_size = chunk_size
        self.chunk_delay = chunk_delay
        self.first_chunk_delay = first_chunk_delay
        self.calls: list[ScriptedCall] = []
        self._script = _Script(script, f"ScriptedLLM(model={model!r})")

    @property
    def remaining(self) -> int | None:
        """Replies not yet used (None when a function computes them)."""
        return self._script.remaining

    async def stream(
        self, messages: Sequence[Message], options: GenerateOptions | None = None
    ) -> AsyncIterator[Chunk]:
        """Stream the next scripted reply to ``messages``; the last chunk carries usage.

        Raises:
            ScriptExhaustedError: every reply of a list script was already used.
        """
        options = options or GenerateOptions()
        self.calls.append(ScriptedCall(tuple(messages), options))
        value = self._script.take(messages)
        if inspect.isawaitable(value):
            value = await value
        if isinstance(value, BaseException):
            raise value
        reply = _as_reply(value)
        text, finish = _shape(reply, options.stop, options.max_tokens)
        pieces = _cut(text, self.chunk_size)
        for index, piece in enumerate(pieces):
            delay = self.first_chunk_delay if index == 0 else self.chunk_delay
            if delay > 0:
                await asyncio.sleep(delay)
            if index < len(pieces) - 1:
                yield Chunk(piece)
            else:
                yield Chunk(piece, _usage(reply, messages, text), finish)

    def __repr__(self) -> str:
        return f"ScriptedLLM(model={self.model!r}, calls={len(self.calls)})"


# -- the HTTP server -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Fault:
    """What a :class:`ScriptedOpenAIServer` does wrong with one chat completion request.

    Attributes:
        status: answer with this HTTP status and an OpenAI-style error body (None: no error).
        message: the error body's message.
        retry_after: the ``Retry-After`` header: seconds, or any text such as an HTTP date.
        retry_after_ms: the ``retry-after-ms`` header, in milliseconds.
        break_after: stream this many chunks of the reply, then drop the connection (a reply
            that does not stream is dropped before it starts).
        delay: seconds to wait before answering at all (to run past a client's timeout).
    """

    status: int | None = None
    message: str = "injected fault"
    retry_after: float | str | None = None
    retry_after_ms: float | None = None
    break_after: int | None = None
    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    """One HTTP request a :class:`ScriptedOpenAIServer` received.

    Attributes:
        method: "GET" or "POST".
        path: the path, e.g. "/v1/chat/completions".
        headers: the headers, with lower-case names.
        body: the JSON body, parsed (None when there was none or it was not JSON).
        time: when it arrived, by :func:`time.perf_counter`.
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    time: float = field(compare=False)


ServerScriptFunction = Callable[[dict[str, Any]], "str | Reply"]


class ScriptedOpenAIServer:
    """An OpenAI-compatible chat completions server on loopback, for tests.

    It serves ``POST /v1/chat/completions`` (server-sent events when ``"stream": true``, with
    a final usage chunk when ``stream_options.include_usage`` is set; a JSON completion
    otherwise) and ``GET /v1/models``, from a background thread on a free port. Replies come
    from a list or from a function of the request body (called in the server's thread); a
    used-up list is answered with HTTP 400 naming how many replies were scripted. Faults
    queued with :meth:`fail`, :meth:`break_stream` and :meth:`stall` apply to the next chat
    completion requests, one each, without using up a reply.

    Use it as a context manager, sync or async; leaving it stops the server, closes its
    sockets and joins its threads.

    Attributes:
        requests: every request received, in order of arrival.
        errors: problems on the server's side (a script function that raised, a used-up
            script), as text.
        model: the model name ``/v1/models`` lists.
        chunk_size: characters per streamed chunk, or the positions at which to cut a reply.
        chunk_delay: seconds before every streamed chunk after the first.
        first_chunk_delay: seconds before the first streamed chunk.
        send_usage: whether to send usage when asked (False: act like a server without it).
        honour_max_tokens: whether replies are cut at the request's ``max_tokens`` (False:
            act like a server that ignores it and sends the whole reply).
    """

    def __init__(
        self,
        script: Sequence[str | Reply] | ServerScriptFunction,
        *,
        model: str = "scripted",
        chunk_size: ChunkSpec = 8,
        chunk_delay: float = 0.0,
        first_chunk_delay: float = 0.0,
        send_usage: bool = True,
        honour_max_tokens: bool = True,
        host: str = "127.0.0.1",
    ) -> None:
        """Script the server; it starts on entering the context (or :meth:`start`).

        Args:
            script: the replies in order, or a function from the request body to a reply.
            model: the model name ``/v1/models`` lists.
            chunk_size: characters per streamed chunk, or the positions at which to cut.
            chunk_delay: seconds to wait before every streamed chunk after the first.
            first_chunk_delay: seconds to wait before the first streamed chunk.
            send_usage: whether to send usage when the request asks for it.
            honour_max_tokens: whether to cut replies at the request's ``max_tokens``.
            host: the loopback address to listen on.
        """
        self.model = model
        self.chunk_size = chunk_size
        self.chunk_delay = chunk_delay
        self.first_chunk_delay = first_chunk_delay
        self.send_usage = send_usage
        self.honour_max_tokens = honour_max_tokens
        self.host = host
        self.requests: list[RecordedRequest] = []
        self.errors: list[str] = []
        self._script = _Script(script, "ScriptedOpenAIServer")
        self._faults: deque[_Fault] = deque()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- faults

    def fail(
        self,
        status: int,
        *,
        times: int = 1,
        retry_after: float | str | None = None,
        retry_after_ms: float | None = None,
        message: str | None = None,
    ) -> Self:
        """Answer the next ``times`` chat completion requests with HTTP ``status``.

        Args:
            status: the status, e.g. 429 or 500.
            times: how many requests in a row get it.
            retry_after: the ``Retry-After`` header (seconds, or text such as an HTTP date).
            retry_after_ms: the ``retry-after-ms`` header, in milliseconds.
            message: the error body's message.
        """
        fault = _Fault(
            status=status,
            message=message or f"injected HTTP {status}",
            retry_after=retry_after,
            retry_after_ms=retry_after_ms,
        )
        return self._queue(fault, times)

    def break_stream(self, after_chunks: int, *, times: int = 1) -> Self:
        """Drop the connection part-way through the next ``times`` replies.

        The reply is not used up, so a retry gets it again.

        Args:
            after_chunks: chunks to stream before the connection drops (0: none).
            times: how many requests in a row get it.
        """
        return self._queue(_Fault(break_after=after_chunks), times)

    def stall(self, seconds: float, *, times: int = 1) -> Self:
        """Wait before answering the next requests, to run past a client's timeout.

        Args:
            seconds: how long to wait (closing the server cuts the wait short).
            times: how many requests in a row get it.
        """
        return self._queue(_Fault(delay=seconds), times)

    def _queue(self, fault: _Fault, times: int) -> Self:
        with self._lock:
            self._faults.extend([fault] * times)
        return self

    def _next_fault(self) -> _Fault | None:
        with self._lock:
            return self._faults.popleft() if self._faults else None

    # -- life cycle

    @property
    def port(self) -> int:
        """The port it listens on (it must be started)."""
        if self._httpd is None:
            raise RuntimeError("the server is not running; use it as a context manager")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The URL to give a client, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"http://{self.host}:{self.port}/v1"

    def start(self) -> Self:
        """Listen on a free port and serve from a background thread."""
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        self._stopping.clear()
        self._httpd = _HTTPServer((self.host, 0), self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.01},
            name=f"llmc-test-server:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving, close every connection and join every thread (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        httpd.shutdown()
        httpd.drop_connections()
        httpd.server_close()
        httpd.join_threads(timeout=5.0)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)

    @property
    def remaining(self) -> int | None:
        """Replies not yet used (None when a function computes them)."""
        return self._script.remaining

    def chat_requests(self) -> list[RecordedRequest]:
        """The chat completion requests received, in order."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def __repr__(self) -> str:
        where = self.base_url if self._httpd is not None else "not running"
        return f"ScriptedOpenAIServer({where}, requests={len(self.requests)})"

    # -- serving (called from the request threads)

    def _wait(self, seconds: float) -> bool:
        """Sleep, waking early when the server stops; True when it is stopping."""
        if seconds > 0:
            self._stopping.wait(seconds)
        return self._stopping.is_set()

    def _reply_for(self, body: dict[str, Any], *, consume: bool) -> Reply:
        value = self._script.take(body, consume=consume)
        if inspect.isawaitable(value):
            raise TypeError("a ScriptedOpenAIServer script function must be synchronous")
        return _as_reply(value)


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its owner and its open connections."""

    def __init__(self, address: tuple[str, int], owner: ScriptedOpenAIServer) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.threads: list[threading.Thread] = []
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Like ThreadingMixIn's, but daemon threads are tracked too, so close() can join them.
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="llmc-test-server-request",
            daemon=True,
        )
        with self.connections_lock:
            self.threads = [t for t in self.threads if t.is_alive()]
            self.threads.append(thread)
        thread.start()

    def join_threads(self, timeout: float) -> None:
        """Wait for the request threads to end."""
        with self.connections_lock:
            threads, self.threads = self.threads, []
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def drop_connections(self) -> None:
        """Shut every open connection so that threads waiting on them return."""
        with self.connections_lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away is normal for a test server; anything else is recorded.
        import sys

        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            self.owner.errors.append(f"{type(error).__name__}: {error}")


class _DroppedConnection(Exception):
    """The handler dropped the connection on purpose (a break_stream fault)."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    timeout = 30  # an idle keep-alive connection ends after this, even if close() is missed

    def setup(self) -> None:
        super().setup()
        with self.server.connections_lock:
            self.server.connections.add(self.connection)
        if self.server.owner._stopping.is_set():  # accepted just as the server closed
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests read ``requests``, not stderr."""

    @property
    def owner(self) -> ScriptedOpenAIServer:
        return self.server.owner

    # -- routing

    def do_GET(self) -> None:
        self._record(None)
        if self.path.rstrip("/").endswith("/models"):
            model = {"id": self.owner.model, "object": "model", "created": 0, "owned_by": "llmc"}
            self._json(200, {"object": "list", "data": [model]})
        else:
            self._error(404, f"no route for GET {self.path}", "not_found")

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        self._record(body)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._error(404, f"no route for POST {self.path}", "not_found")
        elif not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            self._error(400, "the body must be a JSON object with a messages list", "bad_request")
        else:
            try:
                self._chat(body)
            except _DroppedConnection:
                self.close_connection = True

    def _record(self, body: Any) -> None:
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = RecordedRequest(self.command, self.path, headers, body, time.perf_counter())
        with self.owner._lock:
            self.owner.requests.append(request)

    # -- chat completions

    def _chat(self, body: dict[str, Any]) -> None:
        owner = self.owner
        fault = owner._next_fault() or _Fault()
        if owner._wait(fault.delay):
            return
        if fault.status is not None:
            headers = {}
            if fault.retry_after is not None:
                headers["Retry-After"] = str(fault.retry_after)
            if fault.retry_after_ms is not None:
                headers["retry-after-ms"] = str(fault.retry_after_ms)
            self._error(fault.status, fault.message, "injected_fault", headers)
            return
        try:
            reply = owner._reply_for(body, consume=fault.break_after is None)
        except ScriptExhaustedError as error:
            owner.errors.append(str(error))
            self._error(400, str(error), "script_exhausted")
            return
        except Exception as error:
            owner.errors.append(f"the script raised {type(error).__name__}: {error}")
            self._error(500, f"the script raised {type(error).__name__}: {error}", "script_error")
            return
        stop = body.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        max_tokens = body.get("max_tokens", body.get("max_completion_tokens"))
        if not owner.honour_max_tokens:
            max_tokens = None
        text, finish = _shape(reply, stop, max_tokens if isinstance(max_tokens, int) else None)
        usage = _usage(reply, body["messages"], text)
        model = str(body.get("model") or owner.model)
        if body.get("stream"):
            options = body.get("stream_options") or {}
            send_usage = owner.send_usage and bool(options.get("include_usage"))
            self._stream(model, text, finish, usage if send_usage else None, fault.break_after)
        elif fault.break_after is not None:
            self._drop()
        else:
            self._json(200, _completion(model, text, finish, usage, owner.send_usage))

    def _stream(
        self, model: str, text: str, finish: str, usage: Usage | None, break_after: int | None
    ) -> None:
        owner = self.owner
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for index, piece in enumerate(_cut(text, owner.chunk_size)):
            if break_after is not None and index >= break_after:
                self._drop()
            if owner._wait(owner.first_chunk_delay if index == 0 else owner.chunk_delay):
                self._drop()
            delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
            self._event(_chunk(model, [{"index": 0, "delta": delta, "finish_reason": None}]))
        if break_after is not None:
            self._drop()
        self._event(_chunk(model, [{"index": 0, "delta": {}, "finish_reason": finish}]))
        if usage is not None:
            self._event({**_chunk(model, []), "usage": _usage_json(usage)})
        self._write_chunk(b"data: [DONE]\n\n")
        self._write_chunk(b"")

    def _event(self, data: dict[str, Any]) -> None:
        self._write_chunk(b"data: " + json.dumps(data).encode() + b"\n\n")

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _drop(self) -> None:
        """Close the connection mid-response, without the chunked body's end."""
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        raise _DroppedConnection

    # -- plain replies

    def _json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def _error(
        self, status: int, message: str, kind: str, headers: dict[str, str] | None = None
    ) -> None:
        error = {"message": message, "type": kind, "param": None, "code": None}
        self._json(status, {"error": error}, headers)


def _chunk(model: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "chatcmpl-scripted",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": choices,
    }


def _usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    }


def _completion(
    model: str, text: str, finish: str, usage: Usage, send_usage: bool
) -> dict[str, Any]:
    message = {"role": "assistant", "content": text}
    data: dict[str, Any] = {
        "id": "chatcmpl-scripted",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish}],
    }
    if send_usage:
        data["usage"] = _usage_json(usage)
    return data


# -- events ----------------------------------------------------------------------------------


class EventRecorder:
    """Collects the events of runs: pass it as ``on_event`` and read ``events`` afterwards.

    Example::

        events = EventRecorder()
        await llmc.run_plan(plan, tools=[...], on_event=events)
        assert [e.task_id for e in events.of_type(llmc.TaskStarted)] == [1, 2]

    Attributes:
        events: every event received, in order.
    """

    def __init__(self) -> None:
        """Start with no events."""
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        """Record one event (the ``on_event`` callback)."""
        self.events.append(event)

    def of_type(self, kind: type[E]) -> list[E]:
        """The events that are instances of ``kind``, in order."""
        return [e for e in self.events if isinstance(e, kind)]

    def types(self) -> list[str]:
        """The class names of the events, in order: handy to compare with a list."""
        return [type(e).__name__ for e in self.events]

    def clear(self) -> None:
        """Forget the events recorded so far."""
        self.events.clear()

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events)

    # No __len__ on purpose: an empty recorder must stay truthy, for ``callback or other``.
