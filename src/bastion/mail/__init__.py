"""E-mail: messages rendered from templates, delivered off the request path.

The core of Bastion's mail (no web framework here): :class:`Mailer` renders
``templates/mail/<name>.*`` and hands the result to a backend (``console``, ``file`` or
``smtp``) in a background task, with retries. See ``docs/email.md``.
"""

from bastion.mail.addresses import MailError, check_recipient, domain_of, parse_sender
from bastion.mail.backends import Backend, ConsoleBackend, DeliveryFailed, FileBackend
from bastion.mail.mailer import Mailer, backend_from_settings, build_mailer
from bastion.mail.message import Message
from bastion.mail.outbox import MailStats, RetryPolicy
from bastion.mail.smtp import SMTPBackend, SMTPConfig
from bastion.mail.templates import MailTemplates

__all__ = [
    "Backend",
    "ConsoleBackend",
    "DeliveryFailed",
    "FileBackend",
    "MailError",
    "MailStats",
    "MailTemplates",
    "Mailer",
    "Message",
    "RetryPolicy",
    "SMTPBackend",
    "SMTPConfig",
    "backend_from_settings",
    "build_mailer",
    "check_recipient",
    "domain_of",
    "parse_sender",
]
