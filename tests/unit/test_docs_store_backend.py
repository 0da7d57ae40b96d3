"""docs/howto/store-backend.md's example backend, docs/examples/counting_store.py, passes the
whole store contract suite: every test of tests/contract/test_store_contract.py that takes
only ``store`` (and ``elapse``), here on a CountingStore over a MemoryStore."""

from __future__ import annotations

import importlib.util
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import pytest_asyncio

from bastion.clock import FakeClock
from bastion.stores import MemoryStore, Store
from tests.contract import test_store_contract as contract

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "counting_store.py"
# The arguments of the contract tests that run on any backend (the rest test one backend).
PORTABLE = {"store", "elapse", "key", "ttl"}


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("counting_store", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CountingStore: Any = load_example().CountingStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def elapse(clock: FakeClock) -> Callable[[float], Awaitable[None]]:
    async def elapse(seconds: float) -> None:
        clock.advance(seconds)

    return elapse


@pytest_asyncio.fixture
async def store(clock: FakeClock) -> AsyncIterator[Store]:
    counting = CountingStore(MemoryStore(namespace="contract", clock=clock))
    yield counting.child("t")
    await counting.aclose()


def portable_contract_tests() -> dict[str, Any]:
    tests = {}
    for name, function in vars(contract).items():
        if (
            name.startswith("test_")
            and inspect.iscoroutinefunction(function)
            and set(inspect.signature(function).parameters) <= PORTABLE
        ):
            tests[name] = function
    return tests


globals().update(portable_contract_tests())


def test_the_contract_tests_run_here() -> None:
    assert len(portable_contract_tests()) >= 60


def test_the_example_is_a_store_and_counts_through_its_children() -> None:
    counting = CountingStore(MemoryStore(namespace="app"))
    assert isinstance(counting, Store)
    assert isinstance(counting.child("cache"), Store)


async def test_the_example_counts_each_operation() -> None:
    counting = CountingStore(MemoryStore(namespace="app"))
    child = counting.child("cache")
    await child.set("k", b"v", 60)
    assert await child.get("k") == b"v"
    assert await child.get_many(["k", "other"]) == [b"v", None]
    assert counting.calls == {"set": 1, "get": 1, "get_many": 1}
