"""Messages: rendered from templates into multipart text + HTML with the headers of
automatic mail, overridable from the application's folder, and no header injection."""

from __future__ import annotations

from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from bastion.fastapi.install import Bastion
from bastion.mail import MailError, Message
from bastion.settings import Settings
from tests.mail.conftest import MakeMailer
from tests.mail_server import MailServer


def write(folder: Path, name: str, text: str) -> None:
    path = folder / "mail" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def test_a_message_is_text_and_html_alternatives_with_the_automatic_headers(
    mail_server: MailServer, mailers: MakeMailer
) -> None:
    mailer = mailers(mail_server, site_name="Acme & Co", email_from="Acme <noreply@acme.example>")
    await mailer.send("test", to="alice@example.com", context={})
    [mail] = await mail_server.receive(1)

    assert mail["From"] == "Acme <noreply@acme.example>"
    assert mail["To"] == "alice@example.com"
    assert mail["Subject"] == "Test message from Acme & Co"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Message-ID"].endswith("@acme.example>")
    assert parsedate_to_datetime(mail["Date"]).utcoffset() is not None
    assert mail.get_content_type() == "multipart/alternative"
    parts = [part.get_content_type() for part in mail.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None
    assert html is not None
    # The text part is plain text; the HTML part escapes what it inserts.
    assert "This is a test message from Acme & Co." in text.get_content()
    assert "This is a test message from Acme &amp; Co." in html.get_content()
    assert mail_server.received[0].mail_from == "noreply@acme.example"


async def test_each_message_has_its_own_message_id(
    mail_server: MailServer, mailers: MakeMailer
) -> None:
    mailer = mailers(mail_server)
    for _ in range(3):
        await mailer.send("test", to="alice@example.com", context={})
    mails = await mail_server.receive(3)
    assert len({mail["Message-ID"] for mail in mails}) == 3


def test_every_template_gets_the_site_name_and_the_public_url(
    tmp_path: Path, mailers: MakeMailer
) -> None:
    folder = tmp_path / "templates"
    write(folder, "hello.subject.txt", "Hello from {{ site_name }}\n")
    write(folder, "hello.txt", "Visit {{ public_url }}/account, {{ name }}.\n")
    mailer = mailers(site_name="Acme", public_url="https://app.acme.example/", templates_dir=folder)
    message = mailer.render("hello", to="bob@example.com", context={"name": "Bob"})
    assert message == Message(
        to="bob@example.com",
        subject="Hello from Acme",
        text="Visit https://app.acme.example/account, Bob.\n",
        html=None,  # no hello.html: a text-only message
    )


def test_the_application_folder_replaces_a_mail_template_and_can_extend_the_original(
    tmp_path: Path, mailers: MakeMailer
) -> None:
    folder = tmp_path / "templates"
    write(folder, "test.subject.txt", "{{ site_name }} says hello\n")
    write(
        folder,
        "test.html",
        '{% extends "bastion/mail/test.html" %}'
        "{% block footer %}Acme Ltd, 1 Example Road{% endblock %}",
    )
    mailer = mailers(site_name="Acme", templates_dir=folder)
    message = mailer.render("test", to="bob@example.com", context={})
    assert message.subject == "Acme says hello"
    assert message.html is not None
    assert "This is a test message from Acme." in message.html  # the original's content
    assert "Acme Ltd, 1 Example Road" in message.html
    assert "replies are not read" not in message.html
    assert "This is a test message from Acme." in message.text  # not replaced: Bastion's


async def test_the_installed_services_render_with_the_application_template_folder(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "templates"
    write(folder, "test.subject.txt", "Overridden through install\n")
    bastion = Bastion(Settings(data_dir=tmp_path / "data"), templates_dir=folder)
    await bastion.startup()
    try:
        message = bastion.services.mailer.render("test", to="bob@example.com", context={})
    finally:
        await bastion.shutdown()
    assert message.subject == "Overridden through install"


@pytest.mark.parametrize(
    "name",
    [
        "Bob\r\nBcc: victim@example.com",
        "Bob\nBcc: victim@example.com",
        "Bob\rBcc: victim@example.com",
        "Bob\u2028Bcc: victim@example.com",
        "Bob\x00",
    ],
)
async def test_a_line_break_in_the_subject_context_is_refused(
    tmp_path: Path, mail_server: MailServer, mailers: MakeMailer, name: str
) -> None:
    folder = tmp_path / "templates"
    write(folder, "hi.subject.txt", "Hello {{ name }}\n")
    write(folder, "hi.txt", "Hello.\n")
    mailer = mailers(mail_server, templates_dir=folder)
    with pytest.raises(MailError):
        await mailer.send("hi", to="alice@example.com", context={"name": name})
    assert mailer.stats.queued == 0


@pytest.mark.parametrize(
    "to",
    [
        "alice@example.com\r\nBcc: victim@example.com",
        "alice@example.com\nSubject: forged",
        "alice@example.com, victim@example.com",
        "Alice <alice@example.com>",
        "alice",
        "alice@",
        "",
    ],
)
async def test_a_recipient_that_is_not_one_bare_address_is_refused(
    mail_server: MailServer, mailers: MakeMailer, to: str
) -> None:
    mailer = mailers(mail_server)
    with pytest.raises(MailError):
        await mailer.send("test", to=to, context={})
    with pytest.raises(MailError):
        await mailer.deliver_now(Message(to=to, subject="Hi", text="Hi\n", html=None))
    assert mailer.stats.queued == 0
    assert mail_server.received == []


async def test_a_subject_with_a_line_break_is_refused_when_delivered_directly(
    mail_server: MailServer, mailers: MakeMailer
) -> None:
    mailer = mailers(mail_server)
    forged = Message(to="alice@example.com", subject="Hi\r\nBcc: x@y.z", text="Hi\n", html=None)
    with pytest.raises(MailError):
        await mailer.deliver_now(forged)
    assert mail_server.received == []


def test_a_missing_template_or_variable_fails_the_render_at_once(
    tmp_path: Path, mailers: MakeMailer
) -> None:
    folder = tmp_path / "templates"
    write(folder, "needs.subject.txt", "Hello {{ name }}\n")
    write(folder, "needs.txt", "Hello.\n")
    mailer = mailers(templates_dir=folder)
    with pytest.raises(MailError, match="no mail template"):
        mailer.render("nonexistent", to="bob@example.com", context={})
    with pytest.raises(Exception, match="'name' is undefined"):
        mailer.render("needs", to="bob@example.com", context={})
