"""Reads issued in the same event-loop turn travel to Redis together, as one MGET.

Under load one worker has many requests in flight, and nearly every one starts with the
same kind of read (its session). Through redis-py each read pays a whole round trip of
Python work: a pool checkout, command packing, a send system call, reply parsing; about as
much CPU as the rest of an authenticated request. Coalescing the reads that are ready at the
same moment (what other clients call auto-pipelining) pays that once per batch.

Nothing about the answers changes: a read is sent after it was asked for (at the end of
the current loop turn, never later), a batch is a single MGET that Redis runs atomically,
and a failure or timeout reaches every caller of the batch. Only for a standalone or
Sentinel client: on Cluster the keys of one MGET must share a slot.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, cast

from redis.asyncio import Redis

Fetch = Callable[[list[str]], Awaitable[list[Any]]]


class ReadBatcher:
    """Coalesces concurrent reads on ``client`` into MGETs bounded by ``timeout``.

    With ``fetch``, a batch is one call of ``fetch(keys)`` instead, which answers ``width``
    items per key (the local copies read each value with its PTTL: ``width=2``).
    """

    def __init__(
        self, client: Redis, *, timeout: float, fetch: Fetch | None = None, width: int = 1
    ) -> None:
        self._client = client
        self._timeout = timeout
        self._fetch = fetch
        self._width = width
        self._pending: list[tuple[list[str], asyncio.Future[list[Any]]]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sending: set[asyncio.Task[None]] = set()  # strong references until done

    async def get(self, keys: list[str]) -> list[Any]:
        """The values of ``keys`` (None when absent), read in the next batch; ``width``
        items per key with ``fetch``."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a store used from another event loop (tests)
            self._loop, self._pending = loop, []
        future: asyncio.Future[list[Any]] = loop.create_future()
        self._pending.append((keys, future))
        if len(self._pending) == 1:
            # The task's first step runs once this turn's ready callbacks are done, so it
            # collects every read the other requests of this turn ask for.
            task = loop.create_task(self._send())
            self._sending.add(task)
            task.add_done_callback(self._sending.discard)
        return await future

    async def _send(self) -> None:
        batch, self._pending = self._pending, []
        waiting = [(keys, future) for keys, future in batch if not future.done()]
        if not waiting:
            return  # every caller gave up (timed out or was cancelled) before we ran
        keys = [key for keys, _ in waiting for key in keys]
        try:
            async with asyncio.timeout(self._timeout):
                if self._fetch is None:
                    values = cast(list[Any], await self._client.mget(keys))
                else:
                    values = await self._fetch(keys)
        except asyncio.CancelledError:
            for _, future in waiting:
                future.cancel()
            raise
        except Exception as exc:  # handed to the callers, whose guard translates it
            for _, future in waiting:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for wanted, future in waiting:
            end = start + len(wanted) * self._width
            if not future.done():
                future.set_result(values[start:end])
            start = end
