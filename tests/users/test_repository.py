"""UserRepository against real SQLite and PostgreSQL databases."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from bastion.clock import FakeClock
from bastion.db import create_engine
from bastion.exceptions import StoreUnavailable, UserError
from bastion.users.models import UserRole
from bastion.users.repository import DUPLICATE_USER, RoleRecord, UserRepository
from bastion.users.roles import RoleInUse, UnknownRole
from tests.roles import define_roles

HASH = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo"


def at(clock: FakeClock) -> datetime:
    return datetime.fromtimestamp(clock.now, tz=UTC)


# -- creating and finding users ---------------------------------------------------------------


async def test_created_user_is_found_by_id_and_name(repo: UserRepository) -> None:
    created = await repo.create_user("Alice", HASH, email="alice@example.org")

    by_id = await repo.get_by_id(created.id)
    by_name = await repo.get_by_username("alice")

    assert by_id == created
    assert by_name == created
    assert created.username == "Alice"
    assert created.email == "alice@example.org"
    assert created.password_hash == HASH
    assert created.is_active is True
    assert created.roles == frozenset()


async def test_display_name_is_kept_as_typed(repo: UserRepository) -> None:
    await repo.create_user("  MiXeD_Case.Name ", HASH)

    found = await repo.get_by_username("mixed_case.name")

    assert found is not None
    assert found.username == "MiXeD_Case.Name"


@pytest.mark.parametrize("look_alike", ["ALICE", "alice", "Ａｌｉｃｅ", " Alice ", "ＡＬＩＣＥ"])
async def test_look_alike_usernames_collide(repo: UserRepository, look_alike: str) -> None:
    await repo.create_user("Alice", HASH)

    with pytest.raises(UserError, match="already exists"):
        await repo.create_user(look_alike, HASH)
    assert await repo.get_by_username(look_alike) is not None
    assert await repo.count_users() == 1


@pytest.mark.parametrize(("first", "second"), [("ﬁnn", "finn"), ("FINN", "ﬁnn"), ("ﬀ", "FF")])
async def test_ligature_usernames_collide_with_plain_letters(
    repo: UserRepository, first: str, second: str
) -> None:
    await repo.create_user(first, HASH)

    with pytest.raises(UserError, match="already exists"):
        await repo.create_user(second, HASH)


# Unicode TR39 confusables: different code points, the same look.
CYRILLIC_A_ADMIN = "\u0430dmin"  # Cyrillic small a
DOTLESS_I_ADMIN = "adm\u0131n"  # Latin small dotless i
DOTTED_CAPITAL_I_ADMIN = "ADM\u0130N"  # Latin capital I with dot above: folds to "i\u0307"


@pytest.mark.parametrize(
    "look_alike", [DOTLESS_I_ADMIN, DOTTED_CAPITAL_I_ADMIN, "adrnin", "ADRNIN"]
)
async def test_confusable_usernames_are_refused_as_duplicates(
    repo: UserRepository, look_alike: str
) -> None:
    await repo.create_user("admin", HASH)

    with pytest.raises(UserError) as refused:
        await repo.create_user(look_alike, HASH)

    assert str(refused.value) == str(DUPLICATE_USER)  # word for word a duplicate's answer
    assert await repo.count_users() == 1


async def test_the_older_look_alike_blocks_the_plain_name_too(repo: UserRepository) -> None:
    await repo.create_user(DOTLESS_I_ADMIN, HASH)

    with pytest.raises(UserError, match="already exists"):
        await repo.create_user("Admin", HASH)


async def test_whole_script_look_alike_is_refused(repo: UserRepository) -> None:
    await repo.create_user("paypal", HASH)

    # All Cyrillic but the final Latin "l": mixes scripts, refused before any comparison.
    with pytest.raises(UserError, match="scripts"):
        await repo.create_user("\u0440\u0430\u0443\u0440\u0430l", HASH)
    # All Cyrillic, so one script, yet it looks just like "paypa".
    await repo.create_user("paypa", HASH)
    with pytest.raises(UserError, match="already exists"):
        await repo.create_user("\u0440\u0430\u0443\u0440\u0430", HASH)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        (CYRILLIC_A_ADMIN, "scripts"),
        ("alpha\u03b2eta", "scripts"),  # Latin with a Greek beta
        ("admin\u3164", "invisible"),  # Hangul filler: a letter that shows nothing
        ("ad\u034fmin", "invisible"),  # combining grapheme joiner
        ("admin\ufe0f", "invisible"),  # variation selector
        ("ad\u200bmin", "invisible"),  # zero-width space (a format character)
    ],
)
async def test_new_names_must_be_visible_and_of_one_script(
    repo: UserRepository, name: str, message: str
) -> None:
    with pytest.raises(UserError, match=message):
        await repo.create_user(name, HASH)
    assert await repo.count_users() == 0


@pytest.mark.parametrize(
    "name",
    [
        "\u0418\u0432\u0430\u043d",
        "\u0395\u03bb\u03ad\u03bd\u03b7",
        "\u5c71\u7530\u305f\u308d\u3046",
        "tanaka\u592a\u90ce",
        "\u0130smail",
        "j\u00f6rg.m\u00fcller-2",
        "\u0e2a\u0e21\u0e0a\u0e32\u0e22",
    ],
)
async def test_names_in_one_script_or_latin_with_cjk_are_accepted(
    repo: UserRepository, name: str
) -> None:
    created = await repo.create_user(name, HASH)

    assert created.username == name
    assert await repo.get_by_username(name) == created


async def test_concurrent_look_alike_registrations_let_exactly_one_win(
    repo: UserRepository,
) -> None:
    names = ["admin", DOTLESS_I_ADMIN, DOTTED_CAPITAL_I_ADMIN, "adrnin", "ADMIN"]

    results = await asyncio.gather(
        *(repo.create_user(name, HASH) for name in names), return_exceptions=True
    )

    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == len(names) - 1
    assert all(isinstance(e, UserError) and str(e) == str(DUPLICATE_USER) for e in errors)
    assert await repo.count_users() == 1


async def test_unknown_or_invalid_username_is_not_found(repo: UserRepository) -> None:
    await repo.create_user("alice", HASH)

    assert await repo.get_by_username("bob") is None
    assert await repo.get_by_username("ali ce") is None
    assert await repo.get_by_username("") is None
    assert await repo.get_by_id(999) is None


async def test_duplicate_email_is_refused_whatever_its_case(repo: UserRepository) -> None:
    await repo.create_user("alice", HASH, email="Alice@Example.org")

    with pytest.raises(UserError, match="already exists"):
        await repo.create_user("bob", HASH, email="alice@EXAMPLE.ORG")
    found = await repo.get_by_email("ALICE@example.org")
    assert found is not None
    assert found.email == "Alice@Example.org"


async def test_many_users_may_have_no_email(repo: UserRepository) -> None:
    await repo.create_user("alice", HASH)
    await repo.create_user("bob", HASH, email="")
    await repo.create_user("carol", HASH, email=None)

    assert await repo.count_users() == 3
    bob = await repo.get_by_username("bob")
    assert bob is not None
    assert bob.email is None


async def test_concurrent_creation_of_one_name_lets_exactly_one_win(
    repo: UserRepository,
) -> None:
    results = await asyncio.gather(
        *(repo.create_user(name, HASH) for name in ["racer", "RACER", "Racer", "ｒａｃｅｒ"]),
        return_exceptions=True,
    )

    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 3
    assert all(isinstance(e, UserError) and str(e) == str(DUPLICATE_USER) for e in errors)
    assert await repo.count_users() == 1


async def test_invalid_username_is_refused_before_touching_the_database(
    repo: UserRepository,
) -> None:
    with pytest.raises(UserError, match="spaces"):
        await repo.create_user("two words", HASH)
    assert await repo.count_users() == 0


async def test_password_hash_never_shows_in_repr(repo: UserRepository) -> None:
    user = await repo.create_user("alice", HASH)

    assert HASH not in repr(user)


# -- listing and searching --------------------------------------------------------------------


async def test_users_are_listed_by_name_with_paging(repo: UserRepository) -> None:
    for name in ["carol", "Alice", "bob", "dave"]:
        await repo.create_user(name, HASH)

    names = [u.username for u in await repo.list_users()]
    page = [u.username for u in await repo.list_users(offset=1, limit=2)]

    assert names == ["Alice", "bob", "carol", "dave"]
    assert page == ["bob", "carol"]
    assert await repo.count_users() == 4


async def test_search_matches_part_of_name_or_email_ignoring_case(
    repo: UserRepository,
) -> None:
    await repo.create_user("Alice", HASH, email="alice@wonder.land")
    await repo.create_user("alicia", HASH)
    await repo.create_user("bob", HASH, email="bob@wonder.land")
    await repo.create_user("carol", HASH, email="carol@example.org")

    assert [u.username for u in await repo.list_users(search="ALI")] == ["Alice", "alicia"]
    assert [u.username for u in await repo.list_users(search="Wonder")] == ["Alice", "bob"]
    assert await repo.count_users(search="ali") == 2
    assert await repo.count_users(search="   ") == 4


async def test_search_treats_like_wildcards_literally(repo: UserRepository) -> None:
    await repo.create_user("alice", HASH)
    await repo.create_user("100%_sure", HASH)

    assert [u.username for u in await repo.list_users(search="%")] == ["100%_sure"]
    assert await repo.count_users(search="_") == 1


@pytest.mark.parametrize("term", ["ali\x00", "\x00", "ali\x1b[2J", "\ud800"])
async def test_search_with_control_characters_matches_nothing_on_every_database(
    repo: UserRepository, term: str
) -> None:
    await repo.create_user("alice", HASH)

    assert await repo.list_users(search=term) == []
    assert await repo.count_users(search=term) == 0


async def test_listing_rejects_negative_paging(repo: UserRepository) -> None:
    with pytest.raises(ValueError, match="offset"):
        await repo.list_users(offset=-1)
    with pytest.raises(ValueError, match="limit"):
        await repo.list_users(limit=0)


# -- updates ----------------------------------------------------------------------------------


async def test_timestamps_come_back_aware_utc(repo: UserRepository, clock: FakeClock) -> None:
    user = await repo.create_user("alice", HASH)
    created = at(clock)
    clock.advance(60)
    await repo.record_login(user.id)
    clock.advance(60)
    await repo.set_password_hash(user.id, "new-hash")

    found = await repo.get_by_id(user.id)

    assert found is not None
    assert found.created_at == created
    assert found.last_login_at == created + timedelta(seconds=60)
    assert found.password_changed_at == at(clock)
    assert found.password_hash == "new-hash"
    for stamp in (found.created_at, found.last_login_at, found.password_changed_at):
        assert stamp is not None
        assert stamp.utcoffset() is not None
        assert stamp.tzinfo == UTC


async def test_rehashing_the_same_password_keeps_its_change_time(
    repo: UserRepository, clock: FakeClock
) -> None:
    user = await repo.create_user("alice", HASH)
    clock.advance(3600)

    await repo.set_password_hash(user.id, "rehashed", changed=False)

    found = await repo.get_by_id(user.id)
    assert found is not None
    assert found.password_hash == "rehashed"
    assert found.password_changed_at == user.password_changed_at


async def test_disabling_and_enabling_a_user(repo: UserRepository) -> None:
    user = await repo.create_user("alice", HASH, is_active=False)
    assert user.is_active is False

    await repo.set_active(user.id, True)
    enabled = await repo.get_by_id(user.id)
    await repo.set_active(user.id, False)
    disabled = await repo.get_by_id(user.id)

    assert enabled is not None
    assert enabled.is_active is True
    assert disabled is not None
    assert disabled.is_active is False


async def test_changes_to_an_unknown_user_are_refused(repo: UserRepository) -> None:
    changes: list[Callable[[], Awaitable[None]]] = [
        lambda: repo.set_password_hash(42, HASH),
        lambda: repo.set_active(42, False),
        lambda: repo.record_login(42),
        lambda: repo.delete_user(42),
        lambda: repo.set_roles(42, ["admin"]),
    ]
    for change in changes:
        with pytest.raises(UserError, match="The user was not found"):
            await change()


async def test_deleted_user_id_is_never_reused(repo: UserRepository) -> None:
    first = await repo.create_user("alice", HASH)
    await repo.delete_user(first.id)

    second = await repo.create_user("bob", HASH)

    assert second.id > first.id


# -- roles ------------------------------------------------------------------------------------


async def test_roles_are_set_replaced_and_cleared(repo: UserRepository) -> None:
    await define_roles(repo, ["admin", "auditor", "editor"])
    user = await repo.create_user("alice", HASH, roles=["editor"])
    assert user.roles == {"editor"}

    await repo.set_roles(user.id, ["admin", "auditor", "admin"])
    replaced = await repo.roles_of(user.id)
    await repo.set_roles(user.id, [])
    cleared = await repo.roles_of(user.id)

    assert replaced == {"admin", "auditor"}
    assert cleared == set()


async def test_roles_are_shared_between_users(repo: UserRepository) -> None:
    await define_roles(repo, ["admin", "ops", "staff"])
    alice = await repo.create_user("alice", HASH, roles=["admin"])
    bob = await repo.create_user("bob", HASH, roles=["admin", "staff"])

    await asyncio.gather(repo.set_roles(alice.id, ["ops"]), repo.set_roles(bob.id, ["ops"]))

    found = await repo.get_by_username("bob")
    assert found is not None
    assert found.roles == {"ops"}
    assert await repo.roles_of(alice.id) == {"ops"}


async def test_deleting_a_user_drops_their_role_links(repo: UserRepository) -> None:
    await define_roles(repo, ["admin", "staff"])
    alice = await repo.create_user("alice", HASH, roles=["admin", "staff"])
    bob = await repo.create_user("bob", HASH, roles=["staff"])

    await repo.delete_user(alice.id)

    async with repo.engine.connect() as conn:
        links = await conn.scalar(select(func.count()).select_from(UserRole))
    assert links == 1
    assert await repo.get_by_id(alice.id) is None
    assert await repo.roles_of(bob.id) == {"staff"}


async def test_granting_an_undefined_role_is_refused_and_changes_nothing(
    repo: UserRepository,
) -> None:
    await define_roles(repo, ["staff"])
    with pytest.raises(UnknownRole, match=r"'ops' is not defined.*bastion roles create ops"):
        await repo.create_user("alice", HASH, roles=["staff", "ops"])
    assert await repo.get_by_username("alice") is None

    bob = await repo.create_user("bob", HASH, roles=["staff"])
    with pytest.raises(UnknownRole, match="'ops'"):
        await repo.set_roles(bob.id, ["ops"])
    assert await repo.roles_of(bob.id) == {"staff"}
    assert "ops" not in {role.name for role in await repo.list_roles()}


async def test_roles_are_defined_listed_with_their_holders_and_deleted(
    repo: UserRepository,
) -> None:
    await repo.create_role("staff")
    await repo.create_role("on-call_2")
    await repo.create_user("alice", HASH, roles=["staff"])

    listed = [(role.name, role.holders) for role in await repo.list_roles()]
    assert ("on-call_2", 0) in listed
    assert ("staff", 1) in listed
    await repo.delete_role("on-call_2")
    assert "on-call_2" not in {role.name for role in await repo.list_roles()}
    with pytest.raises(UnknownRole):
        await repo.delete_role("on-call_2")


@pytest.mark.parametrize(
    "name", ["", "Staff", "has space", "ops.team", "-lead", "_x", "rôle", "a" * 65, "staff\n"]
)
async def test_role_names_are_lowercase_slugs(repo: UserRepository, name: str) -> None:
    with pytest.raises(UserError, match="role name"):
        await repo.create_role(name)
    assert name not in {role.name for role in await repo.list_roles()}


async def test_defining_a_role_twice_is_refused(repo: UserRepository) -> None:
    first = await repo.create_role("staff")
    with pytest.raises(UserError, match="'staff' already exists"):
        await repo.create_role("staff")
    assert first == RoleRecord("staff", None, 0)


async def test_a_role_users_hold_is_not_deleted(repo: UserRepository) -> None:
    await define_roles(repo, ["staff"])
    alice = await repo.create_user("alice", HASH, roles=["staff"])
    await repo.create_user("bob", HASH, roles=["staff"])

    with pytest.raises(RoleInUse, match="held by 2 user"):
        await repo.delete_role("staff")
    assert await repo.roles_of(alice.id) == {"staff"}
    assert sorted(await repo.role_holders("staff")) == sorted(
        [alice.id, (await repo.get_by_username("bob")).id]  # type: ignore[union-attr]
    )


async def test_a_role_keeps_its_description(repo: UserRepository) -> None:
    await repo.create_role("staff", "  Sees the reports  ")
    await repo.create_role("ops", "")
    listed = {role.name: role.description for role in await repo.list_roles()}
    assert (listed["staff"], listed["ops"]) == ("Sees the reports", None)


async def test_a_description_over_its_limit_or_with_controls_is_refused(
    repo: UserRepository,
) -> None:
    for bad in ("x" * 201, "line\nbreak"):
        with pytest.raises(UserError, match="description"):
            await repo.create_role("staff", bad)
    assert "staff" not in {role.name for role in await repo.list_roles()}


async def test_the_admin_role_cannot_be_deleted(repo: UserRepository) -> None:
    await define_roles(repo, ["admin"])
    with pytest.raises(UserError, match="built-in"):
        await repo.delete_role("admin")
    assert "admin" in {role.name for role in await repo.list_roles()}


# -- audit ------------------------------------------------------------------------------------


async def test_audit_events_are_listed_newest_first(repo: UserRepository, clock: FakeClock) -> None:
    user = await repo.create_user("alice", HASH)
    await repo.add_audit("login.failure", username="alice", ip="192.0.2.1")
    clock.advance(1)
    await repo.add_audit(
        "login.success",
        user_id=user.id,
        ip="2001:db8::1",
        user_agent="Mozilla/5.0",
        session_ref="3f2a9c",
        detail={"remember": True, "method": "password"},
    )
    await repo.add_audit("session.revoke", user_id=user.id, actor_id=user.id)

    events = await repo.list_audit()

    assert [e.event for e in events] == ["session.revoke", "login.success", "login.failure"]
    success = events[1]
    assert success.at == at(clock)
    assert success.at.tzinfo == UTC
    assert success.detail == {"method": "password", "remember": True}
    assert (success.ip, success.user_agent, success.session_ref) == (
        "2001:db8::1",
        "Mozilla/5.0",
        "3f2a9c",
    )
    assert events[2].user_id is None
    assert events[2].username == "alice"
    assert [e.event for e in await repo.list_audit(offset=1, limit=1)] == ["login.success"]
    assert len(await repo.list_audit(user_id=user.id)) == 2
    assert await repo.count_audit() == 3
    assert await repo.count_audit(user_id=user.id) == 2


async def test_audit_truncates_oversized_client_values(repo: UserRepository) -> None:
    await repo.add_audit("login.failure", username="x" * 5000, user_agent="U" * 5000)

    [event] = await repo.list_audit()

    assert event.user_agent == "U" * 512
    assert event.username == "x" * 255


async def test_audit_stores_client_values_with_control_characters_replaced(
    repo: UserRepository,
) -> None:
    # PostgreSQL refuses NUL in text; SQLite takes it. Both must store the same thing.
    await repo.add_audit(
        "login.failure",
        username="alice\x00",
        user_agent="agent\r\nforged: line\x7f",
        ip="203.0.113.7\x00",
        session_ref="ref\x00",
        detail={"reason": "nul\x00", "lone": "\udc80"},
    )

    [event] = await repo.list_audit()

    assert event.username == "alice\ufffd"
    assert event.user_agent == "agent\ufffd\ufffdforged: line\ufffd"
    assert event.ip == "203.0.113.7\ufffd"
    assert event.session_ref == "ref\ufffd"
    assert event.detail == {"reason": "nul\x00", "lone": "\ufffd"}


async def test_audit_events_outlive_their_user(repo: UserRepository) -> None:
    user = await repo.create_user("alice", HASH)
    await repo.add_audit("login.success", user_id=user.id, username="alice")

    await repo.delete_user(user.id)
    await repo.add_audit("user.delete", user_id=user.id, username="alice")

    events = await repo.list_audit()
    assert [(e.event, e.user_id, e.username) for e in events] == [
        ("user.delete", None, "alice"),
        ("login.success", None, "alice"),
    ]


# -- health and outages -----------------------------------------------------------------------


async def test_ping_answers_on_a_live_database(repo: UserRepository) -> None:
    await repo.ping()


def _assert_safe(exc: StoreUnavailable, *secrets_: str) -> None:
    assert exc.component == "database"
    assert str(exc) == "database unavailable"
    for text in (str(exc), exc.detail, repr(exc)):
        for secret in (*secrets_, "SELECT", "INSERT", HASH):
            assert secret not in text


@pytest.mark.parametrize(
    ("port_fixture", "engine_timeout", "call_timeout"),
    [
        pytest.param("closed_port", 0.5, 1.0, id="refused"),
        pytest.param("silent_port", 0.5, 1.0, id="connect-timeout"),
        pytest.param("silent_port", 30.0, 0.3, id="call-timeout"),
    ],
)
async def test_unreachable_postgres_is_unavailable_within_bounded_time(
    request: pytest.FixtureRequest, port_fixture: str, engine_timeout: float, call_timeout: float
) -> None:
    port = request.getfixturevalue(port_fixture)
    url = f"postgresql+asyncpg://bastion:hunter2-secret@127.0.0.1:{port}/bastion"
    engine = create_engine(url, timeout=engine_timeout)
    repo = UserRepository(engine, timeout=call_timeout)
    try:
        calls: list[Callable[[], Awaitable[object]]] = [
            repo.ping,
            lambda: repo.get_by_username("alice"),
            lambda: repo.create_user("alice", HASH),
        ]
        for call in calls:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable) as caught:
                await call()
            assert time.monotonic() - started < 3.0
            _assert_safe(caught.value, url, "hunter2-secret")
            assert caught.value.__cause__ is None
    finally:
        await engine.dispose()


async def test_unopenable_sqlite_file_is_unavailable(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'missing-folder' / 'bastion.db'}"
    engine = create_engine(url)
    try:
        with pytest.raises(StoreUnavailable) as caught:
            await UserRepository(engine).ping()
        _assert_safe(caught.value, str(tmp_path))
    finally:
        await engine.dispose()
        await _aiosqlite_threads_stopped()


async def _aiosqlite_threads_stopped() -> None:
    # aiosqlite stops the worker thread of a failed connect without waiting for it; were the
    # event loop closed first, that thread would die with "Event loop is closed".
    for _ in range(200):
        if not any("_connection_worker_thread" in t.name for t in threading.enumerate()):
            return
        await asyncio.sleep(0.01)
