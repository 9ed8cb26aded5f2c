"""A throwaway redis-server on a free loopback port, for the benchmarks and the tests.

:func:`redis_server` starts one (``--save ""``, no persistence), waits until it answers and
yields its URL and process; at the end it is stopped, thawed first if a test froze it.
Callers decide what a machine without ``redis-server`` means (:data:`BINARY` is None there):
a skipped test, a benchmark row left out.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator

#: Where ``redis-server`` is, or None when it is not installed (``apt-get install redis-server``).
BINARY = shutil.which("redis-server")


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Start redis-server on a free loopback port; yield its URL and its process.

    Raises:
        RuntimeError: redis-server is not installed, or did not answer within 10 s.
    """
    if BINARY is None:
        raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
    import redis

    port = free_port()
    process = subprocess.Popen(
        [BINARY, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        client = redis.Redis(port=port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("redis-server did not start") from None
                time.sleep(0.02)
        client.close()
        yield f"redis://127.0.0.1:{port}/0", process
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGCONT)  # (a test may have frozen it)
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
