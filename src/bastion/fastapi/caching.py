"""``@cached(ttl=..., scope=..., vary=[...])`` for FastAPI endpoints, on :mod:`bastion.cache`.

The decorator sits between FastAPI and the endpoint function, so every dependency, the
principal first of all, is resolved (and authentication has answered 401/403) before the
cache is even looked at. It is checked when the module is imported:

* ``scope="user"`` and ``"role"`` need a principal parameter (``CurrentUser``,
  ``OptionalUser``, a ``require_role(...)`` dependency, or ``Depends(current_user)``
  without annotation);
* the dependency graph is walked (sub-dependencies through ``Depends`` defaults and
  ``Annotated`` metadata, class dependencies, cycles stopped) for anything that can tell
  callers apart: Bastion's principal dependencies, security schemes, a ``Request`` or
  ``HTTPConnection`` parameter, ``Authorization`` or ``Cookie`` headers, cookies.
  ``"public"`` refuses every such dependency (and credential headers or cookies taken by
  the endpoint itself), since an answer computed for one caller would go to everyone
  (shared HTTP caches included); ``"role"`` refuses every one besides the principal, since the
  entry is shared by everyone with the same roles. A dependency that takes the request
  without reading the caller can be vouched for with :func:`reads_no_identity`;
* every plain parameter (query, path, header, cookie, body) must be named in ``vary`` so it
  becomes part of the key; dependencies may be named too when their value is JSON data.
  The same holds for the plain parameters of every dependency in the graph: a dependency
  reading ``?page=`` changes the answer as much as the endpoint reading it, so ``page``
  must be in ``vary`` (declared by the endpoint too, so that FastAPI gives both the same
  value);
* ``Request``, ``WebSocket`` and ``BackgroundTasks`` parameters are refused: the first two
  would let the endpoint read inputs the key does not cover, the last would be skipped on
  every hit (in dependencies too).

The endpoint also sees only what the key covers: with ``scope="user"`` the principal is a
:class:`UserView` (``user_id``, ``username``, ``roles``), with ``"role"`` a
:class:`RoleView` (``roles``); reading anything else raises :class:`CacheScopeError`.

Languages: the key also holds the language the request is answered in (contract 6.5,
:func:`bastion.asgi.language.request_language`), so an answer computed in Chinese never
reaches a reader of English: an endpoint may translate (``gettext``, a template, an error
message) without saying so, and there are only a few languages. Browsers and shared caches
are told the same: every cached answer varies on ``Accept-Language`` and ``Cookie`` (the
``bastion_lang`` cookie and the user's own choice, kept in the session, pick the language
too), besides ``Authorization`` for the private scopes.

What is stored: the endpoint's return value (JSON data, see :func:`bastion.cache.dumps`)
with the status and headers it set on an injected ``Response``, or a returned plain
``Response`` (status, headers, body). Never stored: non-2xx answers, anything that sets a
cookie, ``Cache-Control: no-store``, streaming/file responses and responses with background
tasks; those are passed through untouched and get no caching headers.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, Union

from fastapi import BackgroundTasks, Request, Response
from fastapi.datastructures import DefaultPlaceholder
from fastapi.dependencies.utils import get_typed_signature
from fastapi.params import Cookie, Depends, Header
from fastapi.routing import APIRoute, serialize_response
from fastapi.security import SecurityScopes
from fastapi.security.base import SecurityBase
from fastapi.utils import is_body_allowed_for_status_code
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import MutableHeaders
from starlette.requests import HTTPConnection
from starlette.websockets import WebSocket

from bastion.asgi.language import request_language
from bastion.cache import Cache, CacheKey, CacheScope, Computed, dumps, loads
from bastion.fastapi.dependencies import (
    Principal,
    is_principal_dependency,
    is_vouched_identity_free,
    reads_no_identity,
)
from bastion.stores.base import check_ttl

__all__ = [
    "CacheScopeError",
    "RoleView",
    "UserView",
    "cached",
    "get_cache",
    "reads_no_identity",
]

F = TypeVar("F", bound=Callable[..., Any])
REQUEST_PARAM = "bastion_cache_request"
RESPONSE_PARAM = "bastion_cache_response"
VARY = "Authorization, Cookie"
# What chooses the language of an answer (besides ?lang=, which is in the URL).
LANGUAGE_VARY = ("Accept-Language", "Cookie")
# The key's entry for the request's language: not a Python name, so no parameter named in
# vary= can collide with it.
LANGUAGE_KEY = "bastion:language"
# Headers that carry credentials; a dependency reading one of them reads who is calling.
CREDENTIAL_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie"})
# The Vary header of an answer whose endpoint set none (nearly all of them), per scope.
PRIVATE_NAMES = tuple(dict.fromkeys((*(v.strip() for v in VARY.split(",")), *LANGUAGE_VARY)))
PRIVATE_VARY = ", ".join(PRIVATE_NAMES)
PUBLIC_VARY = ", ".join(LANGUAGE_VARY)
# Keys built per wrapper, by (identity, language), for endpoints without vary=: a key is a
# pure function of those, and building one (canonical JSON and a SHA-256) costs more
# than the rest of a hit's own work. Emptied when full.
KEY_MEMO_SIZE = 4096


class CacheScopeError(AttributeError):
    """A cached endpoint read something about the caller that its cache key does not cover
    (an ``AttributeError``, so ``getattr(user, name, default)`` still works)."""


class _ScopedView:
    """What a cached endpoint may read of its caller: exactly what its cache key covers."""

    __slots__ = ("roles",)
    _refusal = ""

    def __init__(self, principal: Principal) -> None:
        self.roles = principal.roles

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        raise CacheScopeError(self._refusal.format(name=repr(name)))


class UserView(_ScopedView):
    """The caller as a ``scope="user"`` endpoint sees it: the user, not the session (every
    session and token of the user shares the entry)."""

    __slots__ = ("user_id", "username")
    _refusal = (
        "a scope='user' cached endpoint may read user_id, username and roles of the "
        "principal, not {name}: its answer is shared by all of the user's sessions"
    )

    def __init__(self, principal: Principal) -> None:
        super().__init__(principal)
        self.user_id = principal.user_id
        self.username = principal.username

    def __repr__(self) -> str:
        return f"UserView(user_id={self.user_id!r})"


class RoleView(_ScopedView):
    """The caller as a ``scope="role"`` endpoint sees it: its roles only (every user with
    the same role set shares the entry)."""

    __slots__ = ()
    _refusal = (
        "a scope='role' cached endpoint may read only the roles of the principal, not "
        "{name}: its answer is shared by every user with the same roles"
    )

    def __repr__(self) -> str:
        return f"RoleView(roles={sorted(self.roles)!r})"


@reads_no_identity
def get_cache(request: Request) -> Cache:
    """The :class:`~bastion.cache.Cache` of the Bastion installed on this app."""
    bastion = getattr(request.app.state, "bastion", None)
    if bastion is None:
        raise RuntimeError("@cached needs Bastion: call bastion.fastapi.install(app) first")
    cache: Cache = bastion.services.cache
    return cache


@dataclass(frozen=True, slots=True)
class _Plan:
    """What decoration learned about the endpoint's parameters."""

    principal: str | None
    response: str | None  # the endpoint's own Response parameter, if it has one
    signature: inspect.Signature


