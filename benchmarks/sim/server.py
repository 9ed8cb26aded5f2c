"""The simulated LLM: an OpenAI-compatible chat completions server on loopback.

``POST .../chat/completions`` answers from the workload policy (:mod:`benchmarks.sim.policy`)
with the latency of a model profile (:mod:`benchmarks.sim.profiles`): the first token after
``ttft + prompt_tokens / prefill_rate`` seconds, the rest at ``tokens_per_second``, optionally
scaled by a lognormal jitter factor per call. Replies stream as server-sent events the way
OpenAI's API streams them — text as ``delta.content`` pieces; tool calls as ``delta.tool_calls``
items whose first piece carries ``index``, ``id``, ``type`` and ``function.name`` and whose
later pieces carry ``function.arguments`` fragments; ``finish_reason`` ``"tool_calls"`` or
``"stop"`` (``"length"`` when ``max_tokens`` cut it); a last chunk with ``usage`` and no
choices when ``stream_options.include_usage`` is set; ``data: [DONE]``. Without ``stream``
the whole completion comes back as one JSON object after the same delay.

Usage is counted by the simulator (:mod:`benchmarks.sim.tokens`) from the request as sent,
so every framework is measured with one ruler. Each call is recorded as an :class:`LLMCall`
under a *tag*: the path segment of ``base_url(tag)`` (``/t/<tag>/v1``), which lets one server
tell runs apart whatever client library sends the request.

The server is a :class:`llmc.testing.LoopbackServer`, serving from background threads (the
harness's event loop stays free); a request the policy cannot place is answered with HTTP 400
and recorded with its error.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from llmc.testing import LoopbackHandler, LoopbackServer

from .policy import Policy, PolicyError, Reply
from .profiles import Profile
from .tokens import Tokenizer, chars_tokenizer, completion_tokens, prompt_tokens

__all__ = ["LLMCall", "Simulator"]

#: Characters per streamed piece: about one token.
PIECE_CHARS = 4


@dataclass(slots=True)
class LLMCall:
    """One chat completion request the simulator served.

    Attributes:
        tag: the run it belongs to (from the URL).
        framework: who sent it, as the policy recognised it (``"?"`` when it could not).
        role: ``"planner"``, ``"joiner"`` or ``"agent"``.
        question: the question's id.
        stream: whether the reply streamed.
        prompt_tokens: tokens of the request.
        completion_tokens: tokens of the reply.
        tool_calls: tool calls in the reply.
        complete: False when a joiner or agent lacked results it needed.
        arrived: when the request arrived (:func:`time.perf_counter`).
        first_token: when the first token went out.
        finished: when the reply was complete.
        error: what went wrong, if anything.
    """

    tag: str
    framework: str = "?"
    role: str = "?"
    question: str = ""
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    tool_calls: int = 0
    complete: bool = True
    arrived: float = 0.0
    first_token: float = 0.0
    finished: float = 0.0
    error: str | None = None


class Simulator(LoopbackServer):
    """An OpenAI-compatible server whose replies follow a policy and a latency profile.

    Use it as a context manager (sync or async); leaving it stops the server, closes its
    connections and joins its threads.

    Args:
        policy: what to answer.
        profile: how fast, and at what price.
        tokenizer: how tokens are counted (default: four characters per token).
        jitter: the sigma of a lognormal factor applied to each call's latency (0: none).
        seed: seeds the jitter.
        time_scale: every delay is multiplied by it.
        host: the loopback address to listen on.

    Attributes:
        calls: every request served, in order of arrival.
        errors: exceptions the request handlers raised, as text.
    """

    def __init__(
        self,
        policy: Policy,
        profile: Profile,
        *,
        tokenizer: Tokenizer | None = None,
        jitter: float = 0.0,
        seed: int = 0,
        time_scale: float = 1.0,
        host: str = "127.0.0.1",
    ) -> None:
        super().__init__(_Handler, host=host)
        self.policy = policy
        self.profile = profile
        self.tokenizer = tokenizer or chars_tokenizer()
        self.jitter = jitter
        self.time_scale = time_scale
        self.calls: list[LLMCall] = []
        self._random = random.Random(f"{seed}:jitter")
        self._lock = threading.Lock()

    def base_url(self, tag: str = "") -> str:
        """The ``base_url`` to give a client; requests through it are recorded under ``tag``."""
        prefix = f"/t/{tag}" if tag else ""
        return f"{self.url}{prefix}/v1"

    def calls_of(self, tag: str) -> list[LLMCall]:
        """The calls recorded under ``tag``, in order of arrival."""
        with self._lock:
            return [call for call in self.calls if call.tag == tag]

    # -- timing (called from request threads)

    def _factor(self) -> float:
        if self.jitter <= 0:
            return self.time_scale
        with self._lock:
            return self.time_scale * self._random.lognormvariate(0.0, self.jitter)

    def _sleep_until(self, moment: float) -> bool:
        """Wait until ``moment`` (perf_counter); True when the server is stopping."""
        return self.sleep(moment - time.perf_counter())

    def _record(self, call: LLMCall) -> None:
        with self._lock:
            self.calls.append(call)


def _pieces(text: str) -> list[str]:
    return [text[i : i + PIECE_CHARS] for i in range(0, len(text), PIECE_CHARS)]


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _shape(text: str, body: dict[str, Any], tokenizer: Tokenizer) -> tuple[str, str]:
    """Apply ``stop`` and ``max_tokens`` as a server does: the text sent and the finish reason."""
    stop = body.get("stop") or ()
    stops = (stop,) if isinstance(stop, str) else tuple(stop)
    cuts = [text.find(s) for s in stops if s and s in text]
    if cuts:
        text = text[: min(cuts)]
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and tokenizer.count(text) > limit:
        return text[: limit * PIECE_CHARS], "length"
    return text, "stop"


class _Handler(LoopbackHandler[Simulator]):
    timeout = 60

    def do_GET(self) -> None:
        if self.path.rstrip("/").endswith("/models"):
            model = {"id": self.owner.profile.client_model, "object": "model", "owned_by": "sim"}
            self.send_json(200, {"object": "list", "data": [model]})
        else:
            self._error(404, f"no route for GET {self.path}")

    def do_POST(self) -> None:
        arrived = time.perf_counter()
        raw = self.rfile.read(int(self.headers.get("content-length") or 0))
        path = self.path.split("?", 1)[0].rstrip("/")
        if not path.endswith("/chat/completions"):
            self._error(404, f"no route for POST {self.path}")
            return
        tag = path.split("/")[2] if path.startswith("/t/") else ""
        call = LLMCall(tag, arrived=arrived)
        try:
            body = json.loads(raw)
            reply = self.owner.policy.reply(body)
        except (ValueError, PolicyError) as error:
            call.error = f"{type(error).__name__}: {error}"
            call.finished = time.perf_counter()
            self.owner._record(call)
            self._error(400, call.error)
            return
        self.owner._record(call)
        self._answer(body, reply, call)

    # -- replies

    def _answer(self, body: dict[str, Any], reply: Reply, call: LLMCall) -> None:
        sim = self.owner
        text, finish = _shape(reply.text or "", body, sim.tokenizer)
        calls = [(c.name, c.arguments) for c in reply.calls]
        if calls:
            finish = "tool_calls"
        call.framework, call.role, call.question = reply.framework, reply.role, reply.question
        call.complete, call.tool_calls = reply.complete, len(calls)
        call.stream = bool(body.get("stream"))
        call.prompt_tokens = prompt_tokens(body, sim.tokenizer)
        call.completion_tokens = completion_tokens(
            text if not calls else reply.text, calls, sim.tokenizer
        )
        factor = sim._factor()
        first = call.arrived + sim.profile.first_token_delay(call.prompt_tokens) * factor
        last = first + sim.profile.generation_time(call.completion_tokens) * factor
        model = str(body.get("model") or sim.profile.client_model)
        usage = _usage(call.prompt_tokens, call.completion_tokens)
        if call.stream:
            options = body.get("stream_options") or {}
            with_usage = bool(options.get("include_usage"))
            self._stream(model, text, reply, finish, usage if with_usage else None, first, last)
            call.first_token = first
        else:
            if sim._sleep_until(last):
                return
            call.first_token = last
            self.send_json(200, _completion(model, text, reply, finish, usage))
        call.finished = time.perf_counter()

    def _stream(
        self,
        model: str,
        text: str,
        reply: Reply,
        finish: str,
        usage: dict[str, Any] | None,
        first: float,
        last: float,
    ) -> None:
        sim = self.owner
        deltas = list(_deltas(text, reply))
        if sim._sleep_until(first):
            return
        self.begin_stream()
        step = (last - first) / max(1, len(deltas) - 1)
        buffer: list[bytes] = []
        for index, delta in enumerate(deltas):
            due = first + index * step
            if due > time.perf_counter() + 0.001:
                if buffer:
                    self.write_chunk(b"".join(buffer))
                    buffer = []
                if sim._sleep_until(due):
                    return
            buffer.append(_event(_chunk(model, [{"index": 0, "delta": delta}])))
        buffer.append(_event(_chunk(model, [{"index": 0, "delta": {}, "finish_reason": finish}])))
        if usage is not None:
            buffer.append(_event({**_chunk(model, []), "usage": usage}))
        buffer.append(b"data: [DONE]\n\n")
        self.write_chunk(b"".join(buffer))
        self.write_chunk(b"")  # the end of the chunked body

    def _error(self, status: int, message: str) -> None:
        error = {"message": message, "type": "invalid_request_error", "param": None, "code": None}
        self.send_json(status, {"error": error})


def _deltas(text: str, reply: Reply) -> Iterator[dict[str, Any]]:
    """The streamed deltas of a reply, in order; the first carries the role."""
    if not reply.calls:
        pieces = _pieces(text) or [""]
        yield {"role": "assistant", "content": pieces[0]}
        for piece in pieces[1:]:
            yield {"content": piece}
        return
    yield {"role": "assistant", "content": None}
    for index, call in enumerate(reply.calls):
        head = {"name": call.name, "arguments": ""}
        item = {"index": index, "id": call.id, "type": "function", "function": head}
        yield {"tool_calls": [item]}
        for piece in _pieces(call.arguments):
            yield {"tool_calls": [{"index": index, "function": {"arguments": piece}}]}


def _chunk(model: str, choices: list[dict[str, Any]]) -> dict[str, Any]:
    for choice in choices:
        choice.setdefault("finish_reason", None)
        choice.setdefault("logprobs", None)
    return {
        "id": "chatcmpl-sim",
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": choices,
    }


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _completion(
    model: str, text: str, reply: Reply, finish: str, usage: dict[str, Any]
) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text if not reply.calls else None}
    if reply.calls:
        message["tool_calls"] = [
            {
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            }
            for call in reply.calls
        ]
    return {
        "id": "chatcmpl-sim",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
        "usage": usage,
    }
