"""Revocation stays immediate across processes with the local copies of Redis values on.

Two ``bastion serve`` processes, A and B, share one PostgreSQL database, keys and secret,
and a private Redis server (tests/redis_server.py) that these tests stop and restart, with
``BASTION_REDIS_LOCAL_CACHE=true``: each process keeps copies of the session records and
cache entries it reads, kept exact by Redis's invalidations (issue #18).

A session (a browser cookie, or a bearer access token) is signed in on A and used on B a
few times, so B answers from its copy: Redis runs no command but heartbeats for B's last
requests. Then A ends it, each way the app has. Every request to B sent more than
``BOUND`` after the ending request returned must be refused, and B must refuse it: a
correctness bound, not a speed test (the invalidation reaches B before A's answer reaches
the test, so B refuses at once on any machine; the bound leaves room for a loaded one).
Each way runs in steady state (on the private server and on the run's Redis Cluster), and
right after a Redis restart (no persistence: every session is gone and both processes
reconnect), signing in anew. While Redis is down, B answers 503 and never serves a session
from its copy.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from bastion.db import create_engine
from bastion.passwords import Passwords
from bastion.sessions import session_key
from bastion.users.repository import UserRepository
from tests.conftest import backend_missing, fresh_database
from tests.e2e.conftest import csrf_from
from tests.live import LiveServer, live_server, server_env
from tests.redis_server import RedisServer, redis_server, redis_server_missing
from tests.scale.conftest import COOKIE, PASSWORD, _bastion, client

pytestmark = [pytest.mark.backend("redis"), pytest.mark.backend("postgres")]

BOUND = 0.050  # seconds after the ending request returned: B refuses every request sent later
GIVE_UP = 5.0  # seconds of probing B before the test fails: far beyond the bound
READY_WITHIN = 20.0  # seconds for both processes to answer /readyz 200 after a restart
COPY_WITHIN = 10.0  # seconds for B to answer from its copies (again, after a restart)
NEW_PASSWORD = "a much better passphrase 42"
ROLE = "editor"
VICTIMS = 40  # users made at the start, one per test that ends sessions (never reused)
WARM_REQUESTS = 3


@dataclass
class LocalPair:
    """Processes A and B, the ports of the Redis servers they share (the private one, or
    the Cluster's masters), and fresh victims to hand out."""

    a: LiveServer
    b: LiveServer
    redis_ports: list[int]
    user_ids: dict[str, int]
    # The private server, which tests may stop and restart; None on the Cluster.
    private: RedisServer | None = None
    _victims: Iterator[str] = field(init=False)

    def __post_init__(self) -> None:
        self._victims = (name for name in self.user_ids if name.startswith("victim"))

    @property
    def redis(self) -> RedisServer:
        assert self.private is not None, "only the private Redis server is restarted"
        return self.private

    def victim(self) -> tuple[str, int]:
        """A user no test has used yet (with the role ``ROLE``), and their id."""
        name = next(self._victims)
        return name, self.user_ids[name]


def _create_users(database_url: str) -> dict[str, int]:
    """The admin ``root`` and ``VICTIMS`` users holding ``ROLE``, all with ``PASSWORD``
    (hashed once: each hash costs tens of milliseconds), by name: their ids."""

    async def run() -> dict[str, int]:
        engine = create_engine(database_url)
        try:
            users = UserRepository(engine)
            hashed = await Passwords().hash_async(PASSWORD)
            await users.create_role(ROLE)
            ids = {"root": (await users.create_user("root", hashed, roles=("admin",))).id}
            for n in range(VICTIMS):
                name = f"victim{n:02d}"
                ids[name] = (await users.create_user(name, hashed, roles=(ROLE,))).id
            return ids
        finally:
            await engine.dispose()

    return asyncio.run(run())


@contextmanager
def started_pair(root: Path, postgres_url: str, redis_url: str) -> Iterator[LocalPair]:
    """A and B on ``redis_url`` with the local copies on, one fresh database, the users."""
    with fresh_database(postgres_url) as database_url, ExitStack() as stack:
        shared = {
            "BASTION_DATABASE_URL": database_url,
            "BASTION_REDIS_URL": redis_url,
            "BASTION_REDIS_PREFIX": f"bastion-local-{secrets.token_hex(4)}",
            "BASTION_REDIS_LOCAL_CACHE": "true",
            "BASTION_SECRET_KEY": secrets.token_urlsafe(48),
            "BASTION_JWT_KEYS_FILE": str(root / "shared" / "jwks.json"),
            # Every request comes from 127.0.0.1: keep the per-address limit out of the way.
            "BASTION_LOGIN_IP_LIMIT": "1000/minute",
        }
        _bastion(server_env(root / "setup", shared), "db", "upgrade")
        user_ids = _create_users(database_url)
        folders = [root / "a", root / "b"]
        for folder in folders:
            folder.mkdir()
        with ThreadPoolExecutor(2) as pool:
            starting = [
                pool.submit(stack.enter_context, live_server(folder, shared)) for folder in folders
            ]
            a, b = (future.result() for future in starting)
        ports = [int(node.rpartition(":")[2]) for node in urlsplit(redis_url).netloc.split(",")]
        yield LocalPair(a, b, ports, user_ids)


@pytest.fixture(scope="module")
def local_pair(tmp_path_factory: pytest.TempPathFactory, postgres_url: str) -> Iterator[LocalPair]:
    """A and B on a private standalone Redis server, which tests stop and restart."""
    missing = redis_server_missing()
    if missing:
        backend_missing(f"cannot start a private Redis server: {missing}")
    root = tmp_path_factory.mktemp("local-copies")
    with (
        redis_server(root / "redis") as server,
        started_pair(root, postgres_url, server.url) as pair,
    ):
        pair.private = server
        yield pair


@pytest.fixture(scope="module")
def local_cluster_pair(
    tmp_path_factory: pytest.TempPathFactory, postgres_url: str, redis_cluster_url: str
) -> Iterator[LocalPair]:
    """A and B on the run's three-master Redis Cluster (one invalidation connection per
    master in each process); never restarted here: other modules use it."""
    root = tmp_path_factory.mktemp("local-copies-cluster")
    with started_pair(root, postgres_url, redis_cluster_url) as pair:
        yield pair


# -- signing in ----------------------------------------------------------------------------


@dataclass
class Credential:
    """One signed-in session as a client holds it: a cookie, or bearer tokens."""

    kind: str  # "cookie" or "bearer"
    username: str
    raw_cookie: str = ""
    access: str = ""
    refresh: str = ""
    session_id: str = ""

    def client(self, server: LiveServer) -> httpx.Client:
        api = client(server, self.raw_cookie or None)
        if self.access:
            api.headers["Authorization"] = f"Bearer {self.access}"
        return api


@contextmanager
def browser_on(server: LiveServer, username: str) -> Iterator[httpx.Client]:
    """A browser signed in as ``username`` through the login form."""
    with client(server) as browser:
        form = {"username": username, "password": PASSWORD}
        form["csrf_token"] = csrf_from(browser.get("/login").text)
        signed_in = browser.post("/login", data=form, headers={"Origin": server.url})
        assert signed_in.status_code == 303, signed_in.text
        yield browser


def sign_in(server: LiveServer, kind: str, username: str) -> Credential:
    if kind == "cookie":
        with browser_on(server, username) as browser:
            raw = browser.cookies[COOKIE]
        return Credential(kind, username, raw_cookie=raw, session_id=session_key(raw))
    form = {"grant_type": "password", "username": username, "password": PASSWORD}
    with client(server) as api:
        tokens = api.post("/api/token", data=form)
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    return Credential(kind, username, access=body["access_token"], refresh=body["refresh_token"])


def post_form(
    browser: httpx.Client, server: LiveServer, page: str, action: str, **form: str
) -> httpx.Response:
    """Submit the form of ``page`` (its CSRF token) to ``action``, as a browser does."""
    form["csrf_token"] = csrf_from(browser.get(page).text)
    return browser.post(action, data=form, headers={"Origin": server.url})


# -- B's view: accepted, refused, and whether it asked Redis ------------------------------

# What B answers a live session and an ended one, per kind: the dashboard (a page: an ended
# session goes to the login form) and "who am I" (a token's session is checked).
PROBES = {"cookie": ("/dashboard", 200, 303), "bearer": ("/api/me", 200, 401)}
HTML_LANG = re.compile(r'<html lang="([^"]+)">')


# Commands that read or write no key: the heartbeats of both processes' invalidation
# connections, the handshake of every new connection (this test's own included), INFO, and
# a Cluster client's questions about the cluster.
KEYLESS = {"ping", "info", "hello", "client", "select", "auth", "subscribe", "cluster", "command"}


def redis_commands(pair: LocalPair) -> int:
    """How many commands but ``KEYLESS`` ones the Redis servers of ``pair`` have run (a
    read of a copied key is a GET, an MGET or, for a miss, a script)."""
    total = 0
    for port in pair.redis_ports:
        conn = redis.Redis(port=port, socket_timeout=1, socket_connect_timeout=1)
        try:
            stats = conn.info("commandstats")
        finally:
            conn.close()
        total += sum(
            int(counts["calls"])
            for name, counts in stats.items()
            if name.removeprefix("cmdstat_").split("|")[0] not in KEYLESS
        )
    return total


def warm(
    pair: LocalPair,
    credential: Credential,
    on_b: httpx.Client,
    *,
    path: str | None = None,
) -> None:
    """Use ``credential`` on B (through ``on_b``; at ``path``, by default its probe) until
    B answers it from its copies: ``WARM_REQUESTS`` accepted requests during which Redis
    ran no command but heartbeats (nothing else talks to this Redis meanwhile). Tries again
    for ``COPY_WITHIN`` seconds: B asks Redis until its invalidation connection is up
    (after a restart), and again once after each of its own writes of a key (a cache entry
    it computed). Records the session id."""
    probe, accepted, _ = PROBES[credential.kind]
    path = path or probe
    deadline = time.monotonic() + COPY_WITHIN
    me = on_b.get("/api/me")
    assert me.status_code == 200, me.text
    credential.session_id = me.json()["session_id"]
    while True:
        assert on_b.get(path).status_code == accepted  # the copy is filled, if it was not
        before = redis_commands(pair)
        for _ in range(WARM_REQUESTS):
            assert on_b.get(path).status_code == accepted
        asked = redis_commands(pair) - before
        if asked == 0:
            return
        if time.monotonic() > deadline:
            pytest.fail(
                f"B asked Redis {asked} times for {WARM_REQUESTS} requests of the same "
                f"{credential.kind} session: it did not answer from its local copies"
            )
        time.sleep(0.05)


def settles_on_b(
    look: Callable[[], str], before: Collection[str], after: str, since: float
) -> None:
    """Ask B (``look``: what it answers, in a few words) from ``since``, when A's request
    that changed its answer from one of ``before`` to ``after`` returned: every answer to a
    request sent later than ``BOUND`` is ``after``, B does answer it within ``GIVE_UP``,
    and goes on answering it."""
    seen: list[tuple[float, str]] = []  # (sent, in seconds after since; B's answer)
    while not seen or seen[-1][1] != after:
        sent = time.monotonic() - since
        if sent > GIVE_UP:
            first = [(round(t * 1000, 1), answer) for t, answer in seen[:5]]  # ms
            pytest.fail(f"B still answers {seen[-1][1]!r} {GIVE_UP:g} s later; first: {first}")
        seen.append((sent, look()))
    for _ in range(2):
        seen.append((time.monotonic() - since, look()))
    shown = [(round(sent * 1000, 1), answer) for sent, answer in seen]  # ms
    assert all(answer in (*before, after) for _, answer in seen), shown
    late = [answer for sent, answer in seen if sent > BOUND and answer != after]
    assert not late, f"B's old answer more than {BOUND * 1000:g} ms later: {shown}"
    assert all(answer == after for _, answer in seen[-3:]), shown


def refused_on_b(credential: Credential, on_b: httpx.Client, ended_at: float) -> None:
    """B refuses ``credential`` (through ``on_b``, connected already) for every request
    sent later than ``BOUND`` after ``ended_at``, when the ending request returned."""
    path, accepted, refused = PROBES[credential.kind]

    def status() -> str:
        return str(on_b.get(path).status_code)

    settles_on_b(status, [str(accepted)], str(refused), ended_at)


# -- the ways A ends a session -------------------------------------------------------------


def end_by_logout(pair: LocalPair, target: Credential) -> None:
    """The session signs itself out: the logout form, or RFC 7009 revocation of its
    refresh token (an API client's sign-out)."""
    if target.kind == "cookie":
        with client(pair.a, target.raw_cookie) as browser:
            out = post_form(browser, pair.a, "/dashboard", "/logout")
        assert out.status_code == 303, out.text
    else:
        with client(pair.a) as api:
            out = api.post("/api/token/revoke", data={"token": target.refresh})
        assert out.status_code == 200, out.text


def end_from_device_list(pair: LocalPair, target: Credential) -> None:
    """Another session of the same user ends it from the device list."""
    with browser_on(pair.a, target.username) as browser:
        ended = post_form(
            browser, pair.a, "/account/sessions", f"/account/sessions/{target.session_id}/revoke"
        )
    assert ended.status_code == 303, ended.text
    assert ended.headers["location"] == "/account/sessions?done=revoked"


def end_by_signing_out_everywhere_else(pair: LocalPair, target: Credential) -> None:
    with browser_on(pair.a, target.username) as browser:
        ended = post_form(browser, pair.a, "/account/sessions", "/account/sessions/revoke-others")
    assert ended.status_code == 303, ended.text
    assert ended.headers["location"] == "/account/sessions?done=others"


def end_by_password_change(pair: LocalPair, target: Credential) -> None:
    """The user changes their password in another session: every other one ends."""
    with browser_on(pair.a, target.username) as browser:
        changed = post_form(
            browser,
            pair.a,
            "/account/password",
            "/account/password",
            current_password=PASSWORD,
            new_password=NEW_PASSWORD,
            new_password_confirm=NEW_PASSWORD,
        )
    assert changed.status_code == 200, changed.text
    assert "Your other sessions were signed out" in changed.text


def end_by_role_removal(pair: LocalPair, target: Credential) -> None:
    """An administrator takes the user's only role away."""
    user_id = pair.user_ids[target.username]
    with browser_on(pair.a, "root") as admin:
        page = f"/admin/users/{user_id}/roles"
        saved = post_form(admin, pair.a, page, page)  # no role ticked
    assert saved.status_code == 303, saved.text
    assert saved.headers["location"] == "/admin/users?done=roles"


def end_by_disabling_the_user(pair: LocalPair, target: Credential) -> None:
    user_id = pair.user_ids[target.username]
    with browser_on(pair.a, "root") as admin:
        disabled = post_form(
            admin, pair.a, "/admin/users", f"/admin/users/{user_id}/active", active="0"
        )
    assert disabled.status_code == 303, disabled.text


WAYS: dict[str, Callable[[LocalPair, Credential], None]] = {
    "logout": end_by_logout,
    "device-list": end_from_device_list,
    "sign-out-everywhere-else": end_by_signing_out_everywhere_else,
    "password-change": end_by_password_change,
    "role-removed": end_by_role_removal,
    "user-disabled": end_by_disabling_the_user,
}


# -- Redis restarts ------------------------------------------------------------------------


def ready(server: LiveServer) -> bool:
    try:
        return httpx.get(f"{server.url}/readyz", timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def restart_redis(pair: LocalPair) -> None:
    """A new, empty Redis on the same port; returns once both processes are ready on it."""
    pair.redis.restart()
    deadline = time.monotonic() + READY_WITHIN
    while not (ready(pair.a) and ready(pair.b)):
        if time.monotonic() > deadline:
            pytest.fail(f"A and B not ready {READY_WITHIN:g} s after the Redis restart")
        time.sleep(0.05)


@contextmanager
def redis_down(pair: LocalPair) -> Iterator[None]:
    pair.redis.stop()
    try:
        yield
    finally:
        restart_redis(pair)


# -- tests ---------------------------------------------------------------------------------


def ended_on_a_is_refused_on_b(pair: LocalPair, way: str, kind: str) -> None:
    """A fresh user signs in on A (``kind``), uses the session on B until B answers from
    its copy, A ends the session ``way``; B refuses it within the bound."""
    username, _ = pair.victim()
    target = sign_in(pair.a, kind, username)
    with target.client(pair.b) as on_b:
        warm(pair, target, on_b)

        WAYS[way](pair, target)
        ended_at = time.monotonic()

        refused_on_b(target, on_b, ended_at)


@pytest.mark.parametrize("kind", ["cookie", "bearer"])
@pytest.mark.parametrize("way", list(WAYS))
@pytest.mark.parametrize("topology", ["redis", "redis-cluster"])
def test_a_session_ended_on_a_is_refused_on_b_within_50_ms(
    request: pytest.FixtureRequest, topology: str, way: str, kind: str
) -> None:
    pair = request.getfixturevalue("local_pair" if topology == "redis" else "local_cluster_pair")
    ended_on_a_is_refused_on_b(pair, way, kind)


@pytest.mark.parametrize("way", list(WAYS))
def test_right_after_a_redis_restart_a_session_ended_on_a_is_refused_on_b_within_50_ms(
    local_pair: LocalPair, way: str
) -> None:
    """Both processes lost their connections and their copies, and B's invalidation
    connection has just subscribed again: its new copies must be as exact as before. One
    restart for both kinds (B takes up to its reconnection backoff, 2 s, to resubscribe)."""
    restart_redis(local_pair)
    for kind in ("cookie", "bearer"):
        ended_on_a_is_refused_on_b(local_pair, way, kind)


@contextmanager
def frozen(server: LiveServer) -> Iterator[None]:
    """The process stopped (SIGSTOP) for the block, as a busy machine may leave it
    unscheduled; the kernel still queues what reaches its sockets."""
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(server.process.pid, signal.SIGCONT)


@pytest.mark.parametrize("kind", ["cookie", "bearer"])
def test_b_stalled_when_a_session_ends_refuses_it_as_soon_as_it_runs_again(
    local_pair: LocalPair, kind: str
) -> None:
    """B is stopped when A ends the session and when a request for it arrives (sent after
    the bound): on waking, B finds both the invalidation and the request waiting, and must
    not answer the request from its copy. B sleeps less than its heartbeat's grace, so
    its copies are still in use when it wakes."""
    username, _ = local_pair.victim()
    target = sign_in(local_pair.a, kind, username)
    path, _, refused = PROBES[kind]
    answer: dict[str, float | int] = {}
    with target.client(local_pair.b) as on_b:
        warm(local_pair, target, on_b)

        def probe() -> None:
            answer["sent"] = time.monotonic() - ended_at
            answer["status"] = on_b.get(path).status_code

        with frozen(local_pair.b):
            end_by_logout(local_pair, target)
            ended_at = time.monotonic()
            time.sleep(BOUND + 0.010)
            asking = threading.Thread(target=probe)
            asking.start()
            time.sleep(0.100)  # the request reaches B's socket meanwhile
        asking.join(timeout=10)

    assert answer["sent"] > BOUND
    assert answer["status"] == refused, answer


def test_b_answers_503_while_redis_is_down_and_never_from_its_copy(
    local_pair: LocalPair,
) -> None:
    username, _ = local_pair.victim()
    credentials = [sign_in(local_pair.a, kind, username) for kind in PROBES]
    for credential in credentials:
        with credential.client(local_pair.b) as on_b:
            warm(local_pair, credential, on_b)

    with redis_down(local_pair):
        answers = []
        for _ in range(5):
            for credential in credentials:
                path = PROBES[credential.kind][0]
                with credential.client(local_pair.b) as api:
                    answers.append((credential.kind, api.get(path).status_code))
        assert all(status == 503 for _, status in answers), answers


def choose_language(pair: LocalPair, username: str, language: str) -> float:
    """The user chooses ``language`` in a browser on A: their sessions are rewritten and
    their cached entries dropped (a new generation). When the request returned."""
    with browser_on(pair.a, username) as browser:
        chose = post_form(browser, pair.a, "/dashboard", "/language", lang=language, next="/")
    done = time.monotonic()
    assert chose.status_code == 303, chose.text
    return done


def test_a_change_of_the_user_on_a_reaches_bs_session_and_cache_copies_within_50_ms(
    local_pair: LocalPair,
) -> None:
    """Not only deletions: A rewrites the user's sessions and bumps their cache generation;
    B's copies of both follow."""
    username, _ = local_pair.victim()
    page, api = (sign_in(local_pair.a, kind, username) for kind in ("cookie", "bearer"))
    # A first choice: the user's generation key exists from now on (an absent one is
    # read from Redis every time, so B would keep no copy of it).
    choose_language(local_pair, username, "en")
    with page.client(local_pair.b) as page_b, api.client(local_pair.b) as api_b:
        warm(local_pair, page, page_b)
        warm(local_pair, api, api_b, path="/api/profile")
        cached_at = api_b.get("/api/profile").json()["cached_at"]

        def look() -> str:
            """The dashboard's language (the session record), then whether the profile is
            the entry cached before (the cache)."""
            found = HTML_LANG.search(page_b.get("/dashboard").text)
            entry = api_b.get("/api/profile").json()["cached_at"]
            return f"{found[1] if found else None} {'old' if entry == cached_at else 'new'}"

        assert look() == "en old"
        changed_at = choose_language(local_pair, username, "zh-CN")

        # Either copy may follow first, within the bound.
        settles_on_b(look, ["en old", "zh-CN old", "en new"], "zh-CN new", changed_at)


def test_sessions_b_holds_copies_of_are_refused_once_redis_restarted_empty(
    local_pair: LocalPair,
) -> None:
    """A restart without persistence ends every session: B's copies go with them, even
    when nothing asked B anything while Redis was down."""
    username, _ = local_pair.victim()
    credentials = [sign_in(local_pair.a, kind, username) for kind in PROBES]
    for credential in credentials:
        with credential.client(local_pair.b) as on_b:
            warm(local_pair, credential, on_b)

    restart_redis(local_pair)

    for credential in credentials:
        path, _, refused = PROBES[credential.kind]
        with credential.client(local_pair.b) as on_b:
            assert [on_b.get(path).status_code for _ in range(3)] == [refused] * 3
