"""An :class:`~llmc.llm.LLM` for any OpenAI-compatible chat completions endpoint.

One class, :class:`OpenAI`, on top of the official ``openai`` package's ``AsyncOpenAI``. It
talks to OpenAI itself and to local servers that copy its API: vLLM, Ollama, llama.cpp's
``llama-server``, LM Studio. Replies always stream; the last chunk carries the usage the
server reported (``stream_options.include_usage``).

A server that reports no usage (some do not support ``include_usage``) gets
``Usage(calls=1)``: zero tokens, since llmc estimates nothing.

Retries are llmc's own (the ``openai`` client's are turned off, so every attempt is visible
in logs and tests): HTTP 429, 408 and 5xx answers, refused connections and timeouts are tried
again with exponential backoff and jitter, waiting at least what a ``Retry-After`` or
``retry-after-ms`` header asks for. Only a request whose reply has not started is retried; a
reply that breaks off half-way raises :class:`~llmc.errors.LLMConnectionError`, because its
first part has already gone to the caller. The errors (see :mod:`llmc.errors`) name the model,
the endpoint and what to check next. The API key appears in no message, ``repr`` or log line.

Option mapping (:class:`~llmc.llm.GenerateOptions` to the request body):

- ``max_tokens``, ``stop``, ``temperature``: the fields of the same name (``max_tokens`` can be
  sent as ``max_completion_tokens``, which OpenAI's reasoning models want);
- ``json_schema``: ``response_format = {"type": "json_schema", "json_schema": {"name": ...,
  "schema": ..., "strict": True}}``;
- ``grammar``: a ``grammar`` field in the body, which llama.cpp's server reads as GBNF. vLLM
  reads ``guided_grammar`` instead (``structured_outputs`` in newer versions): pass
  ``extra={"guided_grammar": ...}``;
- ``extra``: merged into the body last, so it can also replace any field above.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import ssl
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, Literal

import structlog

from .._closing import AsyncClosing
from ..errors import LLMConnectionError, LLMError, LLMRateLimitError, LLMResponseError
from ..limits import Backoff, RateLimiter, rate_limiter, release, retrying
from .base import Chunk, GenerateOptions, Message, Price, Usage

if TYPE_CHECKING:
    import openai


#: The key sent when none is given or set in ``OPENAI_API_KEY``: local servers ignore it.
PLACEHOLDER_API_KEY = "no-key-needed"

_DEFAULT_BASE_URL = "https://api.openai.com/v1"
_RETRY_STATUSES = frozenset({408, 429})
_logger = structlog.get_logger("llmc")


class _Secret:
    """Holds the API key; shows as stars wherever it is printed."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return "'***'"

    __str__ = __repr__

    def redact(self, text: str) -> str:
        """``text`` with the key replaced by stars."""
        return text.replace(self.value, "***") if len(self.value) >= 4 else text


@dataclass(frozen=True, slots=True)
class _Failure:
    """What went wrong with one attempt, before it becomes an :class:`LLMError`."""

    kind: Literal["connection", "timeout", "rate_limit", "status", "stream_error", "unreadable"]
    detail: str
    status: int | None = None
    retry_after: float | None = None

    @property
    def retryable(self) -> bool:
        if self.kind in ("connection", "timeout", "rate_limit"):
            return True
        return self.status is not None and (self.status in _RETRY_STATUSES or self.status >= 500)


@dataclass(slots=True)
class _Progress:
    """How far one attempt got: the text so far, and what the server reported."""

    received: list[str] = field(default_factory=list)
    finish: str | None = None
    usage: Usage = field(default_factory=lambda: Usage(calls=1))
    first_text: float | None = None
    limiter: RateLimiter | None = None

    def reached_server(self) -> None:
        """Release the attempt's rate limit slot, once."""
        limiter, self.limiter = self.limiter, None
        if limiter is not None:
            release(limiter)


class _Unreadable(ValueError):
    """A streamed chunk does not have the shape of a chat completion chunk."""


