"""bastion.hooks on its own: what a hook may be, shutdown, and docs/hooks.md kept true."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import re
from pathlib import Path

import pytest

import bastion.hooks
from bastion.exceptions import ConfigError
from bastion.hooks import Hooks, SignedOut

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "hooks.md").read_text()
EXAMPLE = ROOT / "docs" / "examples" / "hooks_app.py"
HOOK_NAMES = [f.name for f in dataclasses.fields(Hooks) if f.name.startswith("on_")]
EVENT = SignedOut(user_id=1, username="alice", ip=None, user_agent=None, session_ref="abc")


def test_a_hook_must_be_an_async_function() -> None:
    def not_async(event: SignedOut) -> None:
        pass

    with pytest.raises(ConfigError, match="on_signed_out must be an async function"):
        Hooks(on_signed_out=not_async)  # type: ignore[arg-type]


async def test_an_async_callable_object_or_partial_is_a_hook() -> None:
    seen: list[tuple[str, SignedOut]] = []

    class Listener:
        async def __call__(self, event: SignedOut) -> None:
            seen.append(("object", event))

    async def tagged(tag: str, event: SignedOut) -> None:
        seen.append((tag, event))

    await Hooks(on_signed_out=Listener()).emit(EVENT)
    await Hooks(on_signed_out=functools.partial(tagged, "partial")).emit(EVENT)
    assert seen == [("object", EVENT), ("partial", EVENT)]


@pytest.mark.parametrize("timeout", [0, -1.0, float("nan"), float("inf")])
def test_the_timeout_must_be_positive(timeout: float) -> None:
    with pytest.raises(ConfigError, match="timeout"):
        Hooks(timeout=timeout)


async def test_no_hook_no_call() -> None:
    await Hooks().emit(EVENT)  # nothing registered: nothing to run, nothing raised


async def test_hooks_still_running_at_shutdown_are_cancelled_after_the_timeout(
    caplog: pytest.LogCaptureFixture,
) -> None:
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def stuck(event: SignedOut) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    hooks = Hooks(on_signed_out=stuck, timeout=0.01)
    await hooks.emit(EVENT)  # returns after the timeout, the hook still running
    assert started.is_set()
    assert not cancelled.is_set()
    with caplog.at_level(logging.WARNING, logger="bastion.hooks"):
        await hooks.aclose()
    assert cancelled.is_set()
    assert "hook on_signed_out cancelled at shutdown" in caplog.text


def test_every_hook_event_and_field_is_documented() -> None:
    rows = re.findall(r"^\| `(on_[a-z_]+)` \| `([A-Za-z]+)` \| ([^|]*) \|", DOC, re.M)
    assert [name for name, _, _ in rows] == HOOK_NAMES
    for name, event_name, field_cell in rows:
        hook_type = str(Hooks.__dataclass_fields__[name].type)
        assert f"[[{event_name}]" in hook_type, name
        event_type = getattr(bastion.hooks, event_name)
        fields = [f.name for f in dataclasses.fields(event_type)]
        assert re.findall(r"`([a-z_]+)`", field_cell) == fields, event_name


def test_the_docs_snippet_is_the_example_file() -> None:
    # The page includes the example file itself (pymdownx.snippets).
    snippet = re.search(r'```python[^\n]*\n--8<-- "docs/examples/hooks_app.py:hooks"\n```', DOC)
    assert snippet is not None
    assert "# --8<-- [start:hooks]" in EXAMPLE.read_text()
