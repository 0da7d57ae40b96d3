"""The background sender: messages wait here, off the request path, until delivered.

One task per outbox (one outbox per process) starts on the running event loop at the first
message. It hands each message to the backend, a few at a time; a failed attempt is tried
again after a growing delay, up to a limit, then given up with an ERROR. The queue is
bounded: when it is full a new message is refused (and logged), never stored without end.

Logs (logger ``bastion.mail``) name a message by its Message-ID and the recipient by the
domain of the address only: the address is personal data, and the body holds links that
sign people in.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from dataclasses import dataclass
from email.message import EmailMessage

from bastion.mail.backends import Backend, DeliveryFailed

log = logging.getLogger("bastion.mail")


@dataclass
class MailStats:
    """What happened to the messages of this process since it started."""

    queued: int = 0  # accepted for delivery
    sent: int = 0  # handed to the backend
    retried: int = 0  # failed attempts followed by another one
    failed: int = 0  # given up: refused for good by the server, or every attempt failed
    dropped: int = 0  # refused at the door: the queue was full, or the mailer closed

    @property
    def pending(self) -> int:
        """Accepted and not yet sent or given up (waiting, being delivered, or waiting for
        another attempt); after :meth:`Outbox.aclose`, the messages left undelivered."""
        return self.queued - self.sent - self.failed


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """``attempts`` in all; the n-th retry waits ``first_delay * factor ** (n - 1)`` seconds
    (and up to a quarter more, so processes sharing a server do not retry in step). The
    default tries 5 times over about 4 to 5 minutes."""

    attempts: int = 5
    first_delay: float = 15.0
    factor: float = 2.0

    def delay(self, failures: int) -> float:
        jitter = 1 + random.random() / 4  # noqa: S311 - spreading load, not a secret
        return self.first_delay * self.factor ** (failures - 1) * jitter


@dataclass(eq=False)
class _Envelope:
    mail: EmailMessage
    domain: str  # of the recipient: all the logs say about them
    failures: int = 0

    @property
    def ident(self) -> str:
        return str(self.mail["Message-ID"])


class Outbox:
    def __init__(
        self, backend: Backend, *, retry: RetryPolicy, capacity: int, concurrency: int
    ) -> None:
        self.backend = backend
        self.retry = retry
        self.capacity = capacity
        self.concurrency = concurrency
        self.stats = MailStats()
        self._ready: deque[_Envelope] = deque()
        self._waiting: dict[_Envelope, asyncio.TimerHandle] = {}
        self._in_flight: set[asyncio.Task[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task[None] | None = None
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._slots = asyncio.Semaphore(concurrency)
        self._closed = False

    def submit(self, mail: EmailMessage, domain: str) -> bool:
        """Queue ``mail`` for delivery; False (logged, counted as dropped) when refused."""
        envelope = _Envelope(mail, domain)
        if self._closed or self.stats.pending >= self.capacity:
            why = "the mailer is closed" if self._closed else f"{self.capacity} are waiting"
            self.stats.dropped += 1
            log.error("mail %s to a recipient at %s refused: %s", envelope.ident, domain, why)
            return False
        self._start()
        self.stats.queued += 1
        self._ready.append(envelope)
        self._idle.clear()
        self._wakeup.set()
        return True

    async def wait_idle(self, timeout: float) -> bool:  # noqa: ASYNC109 - returns at the bound
        """Wait up to ``timeout`` seconds until nothing is pending; whether that happened."""
        if self.stats.pending == 0:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True

    async def aclose(self, timeout: float) -> None:  # noqa: ASYNC109 - logs at the bound
        """Refuse new messages, give each waiting one its last attempt now, wait for them
        up to ``timeout`` seconds, then stop; what is left undelivered is logged."""
        self._closed = True
        if self._worker is None or self._loop is not asyncio.get_running_loop():
            return
        for envelope, timer in self._waiting.items():
            timer.cancel()
            self._ready.append(envelope)
        self._waiting.clear()
        self._wakeup.set()
        await self.wait_idle(timeout)
        tasks = [self._worker, *self._in_flight]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._worker = None
        if self.stats.pending:
            log.error(
                "mail: %d message(s) left undelivered when the mailer closed",
                self.stats.pending,
            )

    def _start(self) -> None:
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        if self._loop is not None and not self._loop.is_closed():
            raise RuntimeError("a Mailer delivers on the one event loop it started on")
        # First use (or the loop it ran on is gone): fresh primitives on this loop.
        self._loop = loop
        self._wakeup = asyncio.Event()
        self._idle = asyncio.Event()
        self._slots = asyncio.Semaphore(self.concurrency)
        self._ready.extend(self._waiting)
        self._waiting.clear()
        self._in_flight.clear()
        self._worker = loop.create_task(self._run(), name="bastion-mail")

    async def _run(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._ready:
                await self._slots.acquire()
                task = asyncio.create_task(self._attempt(self._ready.popleft()))
                self._in_flight.add(task)
                task.add_done_callback(self._in_flight.discard)

    async def _attempt(self, envelope: _Envelope) -> None:
        try:
            await self.backend.deliver(envelope.mail)
        except Exception as error:
            self._attempt_failed(envelope, error)
        else:
            self.stats.sent += 1
            log.info("mail %s to a recipient at %s delivered", envelope.ident, envelope.domain)
        finally:
            self._slots.release()
            if self.stats.pending == 0:
                self._idle.set()

    def _attempt_failed(self, envelope: _Envelope, error: Exception) -> None:
        failure = (
            error
            if isinstance(error, DeliveryFailed)
            else DeliveryFailed(
                f"unexpected {type(error).__name__} in the {self.backend.name} backend"
            )
        )
        envelope.failures += 1
        if failure.permanent or envelope.failures >= self.retry.attempts or self._closed:
            self.stats.failed += 1
            log.error(
                "gave up on mail %s to a recipient at %s after %d attempt(s): %s",
                envelope.ident,
                envelope.domain,
                envelope.failures,
                failure.reason,
            )
            return
        delay = self.retry.delay(envelope.failures)
        self.stats.retried += 1
        log.warning(
            "mail %s to a recipient at %s not delivered (attempt %d of %d): %s; "
            "next attempt in %.0f s",
            envelope.ident,
            envelope.domain,
            envelope.failures,
            self.retry.attempts,
            failure.reason,
            delay,
        )
        assert self._loop is not None
        self._waiting[envelope] = self._loop.call_later(delay, self._due, envelope)

    def _due(self, envelope: _Envelope) -> None:
        if self._waiting.pop(envelope, None) is not None:
            self._ready.append(envelope)
            self._wakeup.set()


__all__ = ["MailStats", "Outbox", "RetryPolicy"]