class OpenAI(AsyncClosing):
    """An OpenAI-compatible chat completions endpoint as an :class:`~llmc.llm.LLM`.

    Example::

        llm = OpenAI("gpt-4o-mini")                                   # OPENAI_API_KEY
        llm = OpenAI("qwen2.5:7b", base_url="http://localhost:11434/v1")  # Ollama, no key
        async for chunk in llm.stream([{"role": "user", "content": "Hi"}]):
            print(chunk.text, end="")

    One object can serve many concurrent runs. Its request rate limit (``rate_limit``) is
    shared by all of them, and by every other backend given the same limiter.

    Attributes:
        model: the model name sent with every request.
        base_url: the endpoint, e.g. ``http://localhost:8000/v1``.
        max_retries: extra attempts after a retryable failure.
        backoff: the delays between attempts when the server does not say how long to wait.
        max_retry_wait: the longest ``Retry-After`` llmc waits for; a longer one fails at once.
        default_options: options for every call; a call's own options override them.
        price: what the model's tokens cost, or None (the price table decides).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        organization: str | None = None,
        timeout: float = 120.0,
        connect_timeout: float = 10.0,
        max_retries: int = 3,
        backoff: Backoff | None = None,
        max_retry_wait: float = 60.0,
        rate_limit: float | RateLimiter | None = None,
        rate_period: float = 1.0,
        default_options: GenerateOptions | None = None,
        max_tokens_param: Literal["max_tokens", "max_completion_tokens"] = "max_tokens",
        client: openai.AsyncOpenAI | None = None,
        price: Price | None = None,
    ) -> None:
        """Configure the endpoint and build its HTTP client; nothing is sent until the
        first call, which finds the client ready (for a plain ``http://`` endpoint without
        the cost of loading TLS certificates).

        Args:
            model: the model name; defaults to the ``OPENAI_MODEL`` environment variable.
            base_url: the endpoint; defaults to ``OPENAI_BASE_URL``, then OpenAI's own.
            api_key: the key; defaults to ``OPENAI_API_KEY``, then a placeholder that local
                servers accept (:data:`PLACEHOLDER_API_KEY`).
            organization: the OpenAI organization; defaults to ``OPENAI_ORG_ID``.
            timeout: seconds to wait for the first byte of a reply, and between its chunks.
            connect_timeout: seconds to wait for a connection.
            max_retries: extra attempts after a retryable failure (0: none).
            backoff: delays between attempts; by default 0.5 s doubling to 30 s, with jitter.
            max_retry_wait: the longest ``Retry-After`` to honour, in seconds.
            rate_limit: requests per ``rate_period`` seconds (counted as they reach the server),
                or any shared :class:`~llmc.limits.RateLimiter`; acquired before every attempt.
            rate_period: the window of a numeric ``rate_limit``, in seconds.
            default_options: options for every call, under each call's own.
            max_tokens_param: the body field for ``max_tokens``.
            client: an ``AsyncOpenAI`` client to use as it is configured (e.g. for Azure or a
                proxy), instead of one built from the arguments above; its own retries are
                turned off.
            price: what the model's tokens cost, when the run's price table should not
                decide by the model's name (:class:`llmc.budget.Price`).

        Raises:
            ValueError: no model was given and ``OPENAI_MODEL`` is not set, or a limit is
                not positive.
        """
        model = model or os.environ.get("OPENAI_MODEL")
        if not model:
            raise ValueError("OpenAI() needs a model name: OpenAI('gpt-4o-mini') or OPENAI_MODEL")
        if max_retries < 0 or timeout <= 0 or connect_timeout <= 0:
            raise ValueError("max_retries must be >= 0 and timeouts must be positive")
        self.model = model
        self.price = price
        if client is not None:
            base_url = str(client.base_url)
            api_key = client.api_key
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or _DEFAULT_BASE_URL).rstrip(
            "/"
        )
        self._api_key = _Secret(api_key or os.environ.get("OPENAI_API_KEY") or PLACEHOLDER_API_KEY)
        self._organization = organization
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.max_retries = max_retries
        self.backoff = backoff or _default_backoff()
        self.max_retry_wait = max_retry_wait
        self.default_options = default_options
        self.max_tokens_param = max_tokens_param
        self.rate_limiter = rate_limiter(rate_limit, rate_period)
        self._given_client = client.with_options(max_retries=0) if client is not None else None
        # Built now, not on the first request (50-200 ms, mostly TLS certificates): it binds
        # to the event loop that first uses it; another loop gets a client of its own.
        self._client = self._new_client() if client is None else None
        self._client_loop: weakref.ref[asyncio.AbstractEventLoop] | None = None

    # -- the LLM protocol

    async def stream(
        self, messages: Sequence[Message], options: GenerateOptions | None = None
    ) -> AsyncIterator[Chunk]:
        """Stream a reply to ``messages``; the last chunk carries usage and the finish reason.

        A server that reports no usage gets ``Usage(calls=1)``: zero tokens, nothing
        estimated.

        Raises:
            LLMConnectionError: the endpoint could not be reached or timed out on every
                attempt, or the reply broke off after it had started.
            LLMRateLimitError: the endpoint answered 429 on every attempt.
            LLMResponseError: the endpoint answered another error status, or something that
                is not a chat completion stream.
        """
        import openai

        request = self._request(messages, self._merged(options))
        client = self._client_for_this_loop()
        started = time.perf_counter()
        progress = _Progress()
        attempts = 0

        async def first_text(number: int) -> tuple[AsyncGenerator[str], str | None]:
            # Only an attempt whose reply has not started is retried: the loop of attempts
            # covers the request up to its first text, the rest streams outside it.
            nonlocal progress, attempts
            attempts = number
            progress = _Progress(limiter=self.rate_limiter)  # acquired by the loop
            texts = self._attempt(client, request, progress)
            try:
                return texts, await anext(texts, None)
            except BaseException:
                await texts.aclose()
                raise
            finally:
                progress.reached_server()  # (a failed or cancelled attempt frees its slot too)

        def after_failure(exc: Exception, number: int) -> float | None:
            if not isinstance(exc, openai.OpenAIError | ValueError):
                return None
            return self._after_failure(exc, number)

        texts, text = await retrying(first_text, after_failure, limiter=self.rate_limiter)
        async with aclosing(texts):
            try:
                while text is not None:
                    yield Chunk(text)
                    text = await anext(texts, None)
            except (openai.OpenAIError, ValueError) as exc:
                error = self._broken(
                    self._failure(exc), "".join(progress.received), len(progress.received)
                )
                self._log("llm call failed", attempts=attempts, error=str(error))
                raise error from self._cause(exc)
        self._log(
            "llm call finished",
            attempts=attempts,
            prompt_tokens=progress.usage.prompt_tokens,
            completion_tokens=progress.usage.completion_tokens,
            cached_tokens=progress.usage.cached_tokens,
            finish_reason=progress.finish,
            time_to_first_token=(
                None if progress.first_text is None else round(progress.first_text - started, 4)
            ),
            latency=round(time.perf_counter() - started, 4),
        )
        yield Chunk("", progress.usage, progress.finish)

    async def _attempt(
        self, client: openai.AsyncOpenAI, request: dict[str, Any], progress: _Progress
    ) -> AsyncGenerator[str]:
        """Send the request once and yield the reply's text as it arrives."""
        import openai

        try:
            response = await client.chat.completions.create(**request)
        finally:
            progress.reached_server()  # the server has answered: the rate limit counts from now
        async with response:
            async for event in response:
                text, finish, usage = _read_chunk(event)
                progress.finish = finish or progress.finish
                progress.usage = usage or progress.usage
                if text:
                    progress.received.append(text)
                    progress.first_text = progress.first_text or time.perf_counter()
                    yield text
        if progress.finish is None:
            raise openai.APIConnectionError(
                message="the stream ended before the server said the reply was finished",
                request=response.response.request,
            )

    def _after_failure(self, exc: Exception, attempt: int) -> float:
        """Seconds to wait before trying again, or raise the error that ends the call."""
        failure = self._failure(exc)
        delay = self._retry_delay(failure, attempt)
        if delay is None:
            error = self._error(failure, attempt)
            self._log("llm call failed", attempts=attempt, error=str(error))
            raise error from self._cause(exc)
        self._log(
            "llm call retrying",
            attempt=attempt,
            status=failure.status,
            reason=failure.kind,
            delay=round(delay, 3),
        )
        return delay

    # -- life cycle

    async def aclose(self) -> None:
        """Close the HTTP connections this backend opened (a given ``client`` stays open)."""
        client, self._client = self._client, None
        loop = self._client_loop() if self._client_loop is not None else None
        self._client_loop = None
        if client is not None and loop in (None, asyncio.get_running_loop()):
            await client.close()

    def __repr__(self) -> str:
        return f"OpenAI(model={self.model!r}, base_url={self.base_url!r})"

    # -- requests

    def _client_for_this_loop(self) -> openai.AsyncOpenAI:
        """The HTTP client; a new one per event loop, since connections belong to a loop."""

        if self._given_client is not None:
            return self._given_client
        loop = asyncio.get_running_loop()
        if self._client is not None and self._client_loop is None:
            self._client_loop = weakref.ref(loop)  # the client built with the backend
        current = self._client_loop() if self._client_loop is not None else None
        if self._client is None or current is not loop:
            self._client = self._new_client()
            self._client_loop = weakref.ref(loop)
        return self._client

    def _new_client(self) -> openai.AsyncOpenAI:
        """An ``AsyncOpenAI`` client for this endpoint, without retries (llmc's own run).

        For a plain ``http://`` endpoint its TLS context is an empty one, which costs
        nothing to make and, holding no certificates, refuses every TLS connection (a
        redirect to ``https://`` fails rather than going out unverified); ``https://``
        endpoints get the default context with the system's certificates.
        """
        import openai

        http_client = None
        if self.base_url.startswith("http://"):
            bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies, but trusts no one
            http_client = openai.DefaultAsyncHttpxClient(verify=bare)
        return openai.AsyncOpenAI(
            api_key=self._api_key.value,
            organization=self._organization,
            base_url=self.base_url,
            timeout=openai.Timeout(self.timeout, connect=self.connect_timeout),
            max_retries=0,
            http_client=http_client,
        )

    def _merged(self, options: GenerateOptions | None) -> GenerateOptions:
        """A call's options over this backend's defaults."""
        return (options or GenerateOptions()).over(self.default_options)

    def _request(self, messages: Sequence[Message], options: GenerateOptions) -> dict[str, Any]:
        """The keyword arguments of ``chat.completions.create`` for one call."""
        request: dict[str, Any] = {
            "model": self.model,
            "messages": [dict(message) for message in messages],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if options.max_tokens is not None:
            request[self.max_tokens_param] = options.max_tokens
        if options.stop:
            request["stop"] = list(options.stop)
        if options.temperature is not None:
            request["temperature"] = options.temperature
        if options.json_schema is not None:
            request["response_format"] = _response_format(options.json_schema)
        extra: dict[str, Any] = {}
        if options.grammar is not None:
            extra["grammar"] = options.grammar
        extra.update(options.extra)
        if extra:
            request["extra_body"] = extra
        return request

    # -- failures

    def _failure(self, exc: Exception) -> _Failure:
        """Classify what went wrong in one attempt."""
        import openai

        if isinstance(exc, openai.APITimeoutError):
            return _Failure("timeout", "timed out")
        if isinstance(exc, openai.APIConnectionError):
            cause = exc.__cause__
            detail = exc.message if cause is None else f"{type(cause).__name__}: {cause}"
            return _Failure("connection", self._api_key.redact(detail))
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            detail = self._api_key.redact(_server_message(exc))
            kind: Literal["rate_limit", "status"] = "rate_limit" if status == 429 else "status"
            return _Failure(kind, detail, status, _retry_after(exc.response.headers))
        if isinstance(exc, openai.APIError):  # an error event inside the stream
            return _Failure("stream_error", self._api_key.redact(exc.message))
        return _Failure("unreadable", self._api_key.redact(f"{type(exc).__name__}: {exc}"))

    def _retry_delay(self, failure: _Failure, attempt: int) -> float | None:
        """Seconds to wait before the next attempt, or None to give up now."""
        if not failure.retryable or attempt > self.max_retries:
            return None
        if failure.retry_after is None:
            return self.backoff.delay(attempt)
        if failure.retry_after > self.max_retry_wait:
            return None
        # At least what the server asked for; a little more at random so clients spread out.
        return failure.retry_after + min(1.0, 0.1 * failure.retry_after) * random.random()

    def _error(self, failure: _Failure, attempts: int) -> LLMError:
        """The error to raise once ``failure`` is final."""
        where = f"{self.base_url} (model {self.model!r})"
        tries = f"{attempts} attempt{'s' if attempts != 1 else ''}"
        status = failure.status
        waited_too_long = (
            failure.retry_after is not None and failure.retry_after > self.max_retry_wait
        )
        error: type[LLMError] = LLMResponseError
        if failure.kind == "connection":
            error, message = (
                LLMConnectionError,
                f"Cannot reach the LLM server at {where} after {tries}: {failure.detail}. "
                f"Is the server running and listening there? Pass base_url=... (or set "
                f"OPENAI_BASE_URL) to where it is.",
            )
        elif failure.kind == "timeout":
            error, message = (
                LLMConnectionError,
                f"The LLM server at {where} did not answer within {self.timeout:g} s "
                f"(connect: {self.connect_timeout:g} s) after {tries}. Is it overloaded or "
                f"still loading the model? Raise timeout=... for slow servers.",
            )
        elif failure.kind == "rate_limit":
            if waited_too_long:
                reason = (
                    f"it asked to wait {failure.retry_after:g} s, more than "
                    f"max_retry_wait={self.max_retry_wait:g} s"
                )
            else:
                reason = f"still rate limited after {tries}"
            error, message = (
                LLMRateLimitError,
                f"The LLM server at {where} answered HTTP 429 (rate limited): {reason}. "
                f"Server said: {failure.detail}. Lower the request rate (rate_limit=...) or "
                f"allow more retries (max_retries=...).",
            )
        elif failure.kind == "stream_error":
            message = (
                f"The LLM server at {where} reported an error instead of a reply: {failure.detail}."
            )
        elif failure.kind == "unreadable":
            message = (
                f"The LLM server at {where} sent a reply that is not a chat completion "
                f"stream: {failure.detail}. Is base_url an OpenAI-compatible endpoint "
                f"(usually ending in /v1)?"
            )
        else:
            retried = f" after {tries}" if failure.retryable else ""
            message = (
                f"The LLM server at {where} answered HTTP {status}{retried}: {failure.detail}."
                f"{_hint(status)}"
            )
        return error(message, model=self.model, status=status)

    def _broken(self, failure: _Failure, text: str, chunks: int) -> LLMError:
        """The error for a reply that failed after part of it was yielded."""
        what = (
            f"The reply from the LLM server at {self.base_url} (model {self.model!r}) broke off "
            f"after {len(text)} characters in {chunks} chunk{'s' if chunks != 1 else ''} "
            f"had arrived: {failure.detail}. A reply that has started is not retried"
        )
        if failure.kind in ("connection", "timeout"):
            return LLMConnectionError(what + "; try the call again.", model=self.model)
        return LLMResponseError(what + ".", model=self.model, status=failure.status)

    def _cause(self, exc: Exception) -> Exception | None:
        """The exception to chain: the original, unless its text shows the API key."""
        key = self._api_key.value
        leaky = len(key) >= 4 and (key in str(exc) or key in str(getattr(exc, "body", "")))
        return None if leaky else exc

    def _log(self, event: str, **fields: Any) -> None:
        """A debug line, only when the application configured structlog."""
        if structlog.is_configured():
            _logger.debug(event, model=self.model, base_url=self.base_url, **fields)


# -- helpers ---------------------------------------------------------------------------------


def _default_backoff() -> Backoff:
    """0.5 s doubling to 30 s with jitter: the scheduler's default, shared for consistency."""
    return Backoff()


def _response_format(schema: Mapping[str, Any]) -> dict[str, Any]:
    """The ``response_format`` asking for JSON that matches ``schema``."""
    title = schema.get("title")
    name = re.sub(r"[^A-Za-z0-9_-]", "_", title)[:64] if isinstance(title, str) else ""
    return {
        "type": "json_schema",
        "json_schema": {"name": name or "response", "schema": dict(schema), "strict": True},
    }


def _read_chunk(event: Any) -> tuple[str, str | None, Usage | None]:
    """Text, finish reason and usage of one streamed chunk."""
    try:
        text, finish = "", None
        for choice in event.choices or ():
            delta = choice.delta
            content = getattr(delta, "content", None) if delta is not None else None
            if isinstance(content, str):
                text += content
            finish = choice.finish_reason or finish
        reported = getattr(event, "usage", None)
    except (AttributeError, TypeError) as exc:
        raise _Unreadable(f"a chunk without choices: {event!r:.200}") from exc
    if reported is None:
        return text, finish, None
    details = getattr(reported, "prompt_tokens_details", None)
    cached = getattr(details, "cached_tokens", None) if details is not None else None
    usage = Usage(
        prompt_tokens=int(getattr(reported, "prompt_tokens", 0) or 0),
        completion_tokens=int(getattr(reported, "completion_tokens", 0) or 0),
        cached_tokens=int(cached or 0),
        calls=1,
    )
    return text, finish, usage


def _server_message(exc: openai.APIStatusError) -> str:
    """The error message the server sent, or its body, shortened."""
    body = exc.body
    if isinstance(body, Mapping):
        message = body.get("message") or body.get("error") or body
    else:
        message = body or exc.message
    text = str(message).strip() or "(empty body)"
    return text if len(text) <= 500 else text[:500] + "..."


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds the server asked to wait: ``retry-after-ms``, or ``Retry-After`` in seconds or
    as an HTTP date; None when it did not ask or the value is unreadable."""
    milliseconds = headers.get("retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _hint(status: int | None) -> str:
    """What to check for an error status."""
    if status in (401, 403):
        return " Check the API key (api_key=... or OPENAI_API_KEY) and its permissions."
    if status == 404:
        return (
            " Check the model name and that base_url is the API root, usually ending in /v1 "
            "(e.g. http://localhost:8000/v1)."
        )
    if status in (400, 422):
        return " The server rejected the request: check the options it supports."
    return ""
