"""The collector tuning ``bastion serve`` applies once an application has started
(:mod:`bastion.asgi.runtime`), in this process: each test restores the collector."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from starlette.types import Message, Receive, Scope, Send

from bastion.asgi import runtime


@pytest.fixture(autouse=True)
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


async def test_a_fastapi_app_is_tuned_after_its_own_startup_ran() -> None:
    seen: list[int] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        seen.append(gc.get_freeze_count())  # the app's start-up runs untuned
        yield

    app = FastAPI(lifespan=lifespan)
    assert runtime.tuned_after_startup(app) is app  # nothing added to a request's path
    async with app.router.lifespan_context(app):
        assert seen == [0]
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold()[0] == runtime.GEN0_THRESHOLD


async def test_a_plain_asgi_app_is_tuned_when_it_reports_startup_complete() -> None:
    async def plain(scope: Scope, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        assert gc.get_freeze_count() == 0
        await send({"type": "lifespan.startup.complete"})

    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "lifespan.startup"}

    async def send(message: Message) -> None:
        sent.append(message)

    await runtime.tuned_after_startup(plain)({"type": "lifespan"}, receive, send)
    assert sent == [{"type": "lifespan.startup.complete"}]
    assert gc.get_freeze_count() > 0


def test_a_higher_threshold_chosen_elsewhere_is_kept() -> None:
    gc.set_threshold(50_000, 10, 10)
    runtime.tune_collector()
    assert gc.get_threshold() == (50_000, 10, 10)


def test_served_app_loads_the_target_and_tunes_unless_told_not_to(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(runtime.TARGET_ENV, f"{__name__}:make_app")
    monkeypatch.setenv(runtime.GC_TUNING_ENV, "0")
    untouched: Any = runtime.served_app()
    assert untouched.router.lifespan_context is ORIGINAL_LIFESPAN[untouched]

    monkeypatch.setenv(runtime.GC_TUNING_ENV, "1")
    tuned: Any = runtime.served_app()
    assert tuned.router.lifespan_context is not ORIGINAL_LIFESPAN[tuned]


ORIGINAL_LIFESPAN: dict[FastAPI, Any] = {}


def make_app() -> FastAPI:
    app = FastAPI()
    ORIGINAL_LIFESPAN[app] = app.router.lifespan_context
    return app
