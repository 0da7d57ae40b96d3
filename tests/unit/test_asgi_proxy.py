"""bastion.asgi.proxy: client address and scheme believed only from trusted proxies."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from starlette.types import Message, Receive, Scope, Send

from bastion.asgi.proxy import ProxyHeadersMiddleware, parse_networks

PROXY = "10.0.0.1"
CLIENT = "203.0.113.7"


async def run(
    headers: list[tuple[str, str]] | None = None,
    *,
    trusted: tuple[str, ...] = (PROXY,),
    peer: str | None = PROXY,
    kind: str = "http",
    scheme: str | None = None,
    mode: str | None = None,
) -> Scope:
    """The scope the inner app sees for one request from ``peer``. The middleware reads the
    header family named by ``mode`` (by default, the family of the headers sent)."""
    if mode is None:
        sends_forwarded = any(k.lower() == "forwarded" for k, _ in headers or [])
        mode = "forwarded" if sends_forwarded else "x-forwarded-for"
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def receive() -> Message:
        raise AssertionError("not used")

    async def send(message: Message) -> None:
        raise AssertionError("not used")

    scope: dict[str, Any] = {
        "type": kind,
        "scheme": scheme or ("ws" if kind == "websocket" else "http"),
        "path": "/",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers or []],
        "client": (peer, 51000) if peer else None,
    }
    middleware = ProxyHeadersMiddleware(app, trusted=list(trusted), header=mode)  # type: ignore[arg-type]
    await middleware(scope, receive, send)
    assert len(seen) == 1
    return seen[0]


def client_of(scope: Scope) -> str | None:
    client = scope.get("client")
    return client[0] if client else None


# ---- who is believed ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [("X-Forwarded-For", "198.51.100.9")],
        [("Forwarded", "for=198.51.100.9;proto=https")],
        [("X-Forwarded-For", "198.51.100.9"), ("X-Forwarded-Proto", "https")],
        [("X-Forwarded-Proto", "https")],
    ],
)
async def test_untrusted_peer_headers_are_ignored(headers: list[tuple[str, str]]) -> None:
    scope = await run(headers, peer=CLIENT)
    assert scope["client"] == (CLIENT, 51000)
    assert scope["scheme"] == "http"


async def test_nothing_is_believed_without_trusted_proxies() -> None:
    scope = await run([("X-Forwarded-For", "198.51.100.9")], trusted=())
    assert scope["client"] == (PROXY, 51000)


async def test_trusted_peer_without_headers_is_unchanged() -> None:
    scope = await run([])
    assert scope["client"] == (PROXY, 51000)
    assert scope["scheme"] == "http"


async def test_trusted_peer_x_forwarded_for_sets_the_client() -> None:
    scope = await run([("X-Forwarded-For", CLIENT)])
    assert client_of(scope) == CLIENT


async def test_spoofed_leftmost_entry_is_ignored() -> None:
    # The client sent "X-Forwarded-For: 6.6.6.6"; our proxy appended the real address.
    scope = await run([("X-Forwarded-For", f"6.6.6.6, {CLIENT}")])
    assert client_of(scope) == CLIENT


async def test_chain_of_trusted_proxies_is_walked_from_the_right() -> None:
    scope = await run(
        [("X-Forwarded-For", f"6.6.6.6, {CLIENT}, 10.1.2.3, 10.9.9.9")],
        trusted=("10.0.0.0/8",),
    )
    assert client_of(scope) == CLIENT


async def test_untrusted_hop_in_the_middle_stops_the_walk() -> None:
    # 198.51.100.1 is not ours: what it claims (CLIENT) is not believed.
    scope = await run([("X-Forwarded-For", f"{CLIENT}, 198.51.100.1")])
    assert client_of(scope) == "198.51.100.1"


async def test_all_trusted_chain_gives_the_leftmost() -> None:
    scope = await run([("X-Forwarded-For", "10.0.0.5, 10.0.0.6")], trusted=("10.0.0.0/8",))
    assert client_of(scope) == "10.0.0.5"


async def test_several_x_forwarded_for_lines_are_one_list() -> None:
    scope = await run(
        [("X-Forwarded-For", "6.6.6.6"), ("X-Forwarded-For", f"{CLIENT}, 10.0.0.2")],
        trusted=("10.0.0.0/24",),
    )
    assert client_of(scope) == CLIENT


@pytest.mark.parametrize(
    ("trusted", "peer", "believed"),
    [
        (("10.0.0.0/8",), "10.200.3.4", True),
        (("10.0.0.0/8",), "11.0.0.1", False),
        (("192.168.1.0/24",), "192.168.1.254", True),
        (("192.168.1.0/24",), "192.168.2.1", False),
        (("192.168.1.7",), "192.168.1.7", True),
        (("192.168.1.7",), "192.168.1.8", False),
        (("fd00::/8",), "fd12:3456::1", True),
        (("fd00::/8",), "fe80::1", False),
        (("::1",), "::1", True),
        (("127.0.0.1", "::1"), "127.0.0.1", True),
        (("10.0.0.0/8",), "::ffff:10.0.0.9", True),  # a dual-stack listener's IPv4 peer
        (("10.0.0.0/8",), "not-an-ip", False),
    ],
)
async def test_cidr_trust_entries(trusted: tuple[str, ...], peer: str, believed: bool) -> None:
    scope = await run([("X-Forwarded-For", CLIENT)], trusted=trusted, peer=peer)
    assert (client_of(scope) == CLIENT) is believed


def test_parse_networks_accepts_hosts_and_networks() -> None:
    networks = parse_networks(["10.0.0.1", " 10.0.0.0/8 ", "", "2001:db8::/32", "10.1.2.3/8"])
    assert networks == [
        ipaddress.ip_network("10.0.0.1/32"),
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("10.0.0.0/8"),
    ]


@pytest.mark.parametrize("entry", ["*", "localhost", "10.0.0.0/33", "300.1.1.1"])
def test_parse_networks_refuses_bad_entries(entry: str) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - ipaddress raises plain ValueError
        parse_networks([entry])


# ---- IPv6 and RFC 7239 -------------------------------------------------------------------


async def test_x_forwarded_for_ipv6() -> None:
    scope = await run([("X-Forwarded-For", "2001:db8::7")], trusted=("::1",), peer="::1")
    assert client_of(scope) == "2001:db8::7"


@pytest.mark.parametrize(
    ("value", "client"),
    [
        ("1.2.3.4:5678", "1.2.3.4"),
        ("[2001:db8::9]:443", "2001:db8::9"),
        ("[2001:db8::9]", "2001:db8::9"),
        ("2001:DB8:0:0::9", "2001:db8::9"),
    ],
)
async def test_x_forwarded_for_ports_and_brackets(value: str, client: str) -> None:
    scope = await run([("X-Forwarded-For", value)])
    assert client_of(scope) == client


async def test_client_sent_forwarded_is_ignored_when_the_proxy_sets_x_forwarded_for() -> None:
    scope = await run(
        [("Forwarded", "for=6.6.6.6;proto=https"), ("X-Forwarded-For", CLIENT)],
        mode="x-forwarded-for",
    )
    assert client_of(scope) == CLIENT
    assert scope["scheme"] == "http"


async def test_client_sent_x_forwarded_for_is_ignored_when_the_proxy_sets_forwarded() -> None:
    scope = await run(
        [("X-Forwarded-For", "6.6.6.6"), ("Forwarded", f"for={CLIENT}")], mode="forwarded"
    )
    assert client_of(scope) == CLIENT


async def test_forwarded_for_and_proto() -> None:
    scope = await run([("Forwarded", f"for={CLIENT};proto=https;by=10.0.0.1")])
    assert client_of(scope) == CLIENT
    assert scope["scheme"] == "https"


@pytest.mark.parametrize(
    ("value", "client"),
    [
        ('for="[2001:db8:cafe::17]:4711"', "2001:db8:cafe::17"),
        ('for="[2001:db8:cafe::17]"', "2001:db8:cafe::17"),
        ("for=[2001:db8:cafe::17]", "2001:db8:cafe::17"),
        ('for="192.0.2.43:47011"', "192.0.2.43"),
        ("For=192.0.2.43", "192.0.2.43"),
        ("  for = 192.0.2.43 ; proto=http ", "192.0.2.43"),
    ],
)
async def test_forwarded_address_forms(value: str, client: str) -> None:
    scope = await run([("Forwarded", value)])
    assert client_of(scope) == client


async def test_forwarded_spoofed_leftmost_element_is_ignored() -> None:
    scope = await run([("Forwarded", f"for=6.6.6.6;proto=http, for={CLIENT};proto=https")])
    assert client_of(scope) == CLIENT
    assert scope["scheme"] == "https"


async def test_forwarded_proto_from_beyond_an_untrusted_hop_is_ignored() -> None:
    scope = await run([("Forwarded", f"for=6.6.6.6;proto=https, for={CLIENT};proto=http")])
    assert scope["scheme"] == "http"


async def test_forwarded_chain_through_trusted_proxies() -> None:
    scope = await run(
        [("Forwarded", f'for=6.6.6.6, for={CLIENT}, for="[fd00::2]:80";proto=https')],
        trusted=("10.0.0.0/8", "fd00::/8"),
    )
    assert client_of(scope) == CLIENT
    assert scope["scheme"] == "https"


@pytest.mark.parametrize("value", ["for=unknown", 'for="_hidden"', "for=_gazonk", "by=10.0.0.2"])
async def test_forwarded_obfuscated_or_missing_for_keeps_the_peer(value: str) -> None:
    scope = await run([("Forwarded", f"{value};proto=https")])
    assert scope["client"] == (PROXY, 51000)
    assert scope["scheme"] == "https"


GARBAGE = [
    "",
    " ",
    ",,,",
    ";;;",
    "for=",
    'for="',
    'for="[',
    "for=[::1",
    "for=[]",
    "for=999.1.1.1",
    "for=1.2.3.4.5",
    "for=1.2.3.4:abc:def",
    'for="unterminated',
    "for=\x00\x01",
    "for=\xff\xfe",
    "proto=javascript;for=1.2.3.4",
    "for=1.2.3.4;proto=https;proto=gopher",
    "=" * 1000,
    "for=" + "1" * 10_000,
    ("for=1.2.3.4;" * 2000),
    '"' * 5000,
    "for=" + "\\" * 5000,
]


@pytest.mark.parametrize("value", GARBAGE)
@pytest.mark.parametrize("header", ["Forwarded", "X-Forwarded-For", "X-Forwarded-Proto"])
async def test_garbage_values_do_not_crash(header: str, value: str) -> None:
    scope = await run([(header, value)])
    address = client_of(scope)
    assert address is not None
    ipaddress.ip_address(address)  # always a real address
    assert scope["scheme"] in ("http", "https")


# ---- scheme ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("proto", "scheme"),
    [
        ("https", "https"),
        ("HTTPS", "https"),
        (" https ", "https"),
        ("http", "http"),
        ("http, https", "https"),  # the nearest proxy's view counts
        ("javascript", "http"),
        ("", "http"),
    ],
)
async def test_x_forwarded_proto_from_trusted_peer(proto: str, scheme: str) -> None:
    scope = await run([("X-Forwarded-For", CLIENT), ("X-Forwarded-Proto", proto)])
    assert scope["scheme"] == scheme


async def test_x_forwarded_proto_alone_sets_the_scheme() -> None:
    # A TLS-terminating proxy that only says how the client connected.
    scope = await run([("X-Forwarded-Proto", "https")])
    assert scope["scheme"] == "https"
    assert scope["client"] == (PROXY, 51000)


async def test_x_forwarded_proto_from_untrusted_peer_is_ignored() -> None:
    scope = await run([("X-Forwarded-Proto", "https")], peer=CLIENT)
    assert scope["scheme"] == "http"


async def test_https_can_be_downgraded_only_by_a_trusted_proxy() -> None:
    assert (await run([("X-Forwarded-Proto", "http")], scheme="https"))["scheme"] == "http"
    scope = await run([("X-Forwarded-Proto", "http")], scheme="https", peer=CLIENT)
    assert scope["scheme"] == "https"


@pytest.mark.parametrize(
    ("headers", "scheme"),
    [
        ([("X-Forwarded-For", CLIENT), ("X-Forwarded-Proto", "https")], "wss"),
        ([("X-Forwarded-For", CLIENT), ("X-Forwarded-Proto", "http")], "ws"),
        ([("X-Forwarded-Proto", "wss")], "wss"),
        ([("X-Forwarded-Proto", "ws")], "ws"),
        ([("Forwarded", f"for={CLIENT};proto=https")], "wss"),
        ([("X-Forwarded-For", CLIENT)], "ws"),
    ],
)
async def test_websocket_scheme(headers: list[tuple[str, str]], scheme: str) -> None:
    scope = await run(headers, kind="websocket")
    assert scope["scheme"] == scheme


async def test_websocket_from_untrusted_peer_is_unchanged() -> None:
    scope = await run([("X-Forwarded-Proto", "https")], kind="websocket", peer=CLIENT)
    assert scope["scheme"] == "ws"


async def test_http_scope_never_gets_a_websocket_scheme() -> None:
    scope = await run([("X-Forwarded-Proto", "wss")])
    assert scope["scheme"] == "https"


async def test_lifespan_scope_passes_through() -> None:
    seen: list[Scope] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        seen.append(scope)

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        return None

    scope = {"type": "lifespan"}
    await ProxyHeadersMiddleware(app, trusted=[PROXY])(scope, receive, send)
    assert seen == [scope]


async def test_scope_without_client_is_unchanged() -> None:
    scope = await run([("X-Forwarded-For", CLIENT)], peer=None)
    assert scope["client"] is None


async def test_the_original_scope_is_not_mutated() -> None:
    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        return None

    async def receive() -> Message:
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        return None

    scope: dict[str, Any] = {
        "type": "http",
        "scheme": "http",
        "headers": [(b"x-forwarded-for", CLIENT.encode())],
        "client": (PROXY, 1),
    }
    await ProxyHeadersMiddleware(app, trusted=[PROXY])(scope, receive, send)
    assert scope["client"] == (PROXY, 1)
