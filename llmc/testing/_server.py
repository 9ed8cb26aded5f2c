"""The HTTP double: :class:`ScriptedOpenAIServer`, OpenAI's chat completions API on loopback."""

from __future__ import annotations

import contextlib
import inspect
import json
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from ..llm.base import Usage
from ._http import LoopbackHandler, LoopbackServer
from ._script import (
    ChunkSpec,
    Pacing,
    Reply,
    Script,
    ScriptExhaustedError,
    as_reply,
    reply_usage,
    shape,
)


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


class ScriptedOpenAIServer(LoopbackServer):
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
        pacing: how each streamed reply is cut and paced (:class:`Pacing`).
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
        pacing = Pacing(chunk_size, chunk_delay, first_chunk_delay)  # checked before binding
        super().__init__(_Handler, host=host)
        self.model = model
        self.pacing = pacing
        self.send_usage = send_usage
        self.honour_max_tokens = honour_max_tokens
        self.requests: list[RecordedRequest] = []
        self._script = Script(script, "ScriptedOpenAIServer")
        self._faults: deque[_Fault] = deque()
        self._lock = threading.Lock()

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
    def base_url(self) -> str:
        """The URL to give a client, e.g. ``http://127.0.0.1:PORT/v1``."""
        return f"{self.url}/v1"

    @property
    def remaining(self) -> int | None:
        """Replies not yet used (None when a function computes them)."""
        return self._script.remaining

    def chat_requests(self) -> list[RecordedRequest]:
        """The chat completion requests received, in order."""
        return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def __repr__(self) -> str:
        where = self.base_url if self.running else "not running"
        return f"ScriptedOpenAIServer({where}, requests={len(self.requests)})"

    # -- serving (called from the request threads)

    def _reply_for(self, body: dict[str, Any], *, consume: bool) -> Reply:
        value = self._script.take(body, consume=consume)
        if inspect.isawaitable(value):
            raise TypeError("a ScriptedOpenAIServer script function must be synchronous")
        return as_reply(value)


class _DroppedConnection(Exception):
    """The handler dropped the connection on purpose (a break_stream fault)."""


class _Handler(LoopbackHandler[ScriptedOpenAIServer]):
    # -- routing

    def do_GET(self) -> None:
        self._record(None)
        if self.path.rstrip("/").endswith("/models"):
            model = {"id": self.owner.model, "object": "model", "created": 0, "owned_by": "llmc"}
            self.send_json(200, {"object": "list", "data": [model]})
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
        if owner.sleep(fault.delay):
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
        text, finish = shape(reply, stop, max_tokens if isinstance(max_tokens, int) else None)
        usage = reply_usage(reply, body["messages"], text)
        model = str(body.get("model") or owner.model)
        if body.get("stream"):
            options = body.get("stream_options") or {}
            send_usage = owner.send_usage and bool(options.get("include_usage"))
            self._stream(model, text, finish, usage if send_usage else None, fault.break_after)
        elif fault.break_after is not None:
            self._drop()
        else:
            self.send_json(200, _completion(model, text, finish, usage, owner.send_usage))

    def _stream(
        self, model: str, text: str, finish: str, usage: Usage | None, break_after: int | None
    ) -> None:
        owner = self.owner
        self.begin_stream()
        for index, (delay, piece) in enumerate(owner.pacing.pieces(text)):
            if break_after is not None and index >= break_after:
                self._drop()
            if owner.sleep(delay):
                self._drop()
            delta = {"role": "assistant", "content": piece} if index == 0 else {"content": piece}
            self._event(_chunk(model, [{"index": 0, "delta": delta, "finish_reason": None}]))
        if break_after is not None:
            self._drop()
        self._event(_chunk(model, [{"index": 0, "delta": {}, "finish_reason": finish}]))
        if usage is not None:
            self._event({**_chunk(model, []), "usage": _usage_json(usage)})
        self.write_chunk(b"data: [DONE]\n\n")
        self.write_chunk(b"")

    def _event(self, data: dict[str, Any]) -> None:
        self.write_chunk(b"data: " + json.dumps(data).encode() + b"\n\n")

    def _drop(self) -> None:
        """Close the connection mid-response, without the chunked body's end."""
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        raise _DroppedConnection

    # -- plain replies

    def _error(
        self, status: int, message: str, kind: str, headers: dict[str, str] | None = None
    ) -> None:
        error = {"message": message, "type": kind, "param": None, "code": None}
        self.send_json(status, {"error": error}, headers)


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
