"""Bastion's browser pages as one entry of the application's route list.

Starlette tries an application's routes in order until one matches, and with FastAPI 0.16x
ruling out one route costs about 1.5 us of CPU. Bastion's routes come first (so that no
catch-all route of the application can shadow ``/login`` or ``/api/token``), which made
every request for one of the application's own routes pay for each of them. The pages
(``/``, ``/login``, ``/account/...``, ``/admin/...``) are the bulk of them and are not in
the OpenAPI document, so they sit behind a :class:`RouteGroup` that rules a path out with
one set lookup and one prefix test, then defers to its routes exactly as the router would.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi.routing import APIRoute

# The function Starlette's own routes match against, so the quick check sees the same path.
from starlette._utils import get_route_path
from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send


class RouteGroup(BaseRoute):
    """Routes tried in order, behind a quick check of the path.

    ``matches`` answers like a router over ``routes``: the first full match, else the first
    partial one (a known path with another method, so the route answers 405). The matching
    route's child scope carries it as ``scope["route"]`` (FastAPI sets that), which is how
    :meth:`handle` finds it.
    """

    def __init__(self, routes: Sequence[APIRoute]) -> None:
        self.routes = list(routes)
        self._ids = frozenset(id(route) for route in self.routes)
        exact: set[str] = set()
        prefixes: set[str] = set()
        for route in self.routes:
            head, brace, _ = route.path.partition("{")
            if brace:
                prefixes.add(head)
            else:
                exact.add(route.path)
        self._exact = frozenset(exact)
        self._prefixes = tuple(sorted(prefixes))

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        path = get_route_path(scope)
        if path not in self._exact and not path.startswith(self._prefixes):
            return Match.NONE, {}
        partial: Scope | None = None
        for route in self.routes:
            match, child_scope = route.matches(scope)
            if match is Match.FULL:
                return match, child_scope
            if match is Match.PARTIAL and partial is None:
                partial = child_scope
        if partial is not None:
            return Match.PARTIAL, partial
        return Match.NONE, {}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = scope.get("route")
        if not isinstance(route, BaseRoute) or id(route) not in self._ids:
            raise RuntimeError("RouteGroup.handle called for a route it did not match")
        await route.handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        for route in self.routes:
            try:
                return route.url_path_for(name, **path_params)
            except NoMatchFound:
                continue
        raise NoMatchFound(name, path_params)
