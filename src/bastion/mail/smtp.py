"""The ``smtp`` backend: each message on a connection of its own (aiosmtplib).

One connection per message, no pool: Bastion's mail (reset links, confirmations) comes a
few messages a minute at most, so a TLS handshake per message costs nothing that matters,
while a pooled connection would go stale between messages (servers drop idle clients after
a minute or so) and need probing and reconnecting. A failure then concerns one message only.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Literal

import aiosmtplib

from bastion.mail.backends import DeliveryFailed

Security = Literal["starttls", "tls", "none"]
# Every SMTP step (connect, greeting, STARTTLS, AUTH, each command) has the configured
# timeout; the whole delivery at most this many times it, so a server that trickles its
# answers cannot hold a delivery slot for long either.
STEPS_PER_DELIVERY = 4


@dataclass(frozen=True, slots=True)
class SMTPConfig:
    host: str
    port: int
    security: Security
    timeout: float
    username: str = ""
    password: str = ""
    ca_file: Path | None = None

    def __repr__(self) -> str:  # never the password
        return f"SMTPConfig({self.host}:{self.port}, {self.security})"


class SMTPBackend:
    """Deliver to an SMTP server: STARTTLS (required, never skipped when the server does not
    offer it), implicit TLS, or none (a relay on this machine). The certificate is verified
    against the system's authorities, or ``ca_file``; AUTH when a user name is set."""

    name = "smtp"

    def __init__(self, config: SMTPConfig) -> None:
        self.config = config
        self._tls = _tls_context(config.ca_file) if config.security != "none" else None
        self._local_hostname: str | None = None

    async def deliver(self, mail: EmailMessage) -> None:
        config = self.config
        if self._local_hostname is None:
            # The EHLO name; looked up once (a DNS lookup, off the event loop).
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        client = aiosmtplib.SMTP(
            hostname=config.host,
            port=config.port,
            local_hostname=self._local_hostname,
            use_tls=config.security == "tls",
            start_tls=config.security == "starttls",
            tls_context=self._tls,
            timeout=config.timeout,
            username=config.username or None,
            password=config.password if config.username else None,
        )
        try:
            async with asyncio.timeout(config.timeout * STEPS_PER_DELIVERY):
                async with client:
                    await client.send_message(mail)
        except Exception as error:
            raise as_delivery_failure(error, config) from error

    def describe(self) -> str:
        config = self.config
        over = {"starttls": "STARTTLS", "tls": "TLS", "none": "plain text"}[config.security]
        return f"sent to {config.host}:{config.port} over {over} (smtp backend)"


def _tls_context(ca_file: Path | None) -> ssl.SSLContext:
    # Certificate and host name checked, as for any client; ca_file for a private authority.
    return ssl.create_default_context(cafile=str(ca_file) if ca_file else None)


def as_delivery_failure(error: BaseException, config: SMTPConfig) -> DeliveryFailed:
    """``error`` in one line without the recipient's address: the server's words (which
    often quote the address) go to ``detail`` only. 5xx answers are permanent."""
    server = f"{config.host}:{config.port}"
    for cause in _causes(error):
        if isinstance(cause, ssl.SSLCertVerificationError):
            return DeliveryFailed(
                f"TLS with {server} failed: {cause.verify_message or 'certificate not trusted'}"
            )
        if isinstance(cause, ssl.SSLError):
            return DeliveryFailed(f"TLS with {server} failed: {cause.reason or 'handshake'}")
    if isinstance(error, aiosmtplib.SMTPRecipientsRefused):
        codes = [refused.code for refused in error.recipients]
        return DeliveryFailed(
            f"{server} refused the recipient ({', '.join(map(str, codes))})",
            permanent=all(_permanent(code) for code in codes),
            detail="; ".join(refused.message for refused in error.recipients),
        )
    if isinstance(error, aiosmtplib.SMTPAuthenticationError):
        return DeliveryFailed(
            f"{server} refused the user name or password ({error.code})",
            permanent=_permanent(error.code),
            detail=error.message,
        )
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return DeliveryFailed(
            f"{server} answered {error.code}",
            permanent=_permanent(error.code),
            detail=error.message,
        )
    if isinstance(error, TimeoutError):  # aiosmtplib's timeouts are TimeoutErrors too
        return DeliveryFailed(f"{server} did not answer in time")
    if isinstance(error, aiosmtplib.SMTPConnectError):
        return DeliveryFailed(f"cannot connect to {server}", detail=str(error))
    if isinstance(error, aiosmtplib.SMTPNotSupported):
        # A non-ASCII local part and a server without SMTPUTF8: it will never take it.
        return DeliveryFailed(f"{server}: {error}", permanent=True)
    if isinstance(error, aiosmtplib.SMTPServerDisconnected):
        return DeliveryFailed(f"{server} closed the connection")
    if isinstance(error, aiosmtplib.SMTPException):
        # Such as "STARTTLS extension not supported by server": words of aiosmtplib's, not
        # of the server, and never an address.
        return DeliveryFailed(f"{server}: {error}")
    return DeliveryFailed(f"{server}: unexpected {type(error).__name__}")


def _permanent(code: int) -> bool:
    return 500 <= code < 600


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and what caused it (aiosmtplib wraps an ssl error in its own)."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in seen:
        seen.append(current)
        yield current
        current = current.__cause__ or current.__context__


__all__ = ["STEPS_PER_DELIVERY", "SMTPBackend", "SMTPConfig", "Security", "as_delivery_failure"]