def cached(
    *,
    ttl: float,
    scope: CacheScope,
    vary: Sequence[str] = (),
    name: str | None = None,
) -> Callable[[F], F]:
    """Cache a FastAPI endpoint's answer for ``ttl`` seconds, keyed by ``scope``.

    ``scope="user"``: one entry per user (``Cache-Control: private``, ``Vary:
    Authorization, Cookie``); ``"role"``: one per role set (same headers); ``"public"``:
    one for everyone (``Cache-Control: public``). ``vary`` names the parameters whose
    values become part of the key. ``name`` (default: the function's module and
    qualified name) tells endpoints apart. Place it below the route decorator::

        @app.get("/api/profile")
        @cached(ttl=300, scope="user")
        async def profile(user: CurrentUser) -> dict[str, Any]: ...

    Anonymous callers of a user- or role-scoped endpoint (``OptionalUser`` giving None)
    are answered uncached: there is no identity to key on.
    """
    if scope not in typing.get_args(CacheScope):
        raise ValueError(f"scope must be 'user', 'role' or 'public', not {scope!r}")
    if ttl is None or isinstance(ttl, bool):
        raise ValueError("ttl must be a positive number of seconds")
    check_ttl(ttl)
    if isinstance(vary, str):
        raise TypeError("vary is a list of parameter names, not a string")
    vary_names = tuple(dict.fromkeys(vary))

    def decorate(endpoint: F) -> F:
        plan = _plan(endpoint, scope, vary_names)
        key_name = name or f"{endpoint.__module__}.{endpoint.__qualname__}"
        is_async = inspect.iscoroutinefunction(endpoint)
        keys: dict[tuple[Any, str | None], CacheKey] = {}

        def key_for(principal: Principal | None, varied: dict[str, Any]) -> CacheKey:
            user_id = principal.user_id if principal and scope == "user" else None
            roles = principal.roles if principal and scope == "role" else None
            if vary_names:
                return CacheKey.build(
                    key_name, scope=scope, user_id=user_id, roles=roles, vary=varied
                )
            memo = (user_id if scope == "user" else roles, varied.get(LANGUAGE_KEY))
            key = keys.get(memo)
            if key is None:
                if len(keys) >= KEY_MEMO_SIZE:
                    keys.clear()
                key = CacheKey.build(
                    key_name, scope=scope, user_id=user_id, roles=roles, vary=varied
                )
                keys[memo] = key
            return key

        async def call(kwargs: dict[str, Any]) -> Any:
            if is_async:
                return await endpoint(**kwargs)
            return await run_in_threadpool(endpoint, **kwargs)

        @functools.wraps(endpoint)
        async def wrapper(**kwargs: Any) -> Any:
            request: Request = kwargs.pop(REQUEST_PARAM)
            response: Response = (
                kwargs[plan.response] if plan.response else kwargs.pop(RESPONSE_PARAM)
            )
            principal: Principal | None = None
            if plan.principal is not None:
                principal = kwargs[plan.principal]
                if principal is not None and not isinstance(principal, Principal):
                    raise TypeError(f"{key_name}: {plan.principal!r} is not a Principal")
                if principal is not None:
                    view = UserView(principal) if scope == "user" else RoleView(principal)
                    kwargs[plan.principal] = view
            if scope != "public" and principal is None:
                return await call(kwargs)  # anonymous: nothing to key on, so no caching

            varied = {n: kwargs[n] for n in vary_names}
            if (language := request_language(request.scope)) is not None:
                varied[LANGUAGE_KEY] = language
            key = key_for(principal, varied)
            rendering = _rendering(request.scope.get("route"))
            ran: list[Any] = []

            async def compute() -> Computed[dict[str, Any]]:
                # What the dependencies put on the injected response: they run on every
                # request, hit or miss, so only what the endpoint adds is kept.
                before = list(response.raw_headers)
                result = await call(kwargs)
                ran.append(result)
                return await _payload(result, response, rendering, before)

            fetched = await get_cache(request).fetch(key, compute, ttl=ttl)
            max_age = max(0, int(ttl - fetched.age))
            if ran:  # this request ran the endpoint: answer with what it returned
                result = ran[0]
                if fetched.stored:
                    target = result.headers if isinstance(result, Response) else response.headers
                    _caching_headers(target, scope, max_age)
                return result
            return _replay(fetched.value, response, scope, max_age, rendering)

        wrapper.__signature__ = plan.signature  # type: ignore[attr-defined]
        return typing.cast(F, wrapper)

    return decorate


