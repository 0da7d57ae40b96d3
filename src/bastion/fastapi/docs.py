"""OpenAPI docs served from local assets, under the same strict CSP as every page."""

from __future__ import annotations

from html import escape

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from starlette.routing import BaseRoute
from starlette.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

DOCS_ASSETS = "/_bastion/swagger"
# Swagger UI sets style attributes from script; only styles get 'unsafe-inline'.
DOCS_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)


def _is_route(route: BaseRoute, path: str) -> bool:
    return getattr(route, "path", None) == path


def install_docs(app: FastAPI) -> None:
    """Replace FastAPI's CDN-based Swagger UI (and ReDoc) with a local one at ``docs_url``."""
    docs_url, openapi_url = app.docs_url, app.openapi_url
    removed = {p for p in (docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url) if p}
    app.router.routes[:] = [
        r for r in app.router.routes if not any(_is_route(r, p) for p in removed)
    ]
    if not docs_url or not openapi_url:
        return
    app.mount(DOCS_ASSETS, StaticFiles(directory=str(swagger_ui_path)), name="bastion-swagger")
    page = f"""<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{escape(app.title)} - API docs</title>
  <link rel="stylesheet" href="{DOCS_ASSETS}/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui" data-openapi-url="{escape(openapi_url)}"></div>
  <script src="{DOCS_ASSETS}/swagger-ui-bundle.js"></script>
  <script src="/_bastion/static/docs-init.js"></script>
</body>
</html>"""

    async def docs() -> HTMLResponse:
        return HTMLResponse(page, headers={"Content-Security-Policy": DOCS_CSP})

    app.add_api_route(docs_url, docs, methods=["GET"], include_in_schema=False)
