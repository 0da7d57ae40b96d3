"""Backends the fault tests can break: a private redis-server and a TCP proxy.

Nothing here touches the shared servers. :class:`RedisServer` runs its own ``redis-server``
on a free loopback port (append-only file in a temporary folder, so a restart keeps the
data); :class:`TcpProxy` forwards a free loopback port to PostgreSQL and can be cut (the
port refuses, open connections are reset) or silenced (connections stay open, nothing moves)
and restored, which makes "the database is unreachable" without stopping the real server.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

from tests.live import free_port

START_TIMEOUT = 10.0


def _redis_answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A ``redis-server`` of the test's own; :meth:`close` always kills it. ``persistent``:
    keep an append-only file, so a restart finds the data again."""

    def __init__(self, folder: Path, *, persistent: bool = True) -> None:
        self.folder = folder
        self.persistent = persistent
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._log = folder / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart, on the same port and data folder) and wait until it answers."""
        assert self.process is None, "already running"
        command = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes" if self.persistent else "no",
            # A SIGKILL must not lose the sessions written just before it.
            *(["--appendfsync", "always"] if self.persistent else []),
            "--dir",
            str(self.folder),
            "--logfile",
            str(self._log),
        ]
        self.process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT
        while not _redis_answers(self.port):
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not answer within {START_TIMEOUT:g} s")
            time.sleep(0.05)

    def pause(self) -> None:
        """SIGSTOP: the port still accepts connections, but nothing is ever answered."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL, as in a crash: the port refuses connections until :meth:`start`."""
        if self.process is None:
            return
        self.process.send_signal(signal.SIGCONT)  # a stopped process still dies, but be sure
        self.process.kill()
        self.process.wait(timeout=10)
        self.process = None

    def close(self) -> None:
        self.kill()


@contextlib.contextmanager
def redis_server(folder: Path, *, persistent: bool = True) -> Iterator[RedisServer]:
    """A running private redis-server, killed on exit whatever happened."""
    if shutil.which("redis-server") is None:
        raise FileNotFoundError("redis-server")
    folder.mkdir(parents=True, exist_ok=True)
    server = RedisServer(folder, persistent=persistent)
    try:
        server.start()
        yield server
    finally:
        server.close()


class TcpProxy:
    """Forwards ``127.0.0.1:<port>`` to ``upstream``, from an event loop in its own thread.

    * :meth:`cut`: the listener closes and every connection is reset: connects are refused.
    * :meth:`silence`: connections are accepted and kept, but no byte moves either way and
      no new upstream connection is made: every call hangs until the caller's timeout.
    * :meth:`restore`: back to forwarding (after :meth:`cut`, on the same port; after
      :meth:`silence`, held bytes then flow as after a healed network partition).
    """

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._flowing: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[Any]] = set()

    # -- control, from the test's thread ------------------------------------------------

    def start(self) -> None:
        self._thread.start()
        self._call(self._init())
        self._call(self._listen())

    def cut(self) -> None:
        self._call(self._cut())

    def silence(self) -> None:
        self._call(self._set_flowing(False))

    def restore(self) -> None:
        self._call(self._restore())

    def close(self) -> None:
        if not self._thread.is_alive():
            return
        try:
            self._call(self._cut())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self._loop.close()

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=10)

    # -- inside the proxy's loop ----------------------------------------------------------

    async def _init(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, "127.0.0.1", self.port, reuse_address=True
        )

    async def _set_flowing(self, flowing: bool) -> None:
        assert self._flowing is not None
        if flowing:
            self._flowing.set()
        else:
            self._flowing.clear()

    async def _restore(self) -> None:
        await self._set_flowing(True)
        if self._server is None:
            await self._listen()

    async def _cut(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for writer in list(self._writers):
            writer.transport.abort()  # RST, not a polite FIN: as when a host goes away
        self._writers.clear()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self._set_flowing(True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(client_w)
        upstream_w: asyncio.StreamWriter | None = None
        try:
            await self._flowing.wait()  # while silenced, a new connection is never put through
            upstream_r, upstream_w = await asyncio.open_connection(*self.upstream)
            self._writers.add(upstream_w)
            await asyncio.gather(self._pump(client_r, upstream_w), self._pump(upstream_r, client_w))
        except (OSError, asyncio.CancelledError):
            pass  # cut, reset or refused: this connection is over, and so is this task
        finally:
            for writer in (client_w, upstream_w):
                if writer is not None:
                    writer.transport.abort()
                    self._writers.discard(writer)
            self._tasks.discard(task)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert self._flowing is not None
        try:
            while data := await reader.read(65536):
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
        finally:
            writer.transport.abort()
            self._writers.discard(writer)


@contextlib.contextmanager
def tcp_proxy(upstream_host: str, upstream_port: int) -> Iterator[TcpProxy]:
    """A running proxy to ``upstream``, closed (with all its connections) on exit."""
    proxy = TcpProxy(upstream_host, upstream_port)
    try:
        proxy.start()
        yield proxy
    finally:
        proxy.close()