def _plan(endpoint: Callable[..., Any], scope: CacheScope, vary: tuple[str, ...]) -> _Plan:
    where = f"@cached on {endpoint.__qualname__}"
    if not callable(endpoint) or inspect.isclass(endpoint):
        raise TypeError(f"{where}: decorate a function")
    try:
        hints = typing.get_type_hints(endpoint, include_extras=True)
    except NameError as exc:
        raise TypeError(
            f"{where}: cannot resolve its annotations ({exc}); the names they use must be "
            "importable from the function's module (FastAPI needs them there too)"
        ) from None
    signature = inspect.signature(endpoint)
    principal: str | None = None
    own_response: str | None = None
    plain: list[str] = []
    sees_caller: dict[str, str] = {}  # parameter -> how it reaches the caller
    params: list[inspect.Parameter] = []
    for param in signature.parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{where}: *args and **kwargs are not supported")
        if param.name in (REQUEST_PARAM, RESPONSE_PARAM):
            raise TypeError(f"{where}: the parameter name {param.name!r} is reserved")
        annotation = hints.get(param.name, param.annotation)
        params.append(param.replace(annotation=annotation))
        base, metadata = _unwrap(annotation)
        dependency = _dependency_of(param.default, base, metadata)
        if _is_principal(base) or is_principal_dependency(dependency):
            if principal is not None:
                raise TypeError(f"{where}: more than one principal parameter")
            principal = param.name
        elif _subclass(base, Response):
            own_response = param.name
        elif _subclass(base, HTTPConnection) or _subclass(base, WebSocket):
            raise TypeError(
                f"{where}: a Request parameter could read inputs the cache key does not "
                "cover; take them as parameters and list them in vary="
            )
        elif _subclass(base, BackgroundTasks):
            raise TypeError(f"{where}: background tasks would not run on a cache hit")
        elif not _is_dependency(param.default, metadata):
            plain.append(param.name)
            # Keyed through vary=, but a public answer also goes to shared HTTP caches,
            # which do not key on credentials.
            if scope == "public" and (credential := _reads_credentials(param, metadata)):
                sees_caller[param.name] = f"it {credential}"
        else:
            if (path := _caller_path(dependency, set(), where)) is not None:
                sees_caller[param.name] = path
            if (found := _uncovered_input(dependency, vary, set())) is not None:
                raise TypeError(
                    f"{where}: its parameter {param.name!r} depends on {found}, which the "
                    "cache key does not cover; declare that input on the endpoint too and "
                    "list it in vary= (FastAPI gives both the same value)"
                )
    names = {p.name for p in params}
    if unknown := [n for n in vary if n not in names]:
        raise TypeError(f"{where}: vary names unknown parameters {unknown}")
    if principal is not None and principal in vary:
        raise TypeError(f"{where}: the principal is keyed by scope=, not by vary=")
    if missing := [n for n in plain if n not in vary]:
        raise TypeError(
            f"{where}: parameters {missing} change the answer but are not in vary=; "
            "list them so that each value gets its own entry"
        )
    if scope in ("user", "role") and principal is None:
        raise TypeError(
            f"{where}: scope={scope!r} needs a principal parameter "
            "(CurrentUser, OptionalUser, SignedInUser or a require_role dependency)"
        )
    if scope == "public" and principal is not None:
        raise TypeError(
            f"{where}: scope='public' would share an answer computed for one caller with "
            f"everyone, but the endpoint receives {principal!r}; use scope='user' or "
            "'role', or gate the route with dependencies=[Depends(current_user)]"
        )
    if scope == "public" and sees_caller:
        name, path = next(iter(sees_caller.items()))
        raise TypeError(
            f"{where}: scope='public' would share an answer computed for one caller with "
            f"everyone, but its parameter {name!r} depends on who is calling ({path}); "
            "use scope='user' or 'role', gate the route with "
            "dependencies=[Depends(current_user)], or mark a dependency that takes the "
            "request without reading the caller with reads_no_identity"
        )
    if scope == "role" and sees_caller:
        name, path = next(iter(sees_caller.items()))
        raise TypeError(
            f"{where}: scope='role' shares one answer among every user with the same "
            f"roles, but its parameter {name!r} depends on who is calling ({path}); "
            "derive the answer from the principal's roles in the endpoint, or use "
            "scope='user'"
        )
    extra = [inspect.Parameter(REQUEST_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Request)]
    if own_response is None:
        extra.append(
            inspect.Parameter(RESPONSE_PARAM, inspect.Parameter.KEYWORD_ONLY, annotation=Response)
        )
    return_annotation = hints.get("return", signature.return_annotation)
    return _Plan(
        principal=principal,
        response=own_response,
        signature=signature.replace(
            parameters=[*params, *extra], return_annotation=return_annotation
        ),
    )


