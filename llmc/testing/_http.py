"""An HTTP server on loopback for tests and simulations, that leaves nothing running.

:class:`LoopbackServer` listens on a free port and serves each connection from its own
thread; :meth:`~LoopbackServer.close` stops accepting, shuts every open connection (so a
handler blocked on a client returns), closes the socket and joins every thread. Handlers
are :class:`LoopbackHandler` subclasses: HTTP/1.1 with keep-alive, quiet, with helpers for
JSON bodies and chunked streams. :class:`~llmc.testing.ScriptedOpenAIServer` is built on it,
and so is any fake server a test needs::

    class Echo(LoopbackHandler[LoopbackServer]):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"]))
            self.send_json(200, {"echo": body.decode()})

    with LoopbackServer(Echo) as server:
        httpx.post(f"{server.url}/anything", content=b"hi")
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Generic, Self, TypeVar, cast

S = TypeVar("S", bound="LoopbackServer")


class LoopbackServer:
    """An HTTP server on a free loopback port, serving from background threads.

    Use it as a context manager, sync or async (or :meth:`start` and :meth:`close`). The
    handler class answers the requests; it reaches this object as ``self.owner``, so a
    subclass of this class is where a fake server keeps its script and its records.

    Attributes:
        host: the loopback address it listens on.
        errors: exceptions that handlers raised, as text (a client that went away is not
            one: that is normal for a test server). A subclass may add its own.
    """

    def __init__(self, handler: type[LoopbackHandler[Any]], *, host: str = "127.0.0.1") -> None:
        """Configure the server; it starts on entering the context (or :meth:`start`).

        Args:
            handler: the :class:`LoopbackHandler` subclass that answers requests.
            host: the loopback address to listen on.
        """
        self.host = host
        self.errors: list[str] = []
        self._handler = handler
        self._closing = threading.Event()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The port it listens on (it must be started)."""
        if self._httpd is None:
            raise RuntimeError(
                f"the {type(self).__name__} is not running; use it as a context manager"
            )
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """Where it listens, e.g. ``http://127.0.0.1:PORT`` (it must be started)."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether it is started and not closed."""
        return self._httpd is not None

    @property
    def closing(self) -> bool:
        """Whether :meth:`close` has begun (handlers that wait should give up)."""
        return self._closing.is_set()

    def sleep(self, seconds: float) -> bool:
        """Sleep in a handler, waking early when the server closes; True when it is closing."""
        if seconds > 0:
            self._closing.wait(seconds)
        return self._closing.is_set()

    def start(self) -> Self:
        """Listen on a free port and serve from a background thread."""
        if self._httpd is not None:
            raise RuntimeError(f"the {type(self).__name__} is already running")
        self._closing.clear()
        self._httpd = _HTTPServer((self.host, 0), self, self._handler)
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
        self._closing.set()
        httpd.shutdown()
        httpd.drop_connections()
        httpd.server_close()
        httpd.join_threads(timeout=5.0)
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await asyncio.to_thread(self.close)  # joining threads must not block the loop


class LoopbackHandler(BaseHTTPRequestHandler, Generic[S]):
    """The request handler of a :class:`LoopbackServer`: define ``do_GET``, ``do_POST``...

    HTTP/1.1 with keep-alive (so give every reply a length, or stream it chunked with
    :meth:`begin_stream` and :meth:`write_chunk`); nothing is logged to stderr.

    Attributes:
        timeout: seconds an idle keep-alive connection stays open, even if the server is
            never closed.
    """

    protocol_version = "HTTP/1.1"
    timeout = 30
    server: _HTTPServer

    @property
    def owner(self) -> S:
        """The :class:`LoopbackServer` this request came to."""
        return cast(S, self.server.owner)

    def setup(self) -> None:
        super().setup()
        with self.server.lock:
            self.server.connections.add(self.connection)
        if self.server.owner.closing:  # accepted just as the server closed
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def finish(self) -> None:
        with self.server.lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: tests read what the server recorded, not stderr."""

    def send_json(self, status: int, data: Any, headers: dict[str, str] | None = None) -> None:
        """Answer with ``data`` as a JSON body (and any extra ``headers``)."""
        payload = json.dumps(data).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(payload)

    def begin_stream(self, content_type: str = "text/event-stream") -> None:
        """Answer 200 with a chunked body, to be written with :meth:`write_chunk`."""
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def write_chunk(self, data: bytes) -> None:
        """Send one piece of a chunked body at once; an empty one ends the body."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()


class _HTTPServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that knows its owner, its open connections and its threads."""

    def __init__(
        self, address: tuple[str, int], owner: LoopbackServer, handler: type[LoopbackHandler[Any]]
    ) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        # Like ThreadingMixIn's, but daemon threads are tracked too, so close() can join them.
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name="llmc-test-server-request",
            daemon=True,
        )
        with self.lock:
            self.threads = [t for t in self.threads if t.is_alive()]
            self.threads.append(thread)
        thread.start()

    def join_threads(self, timeout: float) -> None:
        """Wait for the request threads to end."""
        with self.lock:
            threads, self.threads = self.threads, []
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def drop_connections(self) -> None:
        """Shut every open connection so that threads waiting on them return."""
        with self.lock:
            connections = list(self.connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away is normal for a test server; anything else is recorded.
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            self.owner.errors.append(f"{type(error).__name__}: {error}")
