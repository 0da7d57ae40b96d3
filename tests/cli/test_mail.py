"""`bastion mail test ADDRESS`: sends the test message now and reports where it went, or
the one-line reason it could not go."""

from __future__ import annotations

from tests.cli.conftest import Cli, assert_handled_error, assert_ok
from tests.mail_server import MailServer, MailServers


def test_mail_test_sends_through_smtp_with_starttls_and_auth(
    cli: Cli, mail_servers: MailServers
) -> None:
    server = mail_servers(security="starttls", auth=("mailer", "s3cret-pass"))
    outcome = cli.script("mail", "test", "alice@example.com", env=server.env())
    assert_ok(outcome)
    assert f"sent to 127.0.0.1:{server.port} over STARTTLS (smtp backend)" in outcome.stdout
    [received] = server.received
    assert received.message["Subject"] == "Test message from Bastion"
    assert received.encrypted
    assert received.login == "mailer"


def test_mail_test_with_the_server_down_is_one_line_with_the_cause(
    cli: Cli, mail_server: MailServer
) -> None:
    mail_server.down()
    outcome = cli.script("mail", "test", "alice@example.com", env=mail_server.env())
    assert_handled_error(outcome, f"could not send: cannot connect to 127.0.0.1:{mail_server.port}")


def test_mail_test_reports_the_servers_refusal_in_its_own_words(
    cli: Cli, mail_server: MailServer
) -> None:
    mail_server.refuse["alice@example.com"] = "550 5.1.1 <alice@example.com>: no such user"
    outcome = cli.invoke("mail", "test", "alice@example.com", env=mail_server.env())
    assert outcome.code == 1
    assert "refused the recipient (550)" in outcome.stderr
    assert "no such user" in outcome.stderr


def test_mail_test_refuses_an_address_that_could_add_a_header(
    cli: Cli, mail_server: MailServer
) -> None:
    outcome = cli.script(
        "mail", "test", "alice@example.com\nBcc: victim@example.com", env=mail_server.env()
    )
    assert_handled_error(outcome, "recipient")
    assert mail_server.received == []


def test_mail_test_with_the_file_backend_names_the_outbox(cli: Cli) -> None:
    outcome = cli.invoke("mail", "test", "alice@example.com", env={"BASTION_EMAIL_BACKEND": "file"})
    assert_ok(outcome)
    outbox = cli.data_dir / "outbox"
    assert f"written to {outbox}" in outcome.stdout
    assert len(list(outbox.glob("*.eml"))) == 1


def test_mail_test_with_the_console_backend_shows_the_message(cli: Cli) -> None:
    outcome = cli.script("mail", "test", "alice@example.com")
    assert_ok(outcome)
    assert "logged (console backend)" in outcome.stdout
    assert "This is a test message from Bastion." in outcome.stderr