def _unwrap(annotation: Any) -> tuple[Any, tuple[Any, ...]]:
    """The type inside ``Annotated[...]`` and its metadata."""
    if typing.get_origin(annotation) is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        return base, tuple(metadata)
    return annotation, ()


def _is_principal(annotation: Any) -> bool:
    if annotation is Principal:
        return True
    if typing.get_origin(annotation) in (Union, types.UnionType):
        args = set(typing.get_args(annotation))
        return args == {Principal, type(None)}
    return False


def _subclass(annotation: Any, cls: type) -> bool:
    return inspect.isclass(annotation) and issubclass(annotation, cls)


def _is_dependency(default: Any, metadata: tuple[Any, ...]) -> bool:
    return isinstance(default, Depends) or any(isinstance(m, Depends) for m in metadata)


def _depends(default: Any, metadata: tuple[Any, ...]) -> Depends | None:
    if isinstance(default, Depends):
        return default
    return next((m for m in metadata if isinstance(m, Depends)), None)


def _dependency_of(default: Any, base: Any, metadata: tuple[Any, ...]) -> Any:
    """What FastAPI calls for a parameter: the ``Depends`` callable, or for a bare
    ``Depends()`` the annotated class itself; None for a parameter that is no dependency."""
    depends = _depends(default, metadata)
    if depends is None:
        return None
    return base if depends.dependency is None else depends.dependency


