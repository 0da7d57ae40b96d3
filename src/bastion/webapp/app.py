"""The reference app: the seed's system, done right, on Bastion's public API only."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI

from bastion import __version__
from bastion.fastapi import CurrentUser, cached, install
from bastion.settings import Settings

# What /api/summary shows each role: the seed's "conditional caching by role", as data.
SUMMARY_SECTIONS = {
    "user": [
        {"title": "Your sessions", "href": "/account/sessions"},
        {"title": "Change password", "href": "/account/password"},
    ],
    "admin": [
        {"title": "Users", "href": "/admin/users"},
        {"title": "All sessions", "href": "/admin/sessions"},
        {"title": "Audit log", "href": "/admin/audit"},
    ],
}


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the reference application (``bastion serve`` runs this)."""
    app = FastAPI(
        title="Bastion reference app",
        version=__version__,
        description="Sign-in, sessions, CSRF, JWT and per-user caching, correct by default.",
    )
    install(app, settings)

    @app.get("/api/profile", tags=["api"], summary="My profile, cached per user for 300 s")
    @cached(ttl=300, scope="user")
    async def profile(user: CurrentUser) -> dict[str, Any]:
        # Sorted: the answer must not depend on a set's iteration order.
        return {
            "username": user.username,
            "roles": sorted(user.roles),
            "cached_at": datetime.now(UTC),
        }

    @app.get("/api/summary", tags=["api"], summary="What my roles give me, cached per role set")
    @cached(ttl=60, scope="role")
    async def summary(user: CurrentUser) -> dict[str, Any]:
        # Role-scoped: every user with the same roles shares this answer, so it may depend
        # on the roles alone (the cache hands this function nothing else about the user).
        view = "admin" if user.has_role("admin") else "user"
        sections = list(SUMMARY_SECTIONS["user"])
        if view == "admin":
            sections += SUMMARY_SECTIONS["admin"]
        return {"view": view, "sections": sections, "generated_at": datetime.now(UTC)}

    return app
