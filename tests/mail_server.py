"""A real SMTP server for tests: aiosmtpd on a loopback port, in a thread of its own.

Registered as a pytest plugin (tests/conftest.py), so every test can use the fixtures:

- ``mail_server``: a plain SMTP server (no TLS, no AUTH) that keeps what it receives;
- ``mail_servers``: a factory, ``mail_servers(security="starttls", auth=("user", "pw"))``,
  for STARTTLS (required) or implicit TLS with a throwaway certificate, and AUTH;
- ``smtp_certificate``: that certificate (its PEM file is also the CA file to trust).

A server reads what it received as :class:`email.message.EmailMessage` objects
(``server.messages``, or ``server.wait_for(n)`` / ``await server.receive(n)``, which wait
until ``n`` have arrived). ``server.settings()`` gives the Settings fields that point
Bastion at it (``server.env()`` the environment variables, for a ``bastion serve``).

Faults: ``down()`` stops listening (connection refused), ``hang()`` accepts connections
and never answers, ``up()`` serves SMTP again on the same port; ``refuse[address] = "550
..."`` answers RCPT for that address with the given reply (a 4xx or a 5xx).

The server runs in its own thread with its own event loop, so a test waiting synchronously
(a browser test, a ``bastion serve`` process sending mail) never starves it.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any, Literal

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Security = Literal["none", "starttls", "tls"]
HOST = "127.0.0.1"
# How long a test waits for mail before failing (a bound on a hang, not a timing check).
WAIT = 30.0


@dataclass(frozen=True)
class CertificateFiles:
    """A self-signed certificate for ``localhost`` and 127.0.0.1, and its key (PEM)."""

    cert: Path
    key: Path


def make_certificate(folder: Path) -> CertificateFiles:
    """A throwaway self-signed certificate, usable as its own CA file."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Bastion test SMTP")])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address(HOST))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    files = CertificateFiles(folder / "smtp-cert.pem", folder / "smtp-key.pem")
    files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files


@dataclass(frozen=True)
class Received:
    """One message as the server got it, with its envelope."""

    message: EmailMessage
    mail_from: str
    rcpt_tos: tuple[str, ...]
    login: str | None  # the AUTH user, if the client authenticated
    encrypted: bool  # whether the session was under TLS when the message came


class _Silent(asyncio.Protocol):
    """Accepts a connection and never says a word (a server that hangs)."""

    def __init__(self, connections: set[asyncio.BaseTransport]) -> None:
        self.connections = connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        pass