def _param_of(default: Any, metadata: tuple[Any, ...], kind: type[Any]) -> Any:
    if isinstance(default, kind):
        return default
    return next((m for m in metadata if isinstance(m, kind)), None)


def _header_name(param: inspect.Parameter, header: Header) -> str:
    if header.alias:
        return header.alias.lower()
    name = param.name.replace("_", "-") if header.convert_underscores else param.name
    return name.lower()


def _describe(dependency: Any) -> str:
    name = getattr(dependency, "__qualname__", None)
    return name if isinstance(name, str) else f"{type(dependency).__qualname__} instance"


def _caller_path(dependency: Any, seen: set[int], where: str) -> str | None:
    """How ``dependency`` can tell who is calling, as a path through its sub-dependencies
    (``get_profile -> the signed-in user``), or None if nothing in its graph can.

    What counts: Bastion's principal dependencies (marked in ``dependencies``), security
    schemes, a ``Request``/``HTTPConnection`` parameter (unless the dependency is vouched
    for with :func:`reads_no_identity`), credential headers and cookies.
    """
    if dependency is None or id(dependency) in seen:
        return None  # no dependency, or one already being walked (a cycle)
    seen.add(id(dependency))
    if is_principal_dependency(dependency):
        return "the signed-in user"
    name = _describe(dependency)
    if isinstance(dependency, SecurityBase):
        return f"{name}: a security scheme, which reads the credentials"
    try:
        parameters = get_typed_signature(dependency).parameters.values()
    except (TypeError, ValueError):
        return None  # not introspectable: FastAPI cannot pass it parameters either
    except NameError as exc:
        raise TypeError(
            f"{where}: cannot resolve the annotations of the dependency {name} ({exc})"
        ) from None
    for param in parameters:
        base, metadata = _unwrap(param.annotation)
        if _is_dependency(param.default, metadata):
            inner = _caller_path(_dependency_of(param.default, base, metadata), seen, where)
            if inner is not None:
                return f"{name} -> {inner}"
        elif _subclass(base, HTTPConnection):
            if not is_vouched_identity_free(dependency):
                return (
                    f"{name}: takes the {base.__name__}, from which it could read the "
                    "session, cookies or Authorization header"
                )
        elif (credential := _reads_credentials(param, metadata)) is not None:
            return f"{name}: {credential}"
    return None


