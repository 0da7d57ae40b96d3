"""Passkeys (WebAuthn, the ``webauthn`` package): registration, sign-in without a password,
and use as a second factor or for re-authentication.

Every ceremony starts with options holding a random challenge, which is remembered in the
session store for :data:`CHALLENGE_TTL` seconds together with what it may be used for
(the purpose, the user, and a digest of the browser's CSRF secret: its session or
pre-session). The answer names its challenge in ``clientDataJSON``; the challenge is taken
out of the store atomically before anything else is checked, so it serves one attempt only.

Then the ``webauthn`` package checks origin, RP id, signature and user verification, and
this module the rest: that the credential belongs to the expected user and its user
handle matches, and that the authenticator's signature counter moved forward (a counter
that does not means two copies of one key exist: the passkey is refused and the event
audited).
"""

from __future__ import annotations

import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from webauthn import (
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    base64url_to_bytes,
    bytes_to_base64url,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.exceptions import WebAuthnException
from webauthn.helpers.options_to_json_dict import options_to_json_dict
from webauthn.helpers.structs import (
    AuthenticationCredential,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    CredentialDeviceType,
    PublicKeyCredentialDescriptor,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from bastion.audit import AuditTrail
from bastion.exceptions import BastionError, StoreUnavailable, UserError
from bastion.i18n import lazy, lazy_plural
from bastion.mfa import methods
from bastion.mfa.models import PASSKEY_NAME_MAX_LENGTH
from bastion.mfa.passkey_repository import (
    CredentialTaken,
    NewPasskey,
    PasskeyRecord,
    PasskeyRepository,
)
from bastion.ratelimit import AddressLimit
from bastion.settings import Settings, is_one_line
from bastion.stores.base import Store
from bastion.users.repository import UserRecord, UserRepository

CHALLENGE_TTL = 300  # seconds a ceremony may take, from its options to its answer
USER_HANDLE_BYTES = 64  # the largest user handle WebAuthn allows: nothing to guess
MAX_PASSKEYS = 25  # per account; a bound on what one account can store
Purpose = Literal["register", "sign-in", "second-factor", "reauth"]
_KNOWN_TRANSPORTS = frozenset(t.value for t in AuthenticatorTransport)


class PasskeyRefused(BastionError):
    """A passkey ceremony failed. ``reason`` is for logs and the audit trail; what a user
    sees is one generic sentence, whatever the reason."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        # Whose passkey it was, once the credential is known (for the audit trail).
        self.user_id: int | None = None
        super().__init__(f"passkey refused: {reason}")


class ClonedPasskey(PasskeyRefused):
    """A valid signature whose counter did not increase: a copy of the key is in use."""


class TooManyPasskeys(UserError):
    def __init__(self) -> None:
        super().__init__(
            lazy_plural(
                "An account can have at most %(num)d passkey.",
                "An account can have at most %(num)d passkeys.",
                MAX_PASSKEYS,
            )
        )


@dataclass(frozen=True, slots=True)
class RelyingParty:
    """Who the passkeys are for: the RP id (a host name) they are bound to, the name the
    browser shows, and the one origin their ceremonies may come from."""

    id: str
    name: str
    origin: str


def relying_party(settings: Settings, request_origin: str) -> RelyingParty:
    """The relying party for a request made to ``request_origin`` (``scheme://host[:port]``).

    The RP id is ``BASTION_WEBAUTHN_RP_ID``, else the host of ``BASTION_PUBLIC_URL``; the
    origin is the public URL's. In development without a public URL, the request's own
    origin decides both; in production a request's Host header never does, and passkeys
    are unavailable (503) until the public URL is set.
    """
    public = settings.public_url.rstrip("/")
    if public:
        origin = public
    elif not settings.is_production:
        origin = request_origin.rstrip("/")
    else:
        raise StoreUnavailable("passkeys", "BASTION_PUBLIC_URL is not set")
    host = (urlsplit(origin).hostname or "").lower()
    rp_id = (settings.webauthn_rp_id or host).strip().lower()
    if not host or not (host == rp_id or host.endswith("." + rp_id)):
        # Browsers refuse such options anyway; say why in the logs instead.
        raise StoreUnavailable("passkeys", f"RP id {rp_id!r} does not cover {host!r}")
    return RelyingParty(id=rp_id, name=settings.site_name, origin=origin)


@dataclass(frozen=True, slots=True)
class PasskeyUse:
    """A verified passkey assertion: whose, which passkey, and the ``amr`` it proves."""

    user: UserRecord
    passkey: PasskeyRecord
    user_verified: bool

    @property
    def methods(self) -> tuple[str, ...]:
        """RFC 8176 values: ``hwk`` (a hardware-bound key), with ``user`` when the
        authenticator verified the user (PIN or biometrics); that pair is two factors on
        its own (something held, something known or been), hence ``mfa``."""
        if self.user_verified:
            return (methods.PASSKEY, methods.USER_PRESENCE_VERIFIED, methods.MULTI_FACTOR)
        return (methods.PASSKEY,)


def binding_digest(binding: str) -> str:
    """What a challenge is tied to: a digest of the browser's CSRF secret (its session or
    pre-session), never the secret itself."""
    return hashlib.sha256(b"bastion.webauthn.binding:" + binding.encode()).hexdigest()


def clean_passkey_name(name: str) -> str:
    """A name fit to show on one line: control and bidi characters become spaces, runs of
    spaces one, cut to the column's width. May be empty."""
    text = "".join(char if is_one_line(char) else " " for char in name)
    return " ".join(text.split())[:PASSKEY_NAME_MAX_LENGTH].strip()


def _challenge_key(challenge: bytes) -> str:
    return "webauthn:challenge:" + hashlib.sha256(challenge).hexdigest()


def _descriptor(passkey: PasskeyRecord) -> PublicKeyCredentialDescriptor:
    transports = [AuthenticatorTransport(t) for t in passkey.transports if t in _KNOWN_TRANSPORTS]
    return PublicKeyCredentialDescriptor(
        id=base64url_to_bytes(passkey.credential_id), transports=transports or None
    )


class Passkeys:
    """The passkeys of every account; ``store`` is the session store (for challenges).

    ``sign_in_limit`` bounds the anonymous sign-in options per client address: each one
    costs a stored challenge, and anyone may ask."""

    def __init__(
        self,
        repository: PasskeyRepository,
        users: UserRepository,
        store: Store,
        audit: AuditTrail,
        *,
        challenge_ttl: int = CHALLENGE_TTL,
        sign_in_limit: AddressLimit | None = None,
    ) -> None:
        self.repository = repository
        self.users = users
        self.store = store
        self.audit = audit
        self.challenge_ttl = challenge_ttl
        self.sign_in_limit = sign_in_limit

    # -- the account's list ----------------------------------------------------------------

    async def list_for_user(self, user_id: int) -> list[PasskeyRecord]:
        return await self.repository.list_for_user(user_id)

    async def count(self, user_id: int) -> int:
        return await self.repository.count_for_user(user_id)

    async def rename(
        self,
        user: UserRecord,
        passkey_id: int,
        name: str,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> bool:
        """Rename one of ``user``'s passkeys; False when it is not theirs. An empty name
        (after cleaning) is a :class:`UserError`."""
        cleaned = clean_passkey_name(name)
        if not cleaned:
            raise UserError(lazy("Give the passkey a name."), fields=("name",))
        renamed = await self.repository.rename(user.id, passkey_id, cleaned)
        if renamed:
            await self._record(
                "mfa.passkey.renamed", user, ip, user_agent, passkey=passkey_id, name=cleaned
            )
        return renamed

    async def remove(
        self,
        user: UserRecord,
        passkey_id: int,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> bool:
        removed = await self.repository.remove(user.id, passkey_id)
        if removed is not None:
            await self._record(
                "mfa.passkey.removed", user, ip, user_agent, passkey=removed.id, name=removed.name
            )
        return removed is not None

    async def remove_all(self, user_id: int) -> int:
        """Delete every passkey of the user (a reset of their factors; the caller audits)."""
        return await self.repository.remove_all(user_id)

    # -- registration ----------------------------------------------------------------------

    async def registration_options(
        self, user: UserRecord, rp: RelyingParty, binding: str
    ) -> dict[str, Any]:
        """Creation options (``{"publicKey": {...}}``, WebAuthn Level 3 JSON) for a new
        passkey of ``user``: discoverable, user verification required, none of the user's
        existing credentials again."""
        existing = await self.repository.list_for_user(user.id)
        if len(existing) >= MAX_PASSKEYS:
            raise TooManyPasskeys
        handle = await self.repository.ensure_user_handle(
            user.id, bytes_to_base64url(secrets.token_bytes(USER_HANDLE_BYTES))
        )
        if handle is None:
            raise PasskeyRefused("no such user")
        options = generate_registration_options(
            rp_id=rp.id,
            rp_name=rp.name,
            user_name=user.username,
            user_id=base64url_to_bytes(handle),
            timeout=self.challenge_ttl * 1000,
            authenticator_selection=AuthenticatorSelectionCriteria(
                resident_key=ResidentKeyRequirement.REQUIRED,
                user_verification=UserVerificationRequirement.REQUIRED,
            ),
            exclude_credentials=[_descriptor(p) for p in existing],
        )
        await self._remember(options.challenge, "register", binding, user.id)
        public_key = options_to_json_dict(options)
        # credProps: the browser says whether the credential really is discoverable.
        public_key["extensions"] = {"credProps": True}
        return {"publicKey": public_key}

    async def register(
        self,
        user: UserRecord,
        credential: object,
        name: str,
        rp: RelyingParty,
        binding: str,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> PasskeyRecord:
        """Verify a new credential (``PublicKeyCredential.toJSON()``) made from options of
        :meth:`registration_options` and keep it under ``name``."""
        try:
            parsed = parse_registration_credential_json(_as_dict(credential))
            client_data = parse_client_data_json(parsed.response.client_data_json)
        except (WebAuthnException, ValueError, TypeError) as error:
            raise PasskeyRefused("malformed credential") from error
        await self._take(client_data.challenge, "register", binding, user.id)
        try:
            verified = verify_registration_response(
                credential=parsed,
                expected_challenge=client_data.challenge,
                expected_rp_id=rp.id,
                expected_origin=rp.origin,
                require_user_verification=True,
            )
        except (WebAuthnException, ValueError, TypeError) as error:
            raise PasskeyRefused(f"registration not verified: {error}") from error
        if _client_says_not_discoverable(credential):
            raise PasskeyRefused("the credential is not discoverable")
        count = await self.repository.count_for_user(user.id)
        if count >= MAX_PASSKEYS:
            raise TooManyPasskeys
        transports = tuple(t.value for t in parsed.response.transports or ())
        new = NewPasskey(
            user_id=user.id,
            credential_id=bytes_to_base64url(verified.credential_id),
            public_key=verified.credential_public_key,
            sign_count=verified.sign_count,
            name=clean_passkey_name(name) or f"Passkey {count + 1}",
            transports=tuple(t for t in transports if t in _KNOWN_TRANSPORTS),
            aaguid=verified.aaguid or None,
            backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
            backed_up=verified.credential_backed_up,
        )
        try:
            passkey = await self.repository.add(new)
        except CredentialTaken:
            raise PasskeyRefused("credential registered already") from None
        await self._record(
            "mfa.passkey.registered",
            user,
            ip,
            user_agent,
            passkey=passkey.id,
            name=passkey.name,
            aaguid=passkey.aaguid,
        )
        return passkey

    # -- authentication --------------------------------------------------------------------

    async def authentication_options(
        self,
        rp: RelyingParty,
        binding: str,
        *,
        purpose: Purpose = "sign-in",
        user_id: int | None = None,
        ip: str | None = None,
    ) -> dict[str, Any]:
        """Request options (``{"publicKey": {...}}``). Without ``user_id`` (sign-in) the
        list of credentials is empty: the browser offers the site's discoverable ones. With
        it (a second factor, re-authentication) it lists that user's passkeys;
        :class:`PasskeyRefused` when they have none. ``RateLimited`` when ``ip`` asked for
        too many sign-in options."""
        if user_id is None and self.sign_in_limit is not None:
            await self.sign_in_limit.hit(ip)
        allowed: list[PublicKeyCredentialDescriptor] = []
        if user_id is not None:
            allowed = [_descriptor(p) for p in await self.repository.list_for_user(user_id)]
            if not allowed:
                raise PasskeyRefused("the user has no passkey")
        options = generate_authentication_options(
            rp_id=rp.id,
            timeout=self.challenge_ttl * 1000,
            allow_credentials=allowed,
            user_verification=UserVerificationRequirement.REQUIRED,
        )
        await self._remember(options.challenge, purpose, binding, user_id)
        return {"publicKey": options_to_json_dict(options)}

    async def sign_in(
        self,
        credential: object,
        rp: RelyingParty,
        binding: str,
        *,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> PasskeyUse:
        """A sign-in with a passkey alone (options from :meth:`authentication_options`
        without a user). The user must be active; the caller starts the session."""
        try:
            use = await self._verify(credential, rp, binding, "sign-in", None, ip, user_agent)
        except ClonedPasskey:
            raise  # audited as such
        except PasskeyRefused as error:
            if error.user_id is not None:
                # A known passkey that failed a check: a failed sign-in of its user.
                await self.audit.record(
                    "login.failure",
                    user_id=error.user_id,
                    ip=ip,
                    user_agent=user_agent,
                    # The reason may quote the client's data (its origin): clipped.
                    detail={"channel": "web", "method": "passkey", "reason": error.reason[:200]},
                )
            raise
        if not use.user.is_active:
            await self._record(
                "login.failure",
                use.user,
                ip,
                user_agent,
                channel="web",
                method="passkey",
                reason="disabled",
            )
            raise PasskeyRefused("the account is disabled")
        await self.users.record_login(use.user.id)
        return use

    async def verify(
        self,
        user_id: int,
        credential: object,
        rp: RelyingParty,
        binding: str,
        *,
        purpose: Purpose,
        ip: str | None = None,
        user_agent: str | None = None,
    ) -> PasskeyUse:
        """``user_id`` proves themselves with one of their passkeys, as a second factor
        after their password or to re-authenticate (``purpose`` as in the options)."""
        return await self._verify(credential, rp, binding, purpose, user_id, ip, user_agent)

    async def _verify(
        self,
        credential: object,
        rp: RelyingParty,
        binding: str,
        purpose: Purpose,
        user_id: int | None,
        ip: str | None,
        user_agent: str | None,
    ) -> PasskeyUse:
        try:
            parsed = parse_authentication_credential_json(_as_dict(credential))
            client_data = parse_client_data_json(parsed.response.client_data_json)
        except (WebAuthnException, ValueError, TypeError) as error:
            raise PasskeyRefused("malformed credential") from error
        await self._take(client_data.challenge, purpose, binding, user_id)
        passkey = await self.repository.by_credential_id(parsed.id)
        if passkey is None:
            raise PasskeyRefused("unknown credential")
        if user_id is not None and passkey.user_id != user_id:
            raise PasskeyRefused("the credential belongs to another user")
        try:
            return await self._check_assertion(
                parsed, client_data.challenge, passkey, rp, ip, user_agent, user_id
            )
        except PasskeyRefused as error:
            error.user_id = passkey.user_id
            raise

    async def _check_assertion(
        self,
        parsed: AuthenticationCredential,
        challenge: bytes,
        passkey: PasskeyRecord,
        rp: RelyingParty,
        ip: str | None,
        user_agent: str | None,
        user_id: int | None,
    ) -> PasskeyUse:
        """The checks of an assertion by a known passkey (its challenge already taken)."""
        handle = await self.repository.user_handle(passkey.user_id)
        given = parsed.response.user_handle
        if handle is None or (given is None and user_id is None):
            # A discoverable credential names its user: without that there is no sign-in.
            raise PasskeyRefused("no user handle")
        if given is not None and not secrets.compare_digest(given, base64url_to_bytes(handle)):
            raise PasskeyRefused("the user handle does not match the credential")
        try:
            verified = verify_authentication_response(
                credential=parsed,
                expected_challenge=challenge,
                expected_rp_id=rp.id,
                expected_origin=rp.origin,
                credential_public_key=passkey.public_key,
                # 0 switches the package's own counter check off: it runs before the
                # signature is checked, and a clone is only judged on a valid signature.
                credential_current_sign_count=0,
                require_user_verification=True,
            )
        except (WebAuthnException, ValueError, TypeError) as error:
            raise PasskeyRefused(f"assertion not verified: {error}") from error
        user = await self.users.get_by_id(passkey.user_id)
        if user is None:
            raise PasskeyRefused("no such user")
        count = verified.new_sign_count
        if (count or passkey.sign_count) and count <= passkey.sign_count:
            await self._record(
                "mfa.passkey.clone_suspected",
                user,
                ip,
                user_agent,
                passkey=passkey.id,
                name=passkey.name,
                stored_count=passkey.sign_count,
                presented_count=count,
            )
            raise ClonedPasskey(f"sign count {count} not above {passkey.sign_count}")
        if not await self.repository.record_use(
            passkey, sign_count=count, backed_up=verified.credential_backed_up
        ):
            raise PasskeyRefused("the passkey was used at the same moment elsewhere")
        return PasskeyUse(user=user, passkey=passkey, user_verified=verified.user_verified)

    # -- challenges ------------------------------------------------------------------------

    async def _remember(
        self, challenge: bytes, purpose: Purpose, binding: str, user_id: int | None
    ) -> None:
        claim = {"purpose": purpose, "binding": binding_digest(binding), "user_id": user_id}
        await self.store.set(
            _challenge_key(challenge), json.dumps(claim).encode(), ttl=self.challenge_ttl
        )

    async def _take(
        self, challenge: bytes, purpose: Purpose, binding: str, user_id: int | None
    ) -> None:
        """Consume the challenge (atomically: of two answers naming it, one gets it) and
        check that it was made for this purpose, browser and user."""
        raw = await self.store.pop(_challenge_key(challenge))
        if raw is None:
            raise PasskeyRefused("unknown, used or expired challenge")
        claim = json.loads(raw)
        if claim.get("purpose") != purpose:
            raise PasskeyRefused("the challenge was made for another purpose")
        if not secrets.compare_digest(str(claim.get("binding")), binding_digest(binding)):
            raise PasskeyRefused("the challenge was made for another browser")
        if claim.get("user_id") != user_id:
            raise PasskeyRefused("the challenge was made for another user")

    async def _record(
        self,
        event: str,
        user: UserRecord,
        ip: str | None,
        user_agent: str | None,
        **detail: object,
    ) -> None:
        await self.audit.record(
            event,
            user_id=user.id,
            username=user.username,
            actor_id=user.id,
            ip=ip,
            user_agent=user_agent,
            detail={k: v for k, v in detail.items() if v is not None},
        )


def _as_dict(credential: object) -> dict[str, Any]:
    if not isinstance(credential, Mapping):
        raise TypeError("the credential must be a JSON object")
    return dict(credential)


def _client_says_not_discoverable(credential: object) -> bool:
    """Whether the browser reported (``credProps``) that the credential is not discoverable;
    browsers that do not report it are believed to have honoured ``residentKey``."""
    if not isinstance(credential, Mapping):
        return False
    results = credential.get("clientExtensionResults")
    props = results.get("credProps") if isinstance(results, Mapping) else None
    return isinstance(props, Mapping) and props.get("rk") is False


__all__ = [
    "CHALLENGE_TTL",
    "ClonedPasskey",
    "PasskeyRecord",
    "PasskeyRefused",
    "PasskeyUse",
    "Passkeys",
    "RelyingParty",
    "TooManyPasskeys",
    "relying_party",
]
