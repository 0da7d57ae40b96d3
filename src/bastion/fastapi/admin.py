"""Administration pages: users, all sessions, audit log. Role ``admin`` only, signed in or
re-authenticated within ``BASTION_REAUTH_WINDOW`` (else ``/reauth`` first).

Every change goes through :class:`bastion.accounts.Accounts`, as the CLI's do: sessions end,
cached entries drop, the login back-off clears and the audit trail names the acting admin
the same way whoever makes the change. A refused form comes back with its message and 400.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request, status
from fastapi.responses import RedirectResponse, Response

from bastion.devices import describe
from bastion.exceptions import UserError
from bastion.fastapi.account import mark_lookalikes
from bastion.fastapi.api import link_base
from bastion.fastapi.dependencies import Principal, client_ip, require_recent_auth
from bastion.fastapi.install import Bastion, BastionDep
from bastion.i18n import LazyText, lazy
from bastion.passwords import has_usable_password
from bastion.users.repository import UserRecord, UserStillReferenced
from bastion.users.roles import ADMIN_ROLE, UnknownRole

PAGE_SIZE = 50
router = APIRouter(prefix="/admin", include_in_schema=False)
# Every page and action here is sensitive (contract 6.3): an admin whose last sign-in is
# older than BASTION_REAUTH_WINDOW confirms it is them first, so a session left open or
# stolen cannot read the users, sessions and audit trail, nor act, for long.
Admin = Annotated[Principal, Depends(require_recent_auth(role=ADMIN_ROLE, page=True))]
Page = Annotated[int, Query(ge=1, le=100_000)]
# users.id is a 32-bit integer: a larger number names no user (and must not reach the driver).
UserId = Annotated[int, Path(ge=1, le=2**31 - 1)]
FormText = Annotated[str, Form(max_length=4096)]
# Checkbox values, one field per chosen role.
RoleChoices = Annotated[list[str] | None, Form(max_length=200)]

# What the pages say, in one place, translated into each request's language.
MESSAGES = {
    "not_yourself_disable": lazy("You cannot disable yourself."),
    "not_yourself_delete": lazy("You cannot delete your own account."),
    "not_yourself_password": lazy(
        "Change your own password on the Change password page: it asks for the current one."
    ),
    "own_admin_role": lazy("You cannot remove your own admin role."),
    "confirm_delete": lazy("Confirm the deletion with the button on this page."),
    "no_user": lazy("No such user."),
    "no_session": lazy("No such session."),
    "no_public_url": lazy("Links cannot be mailed: set BASTION_PUBLIC_URL."),
    "not_yourself_mfa": lazy("Change your own second factors on your Security page."),
    "confirm_mfa": lazy("Confirm the removal with the button on this page."),
}
NOTICES = {
    "created": lazy("The user was created."),
    "deleted": lazy("The user was deleted; their sessions ended."),
    "password": lazy("The password was set; the user's sessions and tokens ended."),
    "roles": lazy("The roles were saved."),
    "reset-link": lazy("A password reset link was sent to the user's e-mail address."),
    "mfa-reset": lazy("The user's second factors were removed; their sessions ended."),
}
Message = str | LazyText
Fields = tuple[str, ...]


def _pages(total: int) -> int:
    return max(1, math.ceil(total / PAGE_SIZE))


def _fields_of(error: UserError, renamed: Mapping[str, str] | None = None) -> Fields:
    """The form fields ``error`` is about, named as on this form (``renamed``)."""
    names = renamed or {}
    return tuple(sorted(names.get(field, field) for field in error.fields))


# The fields of the password forms, by the names UserError gives them.
NEW_PASSWORD_FIELDS = {"password": "new_password", "password_confirm": "new_password_confirm"}


def _context(request: Request, admin: Admin) -> dict[str, Any]:
    """Who did it and from where, for the audit trail."""
    return {
        "actor_id": admin.user_id,
        "ip": client_ip(request),
        "user_agent": request.headers.get("user-agent"),
    }


async def _target(bastion: Bastion, user_id: int) -> UserRecord:
    user = await bastion.services.users.get_by_id(user_id)
    if user is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=MESSAGES["no_user"])
    return user


def _done(notice: str) -> Response:
    return RedirectResponse(f"/admin/users?done={notice}", status_code=303)


def _form(
    request: Request,
    bastion: Bastion,
    template: str,
    context: Mapping[str, Any],
    error: Message | None = None,
    fields: Fields = (),
) -> Response:
    """A form page; with ``error``, that message above it and status 400, and the
    ``fields`` it is about marked invalid."""
    return bastion.templates.render(
        request,
        template,
        {**context, "error": error, "error_fields": fields},
        status_code=status.HTTP_400_BAD_REQUEST if error else status.HTTP_200_OK,
    )


def _not_on_yourself(
    request: Request,
    bastion: Bastion,
    admin: Admin,
    template: str,
    target: UserRecord,
    refusal: Message,
    error: Message | None = None,
    fields: Fields = (),
) -> Response:
    """The form of an action an admin may not take on their own account: on that account
    (``is_self`` in the template) the page shows ``refusal`` instead of the form."""
    is_self = target.id == admin.user_id
    if is_self and error is None:
        error = refusal
    context = {"target": target, "is_self": is_self}
    return _form(request, bastion, template, context, error, fields)


@router.get("/users")
async def users_page(
    request: Request,
    admin: Admin,
    bastion: BastionDep,
    q: Annotated[str, Query(max_length=150)] = "",
    page: Page = 1,
    done: Annotated[str, Query(max_length=20)] = "",
) -> Response:
    users_repo = bastion.services.users
    search = q.strip() or None
    users = await users_repo.list_users(search, (page - 1) * PAGE_SIZE, PAGE_SIZE)
    total = await users_repo.count_users(search)
    context = {
        "users": users,
        "without_password": {u.id for u in users if not has_usable_password(u.password_hash)},
        "q": q,
        "page": page,
        "pages": _pages(total),
        "total": total,
        "notice": NOTICES.get(done),
    }
    return bastion.templates.render(request, "admin_users.html", context)


# ---- create --------------------------------------------------------------------------


async def _new_user_form(
    request: Request,
    bastion: Bastion,
    values: Mapping[str, Any],
    error: Message | None = None,
    fields: Fields = (),
) -> Response:
    roles = await bastion.services.users.list_roles()
    context = {"roles": roles, "chosen": values["roles"], "values": values}
    return _form(request, bastion, "admin_user_new.html", context, error, fields)


@router.get("/users/new")
async def new_user_form(request: Request, admin: Admin, bastion: BastionDep) -> Response:
    return await _new_user_form(request, bastion, {"roles": set()})


@router.post("/users/new")
async def create_user(
    request: Request,
    admin: Admin,
    bastion: BastionDep,
    username: FormText = "",
    email: FormText = "",
    roles: RoleChoices = None,
    password: FormText = "",
    password_confirm: FormText = "",
) -> Response:
    chosen = set(roles or ())
    values = {"username": username, "email": email, "roles": chosen}
    accounts = bastion.accounts
    # No password: the account gets an unusable one until an admin sets it (or, once e-mail
    # exists, the user follows a reset link: that choice will join this form).
    initial = password if password or password_confirm else None
    try:
        if initial is not None:
            accounts.check_new_password(initial, password_confirm, username)
        await accounts.create(
            username,
            initial,
            email=email or None,
            roles=chosen,
            **_context(request, admin),
        )
    except UserError as error:
        fields = ("roles",) if isinstance(error, UnknownRole) else _fields_of(error)
        return await _new_user_form(request, bastion, values, str(error), fields)
    return _done("created")


# ---- enable / disable ------------------------------------------------------------------


@router.post("/users/{user_id}/active")
async def set_active(
    user_id: UserId,
    request: Request,
    admin: Admin,
    bastion: BastionDep,
    active: Annotated[str, Form(max_length=8)] = "",
) -> Response:
    if user_id == admin.user_id:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail=str(MESSAGES["not_yourself_disable"])
        )
    try:
        await bastion.accounts.set_active(user_id, active == "1", **_context(request, admin))
    except UserError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=MESSAGES["no_user"]) from error
    return RedirectResponse("/admin/users", status_code=303)


# ---- roles -----------------------------------------------------------------------------


async def _roles_form(
    request: Request,
    bastion: Bastion,
    target: UserRecord,
    chosen: Iterable[str],
    error: Message | None = None,
) -> Response:
    roles = await bastion.services.users.list_roles()
    context = {"target": target, "roles": roles, "chosen": set(chosen)}
    return _form(request, bastion, "admin_user_roles.html", context, error, ("roles",))


@router.get("/users/{user_id}/roles")
async def roles_form(
    user_id: UserId, request: Request, admin: Admin, bastion: BastionDep
) -> Response:
    target = await _target(bastion, user_id)
    return await _roles_form(request, bastion, target, target.roles)


@router.post("/users/{user_id}/roles")
async def set_roles(
    user_id: UserId,
    request: Request,
    admin: Admin,
    bastion: BastionDep,
    roles: RoleChoices = None,
) -> Response:
    target = await _target(bastion, user_id)
    wanted = set(roles or ())
    if user_id == admin.user_id and ADMIN_ROLE not in wanted:
        return await _roles_form(request, bastion, target, wanted, MESSAGES["own_admin_role"])
    try:
        renewed = await bastion.accounts.set_roles(
            user_id, wanted, current=admin.session, **_context(request, admin)
        )
    except UserError as error:
        return await _roles_form(request, bastion, target, wanted, str(error))
    if renewed is not None:
        # My own roles changed: this browser goes on under the rotated session.
        raw_id, session = renewed
        bastion.send_session_cookie(request, raw_id, session)
    return _done("roles")


# ---- password reset --------------------------------------------------------------------


def _password_form(
    request: Request,
    bastion: Bastion,
    admin: Admin,
    target: UserRecord,
    error: Message | None = None,
    fields: Fields = (),
) -> Response:
    template, refusal = "admin_user_password.html", MESSAGES["not_yourself_password"]
    return _not_on_yourself(request, bastion, admin, template, target, refusal, error, fields)


@router.get("/users/{user_id}/password")
async def password_form(
    user_id: UserId, request: Request, admin: Admin, bastion: BastionDep
) -> Response:
    return _password_form(request, bastion, admin, await _target(bastion, user_id))


@router.post("/users/{user_id}/password")
async def reset_password(
    user_id: UserId,
    request: Request,
    admin: Admin,
    bastion: BastionDep,
    new_password: FormText = "",
    new_password_confirm: FormText = "",
) -> Response:
    target = await _target(bastion, user_id)
    if target.id == admin.user_id:
        # Here it would end this very session too; /account/password keeps it and asks
        # for the current password.
        return _password_form(request, bastion, admin, target)
    accounts = bastion.accounts
    try:
        accounts.check_new_password(new_password, new_password_confirm, target.username)
        # Every session and refresh token of the user ends, and so does their back-off.
        await accounts.change_password(target.id, new_password, **_context(request, admin))
    except UserError as error:
        fields = _fields_of(error, NEW_PASSWORD_FIELDS)
        return _password_form(request, bastion, admin, target, str(error), fields)
    return _done("password")


@router.post("/users/{user_id}/reset-link")
async def send_reset_link(
    user_id: UserId, request: Request, admin: Admin, bastion: BastionDep
) -> Response:
    """Mail the user a link to choose a password themselves (audited with the admin)."""
    target = await _target(bastion, user_id)
    if target.id == admin.user_id:
        return _password_form(request, bastion, admin, target)
    base_url = link_base(bastion, request)
    if base_url is None:
        return _password_form(request, bastion, admin, target, MESSAGES["no_public_url"])
    try:
        await bastion.services.recovery.send_reset(
            target, base_url=base_url, **_context(request, admin)
        )
    except UserError as error:
        return _password_form(request, bastion, admin, target, str(error))
    return _done("reset-link")


# ---- delete ----------------------------------------------------------------------------


def _delete_form(
    request: Request,
    bastion: Bastion,
    admin: Admin,
    target: UserRecord,
    error: Message | None = None,
) -> Response:
    template, refusal = "admin_user_delete.html", MESSAGES["not_yourself_delete"]
    return _not_on_yourself(request, bastion, admin, template, target, refusal, error)


@router.get("/users/{user_id}/delete")
async def delete_form(
    user_id: UserId, request: Request, admin: Admin, bastion: BastionDep
) -> Response:
    return _delete_form(request, bastion, admin, await _target(bastion, user_id))


@router.post("/users/{user_id}/delete")
async def delete_user(
    user_id: UserId,
    request: Request,
    admin: Admin,
    bastion: BastionDep,
    confirm: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    target = await _target(bastion, user_id)
    if target.id == admin.user_id:
        return _delete_form(request, bastion, admin, target)
    # The confirmation page names the account it shows: a POST from anywhere else (or from
    # a page about another account) deletes nothing.
    if confirm != target.username:
        return _delete_form(request, bastion, admin, target, MESSAGES["confirm_delete"])
    try:
        await bastion.accounts.delete(target.id, **_context(request, admin))
    except UserStillReferenced as error:  # the application's own rows hold the user
        return _delete_form(request, bastion, admin, target, str(error))
    except UserError as error:  # deleted meanwhile
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=MESSAGES["no_user"]) from error
    return _done("deleted")


# ---- second factors --------------------------------------------------------------------


async def _mfa_form(
    request: Request,
    bastion: Bastion,
    admin: Admin,
    target: UserRecord,
    error: Message | None = None,
) -> Response:
    if target.id == admin.user_id:
        # Here it would end this very session; the Security page asks for each factor.
        error = error or MESSAGES["not_yourself_mfa"]
    context = {
        "target": target,
        "is_self": target.id == admin.user_id,
        "summary": await bastion.services.mfa.summary(target.id),
    }
    return _form(request, bastion, "admin_user_mfa.html", context, error)


@router.get("/users/{user_id}/mfa")
async def mfa_form(
    user_id: UserId, request: Request, admin: Admin, bastion: BastionDep
) -> Response:
    return await _mfa_form(request, bastion, admin, await _target(bastion, user_id))


@router.post("/users/{user_id}/mfa/reset")
async def reset_mfa(
    user_id: UserId,
    request: Request,
    admin: Admin,
    bastion: BastionDep,
    confirm: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """Remove every second factor of a user who lost them (audited with the admin); their
    sessions end, and they sign in with the password alone until they set up new ones."""
    target = await _target(bastion, user_id)
    if target.id == admin.user_id:
        return await _mfa_form(request, bastion, admin, target)
    # As for deletion: the page names the account, so a POST made for another does nothing.
    if confirm != target.username:
        return await _mfa_form(request, bastion, admin, target, MESSAGES["confirm_mfa"])
    try:
        await bastion.services.mfa.remove_all(target.id, by="admin", **_context(request, admin))
    except UserError as error:  # deleted meanwhile
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=MESSAGES["no_user"]) from error
    return _done("mfa-reset")


# ---- sessions and audit ----------------------------------------------------------------


@router.get("/sessions")
async def sessions_page(request: Request, admin: Admin, bastion: BastionDep) -> Response:
    sessions = await bastion.services.sessions.list_all()
    rows = [
        {"session": s, "device": describe(s.user_agent), "current": s.key == admin.session_id}
        for s in sessions
    ]
    mark_lookalikes(rows)
    return bastion.templates.render(request, "admin_sessions.html", {"rows": rows})


@router.post("/sessions/{session_id}/revoke")
async def revoke_session(
    session_id: str, request: Request, admin: Admin, bastion: BastionDep
) -> Response:
    target = await bastion.services.sessions.get(session_id)
    if target is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail=MESSAGES["no_session"])
    await bastion.accounts.revoke_session(target, by="admin", **_context(request, admin))
    return RedirectResponse("/admin/sessions", status_code=303)


@router.get("/audit")
async def audit_page(
    request: Request, admin: Admin, bastion: BastionDep, page: Page = 1
) -> Response:
    users_repo = bastion.services.users
    events = await users_repo.list_audit((page - 1) * PAGE_SIZE, PAGE_SIZE)
    total = await users_repo.count_audit()
    # Who acted, by name (an account deleted since keeps its number).
    actors: dict[int, str] = {}
    for actor_id in sorted({e.actor_id for e in events if e.actor_id is not None}):
        actor = await users_repo.get_by_id(actor_id)
        actors[actor_id] = actor.username if actor is not None else str(actor_id)
    return bastion.templates.render(
        request,
        "admin_audit.html",
        {"events": events, "actors": actors, "page": page, "pages": _pages(total), "total": total},
    )
