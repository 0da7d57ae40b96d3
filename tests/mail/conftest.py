"""Helpers for the mail tests: a mailer pointed at a test SMTP server, with quick retries."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from bastion.mail import Mailer, MailTemplates, RetryPolicy, backend_from_settings
from bastion.settings import Settings
from tests.mail_server import WAIT, MailServer

# Retries at once (a few hundredths of a second apart): the tests wait on counts, not time.
QUICK_RETRY = RetryPolicy(attempts=3, first_delay=0.02, factor=2.0)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for name in list(os.environ):
        if name.startswith("BASTION_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)  # no .env file of the caller's


def make_mailer(
    tmp_path: Path,
    server: MailServer | None = None,
    *,
    retry: RetryPolicy = QUICK_RETRY,
    capacity: int = 100,
    templates_dir: Path | None = None,
    **settings: Any,
) -> Mailer:
    """A mailer on ``server`` (or the backend ``settings`` name), data folder ``tmp_path``."""
    values = {"data_dir": tmp_path / "data", **(server.settings() if server else {}), **settings}
    resolved = Settings(**values)
    templates = MailTemplates(
        templates_dir, site_name=resolved.site_name, public_url=resolved.public_url
    )
    return Mailer(
        backend_from_settings(resolved),
        templates,
        sender=resolved.email_from,
        retry=retry,
        capacity=capacity,
    )


MakeMailer = Callable[..., Mailer]


@pytest.fixture
async def mailers(tmp_path: Path) -> AsyncIterator[MakeMailer]:
    """``mailers(server, **settings)``: mailers closed (without waiting) after the test."""
    made: list[Mailer] = []

    def make(server: MailServer | None = None, **kwargs: Any) -> Mailer:
        mailer = make_mailer(tmp_path, server, **kwargs)
        made.append(mailer)
        return mailer

    yield make
    for mailer in made:
        await mailer.aclose(timeout=0)


async def until(condition: Callable[[], bool]) -> None:
    """Wait for ``condition`` (a bound against a hang, not a timing check)."""
    async with asyncio.timeout(WAIT):
        while not condition():  # noqa: ASYNC110 - the stats have no event to wait on
            await asyncio.sleep(0.01)


def mail_log(records: Iterable[logging.LogRecord]) -> str:
    """Everything logger ``bastion.mail`` said, one record a line."""
    return "\n".join(r.getMessage() for r in records if r.name == "bastion.mail")
