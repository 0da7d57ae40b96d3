"""One e-mail: what the templates made (:class:`Message`) and the RFC 5322 form sent."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from bastion.mail.addresses import MailError, check_recipient
from bastion.settings import is_one_line


@dataclass(frozen=True, slots=True)
class Message:
    """A rendered message for one recipient."""

    to: str  # one bare address
    subject: str  # one line
    text: str  # the text/plain part
    html: str | None  # the text/html part: the message is multipart/alternative when present


def compose(message: Message, *, sender: str, sender_domain: str) -> EmailMessage:
    """The message as sent: text (and HTML) with the headers every automatic mail carries.

    Raises :class:`MailError` for a recipient or subject that could add a header.
    """
    to = check_recipient(message.to)
    if not message.subject or not is_one_line(message.subject):
        raise MailError("subject must be one line without control characters")
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = message.subject
    mail["Date"] = format_datetime(datetime.now(UTC))
    # Random, so a Message-ID says nothing about the host or the process that made it.
    mail["Message-ID"] = f"<{secrets.token_hex(16)}@{sender_domain}>"
    # RFC 3834: vacation responders and the like must not answer an automatic message.
    mail["Auto-Submitted"] = "auto-generated"
    mail.set_content(message.text)
    if message.html is not None:
        mail.add_alternative(message.html, subtype="html")
    return mail


def recipient_of(mail: EmailMessage) -> str:
    return str(mail["To"])


def text_part(mail: EmailMessage) -> str:
    """The text/plain body of ``mail``."""
    body = mail.get_body(preferencelist=("plain",))
    return str(body.get_content()) if body is not None else ""


__all__ = ["Message", "compose", "recipient_of", "text_part"]
