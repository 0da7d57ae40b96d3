"""Jinja2 pages: Bastion's templates, overridable from the user's own template folder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

from jinja2 import Environment, pass_context, select_autoescape
from jinja2.runtime import Context
from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import HTMLResponse

from bastion.asgi.headers import CSP_NONCE_KEY
from bastion.asgi.sessions import session_state
from bastion.csrf import mask_token
from bastion.fastapi.dependencies import principal_from_session
from bastion.i18n.jinja import install_translations
from bastion.template_folders import template_loader


class Templates:
    """Renders pages with the request's CSRF token and CSP nonce available.

    ``directory``, the application's own template folder, comes first: a file there named
    like one of Bastion's (``base.html``, ``login.html``, ...) replaces it on every page.
    """

    def __init__(self, directory: str | Path | None = None, *, site_name: str = "Bastion") -> None:
        self.env = Environment(
            loader=template_loader(directory),
            autoescape=select_autoescape(default=True, default_for_string=True),
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=["jinja2.ext.i18n"],
        )
        install_translations(self.env)
        # A global, not a render variable: error pages, rendered outside a request's
        # context, get it too.
        self.env.globals["site_name"] = site_name

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
        token = response_csrf_token(request)
        return {
            "request": request,
            "csrf_token": token,
            "csp_nonce": request.scope.get(CSP_NONCE_KEY, ""),
            "user": principal_from_session(state.session),
            "static": lambda path: f"/_bastion/static/{path}",
            **(extra or {}),
        }


# The masked CSRF token of this response, with the secret it masks.
_MASKED_CSRF_KEY = "bastion.masked_csrf"


def response_csrf_token(request: Request) -> str:
    """The CSRF token for this response's forms and meta tag, minting a pre-session for
    an anonymous visitor. One masked token per response (BREACH): every form and the meta
    tag share it; a secret replaced during the request (sign-in) gets a token of its own."""
    secret = session_state(request.scope).ensure_csrf_secret()
    kept = request.scope.get(_MASKED_CSRF_KEY)
    if kept is not None and kept[0] == secret:
        return str(kept[1])
    token = mask_token(secret)
    request.scope[_MASKED_CSRF_KEY] = (secret, token)
    return token


class _HasEnvironment(Protocol):
    @property
    def env(self) -> Environment: ...


def add_template_helpers(templates: Environment | _HasEnvironment) -> None:
    """Give the application's own Jinja2 templates (``fastapi.templating.Jinja2Templates``
    or a plain ``jinja2.Environment``) Bastion's helpers, as globals that read the
    ``request`` of the render (``TemplateResponse`` passes it; with a plain environment,
    render with ``request=request``):

    - ``{{ csrf_field() }}``: the hidden ``csrf_token`` input for a urlencoded form;
    - ``{{ csrf_meta() }}``: ``<meta name="csrf-token" content="...">`` for scripts that
      send ``X-CSRF-Token`` (``fetch``, multipart uploads);
    - ``{{ csp_nonce() }}``: the nonce for the page's own ``<script nonce="...">`` and
      ``<style nonce="...">``.
    """
    env = templates if isinstance(templates, Environment) else templates.env
    env.globals.update(csrf_field=_csrf_field, csrf_meta=_csrf_meta, csp_nonce=_csp_nonce)


def _request_of(context: Context, helper: str) -> Request:
    request = context.get("request")
    if not isinstance(request, Request):
        raise RuntimeError(f"{helper}() needs the request: render the template with request=")
    return request


@pass_context
def _csrf_field(context: Context) -> Markup:
    token = response_csrf_token(_request_of(context, "csrf_field"))
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(token)


@pass_context
def _csrf_meta(context: Context) -> Markup:
    token = response_csrf_token(_request_of(context, "csrf_meta"))
    return Markup('<meta name="csrf-token" content="{}">').format(token)


@pass_context
def _csp_nonce(context: Context) -> str:
    return str(_request_of(context, "csp_nonce").scope.get(CSP_NONCE_KEY, ""))
