"""Account changes and their security consequences, in one place for the web and the CLI.

Changing a password, disabling a user or changing roles must always end (or update) that
user's sessions, drop their cached entries and leave an audit record; routing every caller
through :class:`Accounts` makes that impossible to forget. The same goes for the password
policy (every way of setting a password checks it, in :meth:`Accounts.check_new_password`)
and for the login back-off, which an operator's enable or password reset clears.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from bastion.audit import AuditTrail
from bastion.auth import LoginLimiter, limiter_account
from bastion.exceptions import UserError
from bastion.hooks import (
    AccountDeleted,
    AccountDisabled,
    Channel,
    Hooks,
    PasswordChanged,
    Registered,
    RevokedBy,
    SessionRevoked,
    SignedIn,
    SignedOut,
)
from bastion.i18n import lazy
from bastion.passwords import Passwords, unusable_password_hash
from bastion.policy import check_password
from bastion.ratelimit import AddressLimit
from bastion.sessions import Session, SessionManager, session_ref
from bastion.users.repository import UNKNOWN_USER, RoleRecord, UserRecord, UserRepository
from bastion.users.roles import RoleInUse, check_deletable

PASSWORDS_DIFFER = lazy("The two passwords do not match.")

UserChanged = Callable[[int], Awaitable[None]]


class Accounts:
    def __init__(
        self,
        users: UserRepository,
        sessions: SessionManager,
        passwords: Passwords,
        audit: AuditTrail,
        *,
        password_min_length: int = 8,
        limiter: LoginLimiter | None = None,
        registration_limit: AddressLimit | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.users = users
        self.sessions = sessions
        self.passwords = passwords
        self.audit = audit
        self.password_min_length = password_min_length
        # The sign-in limiter (its back-off is cleared by enable and password resets) and
        # the per-address limit on registration.
        self.limiter = limiter
        self.registration_limit = registration_limit
        # Called with the user id after any change that must invalidate derived state
        # (the cache layer registers its per-user generation bump here).
        self.on_user_changed: list[UserChanged] = []
        # The application's lifecycle hooks, called once each change is durable.
        self.hooks = hooks or Hooks()

    async def _changed(self, user_id: int) -> None:
        for callback in self.on_user_changed:
            await callback(user_id)

    async def require(self, user_id: int) -> UserRecord:
        user = await self.users.get_by_id(user_id)
        if user is None:
            raise UserError(UNKNOWN_USER)
        return user

    def check_new_password(self, password: str, confirm: str | None, username: str) -> None:
        """The password policy, the one check behind every way of setting a password."""
        if confirm is not None and password != confirm:
            raise UserError(PASSWORDS_DIFFER, fields=("password_confirm",))
        check_password(password, self.password_min_length, username=username)

    async def _forget_failures(self, user: UserRecord) -> None:
        """End the account's login back-off (an operator's decision). Callers do it before
        their writes: when the limiter's store is down, nothing has changed yet."""
        if self.limiter is not None:
            await self.limiter.reset(limiter_account(user.username))

    async def create(
        self,
        username: str,
        password: str | None,
        *,
        email: str | None = None,
        roles: Iterable[str] = (),
        actor_id: int | None = None,
        **context: Any,
    ) -> UserRecord:
        """Create an account (an operator's or the application's doing) after the password
        policy; duplicates are refused (user names compare after NFKC + case folding, so
        look-alikes collide), and so are roles that are not defined.

        ``password=None`` makes the account with an unusable password: nobody can sign in
        to it until an operator sets one (``change_password``)."""
        # A later issue adds the other way to give such an account its password: an e-mailed
        # reset link, sent from here once e-mail exists.
        if password is not None:
            self.check_new_password(password, None, username)
        roles = sorted(set(roles))
        detail = {"roles": roles, "password": "set" if password is not None else "none"}
        return await self._create(
            "user.created",
            username,
            password,
            email,
            roles,
            {"actor_id": actor_id, "detail": detail, **context},
        )

    async def register(
        self,
        username: str,
        email: str | None,
        password: str,
        confirm: str,
        *,
        ip: str | None,
        **context: Any,
    ) -> UserRecord:
        """Self-service sign-up of an ordinary account from ``ip``.

        The per-address registration limit comes first (``RateLimited``): every attempt
        counts, before any hashing. With the equal cost of a refusal (see :meth:`_create`)
        it keeps "user already exists" from serving as an account oracle at scale."""
        if self.registration_limit is not None:
            await self.registration_limit.hit(ip)
        self.check_new_password(password, confirm, username)
        user = await self._create(
            "user.registered", username, password, email, (), {"ip": ip, **context}
        )
        await self.hooks.emit(
            Registered(
                user_id=user.id,
                username=user.username,
                email=user.email,
                ip=ip,
                user_agent=context.get("user_agent"),
            )
        )
        return user

    async def _create(
        self,
        event: str,
        username: str,
        password: str | None,
        email: str | None,
        roles: Iterable[str],
        context: dict[str, Any],
    ) -> UserRecord:
        # Hashed before anything looks at existing accounts: refusing a taken name then
        # costs what creating the account costs, so its timing tells nothing more.
        if password is None:
            hashed = unusable_password_hash()
        else:
            hashed = await self.passwords.hash_async(password)
        user = await self.users.create_user(username, hashed, email=email or None, roles=roles)
        await self.audit.record(event, user_id=user.id, username=user.username, **context)
        return user

    async def change_password(
        self,
        user_id: int,
        new_password: str,
        *,
        keep_session: str | None = None,
        actor_id: int | None = None,
        audit_detail: dict[str, Any] | None = None,
        **context: Any,
    ) -> list[str]:
        """Set a new password and end every session of the user but ``keep_session``
        (their access and refresh tokens die with them); the account's login back-off ends
        too. ``audit_detail`` adds to the audit record (how it was set, e.g. by a reset
        link). Returns the ended session keys."""
        user = await self.require(user_id)
        self.check_new_password(new_password, None, user.username)
        await self._forget_failures(user)
        hashed = await self.passwords.hash_async(new_password)
        await self.users.set_password_hash(user_id, hashed)
        ended = await self.sessions.end_all_for_user(user_id, keep=keep_session)
        await self._changed(user_id)
        await self.audit.record(
            "password.changed",
            user_id=user_id,
            username=user.username,
            actor_id=actor_id,
            detail={**(audit_detail or {}), "sessions_ended": len(ended)},
            **context,
        )
        await self.hooks.emit(
            PasswordChanged(
                user_id=user_id,
                username=user.username,
                actor_id=actor_id,
                ip=context.get("ip"),
                user_agent=context.get("user_agent"),
                sessions_ended=len(ended),
            )
        )
        return ended

    async def set_language(self, user_id: int, language: str) -> None:
        """Keep ``language`` (a supported tag) as the user's choice for pages and emails;
        their live sessions learn it at once."""
        if await self.users.set_language(user_id, language):
            await self.sessions.update_user(user_id, language=language)
            await self._changed(user_id)

    async def verify_email(self, user: UserRecord, **context: Any) -> bool:
        """Mark ``user``'s address verified (its owner followed a link sent to it), if the
        account still has that address; live sessions learn it. False when nothing
        changed (another address by now, or verified already)."""
        if user.email is None or not await self.users.mark_email_verified(user.id, user.email):
            return False
        await self.sessions.update_user(user.id, email_verified=True)
        await self._changed(user.id)
        await self.audit.record(
            "email.verified", user_id=user.id, username=user.username, **context
        )
        return True

    async def change_email(self, user: UserRecord, new_email: str, **context: Any) -> bool:
        """Make the confirmed ``new_email`` the address of ``user`` (verified, since its
        owner followed the link), if the account still has the address it had. Live
        sessions learn it. ``UserError`` when another account holds the address (the
        unique index decides, atomically); False when the account changed meanwhile."""
        if not await self.users.change_email(user.id, user.email, new_email):
            return False
        address = new_email.strip()
        await self.sessions.update_user(user.id, email=address, email_verified=True)
        await self._changed(user.id)
        await self.audit.record(
            "email.changed",
            user_id=user.id,
            username=user.username,
            detail={"from": user.email, "to": address},
            **context,
        )
        return True

    async def set_active(
        self, user_id: int, active: bool, *, actor_id: int | None = None, **context: Any
    ) -> list[str]:
        """Enable or disable; disabling ends every session of the user at once, enabling
        ends the account's login back-off."""
        user = await self.require(user_id)
        if active:
            await self._forget_failures(user)
        await self.users.set_active(user_id, active)
        ended = [] if active else await self.sessions.end_all_for_user(user_id)
        await self._changed(user_id)
        await self.audit.record(
            "user.enabled" if active else "user.disabled",
            user_id=user_id,
            username=user.username,
            actor_id=actor_id,
            detail={"sessions_ended": len(ended)} if ended else None,
            **context,
        )
        if not active:
            await self.hooks.emit(
                AccountDisabled(
                    user_id=user_id,
                    username=user.username,
                    actor_id=actor_id,
                    ip=context.get("ip"),
                    user_agent=context.get("user_agent"),
                    sessions_ended=len(ended),
                )
            )
        return ended

    async def set_roles(
        self,
        user_id: int,
        roles: Iterable[str],
        *,
        actor_id: int | None = None,
        current: Session | None = None,
        **context: Any,
    ) -> tuple[str, Session] | None:
        """Replace the user's roles. A change of privilege (a role added or removed) ends
        every session of the user, and their tokens with them: no session id or CSRF
        secret from before the change carries the new privileges. Other browsers' cookies
        cannot be rewritten, so those sessions end; only ``current``, the session making
        the change, is kept when it is the user's own (an administrator changing their own
        roles): it is rotated to a new id and CSRF secret holding the new roles, and that
        (raw id, session) is returned for the caller to send as the new cookie. Otherwise
        None."""
        user = await self.require(user_id)
        await self.users.set_roles(user_id, roles)
        now = await self.users.roles_of(user_id)
        if now == user.roles:
            return None
        keep = current if current is not None and current.user_id == user_id else None
        ended = await self.sessions.end_all_for_user(
            user_id, keep=keep.key if keep is not None else None
        )
        renewed = await self.sessions.rotate(keep, roles=now) if keep is not None else None
        await self._changed(user_id)
        await self.audit.record(
            "user.roles_changed",
            user_id=user_id,
            username=user.username,
            actor_id=actor_id,
            detail={
                "before": sorted(user.roles),
                "after": sorted(now),
                "sessions_ended": len(ended),
                "session_rotated": renewed is not None,
            },
            **context,
        )
        return renewed

    # ---- defined roles -----------------------------------------------------------------

    async def create_role(
        self,
        name: str,
        description: str | None = None,
        *,
        actor_id: int | None = None,
        **context: Any,
    ) -> RoleRecord:
        """Define a role, so that it can be granted (``role.created``)."""
        role = await self.users.create_role(name, description)
        detail = {"role": role.name}
        if role.description is not None:
            detail["description"] = role.description
        await self.audit.record("role.created", actor_id=actor_id, detail=detail, **context)
        return role

    async def delete_role(
        self, name: str, *, force: bool = False, actor_id: int | None = None, **context: Any
    ) -> int:
        """Delete a defined role (``role.deleted``); ``admin`` cannot be. While users hold
        it, :class:`RoleInUse` unless ``force``: then it is first taken from each of them
        as :meth:`set_roles` takes a role (their sessions end, cached entries drop, each
        change audited). Returns how many users it was taken from."""
        check_deletable(name)
        holders = await self.users.role_holders(name)
        if holders and not force:
            raise RoleInUse(name, len(holders))
        for user_id in holders:
            user = await self.users.get_by_id(user_id)
            if user is not None:  # deleted meanwhile: the database dropped their link
                await self.set_roles(user_id, user.roles - {name}, actor_id=actor_id, **context)
        await self.users.delete_role(name)
        await self.audit.record(
            "role.deleted",
            actor_id=actor_id,
            detail={"role": name, "taken_from": len(holders)},
            **context,
        )
        return len(holders)

    async def delete(self, user_id: int, *, actor_id: int | None = None, **context: Any) -> None:
        user = await self.require(user_id)
        await self.sessions.end_all_for_user(user_id)
        await self._changed(user_id)
        await self.users.delete_user(user_id)
        await self.audit.record(
            "user.deleted", username=user.username, actor_id=actor_id, **context
        )
        await self.hooks.emit(
            AccountDeleted(
                user_id=user_id,
                username=user.username,
                actor_id=actor_id,
                ip=context.get("ip"),
                user_agent=context.get("user_agent"),
            )
        )

    # ---- sign-in and sessions ended on behalf of their user ----------------------------
    # Every way a user's session ends on purpose passes here: the user's cached entries
    # drop, the audit trail records it and the application's hook hears of it.

    async def record_sign_in(
        self,
        user: UserRecord,
        session: Session,
        *,
        channel: Channel,
        method: str = "password",
    ) -> None:
        """Record a sign-in that has just created ``session`` (``login.success``, whose
        detail names the ``amr`` the user proved, e.g. ``["pwd", "otp", "mfa"]``)."""
        detail: dict[str, object] = {"channel": channel, "amr": list(session.amr)}
        if session.kind == "browser":
            detail["remember"] = session.remember
        await self.audit.record(
            "login.success",
            user_id=user.id,
            username=user.username,
            ip=session.ip,
            user_agent=session.user_agent,
            session_ref=session.ref,
            detail=detail,
        )
        await self.hooks.emit(
            SignedIn(
                user_id=user.id,
                username=user.username,
                ip=session.ip,
                user_agent=session.user_agent,
                session_ref=session.ref,
                channel=channel,
                method=method,
            )
        )

    async def sign_out(self, session: Session, *, ip: str | None, user_agent: str | None) -> None:
        """The user ends the session they are using (``POST /logout``)."""
        await self.sessions.end(session.key)
        await self._changed(session.user_id)
        await self.audit.record(
            "logout",
            user_id=session.user_id,
            username=session.username,
            ip=ip,
            user_agent=user_agent,
            session_ref=session.ref,
        )
        await self.hooks.emit(
            SignedOut(
                user_id=session.user_id,
                username=session.username,
                ip=ip,
                user_agent=user_agent,
                session_ref=session.ref,
            )
        )

    async def revoke_session(
        self,
        session: Session,
        *,
        by: RevokedBy,
        actor_id: int | None,
        ip: str | None,
        user_agent: str | None,
    ) -> None:
        """End ``session`` for its owner, an admin (``actor_id``) or a refresh token's
        revocation (which has ended it already: ending it again is a no-op)."""
        await self.sessions.end(session.key)
        await self._changed(session.user_id)
        await self.audit.record(
            "session.revoked",
            user_id=session.user_id,
            username=session.username,
            actor_id=actor_id,
            ip=ip,
            user_agent=user_agent,
            session_ref=session.ref,
            detail={"by": by},
        )
        await self._revoked(
            session, [session.key], by=by, actor_id=actor_id, ip=ip, user_agent=user_agent
        )

    async def revoke_other_sessions(
        self, current: Session, *, ip: str | None, user_agent: str | None
    ) -> list[str]:
        """The owner of ``current`` ends every other session of theirs ("sign out
        everywhere else"); returns the ended keys."""
        user_id = current.user_id
        ended = await self.sessions.end_all_for_user(user_id, keep=current.key)
        await self._changed(user_id)
        await self.audit.record(
            "session.revoked",
            user_id=user_id,
            username=current.username,
            actor_id=user_id,
            ip=ip,
            user_agent=user_agent,
            detail={"by": "owner", "count": len(ended), "scope": "others"},
        )
        await self._revoked(
            current, ended, by="owner", actor_id=user_id, ip=ip, user_agent=user_agent
        )
        return ended

    async def _revoked(
        self,
        owner: Session,
        keys: list[str],
        *,
        by: RevokedBy,
        actor_id: int | None,
        ip: str | None,
        user_agent: str | None,
    ) -> None:
        """One hook call per ended session (the ``keys`` of ``owner``'s user)."""
        for key in keys:
            await self.hooks.emit(
                SessionRevoked(
                    user_id=owner.user_id,
                    username=owner.username,
                    session_ref=session_ref(key),
                    by=by,
                    actor_id=actor_id,
                    ip=ip,
                    user_agent=user_agent,
                )
            )
