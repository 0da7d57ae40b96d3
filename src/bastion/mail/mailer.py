"""The :class:`Mailer`: render now, deliver later, and build one from the settings."""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from bastion.exceptions import ConfigError
from bastion.i18n import use_language
from bastion.mail.addresses import domain_of, parse_sender
from bastion.mail.backends import OUTBOX_FOLDER, Backend, ConsoleBackend, FileBackend
from bastion.mail.message import Message, compose
from bastion.mail.outbox import MailStats, Outbox, RetryPolicy
from bastion.mail.smtp import SMTPBackend, SMTPConfig
from bastion.mail.templates import MailTemplates
from bastion.settings import Settings

# Messages waiting at once (retries included) before new ones are refused.
DEFAULT_CAPACITY = 1000
# Deliveries in progress at once (SMTP connections).
DEFAULT_CONCURRENCY = 4
DEFAULT_CLOSE_TIMEOUT = 5.0


class Mailer:
    """Renders mail templates and hands messages to the configured backend off the
    request path.

    :meth:`send` renders at once (a template error or an unsafe header value raises
    :class:`~bastion.mail.MailError` there) and returns without waiting for the server;
    delivery, retries and their failures are the background sender's, logged and counted in
    :attr:`stats`, never raised to the caller.
    """

    def __init__(
        self,
        backend: Backend,
        templates: MailTemplates,
        *,
        sender: str,
        retry: RetryPolicy | None = None,
        capacity: int = DEFAULT_CAPACITY,
        concurrency: int = DEFAULT_CONCURRENCY,
    ) -> None:
        self.backend = backend
        self.templates = templates
        self.sender = sender
        self._sender = parse_sender(sender)
        self._outbox = Outbox(
            backend, retry=retry or RetryPolicy(), capacity=capacity, concurrency=concurrency
        )

    @property
    def stats(self) -> MailStats:
        return self._outbox.stats

    def render(
        self,
        template: str,
        *,
        to: str,
        context: Mapping[str, Any],
        language: str | None = None,
    ) -> Message:
        """The message of ``mail/<template>.*`` for ``to``, in ``language`` (the
        recipient's own choice) or else the language of the request being answered."""
        if language is None:
            return self.templates.render(template, to=to, context=context)
        with use_language(language):
            return self.templates.render(template, to=to, context=context)

    def compose(self, message: Message) -> EmailMessage:
        """``message`` as sent, with From, Date, Message-ID and Auto-Submitted."""
        return compose(message, sender=str(self._sender), sender_domain=self._sender.domain)

    async def send(
        self,
        template: str,
        *,
        to: str,
        context: Mapping[str, Any],
        language: str | None = None,
    ) -> None:
        """Render now (see :meth:`render`), deliver in the background."""
        mail = self.compose(self.render(template, to=to, context=context, language=language))
        self._outbox.submit(mail, domain_of(str(mail["To"])))

    async def deliver_now(self, message: Message) -> None:
        """Deliver ``message`` before returning, once, without the queue; raises
        :class:`~bastion.mail.DeliveryFailed` (for the command line and tests)."""
        await self.backend.deliver(self.compose(message))

    async def wait_idle(self, timeout: float) -> bool:  # noqa: ASYNC109 - returns at the bound
        """Wait up to ``timeout`` seconds for every queued message to be sent or given up."""
        return await self._outbox.wait_idle(timeout)

    async def aclose(self, timeout: float = DEFAULT_CLOSE_TIMEOUT) -> None:  # noqa: ASYNC109
        """Flush the queue, waiting ``timeout`` seconds at most; logs what is left."""
        await self._outbox.aclose(timeout)


def backend_from_settings(settings: Settings) -> Backend:
    kind = settings.resolved_email_backend
    if kind == "console":
        return ConsoleBackend()
    if kind == "file":
        return FileBackend(settings.data_dir / OUTBOX_FOLDER)
    config = SMTPConfig(
        host=settings.smtp_host,
        port=settings.smtp_port,
        security=settings.smtp_security,
        timeout=settings.smtp_timeout,
        username=settings.smtp_username,
        password=settings.smtp_password.get_secret_value() if settings.smtp_password else "",
        ca_file=settings.smtp_ca_file,
    )
    try:
        return SMTPBackend(config)
    except (OSError, ssl.SSLError) as error:
        raise ConfigError("BASTION_SMTP_CA_FILE cannot be read as PEM certificates") from error


def build_mailer(settings: Settings, *, templates_dir: str | Path | None = None) -> Mailer:
    """The mailer ``settings`` describe; ``templates_dir`` is the application's template
    folder, whose ``mail/`` files replace Bastion's."""
    templates = MailTemplates(
        templates_dir, site_name=settings.site_name, public_url=settings.public_url
    )
    return Mailer(backend_from_settings(settings), templates, sender=settings.email_from)


__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_CONCURRENCY",
    "Mailer",
    "backend_from_settings",
    "build_mailer",
]