def _uncovered_input(dependency: Any, vary: tuple[str, ...], seen: set[int]) -> str | None:
    """The first request input (query, path, header, cookie or body parameter) that a
    dependency or its sub-dependencies read and ``vary`` does not name, or a
    ``BackgroundTasks`` they take (skipped on a hit), as a path; None when there is none.
    Principal dependencies and vouched-for ones are Bastion's or the app's promise."""
    if (
        dependency is None
        or id(dependency) in seen
        or is_principal_dependency(dependency)
        or is_vouched_identity_free(dependency)
        or isinstance(dependency, SecurityBase)
    ):
        return None
    seen.add(id(dependency))
    name = _describe(dependency)
    try:
        parameters = get_typed_signature(dependency).parameters.values()
    except (TypeError, ValueError, NameError):
        return None  # reported by _caller_path, or nothing FastAPI could call either
    for param in parameters:
        base, metadata = _unwrap(param.annotation)
        if _is_dependency(param.default, metadata):
            inner = _uncovered_input(_dependency_of(param.default, base, metadata), vary, seen)
            if inner is not None:
                return f"{name} -> {inner}"
        elif _subclass(base, BackgroundTasks):
            return f"{name}'s background tasks, which would not run on a cache hit"
        elif any(_subclass(base, k) for k in (HTTPConnection, Response, SecurityScopes)):
            continue  # the request is judged by _caller_path; the others are no input
        elif _reads_credentials(param, metadata) is not None:
            continue  # who is calling: judged by _caller_path and the scope
        elif param.name not in vary:
            return f"{name}'s input {param.name!r}"
    return None


def _reads_credentials(param: inspect.Parameter, metadata: tuple[Any, ...]) -> str | None:
    """Whether a parameter is a credential header or a cookie, and which."""
    if isinstance(header := _param_of(param.default, metadata, Header), Header):
        header_name = _header_name(param, header)
        return f"reads the {header_name} header" if header_name in CREDENTIAL_HEADERS else None
    if isinstance(cookie := _param_of(param.default, metadata, Cookie), Cookie):
        return f"reads the cookie {cookie.alias or param.name!r}"
    return None


# -- what is stored, and how it is replayed ----------------------------------------------


def _sets_cookie(headers: MutableHeaders) -> bool:
    return "set-cookie" in headers


def _forbids_storing(headers: MutableHeaders) -> bool:
    return "no-store" in headers.get("cache-control", "").lower()


def _header_list(
    headers: MutableHeaders | list[tuple[bytes, bytes]], *, skip: frozenset[str] = frozenset()
) -> list[Any]:
    raw = headers.raw if isinstance(headers, MutableHeaders) else headers
    return [
        [k.decode("latin-1"), v.decode("latin-1")]
        for k, v in raw
        if k.decode("latin-1").lower() not in skip
    ]


@dataclass(frozen=True, slots=True)
class _Rendering:
    """How FastAPI turns a route's return value into a body on its default path (a
    response model, or the return annotation, and no ``response_class``): pydantic's
    serialisation straight to JSON bytes. A cached answer keeps those bytes, so a hit is
    answered with them: no decoding of the value, no validation, no serialisation.

    ``fingerprint`` names what shapes the bytes (the route, its status code, its response
    model's schema and options): bytes rendered under another one (the same function
    under two routes, an older release sharing the store) are never served as they are.
    """

    route: APIRoute
    fingerprint: str

    async def body(self, value: Any) -> bytes:
        route = self.route
        body: bytes = await serialize_response(
            field=route.response_field,
            response_content=value,
            include=route.response_model_include,
            exclude=route.response_model_exclude,
            by_alias=route.response_model_by_alias,
            exclude_unset=route.response_model_exclude_unset,
            exclude_defaults=route.response_model_exclude_defaults,
            exclude_none=route.response_model_exclude_none,
            is_coroutine=True,
            dump_json=True,
        )
        return body


