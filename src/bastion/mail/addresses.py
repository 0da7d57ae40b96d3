"""E-mail addresses going into headers: checked whole, so no value can add a header.

Recipients are bare addresses (``alice@example.com``) as an account stores them; the sender
(``BASTION_EMAIL_FROM``) may carry a display name (``Acme <noreply@acme.example>``).
"""

from __future__ import annotations

from email.errors import NonASCIILocalPartDefect
from email.headerregistry import Address
from email.policy import default

from bastion.exceptions import BastionError
from bastion.settings import is_one_line


class MailError(BastionError):
    """A message cannot be built: a header value is unsafe or a template is missing."""


def _single_address(value: str, what: str) -> Address:
    """The one address of ``value``, parsed as an address header would parse it."""
    if not value or not is_one_line(value):
        # A line break would end the header and start another (Bcc:, a second body...).
        raise MailError(f"{what} must be one line without control characters")
    try:
        header = default.header_factory("To", value)
    except (IndexError, ValueError) as error:  # the parser's way of refusing some shapes
        raise MailError(f"{what} is not an e-mail address") from error
    addresses = header.addresses
    defects = [d for d in header.defects if not isinstance(d, NonASCIILocalPartDefect)]
    if len(addresses) != 1 or defects:
        raise MailError(f"{what} must be exactly one e-mail address")
    address: Address = addresses[0]
    if not address.username or not address.domain:
        raise MailError(f"{what} is not an e-mail address")
    return address


def check_recipient(to: str) -> str:
    """``to`` when it is exactly one bare address (its domain in ASCII form), else
    :class:`MailError`."""
    address = _single_address(to, "recipient")
    if address.display_name or address.addr_spec != to.strip():
        raise MailError("recipient must be a bare e-mail address")
    return Address(username=address.username, domain=_ascii_domain(address.domain)).addr_spec


def parse_sender(value: str) -> Address:
    """The sender from a ``From`` value such as ``Acme <noreply@acme.example>``, its domain
    in ASCII form."""
    address = _single_address(value.strip(), "sender")
    return Address(
        display_name=address.display_name,
        username=address.username,
        domain=_ascii_domain(address.domain),
    )


def _ascii_domain(domain: str) -> str:
    """``domain`` as it travels: an internationalised name in its IDNA form (``xn--...``),
    which every server takes (an encoded word in an address would not be one)."""
    try:
        return domain.encode("idna").decode("ascii").lower()
    except UnicodeError as error:
        raise MailError(f"{domain!r} is not a valid domain name") from error


def domain_of(addr_spec: str) -> str:
    """The part after the last ``@``: what the logs say about a recipient (never the whole
    address, which is personal data)."""
    return addr_spec.rpartition("@")[2].lower()


__all__ = ["MailError", "check_recipient", "domain_of", "parse_sender"]
