"""The smtp backend against a real SMTP server (aiosmtpd): plain to a local relay,
STARTTLS with AUTH, implicit TLS; certificates verified, STARTTLS never skipped."""

from __future__ import annotations

import pytest

from bastion.mail import DeliveryFailed, Message
from tests.mail.conftest import MakeMailer
from tests.mail_server import MailServer, MailServers

HELLO = Message(to="alice@example.com", subject="Hello", text="Hello, Alice.\n", html=None)


async def test_plain_smtp_to_a_local_relay(mail_server: MailServer, mailers: MakeMailer) -> None:
    await mailers(mail_server).deliver_now(HELLO)
    [received] = mail_server.received
    assert received.rcpt_tos == ("alice@example.com",)
    assert received.message["Subject"] == "Hello"
    assert not received.encrypted
    assert received.login is None


async def test_starttls_with_auth_against_a_private_ca(
    mail_servers: MailServers, mailers: MakeMailer
) -> None:
    server = mail_servers(security="starttls", auth=("mailer", "s3cret-pass"))
    mailer = mailers(server)
    await mailer.send("test", to="alice@example.com", context={})
    await server.receive(1)
    [received] = server.received
    assert received.encrypted
    assert received.login == "mailer"
    assert received.message["Subject"] == "Test message from Bastion"


async def test_implicit_tls(mail_servers: MailServers, mailers: MakeMailer) -> None:
    server = mail_servers(security="tls")
    await mailers(server).deliver_now(HELLO)
    [received] = server.received
    assert received.encrypted
    assert received.message["To"] == "alice@example.com"


@pytest.mark.parametrize("security", ["starttls", "tls"])
async def test_a_certificate_not_trusted_is_refused(
    mail_servers: MailServers, mailers: MakeMailer, security: str
) -> None:
    server = mail_servers(security=security)
    # The system's authorities only: the throwaway certificate is not among them.
    mailer = mailers(server, smtp_ca_file=None)
    with pytest.raises(DeliveryFailed, match=r"TLS with .* failed"):
        await mailer.deliver_now(HELLO)
    assert server.received == []


async def test_starttls_is_never_skipped_when_the_server_does_not_offer_it(
    mail_server: MailServer, mailers: MakeMailer
) -> None:
    # A plain server (as a downgrading attacker would present): STARTTLS was asked for.
    mailer = mailers(mail_server, smtp_security="starttls")
    with pytest.raises(DeliveryFailed, match="STARTTLS"):
        await mailer.deliver_now(HELLO)
    assert mail_server.received == []


async def test_a_wrong_password_is_a_permanent_failure(
    mail_servers: MailServers, mailers: MakeMailer
) -> None:
    server = mail_servers(security="starttls", auth=("mailer", "s3cret-pass"))
    mailer = mailers(server, smtp_password="wrong")
    with pytest.raises(DeliveryFailed, match="refused the user name or password") as caught:
        await mailer.deliver_now(HELLO)
    assert caught.value.permanent
    assert "wrong" not in str(caught.value)
    assert server.received == []


async def test_a_refused_recipient_is_permanent_and_the_reason_omits_the_address(
    mail_server: MailServer, mailers: MakeMailer
) -> None:
    mail_server.refuse["alice@example.com"] = "550 5.1.1 <alice@example.com>: no such user"
    with pytest.raises(DeliveryFailed) as caught:
        await mailers(mail_server).deliver_now(HELLO)
    assert caught.value.permanent
    assert "550" in caught.value.reason
    assert "alice" not in caught.value.reason
    assert "no such user" in caught.value.detail  # the server's words, for the CLI only


async def test_an_internationalised_domain_travels_in_its_ascii_form(
    mail_server: MailServer, mailers: MakeMailer
) -> None:
    await mailers(mail_server).deliver_now(
        Message(to="bob@bücher.example", subject="Hallo", text="Hallo.\n", html=None)
    )
    [received] = mail_server.received
    assert received.rcpt_tos == ("bob@xn--bcher-kva.example",)
    assert received.message["To"] == "bob@xn--bcher-kva.example"


async def test_a_non_ascii_local_part_without_smtputf8_is_given_up_at_once(
    mail_server: MailServer, mailers: MakeMailer
) -> None:
    mailer = mailers(mail_server)
    await mailer.send("test", to="jürgen@example.com", context={})
    assert await mailer.wait_idle(30)
    assert (mailer.stats.failed, mailer.stats.retried) == (1, 0)
    assert mail_server.received == []
