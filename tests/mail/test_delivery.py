"""Delivery off the request path: ``send`` returns before the server is involved; failed
attempts are retried with back-off and given up after a limit, counted and logged with the
recipient's domain only; the queue is bounded; ``aclose`` flushes within a bound."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bastion.mail import RetryPolicy
from bastion.services import open_services
from bastion.settings import Settings
from tests.mail.conftest import MakeMailer, mail_log, until
from tests.mail_server import MailServer

# Retries until the server comes back (each a hundredth of a second after the last).
PATIENT = RetryPolicy(attempts=10_000, first_delay=0.01, factor=1.0)
# Retries far in the future: only aclose's last attempt can deliver.
LATER = RetryPolicy(attempts=5, first_delay=3600.0)


async def test_send_returns_without_waiting_for_the_server(
    mail_server: MailServer, mailers: MakeMailer
) -> None:
    mail_server.hang()  # accepts, never answers: an attempt would last the whole timeout
    mailer = mailers(mail_server, smtp_timeout=300)
    await mailer.send("test", to="alice@example.com", context={})
    stats = mailer.stats
    assert (stats.queued, stats.pending, stats.sent, stats.retried) == (1, 1, 0, 0)


@pytest.mark.parametrize("fault", ["down", "hang"])
async def test_a_message_is_retried_and_delivered_when_the_server_comes_back(
    mail_server: MailServer, mailers: MakeMailer, fault: str
) -> None:
    getattr(mail_server, fault)()  # connection refused, or accepted and never answered
    mailer = mailers(mail_server, retry=PATIENT, smtp_timeout=0.2)
    await mailer.send("test", to="alice@example.com", context={})
    await until(lambda: mailer.stats.retried >= 1)

    mail_server.up()
    [mail] = await mail_server.receive(1)
    await until(lambda: mailer.stats.sent == 1)
    assert mail["To"] == "alice@example.com"
    assert mailer.stats.failed == 0
    assert mailer.stats.pending == 0


async def test_a_temporary_refusal_is_retried(mail_server: MailServer, mailers: MakeMailer) -> None:
    mail_server.refuse["alice@example.com"] = "451 4.3.0 Try again later"
    mailer = mailers(mail_server, retry=PATIENT)
    await mailer.send("test", to="alice@example.com", context={})
    await until(lambda: mailer.stats.retried >= 1)
    del mail_server.refuse["alice@example.com"]
    await mail_server.receive(1)
    await until(lambda: mailer.stats.sent == 1)


async def test_delivery_gives_up_after_the_attempt_limit_logging_only_the_domain(
    mail_server: MailServer, mailers: MakeMailer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bastion.mail")
    mail_server.down()
    mailer = mailers(mail_server, retry=RetryPolicy(attempts=3, first_delay=0.01))
    await mailer.send("test", to="alice@example.com", context={})
    assert await mailer.wait_idle(30)

    stats = mailer.stats
    assert (stats.queued, stats.sent, stats.retried, stats.failed, stats.pending) == (
        1, 0, 2, 1, 0,
    )  # fmt: skip
    [gave_up] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert gave_up.name == "bastion.mail"
    assert "after 3 attempt(s)" in gave_up.getMessage()
    assert "example.com" in gave_up.getMessage()
    assert f"cannot connect to 127.0.0.1:{mail_server.port}" in gave_up.getMessage()
    assert "alice" not in mail_log(caplog.records)
    assert "test message" not in mail_log(caplog.records).lower()  # nor the body


async def test_a_permanent_refusal_is_given_up_at_once(
    mail_server: MailServer, mailers: MakeMailer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bastion.mail")
    mail_server.refuse["alice@example.com"] = "550 5.1.1 <alice@example.com>: no such user"
    mailer = mailers(mail_server, retry=PATIENT)
    await mailer.send("test", to="alice@example.com", context={})
    assert await mailer.wait_idle(30)
    assert (mailer.stats.failed, mailer.stats.retried, mailer.stats.sent) == (1, 0, 0)
    assert "refused the recipient (550)" in mail_log(caplog.records)
    assert "alice" not in mail_log(caplog.records)  # the server's reply quoted the address


async def test_the_queue_is_bounded_and_refuses_with_an_error_when_full(
    mail_server: MailServer, mailers: MakeMailer, caplog: pytest.LogCaptureFixture
) -> None:
    mail_server.hang()
    mailer = mailers(mail_server, capacity=2, smtp_timeout=300)
    for _ in range(3):
        await mailer.send("test", to="alice@example.com", context={})  # never raises
    assert (mailer.stats.queued, mailer.stats.dropped) == (2, 1)
    [refused] = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert "refused: 2 are waiting" in refused.getMessage()
    assert "alice" not in refused.getMessage()


async def test_aclose_delivers_what_is_queued(mail_server: MailServer, mailers: MakeMailer) -> None:
    mailer = mailers(mail_server)
    for _ in range(3):
        await mailer.send("test", to="alice@example.com", context={})
    await mailer.aclose(timeout=30)
    assert mailer.stats.sent == 3
    assert len(mail_server.messages) == 3


async def test_aclose_gives_a_message_waiting_to_be_retried_its_last_attempt_now(
    mail_server: MailServer, mailers: MakeMailer
) -> None:
    mail_server.down()
    mailer = mailers(mail_server, retry=LATER)
    await mailer.send("test", to="alice@example.com", context={})
    await until(lambda: mailer.stats.retried == 1)  # next attempt in an hour
    mail_server.up()
    await mailer.aclose(timeout=30)
    assert (mailer.stats.sent, mailer.stats.pending) == (1, 0)
    assert len(mail_server.messages) == 1


async def test_aclose_stops_at_its_bound_and_logs_what_is_left(
    mail_server: MailServer, mailers: MakeMailer, caplog: pytest.LogCaptureFixture
) -> None:
    mail_server.hang()
    mailer = mailers(mail_server, smtp_timeout=300)
    await mailer.send("test", to="alice@example.com", context={})
    await mailer.aclose(timeout=0.05)
    assert mailer.stats.pending == 1
    assert "1 message(s) left undelivered" in mail_log(
        r for r in caplog.records if r.levelno == logging.ERROR
    )


async def test_a_message_sent_after_close_is_refused_and_counted(
    mail_server: MailServer, mailers: MakeMailer
) -> None:
    mailer = mailers(mail_server)
    await mailer.aclose()
    await mailer.send("test", to="alice@example.com", context={})
    assert (mailer.stats.queued, mailer.stats.dropped) == (0, 1)


async def test_services_close_flushes_the_mailer(tmp_path: Path, mail_server: MailServer) -> None:
    settings = Settings(data_dir=tmp_path / "data", **mail_server.settings())
    services = await open_services(settings)
    await services.mailer.send("test", to="alice@example.com", context={})
    await services.aclose()
    assert services.mailer.stats.sent == 1
    assert len(mail_server.messages) == 1
