"""The console backend logs the message for a developer; the file backend writes one
private .eml per message in the data folder's outbox."""

from __future__ import annotations

import asyncio
import logging
import stat
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest

from bastion.mail import Message
from tests.mail.conftest import MakeMailer


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def read_eml(path: Path) -> EmailMessage:
    mail = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    assert isinstance(mail, EmailMessage)
    return mail


async def test_console_backend_logs_the_whole_text_to_bastion_mail(
    mailers: MakeMailer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="bastion.mail")
    mailer = mailers(email_backend="console", site_name="Acme")
    await mailer.send("test", to="alice@example.com", context={})
    assert await mailer.wait_idle(30)

    [record] = [r for r in caplog.records if "console backend" in r.getMessage()]
    assert record.name == "bastion.mail"
    assert record.levelno == logging.INFO
    logged = record.getMessage()
    assert "To: alice@example.com" in logged
    assert "Subject: Test message from Acme" in logged
    assert "This is a test message from Acme." in logged
    assert mailer.stats.sent == 1


def test_the_development_default_is_the_console_backend(mailers: MakeMailer) -> None:
    assert mailers().backend.name == "console"
    assert mailers(env="production").backend.name == "smtp"


@pytest.mark.usefixtures("umask_022")
async def test_file_backend_writes_one_private_eml_per_message_named_in_time_order(
    tmp_path: Path, mailers: MakeMailer
) -> None:
    mailer = mailers(email_backend="file")
    for number in range(3):
        message = Message(
            to="alice@example.com", subject=f"Number {number}", text="Hi\n", html=None
        )
        await mailer.deliver_now(message)
    await mailer.send("test", to="bob@example.com", context={})
    assert await mailer.wait_idle(30)

    outbox = tmp_path / "data" / "outbox"
    files = sorted(outbox.iterdir())
    assert [path.suffix for path in files] == [".eml"] * 4  # nothing half-written left over
    assert mode(outbox) == 0o700
    assert mode(outbox.parent) == 0o700
    assert {mode(path) for path in files} == {0o600}
    mails = [read_eml(path) for path in files]
    assert [mail["Subject"] for mail in mails] == [
        "Number 0",
        "Number 1",
        "Number 2",
        "Test message from Bastion",
    ]
    assert mails[3]["To"] == "bob@example.com"
    assert mails[3].get_content_type() == "multipart/alternative"
    # RFC 5322 line ends, as the message would travel.
    assert b"\r\nSubject: Number 0\r\n" in files[0].read_bytes()


async def test_file_backend_names_never_collide(tmp_path: Path, mailers: MakeMailer) -> None:
    mailer = mailers(email_backend="file")
    message = Message(to="alice@example.com", subject="Same", text="Hi\n", html=None)
    await asyncio.gather(*(mailer.deliver_now(message) for _ in range(40)))
    assert len(list((tmp_path / "data" / "outbox").glob("*.eml"))) == 40


async def test_file_backend_that_cannot_write_retries_then_gives_up(
    tmp_path: Path, mailers: MakeMailer
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "outbox").write_text("a file where the folder should be")
    mailer = mailers(email_backend="file")
    await mailer.send("test", to="alice@example.com", context={})
    assert await mailer.wait_idle(30)
    assert (mailer.stats.sent, mailer.stats.failed, mailer.stats.retried) == (0, 1, 2)


async def test_file_backend_keeps_a_non_ascii_address_readable(
    tmp_path: Path, mailers: MakeMailer
) -> None:
    mailer = mailers(email_backend="file")
    await mailer.deliver_now(
        Message(to="jürgen@example.com", subject="Grüße", text="Grüße.\n", html=None)
    )
    [path] = (tmp_path / "data" / "outbox").glob("*.eml")
    mail = read_eml(path)
    assert mail["To"] == "jürgen@example.com"
    assert mail["Subject"] == "Grüße"
    assert mail.get_content().rstrip() == "Grüße."
