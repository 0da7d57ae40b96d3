"""A private, restartable ``redis-server`` for tests that stop or restart Redis.

The shared server (127.0.0.1:6379) serves every test running in parallel, so no test may
stop it. :func:`redis_server` starts one of its own on a free loopback port (no
persistence, its files in a temporary folder), waits until it answers PING and yields a
:class:`RedisServer` whose :meth:`~RedisServer.stop`, :meth:`~RedisServer.start` and
:meth:`~RedisServer.restart` keep the same port, so clients configured with its
:attr:`~RedisServer.url` reconnect to the new process. On exit, or if anything fails on
the way, the process is killed.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.live import free_port

START_TIMEOUT = 15.0
ATTEMPTS = 3  # a free port can be taken by someone else between choosing and binding it


class RedisStartError(RuntimeError):
    """The server could not be started; the message carries the tail of its log."""


@dataclass
class RedisServer:
    """One ``redis-server`` process on a fixed port; ``None`` while stopped."""

    folder: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def log(self) -> Path:
        return self.folder / f"redis-{self.port}.log"

    def client(self) -> redis.Redis:
        """A new synchronous client (close it): one-second timeouts, so a test asking a
        stopped server fails at once instead of hanging."""
        return redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self) -> None:
        """Start the server on :attr:`port` and return once it answers PING."""
        if self.running():
            raise RuntimeError("the Redis server is already running")
        command = [
            "redis-server",
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.folder),
            "--logfile", str(self.log),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + START_TIMEOUT
        while not self._answers():
            if not self.running():
                raise self._error("redis-server exited")
            if time.monotonic() > deadline:
                raise self._error(f"redis-server did not answer PING within {START_TIMEOUT:g} s")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server and return once the process has exited (its connections with it)."""
        if self.process is None:
            return
        process, self.process = self.process, None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def restart(self) -> None:
        """A new, empty server on the same port: every key and connection is gone."""
        self.stop()
        self.start()

    def _answers(self) -> bool:
        client = self.client()
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def _error(self, message: str) -> RedisStartError:
        try:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-5:])
        except OSError:
            tail = "(no log)"
        return RedisStartError(f"{message} (port {self.port})\n{tail}")


def redis_server_missing() -> str | None:
    """Why a private server cannot be started here (a missing program), or None."""
    return None if shutil.which("redis-server") else "redis-server not installed"


@contextmanager
def redis_server(folder: Path) -> Iterator[RedisServer]:
    """A running private Redis server on a free loopback port, killed on exit."""
    folder.mkdir(parents=True, exist_ok=True)
    server = RedisServer(folder, free_port())
    try:
        for attempt in range(1, ATTEMPTS + 1):
            try:
                server.start()
                break
            except RedisStartError:
                # Exited: most likely its port was taken meanwhile; any other cause
                # (still running but silent) is not one a new port would cure.
                if attempt == ATTEMPTS or server.running():
                    raise
                server.stop()
                server.port = free_port()
        yield server
    finally:
        server.stop()
