"""A RouteGroup answers exactly as its routes would in the application's route list."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI

from bastion.fastapi.route_group import RouteGroup


def make_app() -> FastAPI:
    group = APIRouter()

    @group.get("/login")
    async def login_page() -> dict[str, str]:
        return {"page": "login"}

    @group.post("/login")
    async def login_submit() -> dict[str, str]:
        return {"submitted": "login"}

    @group.post("/items/{item_id}/delete")
    async def delete_item(item_id: int) -> dict[str, int]:
        return {"deleted": item_id}

    app = FastAPI()
    app.router.routes.append(RouteGroup(group.routes))  # type: ignore[arg-type]

    @app.get("/items/export")
    async def export_items() -> dict[str, str]:
        return {"route": "export"}

    @app.get("/{path:path}")
    async def catch_all(path: str) -> dict[str, str]:
        return {"caught": path}

    return app


async def request(method: str, path: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=make_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        return await client.request(method, path)


async def test_each_method_of_a_grouped_path_reaches_its_route() -> None:
    assert (await request("GET", "/login")).json() == {"page": "login"}
    assert (await request("POST", "/login")).json() == {"submitted": "login"}


async def test_path_parameters_reach_the_grouped_route() -> None:
    response = await request("POST", "/items/42/delete")
    assert response.json() == {"deleted": 42}


async def test_a_grouped_path_with_another_method_is_405_not_the_catch_all() -> None:
    response = await request("DELETE", "/items/42/delete")
    assert response.status_code == 405
    assert response.headers["allow"] == "POST"


async def test_grouped_routes_win_over_a_later_catch_all() -> None:
    assert (await request("GET", "/login")).json() == {"page": "login"}


async def test_paths_outside_the_group_reach_the_application_routes() -> None:
    assert (await request("GET", "/items/export")).json() == {"route": "export"}
    assert (await request("GET", "/items/7")).json() == {"caught": "items/7"}
    assert (await request("GET", "/elsewhere")).json() == {"caught": "elsewhere"}


async def test_a_trailing_slash_on_a_grouped_path_falls_through_like_any_other_path() -> None:
    # The catch-all takes it, as it would without the group (no redirect: a route matched).
    assert (await request("GET", "/login/")).json() == {"caught": "login/"}


def test_url_path_for_finds_grouped_routes() -> None:
    app = make_app()
    assert app.url_path_for("delete_item", item_id=3) == "/items/3/delete"
    assert app.url_path_for("login_page") == "/login"