# FastAPI renders to bytes (dump_json) from 0.130 or so; before, through jsonable_encoder
# and the response class, which this does not reproduce: such versions replay the value.
_RENDERS_JSON = "dump_json" in inspect.signature(serialize_response).parameters
# Where a route keeps its rendering, worked out on its first request (routes compare by
# value, so they cannot be keys of a dict).
_RENDERING_ATTRIBUTE = "_bastion_cache_rendering"


def _rendering(route: object) -> _Rendering | None:
    """The rendering of ``route`` when FastAPI's default JSON path answers it, else None."""
    if not isinstance(route, APIRoute):
        return None
    if hasattr(route, _RENDERING_ATTRIBUTE):
        known: _Rendering | None = getattr(route, _RENDERING_ATTRIBUTE)
        return known
    rendering = None
    field = route.response_field
    if _RENDERS_JSON and field is not None and isinstance(route.response_class, DefaultPlaceholder):
        try:
            schema: Any = field._type_adapter.json_schema(mode="serialization")
        except Exception:  # a type without a schema: its name will do
            schema = repr(field.field_info.annotation)
        shape = [
            route.path_format,
            sorted(route.methods or ()),
            route.status_code,
            schema,
            repr(route.response_model_include),
            repr(route.response_model_exclude),
            route.response_model_by_alias,
            route.response_model_exclude_unset,
            route.response_model_exclude_defaults,
            route.response_model_exclude_none,
        ]
        text = json.dumps(shape, sort_keys=True, default=repr)
        rendering = _Rendering(route, hashlib.sha256(text.encode()).hexdigest()[:32])
    setattr(route, _RENDERING_ATTRIBUTE, rendering)
    return rendering


async def _payload(
    result: Any,
    response: Response,
    rendering: _Rendering | None,
    before: list[tuple[bytes, bytes]] = [],  # noqa: B006 - never changed
) -> Computed[dict[str, Any]]:
    """What to keep of one run of the endpoint, and whether it may be kept at all.

    Only what the endpoint (and its dependencies, through the shared injected Response)
    produced is looked at and kept. Bastion's SessionMiddleware may still add Set-Cookie
    on the way out (a new pre-session, or clearing a stale session cookie); that happens
    outside the endpoint, is never part of an entry, and also forces ``Cache-Control:
    no-store`` on that one response. It cannot reach another caller either: the entry
    is keyed by the principal the request authenticated as (or is public), the cookie
    is re-decided per request by the middleware, and an anonymous caller of a user- or
    role-scoped route is never cached at all.

    A value answered on FastAPI's default JSON path is kept twice, as text: the body
    FastAPI renders from it (what a hit answers with) and its :func:`bastion.cache.dumps`
    encoding (what a hit through another rendering decodes); either way the entry's
    envelope decodes in one ``json.loads`` of a few strings.
    """
    if isinstance(result, Response):
        storable = (
            200 <= result.status_code < 300
            and not _sets_cookie(result.headers)
            and not _sets_cookie(response.headers)
            and not _forbids_storing(result.headers)
            and result.background is None
            # Plain responses only: streaming and file responses have no body to keep.
            and type(result).__call__ is Response.__call__
            and isinstance(getattr(result, "body", None), bytes)
        )
        body = {
            "status": result.status_code,
            "headers": _header_list(result.headers, skip=frozenset({"cache-control", "vary"})),
            "body": result.body if storable else b"",
        }
        return Computed({"response": body}, store=storable)
    status = response.status_code
    storable = (
        (status is None or 200 <= status < 300)
        and not _sets_cookie(response.headers)
        and not _forbids_storing(response.headers)
    )
    added = list(response.raw_headers)
    for header in before:
        if header in added:
            added.remove(header)
    data: dict[str, Any] = {
        "status": status,
        "headers": _header_list(added, skip=frozenset({"cache-control", "vary"})),
    }
    if rendering is None or not storable:
        data["value"] = result
        return Computed(data, store=storable)
    # Encoded first: a value the cache cannot keep fails as it would without a rendering.
    data["encoded"] = dumps(result).decode("ascii")
    try:
        rendered = await rendering.body(result)
    except Exception:  # FastAPI reports it on this request's own answer
        del data["encoded"]
        data["value"] = result
        return Computed(data, store=storable)
    data["json"] = rendered.decode("utf-8")
    data["rendering"] = rendering.fingerprint
    return Computed(data, store=storable)


