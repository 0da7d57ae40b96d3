"""External sign-in for the web layer: begin, complete, and who the identity is here.

An external identity (issuer + subject) belongs to one user. A first sign-in either finds
no account (a new one is made, when registration is open), or an account with the same
address: that one is linked only when the provider verified the address, the operator
trusts the provider's word (``TRUST_EMAIL``) and the account's own address is verified too;
otherwise the user signs in with the password and links from the account page. An address
alone never hands over an account.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from bastion.accounts import Accounts
from bastion.audit import AuditTrail
from bastion.clock import Clock, system_clock
from bastion.exceptions import UserError
from bastion.federation.config import ProviderConfig
from bastion.federation.discovery import Discovery
from bastion.federation.errors import (
    FederationError,
    IdentityTaken,
    LastSignInMethod,
    LinkNeedsPassword,
    SignInRefused,
    UnknownProvider,
)
from bastion.federation.flow import Callback, ExternalProfile, Flows, Intent
from bastion.federation.identities import IdentityExists, IdentityRecord, IdentityRepository
from bastion.federation.usernames import free_username
from bastion.hooks import Registered
from bastion.mfa.methods import FEDERATED, MULTI_FACTOR
from bastion.mfa.passkey_repository import PasskeyRepository
from bastion.passwords import has_usable_password, unusable_password_hash
from bastion.stores.base import Store
from bastion.users.repository import UserRecord, UserRepository

# acr values that mean multi-factor (OpenID PAPE; phishing-resistant ones of the OpenID
# EAP ACR profile).
MFA_ACR = frozenset({"http://schemas.openid.net/pape/policies/2007/06/multi-factor", "phr", "phrh"})
_AMR_VALUE = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_CREATE_ATTEMPTS = 3

Outcome = Literal["existing", "linked", "created"]


@dataclass(frozen=True, slots=True)
class Resolution:
    """The user an external sign-in signs in: ``existing`` (the identity was linked),
    ``linked`` (linked now, by a trusted verified address) or ``created``."""

    user: UserRecord
    outcome: Outcome
    identity: IdentityRecord


class Federation:
    def __init__(
        self,
        providers: Mapping[str, ProviderConfig],
        *,
        session_store: Store,
        users: UserRepository,
        accounts: Accounts,
        audit: AuditTrail,
        clock: Clock = system_clock,
        timeout: float = 5.0,
        metadata_ttl: float = 3600,
        key_refresh_interval: float = 60,
    ) -> None:
        self.providers = dict(providers)
        self.users = users
        self.accounts = accounts
        self.audit = audit
        self.identities = IdentityRepository(users)
        self.passkeys = PasskeyRepository(users)
        # No redirects: every endpoint is named by the configuration or the discovery
        # document, and a redirect could lead the client secret's requests elsewhere.
        self.http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self.discovery = Discovery(
            self.http, clock=clock, ttl=metadata_ttl, refresh_interval=key_refresh_interval
        )
        self.flows = Flows(session_store, self.discovery, self.http, timeout=timeout, clock=clock)

    async def aclose(self) -> None:
        await self.http.aclose()

    def provider(self, name: str) -> ProviderConfig:
        try:
            return self.providers[name]
        except KeyError:
            raise UnknownProvider(name) from None

    # -- the flow --------------------------------------------------------------------------

    async def begin(
        self,
        name: str,
        *,
        binding: str,
        redirect_uri: str,
        next: str,
        intent: Intent = "sign_in",
        user_id: int | None = None,
    ) -> str:
        """The provider's authorization URL to send the browser to. ``binding`` is the
        browser's CSRF secret: only the same browser can complete the request."""
        if intent == "link" and user_id is None:
            raise ValueError("linking needs the signed-in user's id")
        return await self.flows.begin(
            self.provider(name),
            binding=binding,
            redirect_uri=redirect_uri,
            next=next,
            intent=intent,
            user_id=user_id,
        )

    async def complete(
        self,
        name: str,
        *,
        binding: str,
        params: Mapping[str, str],
        redirect_uri: str | None = None,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> Callback:
        """Check the provider's answer (the callback's query ``params``) and return who
        signed in there. :class:`FederationError` (recorded as ``federation.failure``) or
        :class:`ProviderUnavailable`."""
        provider = self.provider(name)
        try:
            return await self.flows.complete(
                provider, binding=binding, params=params, redirect_uri=redirect_uri
            )
        except FederationError as error:
            await self._failure(name, error.reason, ip, user_agent, code=error.code)
            raise

    # -- who it is here --------------------------------------------------------------------

    async def resolve(
        self,
        profile: ExternalProfile,
        *,
        registration_open: bool,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> Resolution:
        """The user to sign in for ``profile``; :class:`SignInRefused` (``disabled``,
        ``registration_closed``), :class:`LinkNeedsPassword`."""
        context: dict[str, Any] = {"ip": ip, "user_agent": user_agent}
        identity = await self.identities.find(profile.issuer, profile.subject)
        if identity is not None:
            user = await self._active(identity.user_id, profile, context)
            await self.identities.record_use(identity.id, profile.email)
            await self._record("federation.login", user, profile, context)
            return Resolution(user, "existing", identity)
        existing = await self.users.get_by_email(profile.email) if profile.email else None
        if existing is not None:
            return await self._link_by_email(existing, profile, context)
        if not registration_open:
            await self._failure(profile.provider, "registration_closed", ip, user_agent)
            raise SignInRefused("registration_closed")
        return await self._create(profile, context)

    async def _active(
        self, user_id: int, profile: ExternalProfile, context: dict[str, Any]
    ) -> UserRecord:
        user = await self.users.get_by_id(user_id)
        if user is None or not user.is_active:
            await self._failure(profile.provider, "disabled", user_id=user_id, **context)
            raise SignInRefused("disabled")
        return user

    async def _link_by_email(
        self, user: UserRecord, profile: ExternalProfile, context: dict[str, Any]
    ) -> Resolution:
        trusted = (
            profile.email_verified
            and self.provider(profile.provider).trust_email
            # An unverified local address may have been typed by someone else, waiting for
            # the real owner to sign in and link into their account.
            and user.email_verified
        )
        if not trusted:
            await self._failure(profile.provider, "link_needs_password", **context)
            raise LinkNeedsPassword(profile.provider)
        user = await self._active(user.id, profile, context)
        identity = await self._add(user, profile, context, how="trusted_email")
        return Resolution(user, "linked", identity)

    async def _create(self, profile: ExternalProfile, context: dict[str, Any]) -> Resolution:
        if self.accounts.registration_limit is not None:
            await self.accounts.registration_limit.hit(context["ip"])
        # Only an address the provider verified is kept: an unverified one could be
        # anyone's, and holding it would keep its owner from registering with it.
        email = profile.email if profile.email_verified else None
        hints = (
            profile.username_hint,
            (profile.email or "").partition("@")[0],
            profile.display_name,
        )
        user: UserRecord | None = None
        for attempt in range(_CREATE_ATTEMPTS):
            username = await free_username(self.users, hints)
            try:
                user = await self.users.create_user(username, unusable_password_hash(), email=email)
                break
            except UserError:
                # The name (or, raced, the address) was taken meanwhile; the last attempt
                # goes without the address.
                if attempt == _CREATE_ATTEMPTS - 2:
                    email = None
        if user is None:
            raise SignInRefused("registration_failed")
        if email is not None:
            await self.users.mark_email_verified(user.id, email)
            user = await self.users.get_by_id(user.id) or user
        try:
            identity = await self.identities.add(
                user.id, profile.provider, profile.issuer, profile.subject, profile.email
            )
        except IdentityExists:
            # A concurrent first sign-in of the same identity won: use its account.
            await self.users.delete_user(user.id)
            return await self.resolve(profile, registration_open=True, **context)
        await self._record(
            "federation.account_created",
            user,
            profile,
            context,
            email_verified=email is not None,
        )
        await self.accounts.hooks.emit(
            Registered(
                user_id=user.id,
                username=user.username,
                email=user.email,
                ip=context["ip"],
                user_agent=context["user_agent"],
            )
        )
        return Resolution(user, "created", identity)

    # -- the account page ------------------------------------------------------------------

    async def identities_of(self, user_id: int) -> list[IdentityRecord]:
        return await self.identities.of_user(user_id)

    async def link(
        self,
        user_id: int,
        profile: ExternalProfile,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> IdentityRecord:
        """Link ``profile`` to the signed-in user (who re-authenticated); :class:`IdentityTaken`
        when it belongs to another user or the user has one of that provider already."""
        context: dict[str, Any] = {"ip": ip, "user_agent": user_agent}
        user = await self.accounts.require(user_id)
        found = await self.identities.find(profile.issuer, profile.subject)
        if found is not None and found.user_id == user_id:
            await self.identities.record_use(found.id, profile.email)
            return found
        if found is not None:
            await self._failure(profile.provider, "identity_taken", user_id=user_id, **context)
            raise IdentityTaken("this account of the provider belongs to another user")
        if any(i.provider == profile.provider for i in await self.identities.of_user(user_id)):
            await self._failure(profile.provider, "provider_linked", user_id=user_id, **context)
            raise IdentityTaken("an account of this provider is connected already")
        return await self._add(user, profile, context, how="account")

    async def unlink(
        self,
        user_id: int,
        provider: str,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> bool:
        """Remove the user's identity of ``provider``; False when there was none.
        :class:`LastSignInMethod` when nothing else could sign in to the account."""
        user = await self.accounts.require(user_id)
        identities = await self.identities.of_user(user_id)
        target = next((i for i in identities if i.provider == provider), None)
        if target is None:
            return False
        # Another provider or a password is enough; a passkey is asked about only then.
        if (
            len(identities) == 1
            and not has_usable_password(user.password_hash)
            and not await self.passkeys.count_for_user(user_id)
        ):
            raise LastSignInMethod
        removed = await self.identities.remove(user_id, target.id)
        if removed:
            await self.audit.record(
                "federation.unlinked",
                user_id=user.id,
                username=user.username,
                ip=ip,
                user_agent=user_agent,
                detail={"provider": provider},
            )
        return removed

    # -- the session's methods -------------------------------------------------------------

    def mfa_satisfied(self, profile: ExternalProfile) -> bool:
        """Whether the provider's word that it checked several factors counts (its
        ``TRUST_MFA`` is on and its ``amr``/``acr`` say so)."""
        provider = self.provider(profile.provider)
        return provider.trust_mfa and (
            MULTI_FACTOR in profile.amr or (profile.acr or "") in MFA_ACR
        )

    def session_amr(self, profile: ExternalProfile) -> tuple[str, ...]:
        """``fed``; with a trusted multi-factor sign-in also the provider's own values and
        ``mfa``."""
        if not self.mfa_satisfied(profile):
            return (FEDERATED,)
        own = (m for m in profile.amr if _AMR_VALUE.match(m))
        return tuple(dict.fromkeys((FEDERATED, *own, MULTI_FACTOR)))

    # -- helpers ---------------------------------------------------------------------------

    async def _add(
        self, user: UserRecord, profile: ExternalProfile, context: dict[str, Any], *, how: str
    ) -> IdentityRecord:
        try:
            identity = await self.identities.add(
                user.id, profile.provider, profile.issuer, profile.subject, profile.email
            )
        except IdentityExists:
            raise IdentityTaken("this account of the provider belongs to another user") from None
        await self._record("federation.linked", user, profile, context, how=how)
        return identity

    async def _record(
        self,
        event: str,
        user: UserRecord,
        profile: ExternalProfile,
        context: dict[str, Any],
        **detail: Any,
    ) -> None:
        await self.audit.record(
            event,
            user_id=user.id,
            username=user.username,
            detail={"provider": profile.provider, **detail},
            **context,
        )

    async def _failure(
        self,
        provider: str,
        reason: str,
        ip: str | None = None,
        user_agent: str | None = None,
        *,
        user_id: int | None = None,
        code: str | None = None,
    ) -> None:
        detail: dict[str, Any] = {"provider": provider, "reason": reason}
        if code is not None:
            detail["code"] = code
        await self.audit.record(
            "federation.failure", user_id=user_id, ip=ip, user_agent=user_agent, detail=detail
        )