@dataclass
class MailServer:
    security: Security = "none"
    certificate: CertificateFiles | None = None
    auth: tuple[str, str] | None = None
    port: int = 0
    refuse: dict[str, str] = field(default_factory=dict)
    _received: list[Received] = field(default_factory=list)
    _arrived: threading.Condition = field(default_factory=threading.Condition)
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _connections: set[asyncio.BaseTransport] = field(default_factory=set)

    # ---- life cycle ---------------------------------------------------------------

    def start(self) -> MailServer:
        if self.security != "none" and self.certificate is None:
            raise ValueError("TLS needs a certificate")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="test-smtp", daemon=True
        )
        self._thread.start()
        self.up()
        return self

    def stop(self) -> None:
        if self._loop is None or self._thread is None:
            return
        self._call(self._close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(WAIT)
        self._loop.close()
        self._loop = self._thread = None

    def up(self) -> None:
        """Serve SMTP (again) on the same port."""
        self._call(self._listen(self._smtp))

    def down(self) -> None:
        """Stop listening and drop open connections: connecting is refused."""
        self._call(self._close())

    def hang(self) -> None:
        """Accept connections and never answer (not even the greeting)."""
        self._call(self._listen(lambda: _Silent(self._connections)))

    # ---- what arrived ------------------------------------------------------------

    @property
    def received(self) -> list[Received]:
        with self._arrived:
            return list(self._received)

    @property
    def messages(self) -> list[EmailMessage]:
        return [item.message for item in self.received]

    def wait_for(self, count: int, timeout: float = WAIT) -> list[EmailMessage]:
        """The first ``count`` messages, once that many have arrived; AssertionError when
        they do not arrive within ``timeout`` seconds."""
        with self._arrived:
            arrived = self._arrived.wait_for(lambda: len(self._received) >= count, timeout)
            got = len(self._received)
            messages = [item.message for item in self._received[:count]]
        assert arrived, f"the SMTP server received {got} message(s), not {count}"
        return messages

    async def receive(
        self,
        count: int,
        timeout: float = WAIT,  # noqa: ASYNC109 - the bound is wait_for's, in a thread
    ) -> list[EmailMessage]:
        """:meth:`wait_for` for async tests (the waiting happens off the event loop)."""
        return await asyncio.to_thread(self.wait_for, count, timeout)

    # ---- pointing Bastion at it -------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """Settings fields for ``Settings(**server.settings(), ...)``."""
        values: dict[str, Any] = {
            "email_backend": "smtp",
            "smtp_host": HOST,
            "smtp_port": self.port,
            "smtp_security": self.security,
        }
        if self.certificate is not None:
            values["smtp_ca_file"] = self.certificate.cert
        if self.auth is not None:
            values["smtp_username"], values["smtp_password"] = self.auth
        return values

    def env(self) -> dict[str, str]:
        """The same as ``BASTION_*`` environment variables."""
        return {f"BASTION_{name.upper()}": str(value) for name, value in self.settings().items()}

    # ---- inside the server's thread ----------------------------------------------

    def _call(self, coroutine: Any) -> Any:
        assert self._loop is not None, "the server is not started"
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(WAIT)

    async def _listen(self, factory: Callable[[], asyncio.BaseProtocol]) -> None:
        await self._close()
        implicit = self._tls_context() if self.security == "tls" else None
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(factory, HOST, self.port, ssl=implicit)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._connections):
            transport.close()
        self._connections.clear()

    def _smtp(self) -> SMTP:
        starttls = self.security == "starttls"
        protocol = _TrackedSMTP(
            self._connections,
            _Handler(self),
            hostname="localhost",
            tls_context=self._tls_context() if starttls else None,
            require_starttls=starttls,
            auth_required=self.auth is not None,
            auth_require_tls=self.security != "none",
            authenticator=self._authenticate if self.auth is not None else None,
            loop=self._loop,
        )
        return protocol

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        # handled=False: aiosmtpd answers a failure with 535 itself.
        if not isinstance(data, LoginPassword) or self.auth is None:
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        ok = (login, password) == self.auth
        return AuthResult(success=ok, handled=False, auth_data=login)

    def _tls_context(self) -> ssl.SSLContext:
        assert self.certificate is not None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.certificate.cert, self.certificate.key)
        return context

    def _record(self, item: Received) -> None:
        with self._arrived:
            self._received.append(item)
            self._arrived.notify_all()


class _TrackedSMTP(SMTP):
    """aiosmtpd's SMTP protocol, remembered while connected (so ``down()`` can drop it)."""

    def __init__(self, connections: set[asyncio.BaseTransport], *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._tracked = connections

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._tracked.add(transport)
        super().connection_made(transport)


class _Handler:
    def __init__(self, server: MailServer) -> None:
        self.server = server

    async def handle_RCPT(  # noqa: N802 - aiosmtpd calls its hooks by these names
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        refusal = self.server.refuse.get(address)
        if refusal is not None:
            return refusal
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(  # noqa: N802
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        raw = envelope.original_content or b""
        message = BytesParser(policy=policy.default).parsebytes(raw)
        assert isinstance(message, EmailMessage)
        self.server._record(
            Received(
                message=message,
                mail_from=str(envelope.mail_from),
                rcpt_tos=tuple(envelope.rcpt_tos),
                login=str(session.auth_data) if session.authenticated else None,
                encrypted=_encrypted(server),
            )
        )
        return "250 Message accepted for delivery"


def _encrypted(server: SMTP) -> bool:
    # After STARTTLS and with implicit TLS alike, the transport is a TLS one.
    transport = server.transport
    return transport is not None and transport.get_extra_info("sslcontext") is not None


# ---- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def smtp_certificate(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return make_certificate(tmp_path_factory.mktemp("smtp-tls"))


MailServers = Callable[..., MailServer]


@pytest.fixture
def mail_servers(smtp_certificate: CertificateFiles) -> Iterator[MailServers]:
    """Start servers: ``mail_servers(security="starttls", auth=("user", "password"))``."""
    started: list[MailServer] = []

    def start(*, security: Security = "none", auth: tuple[str, str] | None = None) -> MailServer:
        server = MailServer(
            security=security,
            certificate=smtp_certificate if security != "none" else None,
            auth=auth,
        )
        started.append(server.start())
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def mail_server(mail_servers: MailServers) -> MailServer:
    """A plain SMTP server on a loopback port (no TLS, no AUTH)."""
    return mail_servers()
