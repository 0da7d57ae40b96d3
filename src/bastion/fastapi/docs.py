"""OpenAPI docs: Swagger UI 5, vendored in Bastion's static files, under the strict CSP.

Swagger UI 4 cannot read the OpenAPI 3.1 documents FastAPI writes, so the assets are
Swagger UI 5 (``static/swagger-ui/``, see its README for version and source). The page has
no inline script or style: it runs under the same nonce-based CSP as every other page.
"""

from __future__ import annotations

from html import escape

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.routing import BaseRoute

from bastion.i18n import current_language, gettext

SWAGGER_ASSETS = "/_bastion/static/swagger-ui"
FAVICON = "/_bastion/static/favicon.svg"


def _is_route(route: BaseRoute, path: str) -> bool:
    return getattr(route, "path", None) == path


def docs_page(site_name: str, openapi_url: str) -> str:
    """The page; its title in the current language. Swagger UI itself speaks English, so
    the document stays ``lang="en"`` and the title carries its own ``lang``."""
    title = gettext("API docs")
    language = current_language()
    title_lang = "" if language == "en" else f' lang="{escape(language)}"'
    return f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <meta name="referrer" content="same-origin">
  <title{title_lang}>{escape(title)} · {escape(site_name)}</title>
  <link rel="icon" href="{FAVICON}" type="image/svg+xml">
  <link rel="stylesheet" href="{SWAGGER_ASSETS}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{escape(openapi_url)}"></div>
  <script src="{SWAGGER_ASSETS}/swagger-ui-bundle.js"></script>
  <script src="/_bastion/static/docs-init.js"></script>
</body>
</html>"""


def install_docs(app: FastAPI, site_name: str) -> None:
    """Replace FastAPI's CDN-based Swagger UI (and ReDoc) with a local one at ``docs_url``,
    titled like every other page (``BASTION_SITE_NAME``)."""
    docs_url, openapi_url = app.docs_url, app.openapi_url
    removed = {p for p in (docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p}
    app.router.routes[:] = [
        r for r in app.router.routes if not any(_is_route(r, p) for p in removed)
    ]
    if not docs_url or not openapi_url:
        return

    async def docs() -> HTMLResponse:
        # Rendered per request: the title is in the request's language.
        return HTMLResponse(docs_page(site_name, openapi_url))

    app.add_api_route(docs_url, docs, methods=["GET"], include_in_schema=False)
