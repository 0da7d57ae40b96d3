"""Administration pages: users, all sessions, audit log. Role ``admin`` only."""

from __future__ import annotations

import math
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request, status
from fastapi.responses import RedirectResponse, Response

from bastion.asgi.sessions import session_state
from bastion.devices import describe
from bastion.exceptions import UserError
from bastion.fastapi.dependencies import Principal, client_ip, require_role
from bastion.fastapi.install import BastionDep

PAGE_SIZE = 50
router = APIRouter(prefix="/admin", include_in_schema=False)
Admin = Annotated[Principal, Depends(require_role("admin", page=True))]
Page = Annotated[int, Query(ge=1, le=100_000)]


def _pages(total: int) -> int:
    return max(1, math.ceil(total / PAGE_SIZE))


@router.get("/users")
async def users_page(
    request: Request,
    admin: Admin,
    bastion: BastionDep,
    q: Annotated[str, Query(max_length=150)] = "",
    page: Page = 1,
) -> Response:
    users_repo = bastion.services.users
    search = q.strip() or None
    users = await users_repo.list_users(search, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    total = await users_repo.count_users(search)
    return bastion.templates.render(
        request,
        "admin_users.html",
        {"users": users, "q": q, "page": page, "pages": _pages(total), "total": total},
    )


@router.post("/users/{user_id}/active")
async def set_active(
    user_id: int,
    request: Request,
    admin: Admin,
    bastion: BastionDep,
    active: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    if user_id == admin.user_id:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail="You cannot disable yourself.")
    try:
        await bastion.accounts.set_active(
            user_id,
            active == "1",
            actor_id=admin.user_id,
            ip=client_ip(request),
            user_agent=request.headers.get("user-agent"),
        )
    except UserError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such user.") from error
    return RedirectResponse("/admin/users", status_code=303)


@router.post("/users/{user_id}/roles")
async def set_roles(
    user_id: int,
    request: Request,
    admin: Admin,
    bastion: BastionDep,
    roles: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    wanted = {r.strip() for r in roles.replace(" ", ",").split(",") if r.strip()}
    if user_id == admin.user_id and "admin" not in wanted:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail="You cannot remove your own admin role."
        )
    try:
        renewed = await bastion.accounts.set_roles(
            user_id, wanted, actor_id=admin.user_id, current=admin.session, ip=client_ip(request)
        )
    except UserError as error:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=str(error)) from error
    if renewed is not None:
        # My own roles changed: this browser goes on under the rotated session.
        raw_id, session = renewed
        max_age = bastion.settings.remember_me_timeout if session.remember else None
        session_state(request.scope).begin(raw_id, session, max_age=max_age)
    return RedirectResponse("/admin/users", status_code=303)


@router.get("/sessions")
async def sessions_page(request: Request, admin: Admin, bastion: BastionDep) -> Response:
    sessions = await bastion.services.sessions.list_all()
    rows = [
        {"session": s, "device": describe(s.user_agent), "current": s.key == admin.session_id}
        for s in sessions
    ]
    return bastion.templates.render(request, "admin_sessions.html", {"rows": rows})


@router.post("/sessions/{session_id}/revoke")
async def revoke_session(
    session_id: str, request: Request, admin: Admin, bastion: BastionDep
) -> Response:
    target = await bastion.services.sessions.get(session_id)
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail="No such session.")
    await bastion.accounts.revoke_session(
        target,
        by="admin",
        actor_id=admin.user_id,
        ip=client_ip(request),
        user_agent=request.headers.get("user-agent"),
    )
    return RedirectResponse("/admin/sessions", status_code=303)


@router.get("/audit")
async def audit_page(
    request: Request, admin: Admin, bastion: BastionDep, page: Page = 1
) -> Response:
    users_repo = bastion.services.users
    events = await users_repo.list_audit((page - 1) * PAGE_SIZE, PAGE_SIZE)
    total = await users_repo.count_audit()
    return bastion.templates.render(
        request,
        "admin_audit.html",
        {"events": events, "page": page, "pages": _pages(total), "total": total},
    )