def _replay(
    payload: dict[str, Any],
    response: Response,
    scope: CacheScope,
    max_age: int,
    rendering: _Rendering | None,
) -> Any:
    """Answer a request from a stored (or concurrently computed) payload."""
    if "response" in payload:
        stored = payload["response"]
        replayed = Response(content=stored["body"], status_code=stored["status"])
        replayed.raw_headers = [
            (k.encode("latin-1"), v.encode("latin-1")) for k, v in stored["headers"]
        ]
        _caching_headers(replayed.headers, scope, max_age)
        return replayed
    if payload["status"] is not None:
        response.status_code = payload["status"]
    for k, v in payload["headers"]:
        response.headers.append(k, v)
    _caching_headers(response.headers, scope, max_age)
    if "value" in payload:
        return payload["value"]
    if rendering is None or payload["rendering"] != rendering.fingerprint:
        return loads(payload["encoded"].encode("ascii"))
    # What FastAPI's default path builds from a value (fastapi.routing.get_request_handler):
    # the route's status code unless the injected response set one, the body dropped for
    # a status that has none, the injected response's headers after its own.
    status_code = response.status_code or rendering.route.status_code
    answer = Response(
        content=payload["json"].encode("utf-8"),
        media_type="application/json",
        status_code=status_code or 200,  # Response's own default, as FastAPI leaves it
    )
    if not is_body_allowed_for_status_code(answer.status_code):
        answer.body = b""
    answer.raw_headers.extend(response.headers.raw)
    return answer


def _caching_headers(headers: MutableHeaders, scope: CacheScope, max_age: int) -> None:
    # An answer reused by a browser or a shared cache must be tied to what chose its
    # language, and a private one to the credentials it was made for; sent even at
    # max-age=0 since it costs nothing.
    raw = headers.raw  # MutableHeaders' own list
    if not any(name == b"cache-control" or name == b"vary" for name, _ in raw):
        # Nearly every answer: neither header yet, so both are appended as the general
        # path below would, without its scans (a third of a hit's _replay).
        visibility, vary = (
            ("public", PUBLIC_VARY) if scope == "public" else ("private", PRIVATE_VARY)
        )
        raw.append((b"cache-control", f"{visibility}, max-age={max_age}".encode("latin-1")))
        raw.append((b"vary", vary.encode("latin-1")))
        return
    if scope == "public":
        headers["Cache-Control"] = f"public, max-age={max_age}"
        _add_vary(headers, LANGUAGE_VARY, PUBLIC_VARY)
        return
    headers["Cache-Control"] = f"private, max-age={max_age}"
    _add_vary(headers, PRIVATE_NAMES, PRIVATE_VARY)


def _add_vary(headers: MutableHeaders, names: Sequence[str], alone: str) -> None:
    """Add ``names`` to the ``Vary`` header (one line, each name once; what the endpoint
    put there is kept); ``alone`` is the header when there was none."""
    if "vary" not in headers:
        headers["Vary"] = alone
        return
    values = [v.strip() for line in headers.getlist("vary") for v in line.split(",")]
    values = [v for v in values if v]
    present = {v.lower() for v in values}
    values += [n for n in names if n.lower() not in present]
    headers["Vary"] = ", ".join(values)
