"""Process-local copies of hot Redis values, kept exact by Redis's own invalidations.

Redis server-assisted client-side caching: one dedicated connection per server (per
primary on Cluster) asks for ``CLIENT TRACKING ON REDIRECT <itself> BCAST PREFIX ...`` and
subscribes to ``__redis__:invalidate``. From then on Redis sends it the name of every key
under those prefixes that anyone changes, deletes, or that expires or is evicted, and a nil
message when a database is flushed. The connection speaks RESP2 whatever the client's
protocol, so the messages arrive as plain pub/sub arrays through redis-py's public API.

What keeps a copy exact:

* A copy is only served while every invalidation connection is subscribed and its
  heartbeat is on time: a PING sent on it every ``heartbeat`` seconds whose PONG, which
  Redis queues behind every invalidation sent before it, has come back. A PONG that is
  late by ``3 x heartbeat``, a closed connection (a restart, CLIENT KILL) or a changed set
  of Cluster primaries flushes every copy and bypasses them until a new connection is
  subscribed; it reconnects in the background with backoff.
* A value read from Redis is kept only if nothing that could have changed it arrived
  between sending the read and keeping the answer: no invalidation of its key, no flush,
  no reconnection (the event log below). The reply and the invalidation travel on
  different sockets, so either may arrive first.
* The process's own writes evict the key before and after the write.
* A copy never outlives the key's TTL in Redis: misses are read with their PTTL, and the
  copy's deadline is the time the read was sent plus that PTTL (monotonic clock).
* Absent keys are not kept; at most ``max_entries`` copies, the oldest dropped first.

A hit costs a dict lookup and a clock read: no task, no future, no Redis command.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.connection import AbstractConnection
from redis.exceptions import ConnectionError as RedisConnectionError

logger = logging.getLogger(__name__)

CHANNEL = "__redis__:invalidate"
# How many invalidations are remembered for reads in flight; a read that outlived more
# of them is simply not kept (it still answers its caller).
_LOG_SIZE = 4096
_BACKOFF_FIRST = 0.05
_BACKOFF_CAP = 2.0
_STABLE = 10.0  # seconds up after which a loss starts the backoff afresh
_PING = b"*1\r\n$4\r\nPING\r\n"

# What fill() needs of a read: the epoch and event count when it was sent, and the time.
Token = tuple[int, int, float]


class _Lost(Exception):
    """An invalidation connection can no longer be trusted (the reason is the message)."""


@dataclass(eq=False)
class _Link:
    """One subscribed invalidation connection and its heartbeat."""

    connection: AbstractConnection
    pings: deque[float] = field(default_factory=deque)  # send times of unanswered PINGs
    answered: float = 0.0  # send time of the last answered PING


def _describe(exc: BaseException) -> str:
    """For logs: what failed, never a key, a host or a password."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]  # the task group's: the first failure is the cause
    if isinstance(exc, _Lost):
        return str(exc)
    return type(exc).__name__


def _plain_prefixes(prefixes: Iterable[str]) -> tuple[str, ...]:
    """The prefixes without any that another one already covers (Redis refuses
    overlapping BCAST prefixes on one connection)."""
    chosen: list[str] = []
    for prefix in sorted(set(prefixes), key=len):
        if not prefix:
            raise ValueError("a tracked prefix must not be empty")
        if not any(prefix.startswith(other) for other in chosen):
            chosen.append(prefix)
    if not chosen:
        raise ValueError("LocalCopies needs at least one prefix")
    return tuple(chosen)


