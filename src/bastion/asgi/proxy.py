"""Client address and scheme from a reverse proxy, believed only from trusted proxies."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from typing import Literal

from starlette.types import ASGIApp, Receive, Scope, Send

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Believed proto values (a proxy in front of a websocket may say ws/wss): is it TLS?
_SECURE = {"http": False, "https": True, "ws": False, "wss": True}
_FORWARDED_PAIR = re.compile(r'\s*([a-zA-Z]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;,\s]*)\s*')


def parse_networks(entries: Sequence[str]) -> list[Network]:
    """``10.0.0.1`` or ``10.0.0.0/8`` entries (a bad entry is a configuration error)."""
    return [ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry]


def _address(text: str) -> str | None:
    """A bare IP address from a forwarded value (strips ports, brackets, quotes)."""
    value = text.strip().strip('"')
    if value.startswith("["):
        value = value[1 : value.find("]")] if "]" in value else ""
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        return None


def _forwarded_hops(header: str) -> list[tuple[str | None, str | None]]:
    """(for, proto) of each element of an RFC 7239 ``Forwarded`` header."""
    hops = []
    for element in header.split(","):
        values: dict[str, str] = {}
        for part in element.split(";"):
            match = _FORWARDED_PAIR.fullmatch(part)
            if match:
                values[match.group(1).lower()] = match.group(2).strip('"')
        hops.append((_address(values["for"]) if "for" in values else None, values.get("proto")))
    return hops


class ProxyHeadersMiddleware:
    """Rewrites ``scope["client"]`` and ``scope["scheme"]`` from proxy headers, but only when
    the direct peer is a trusted proxy, and then walks the chain from the right, stopping at
    the first address that is not itself trusted (so a client cannot spoof its address by
    sending its own X-Forwarded-For).

    Only the header family the proxy actually sets is read (``header``): most proxies append
    to X-Forwarded-For and pass a client's own ``Forwarded`` through untouched, so reading
    both would let a client choose the one it forged."""

    def __init__(
        self,
        app: ASGIApp,
        trusted: Sequence[str],
        header: Literal["x-forwarded-for", "forwarded"] = "x-forwarded-for",
    ) -> None:
        self.app = app
        self.trusted = parse_networks(trusted)
        self.header = header

    def is_trusted(self, address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        # A dual-stack listener reports IPv4 peers as ::ffff:a.b.c.d.
        mapped = ip.ipv4_mapped if isinstance(ip, ipaddress.IPv6Address) else None
        return any(
            ip in network or (mapped is not None and mapped in network) for network in self.trusted
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket") and self.trusted:
            client = scope.get("client")
            if client and self.is_trusted(client[0]):
                scope = self._rewrite(scope)
        await self.app(scope, receive, send)

    def _rewrite(self, scope: Scope) -> Scope:
        headers: dict[bytes, list[str]] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.lower(), []).append(value.decode("latin-1"))
        hops: list[tuple[str | None, str | None]]
        if self.header == "forwarded":
            if b"forwarded" not in headers:
                return scope
            hops = _forwarded_hops(",".join(headers[b"forwarded"]))
        elif b"x-forwarded-for" in headers or b"x-forwarded-proto" in headers:
            # A proxy may send the scheme alone; then the address list is one empty hop.
            addresses = ",".join(headers.get(b"x-forwarded-for", [])).split(",")
            protos = ",".join(headers.get(b"x-forwarded-proto", [])).split(",")
            proto = protos[-1].strip() if protos and protos[-1].strip() else None
            hops = [(_address(a), None) for a in addresses]
            if hops:
                hops[-1] = (hops[-1][0], proto)
        else:
            return scope
        client, scheme = scope.get("client"), scope.get("scheme", "http")
        for address, proto in reversed(hops):
            if proto and proto.strip().lower() in _SECURE:
                scheme = "https" if _SECURE[proto.strip().lower()] else "http"
            if address is None:
                break  # an unparseable hop: stop believing what lies beyond it
            client = (address, 0)
            if not self.is_trusted(address):
                break
        if scope["type"] == "websocket":
            scheme = {"http": "ws", "https": "wss"}.get(scheme, scheme)
        else:
            scheme = {"ws": "http", "wss": "https"}.get(scheme, scheme)
        return {**scope, "client": client, "scheme": scheme}
