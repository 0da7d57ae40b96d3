"""Where messages go: the log (``console``), ``.eml`` files (``file``); ``smtp`` is in
:mod:`bastion.mail.smtp`. A backend delivers one message or raises :class:`DeliveryFailed`."""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from pathlib import Path
from typing import Protocol

from bastion.exceptions import BastionError
from bastion.files import PRIVATE_FILE_MODE, make_private_dir
from bastion.mail.message import text_part

log = logging.getLogger("bastion.mail")

OUTBOX_FOLDER = "outbox"


class DeliveryFailed(BastionError):
    """A message was not delivered. ``reason`` is one line fit for the log: it never holds
    the recipient's address or the body. ``permanent`` failures are not retried (the server
    refused the message for good); ``detail`` is the server's own words, for an operator
    who sent the message themselves (``bastion mail test``)."""

    def __init__(self, reason: str, *, permanent: bool = False, detail: str = "") -> None:
        self.reason = reason
        self.permanent = permanent
        self.detail = detail
        super().__init__(reason)


class Backend(Protocol):
    name: str

    async def deliver(self, mail: EmailMessage) -> None:
        """Hand ``mail`` over, or raise :class:`DeliveryFailed`."""

    def describe(self) -> str:
        """Where messages go, in a few words (for the command line)."""


class ConsoleBackend:
    """Development: each message is logged (logger ``bastion.mail``, INFO) with its text,
    links included, so a developer reads the mail in the server's output. Never for
    production: the log then holds working reset links."""

    name = "console"

    async def deliver(self, mail: EmailMessage) -> None:
        log.info(
            "mail (console backend: logged, not sent)\nTo: %s\nSubject: %s\n\n%s",
            mail["To"],
            mail["Subject"],
            text_part(mail),
        )

    def describe(self) -> str:
        return "logged (console backend)"


class FileBackend:
    """One RFC 5322 ``.eml`` file per message in ``folder`` (private: 0700, files 0600).

    Names start with the UTC time to the microsecond, so a listing sorts by time, and end
    with a random part, so two processes never choose the same one. A file appears whole
    (written under a hidden name, then linked into place), so a reader never sees half.
    """

    name = "file"

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def deliver(self, mail: EmailMessage) -> None:
        # CRLF line ends, as the message would travel over SMTP; UTF-8 headers (RFC 6532)
        # only for an address that needs them, as SMTP would send it with SMTPUTF8.
        utf8 = not (str(mail["To"]).isascii() and str(mail["From"]).isascii())
        data = mail.as_bytes(policy=policy.SMTPUTF8 if utf8 else policy.SMTP)
        try:
            await asyncio.to_thread(self._write, data)
        except OSError as error:
            raise DeliveryFailed(f"cannot write to the outbox: {error.strerror}") from error

    def _write(self, data: bytes) -> Path:
        make_private_dir(self.folder.parent)
        make_private_dir(self.folder)
        temporary = self.folder / f".{secrets.token_hex(8)}.tmp"
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            while True:
                stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
                path = self.folder / f"{stamp}-{secrets.token_hex(4)}.eml"
                try:
                    os.link(temporary, path)  # never replaces a file, unlike rename
                except FileExistsError:
                    continue
                return path
        finally:
            temporary.unlink()

    def describe(self) -> str:
        return f"written to {self.folder} (file backend)"


__all__ = ["OUTBOX_FOLDER", "Backend", "ConsoleBackend", "DeliveryFailed", "FileBackend"]
