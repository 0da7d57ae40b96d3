"""Jinja2 pages: Bastion's templates, overridable from the user's own template folder."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse

from bastion.asgi.headers import CSP_NONCE_KEY
from bastion.asgi.sessions import session_state
from bastion.csrf import mask_token
from bastion.fastapi.dependencies import principal_from_session


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "-"
    return datetime.fromtimestamp(timestamp, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _iso(timestamp: float | None) -> str:
    if timestamp is None:
        return ""
    return datetime.fromtimestamp(timestamp, tz=UTC).isoformat(timespec="seconds")


_UNITS = (("day", 86_400), ("hour", 3_600), ("minute", 60))


def _duration(seconds: int) -> str:
    """A setting's seconds in words, in the largest unit that divides them: "14 days"."""
    for name, size in _UNITS:
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {name}{'' if count == 1 else 's'}"
    return f"{seconds} second{'' if seconds == 1 else 's'}"


class Templates:
    """Renders pages with the request's CSRF token and CSP nonce available."""

    def __init__(self, directory: str | Path | None = None) -> None:
        loaders: list[Any] = []
        if directory is not None:
            loaders.append(FileSystemLoader(str(directory)))
        loaders.append(PackageLoader("bastion", "templates"))
        self.env = Environment(
            loader=ChoiceLoader(loaders),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["when"] = _when
        self.env.filters["iso"] = _iso
        self.env.filters["duration"] = _duration

    def render(
        self,
        request: Request,
        name: str,
        context: Mapping[str, Any] | None = None,
        *,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> HTMLResponse:
        html = self.env.get_template(name).render(self.context(request, context))
        return HTMLResponse(html, status_code=status_code, headers=headers)

    def context(self, request: Request, extra: Mapping[str, Any] | None) -> dict[str, Any]:
        state = session_state(request.scope)
        # One masked token per response (BREACH): every form and the meta tag share it.
        token = mask_token(state.ensure_csrf_secret())
        return {
            "request": request,
            "csrf_token": token,
            "csp_nonce": request.scope.get(CSP_NONCE_KEY, ""),
            "user": principal_from_session(state.session),
            "static": lambda path: f"/_bastion/static/{path}",
            **(extra or {}),
        }