class LocalCopies:
    """Copies of the values of ``client``'s keys that start with one of ``prefixes``.

    Started lazily, in the running event loop, by the first read; :meth:`aclose` stops it.
    Used by :class:`~bastion.stores.redis.RedisStore` (``local=``): :meth:`get` on a hit,
    :meth:`begin` / :meth:`fill` around a read from Redis, :meth:`evict` around a write.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        prefixes: Iterable[str],
        *,
        max_entries: int = 10_000,
        heartbeat: float = 0.5,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        if not (heartbeat > 0 and math.isfinite(heartbeat)):
            raise ValueError("heartbeat must be a positive number of seconds")
        self._client = client
        self.prefixes = _plain_prefixes(prefixes)
        self._max_entries = max_entries
        self._heartbeat = heartbeat
        self._grace = 3 * heartbeat
        self._copies: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        # Hits are served only before this monotonic time: the send time of the oldest
        # link's last answered PING plus the grace. 0 while not subscribed.
        self._fresh_until = 0.0
        self._live = False
        self._epoch = 0  # bumped whenever the connections go down or come up
        self._events = 0  # invalidations and evictions so far
        self._log: deque[str | None] = deque(maxlen=_LOG_SIZE)  # their keys; None: flush
        self._links: list[_Link] = []
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False
        self._primaries: set[str] = set()  # Cluster: the primaries subscribed to
        self._quiet = False  # a failure was logged; repeat ones go to debug until up again

    def __repr__(self) -> str:
        return f"LocalCopies(entries={len(self._copies)}, live={self.live})"

    @property
    def live(self) -> bool:
        """True while copies may be served: subscribed, with an on-time heartbeat."""
        return self._live and time.monotonic() < self._fresh_until

    async def wait_live(self, within: float) -> bool:
        """Start if needed and wait up to ``within`` seconds for copies to be usable;
        True when they are (tests and warm-up; reads never need to wait)."""
        deadline = time.monotonic() + within
        self.begin()
        while not self.live:
            if self._closed or time.monotonic() >= deadline:
                return False
            await asyncio.sleep(0.005)
        return True

    def __len__(self) -> int:
        return len(self._copies)

    def covers(self, key: str) -> bool:
        return key.startswith(self.prefixes)

    # -- the read and write paths (no await: nothing here can interleave) -----------------

    def get(self, key: str) -> bytes | None:
        """The local copy of ``key``, or None when Redis must be asked."""
        entry = self._copies.get(key)
        if entry is None:
            return None
        now = time.monotonic()
        if now < entry[1] and now < self._fresh_until:
            return entry[0]
        if now >= entry[1]:
            del self._copies[key]
        return None

    def begin(self) -> Token | None:
        """Call just before sending a read whose answer may be kept; None when it may not
        (not subscribed). Starts the background task on first use."""
        if self._loop is not asyncio.get_running_loop():
            self._start()
        if not self._live:
            return None
        return (self._epoch, self._events, time.monotonic())

    def fill(
        self,
        token: Token | None,
        keys: Sequence[str],
        values: Sequence[bytes | None],
        pttls: Sequence[int],
    ) -> None:
        """Keep what a read begun with ``token`` found, unless something that could have
        changed a key arrived since: an invalidation or eviction of it, a flush, a lost
        connection. ``pttls`` are Redis's PTTL answers read with the values."""
        if token is None or self._closed:
            return
        epoch, start, sent = token
        if epoch != self._epoch or not self._live:
            return
        since = self._events - start
        if since > len(self._log):
            return  # the log no longer reaches back to the read: keep nothing
        changed = set(islice(reversed(self._log), since)) if since else set()
        if None in changed:
            return
        copies = self._copies
        for key, value, pttl in zip(keys, values, pttls, strict=True):
            if value is None or key in changed:
                continue
            if pttl == -1:
                deadline = math.inf
            elif pttl > 0:
                deadline = sent + pttl / 1000
            else:
                continue  # gone, or about to be
            copies.pop(key, None)  # a re-read counts as the newest
            copies[key] = (value, deadline)
        while len(copies) > self._max_entries:
            copies.popitem(last=False)

    def evict(self, key: str) -> None:
        """Forget ``key`` (if covered) and spoil any read of it in flight; writes call it
        before and after sending, so this process never reads back its old value."""
        if key.startswith(self.prefixes):
            self._copies.pop(key, None)
            self._note(key)

    def flush(self) -> None:
        """Forget every copy and spoil every read in flight."""
        self._copies.clear()
        self._note(None)

    def _note(self, key: str | None) -> None:
        self._log.append(key)
        self._events += 1

    def _down(self) -> None:
        self._live = False
        self._fresh_until = 0.0
        self._epoch += 1
        self.flush()

    def _invalidated(self, payload: object) -> None:
        if payload is None:  # FLUSHALL / FLUSHDB
            self.flush()
            return
        if not isinstance(payload, list):
            raise _Lost("an invalidation message of an unknown shape")
        for raw in payload:
            key = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            self._copies.pop(key, None)
            self._note(key)

    # -- the background task --------------------------------------------------------------

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._closed:
            self._loop = loop  # never start again; begin() keeps answering None
            return
        # A new event loop (tests run one per test): whatever ran in the old one is gone.
        self._down()
        self._links = []
        self._loop = loop
        self._task = loop.create_task(self._run(), name="bastion-redis-local-copies")

    async def aclose(self) -> None:
        """Stop the background task and close its connections. Safe to call twice."""
        self._closed = True
        self._down()
        task, self._task = self._task, None
        if task is not None and not task.done():
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if task.get_loop() is running:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self._close_links()

    async def _run(self) -> None:
        delay = _BACKOFF_FIRST
        while not self._closed:
            up_at: float | None = None
            try:
                # A server that accepts but never answers must not hold the retries up.
                async with asyncio.timeout(max(2.0, 4 * self._grace)):
                    await self._subscribe()
                up_at = time.monotonic()
                if self._quiet:
                    logger.info("Redis local copies: invalidations back, copies in use again")
                await self._watch()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never raise from here: bypass and retry
                self._down()
                if up_at is not None and time.monotonic() - up_at > _STABLE:
                    # A loss after a good while: retry at once and say so. A connection
                    # that keeps failing right after subscribing keeps backing off, quietly.
                    delay, self._quiet = _BACKOFF_FIRST, False
                log = logger.debug if self._quiet else logger.warning
                log(
                    "Redis local copies bypassed: invalidation connection lost or refused "
                    "(%s); retrying in %.2f s",
                    _describe(exc),
                    delay,
                )
                self._quiet = True
            finally:
                self._down()
                await self._close_links()
            await asyncio.sleep(delay)
            delay = min(delay * 2, _BACKOFF_CAP)

    async def _subscribe(self) -> None:
        connections = await self._connect_all()
        self._links = [_Link(c) for c in connections]
        await asyncio.gather(*(self._track(link.connection) for link in self._links))
        # Every write from now on reaches us, and nothing was kept before: go live after
        # one heartbeat round trip on every link.
        now = time.monotonic()
        for link in self._links:
            await self._ping(link, now)
        for link in self._links:
            await self._read_until_pong(link)
        self._epoch += 1
        self._live = True
        self._refresh()

    async def _connect_all(self) -> list[AbstractConnection]:
        client = self._client
        # The invalidation connection speaks RESP2 (messages arrive as pub/sub arrays)
        # and never checks its own health: its heartbeat does, and a silent reconnection
        # would lose the tracking state.
        if isinstance(client, RedisCluster):
            await client.initialize()
            nodes = client.get_primaries()
            if not nodes:
                raise _Lost("no Cluster primaries known")
            self._primaries = {node.name for node in nodes}
            made: list[AbstractConnection] = [
                node.connection_class(
                    **{**node.connection_kwargs, "protocol": 2, "health_check_interval": 0}
                )
                for node in nodes
            ]
        else:
            pool = client.connection_pool
            made = [
                pool.connection_class(
                    **{**pool.connection_kwargs, "protocol": 2, "health_check_interval": 0}
                )
            ]
        connections: list[AbstractConnection] = []
        try:
            for connection in made:
                await connection.connect()  # type: ignore[no-untyped-call]
                connections.append(connection)
        except BaseException:
            for connection in connections:
                await connection.disconnect(nowait=True)
            raise
        return connections

    async def _command(self, connection: AbstractConnection, *args: Any) -> Any:
        await connection.send_command(*args, check_health=False)
        return await connection.read_response(timeout=self._grace, disconnect_on_error=False)

    async def _track(self, connection: AbstractConnection) -> None:
        own_id = await self._command(connection, "CLIENT", "ID")
        bcast = [part for prefix in self.prefixes for part in ("PREFIX", prefix)]
        await self._command(
            connection, "CLIENT", "TRACKING", "ON", "REDIRECT", own_id, "BCAST", *bcast
        )
        reply = await self._command(connection, "SUBSCRIBE", CHANNEL)
        if not (isinstance(reply, list) and reply[:1] == [b"subscribe"]):
            raise _Lost("SUBSCRIBE was not confirmed")

    async def _ping(self, link: _Link, now: float) -> None:
        connection = link.connection
        if not connection.is_connected:
            # send_command would silently reconnect, without tracking.
            raise _Lost("the invalidation connection closed")
        link.pings.append(now)
        await connection.send_packed_command(_PING, check_health=False)

    async def _read_until_pong(self, link: _Link) -> None:
        while link.pings:
            await self._read_one(link, self._grace)

    async def _read_one(self, link: _Link, wait: float) -> None:
        reply = await link.connection.read_response(timeout=wait, disconnect_on_error=False)
        if reply is None:
            raise _Lost("heartbeat late")
        if not isinstance(reply, list) or not reply:
            raise _Lost("an unexpected reply on the invalidation connection")
        kind = reply[0]
        if kind == b"message" and len(reply) == 3 and reply[1] == CHANNEL.encode():
            self._invalidated(reply[2])
        elif kind == b"pong":
            if not link.pings:
                raise _Lost("a PONG without a PING")
            link.answered = link.pings.popleft()
            self._refresh()
        # anything else (a subscribe confirmation) carries nothing

    def _refresh(self) -> None:
        if self._live:
            self._fresh_until = min(link.answered for link in self._links) + self._grace

    async def _watch(self) -> None:
        """Read every link and send the heartbeats until something fails."""
        async with asyncio.TaskGroup() as group:
            for link in self._links:
                group.create_task(self._read_forever(link))
            group.create_task(self._beat())

    async def _read_forever(self, link: _Link) -> None:
        try:
            while True:
                await self._read_one(link, math.inf)
        finally:
            # At once, in the step that saw the failure: the task group and _run take a
            # few more loop turns, during which a read must not be served a copy.
            self._down()

    async def _beat(self) -> None:
        try:
            await self._beat_forever()
        finally:
            self._down()

    async def _beat_forever(self) -> None:
        while True:
            await asyncio.sleep(self._heartbeat)
            now = time.monotonic()
            for link in self._links:
                if link.pings and now - link.pings[0] > self._grace:
                    raise _Lost("heartbeat late")
                await self._ping(link, now)
            if isinstance(self._client, RedisCluster):
                primaries = {node.name for node in self._client.get_primaries()}
                if primaries != self._primaries:
                    raise _Lost("the Cluster primaries changed")

    async def _close_links(self) -> None:
        links, self._links = self._links, []
        for link in links:
            with contextlib.suppress(OSError, RedisConnectionError, TimeoutError, RuntimeError):
                await link.connection.disconnect(nowait=True)
