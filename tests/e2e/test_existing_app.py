"""The notes application of docs/examples/existing_app over HTTP, on SQLite and on the real
PostgreSQL server: its database built from empty by both Alembic histories, served by
``bastion serve --app notes.app:app`` from its folder (tests/existing_app.py)."""

from __future__ import annotations

import re
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import httpx
import pytest

from tests.conftest import fresh_database
from tests.e2e.conftest import csrf_from
from tests.existing_app import (
    ALEMBIC,
    PASSWORD,
    SITE_NAME,
    NotesSite,
    notes_server,
    run_in_example,
)
from tests.users.legacy_hashes import django_pbkdf2, plain_bcrypt

HTML = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
JSON = {"Accept": "application/json"}
NOTES_HEAD = "9a2fc3ec19ba"  # the application's one revision


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgresql", marks=pytest.mark.backend("postgres"))],
)
def site(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[NotesSite]:
    data = tmp_path_factory.mktemp("notes") / "data"
    if request.param == "sqlite":
        with notes_server(data) as notes:
            yield notes
        return
    server = str(request.getfixturevalue("postgres_url"))
    with fresh_database(server) as url, notes_server(data, url) as notes:
        yield notes


def bearer(site: NotesSite, name: str, password: str = PASSWORD) -> dict[str, str]:
    grant = {"grant_type": "password", "username": name, "password": password}
    response = httpx.post(f"{site.url}/api/token", data=grant)
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


@contextmanager
def signed_in(site: NotesSite, name: str) -> Iterator[httpx.Client]:
    """A client with ``name``'s session cookie, signed in through the login form; like a
    browser, it sends the page's Origin with every request."""
    with httpx.Client(base_url=site.url, headers={"Origin": site.url}) as client:
        form = {
            "username": name,
            "password": PASSWORD,
            "csrf_token": csrf_from(client.get("/login").text),
        }
        assert client.post("/login", data=form).status_code == 303
        yield client


def note_texts(page: str) -> list[str]:
    return re.findall(r"<li>([^<]*)</li>", page)


def test_both_histories_are_at_head_and_autogenerate_finds_nothing(site: NotesSite) -> None:
    current = run_in_example(site.live.env, ALEMBIC, "current")
    check = run_in_example(site.live.env, ALEMBIC, "check")

    assert f"{NOTES_HEAD} (head)" in current.stdout, current.stderr
    assert check.returncode == 0, check.stderr
    assert "No new upgrade operations detected" in check.stdout
    # Two version tables side by side, one revision each.
    assert site.sql("SELECT version_num FROM alembic_version") == [(NOTES_HEAD,)]
    assert len(site.sql("SELECT version_num FROM bastion_alembic_version")) == 1


def test_anonymous_browser_is_sent_to_sign_in_and_api_client_gets_401(site: NotesSite) -> None:
    with httpx.Client(base_url=site.url) as client:
        page = client.get("/notes", headers=HTML)
        api_page = client.get("/notes", headers=JSON)
        api = client.get("/api/notes")

    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/notes"
    assert api_page.status_code == 401
    assert api_page.headers["www-authenticate"].startswith("Bearer")
    assert api.status_code == 401


def test_api_lists_and_creates_notes_with_a_bearer_token(site: NotesSite) -> None:
    headers = bearer(site, "alice")
    with httpx.Client(base_url=site.url, headers=headers) as client:
        created = client.post("/api/notes", json={"text": "from a script"})
        listed = client.get("/api/notes")
        empty = client.post("/api/notes", json={"text": ""})

    assert created.status_code == 201, created.text
    assert created.json()["text"] == "from a script"
    assert created.json() in listed.json()
    assert empty.status_code == 422


def test_cookie_post_needs_the_csrf_header(site: NotesSite) -> None:
    with signed_in(site, "alice") as client:
        token = csrf_from(client.get("/notes").text)  # the page's csrf_field()
        forged = client.post("/api/notes", json={"text": "forged"})
        sent = client.post(
            "/api/notes", json={"text": "from fetch"}, headers={"X-CSRF-Token": token}
        )
        listed = [note["text"] for note in client.get("/api/notes").json()]

    assert forged.status_code == 403
    assert "CSRF" in forged.text
    assert sent.status_code == 201, sent.text
    assert "from fetch" in listed
    assert "forged" not in listed


def test_the_page_form_adds_a_note_its_user_sees(site: NotesSite) -> None:
    with signed_in(site, "alice") as client:
        page = client.get("/notes")
        added = client.post("/notes", data={"text": "buy milk", "csrf_token": csrf_from(page.text)})
        after = client.get("/notes")

    assert page.status_code == 200
    assert f"<title>Notes · {SITE_NAME}</title>" in page.text
    assert added.status_code == 303
    assert added.headers["location"] == "/notes"
    assert "buy milk" in note_texts(after.text)


def test_another_user_never_sees_your_notes(site: NotesSite) -> None:
    secret = "alice's secret note"
    with httpx.Client(base_url=site.url, headers=bearer(site, "alice")) as alice:
        assert alice.post("/api/notes", json={"text": secret}).status_code == 201
    with signed_in(site, "bob") as bob:
        page = bob.get("/notes").text
        listed = bob.get("/api/notes").json()
        bob.post("/notes", data={"text": "a note of bob", "csrf_token": csrf_from(page)})
        after = bob.get("/notes").text
    alice_notes = httpx.get(f"{site.url}/api/notes", headers=bearer(site, "alice")).json()

    assert secret not in page
    assert all(note["text"] != secret for note in listed)
    assert note_texts(after) == ["a note of bob"]
    assert "a note of bob" not in [note["text"] for note in alice_notes]


def test_bastion_pages_carry_the_site_name_and_the_applications_link(site: NotesSite) -> None:
    with signed_in(site, "bob") as client:
        dashboard = client.get("/dashboard").text
    login = httpx.get(f"{site.url}/login").text

    assert f"<title>Sign in · {SITE_NAME}</title>" in login
    assert f"· {SITE_NAME}</title>" in dashboard
    assert '<a href="/notes">Notes</a>' in dashboard  # overrides/base.html


def test_deleting_a_user_takes_their_notes_along(site: NotesSite) -> None:
    created = site.live.cli("users", "create", "carol", "--password-stdin", stdin=PASSWORD + "\n")
    assert created.returncode == 0, created.stderr
    with httpx.Client(base_url=site.url, headers=bearer(site, "carol")) as carol:
        assert carol.post("/api/notes", json={"text": "carol's"}).status_code == 201
    [(carol_id,)] = site.sql("SELECT id FROM bastion_users WHERE username = 'carol'")
    count = "SELECT count(*) FROM notes WHERE owner_id = :id"
    assert site.sql(count, id=carol_id) == [(1,)]

    deleted = site.live.cli("users", "delete", "carol", "--yes")

    assert deleted.returncode == 0, deleted.stderr
    assert site.sql(count, id=carol_id) == [(0,)]  # ON DELETE CASCADE


def test_users_exported_from_a_typical_users_table_import_and_sign_in(
    site: NotesSite, tmp_path: Path
) -> None:
    """docs/existing-app.md's path for an application that already has users: its
    export_users.py writes their CSV, `bastion users import` reads it, and each signs in
    with the old password, re-hashed to Argon2id."""
    passwords = {"ann": "ann's old password", "ben": "ben's old one"}
    old = tmp_path / "old.db"
    with closing(sqlite3.connect(old)) as conn, conn:
        conn.execute(
            "CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT, email TEXT,"
            " password TEXT, is_admin BOOLEAN, is_active BOOLEAN)"
        )
        conn.executemany(
            "INSERT INTO users (username, email, password, is_admin, is_active)"
            " VALUES (?, ?, ?, ?, ?)",
            [
                ("ann", "ann@example.org", django_pbkdf2(passwords["ann"]), True, True),
                ("ben", None, plain_bcrypt(passwords["ben"]), False, True),
            ],
        )
    env = site.live.env
    csv_file = tmp_path / "users.csv"

    exported = run_in_example(
        env, sys.executable, "export_users.py", f"sqlite:///{old}", str(csv_file)
    )
    imported = site.live.cli("users", "import", str(csv_file))

    assert exported.returncode == 0, exported.stderr
    assert exported.stdout == f"2 user(s) written to {csv_file}\n"
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.startswith("imported 2 user(s)")
    for name, password in passwords.items():
        bearer(site, name, password)
        [(stored,)] = site.sql(
            "SELECT password_hash FROM bastion_users WHERE username = :n", n=name
        )
        assert stored.startswith("$argon2id$")
    listed = site.live.cli("users", "list").stdout
    assert "ann\tann@example.org\tactive\tadmin" in listed
