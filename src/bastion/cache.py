"""A scoped cache on the Store protocol: keys from explicit identity, JSON values,
single flight, generation-based invalidation, and outages that only make things uncached.

Keys
    An entry is found only through a :class:`CacheKey`, which holds the scope, a caller-given
    name and the ``vary`` values, plus exactly the identity the scope names: the user id
    (``"user"``), the sorted role set (``"role"``) or nothing (``"public"``). Nothing is
    ever keyed by ``repr()``, ``id()`` or any other property of a Python object, so two
    callers share an entry only when their declared identity is equal.

    The store key of an entry is a hash of the :class:`CacheKey` alone
    (``{cu:<user>}:e:<sha256>``, ``cr:e:<sha256>``, ``cp:e:<sha256>``), so one key holds
    the entry whatever the generation.

Invalidation
    Every scope has generations: one per user, one per role, one for public entries. A
    generation is a random token kept in the store (``{cu:<user>}:g``, ``{cr:<role>}:g``,
    ``cp:g``; absent means ``"0"``). An entry records the tokens it was computed under, and
    :meth:`Cache.fetch` reads the current tokens together with the entry in one
    :meth:`~bastion.stores.base.Store.get_many`: one round trip per hit. It is a hit only
    when the recorded tokens equal the current ones. Bumping a generation
    (:meth:`Cache.invalidate_user`, :meth:`~Cache.invalidate_role`,
    :meth:`~Cache.invalidate_public`) writes a new token, so every older entry becomes a
    miss at once for every process sharing the store; it is overwritten by the next miss
    or expires. A computed value is stored with the tokens read before the computation
    started, so a value computed across a bump records the old token and is never served
    after it (a late write of such a value over a newer entry costs one recomputation,
    never a stale hit). A user's generation and entries share the Redis hash tag
    ``{cu:<user>}``, hence one Cluster slot. Tokens are random rather than counters so that
    a generation key that expires (it lives ``2 * max_ttl``) can never come back to an
    older value.

Values
    JSON with type tags (see :func:`dumps`): ``datetime``, ``date``, ``time``,
    ``timedelta``, ``UUID``, ``Decimal``, ``bytes``, ``tuple``, ``set``, ``frozenset``,
    non-string dict keys and non-finite floats come back with the same value and type.
    Anything else, subclasses included, is refused with :class:`TypeError`; nothing is
    ever pickled or turned into a string behind the caller's back.

Single flight
    Concurrent misses for one key in one process compute once; the others wait for that
    result (each gets its own decoded copy). Across processes each one computes once.

Outages
    When the store raises :class:`~bastion.exceptions.StoreUnavailable` the value is
    computed and returned uncached. The cache then leaves the store alone for
    ``retry_interval`` seconds, so an outage adds no latency, and logs one warning when the
    outage starts and one message when it ends. Invalidations that could not be written
    are replayed before the first read after the store answers again.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import logging
import math
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar, cast, get_args
from uuid import UUID
from zoneinfo import ZoneInfo

from bastion.clock import Clock, system_clock
from bastion.exceptions import StoreUnavailable
from bastion.stores.base import Store, check_ttl

__all__ = [
    "Cache",
    "CacheKey",
    "CacheScope",
    "Computed",
    "Fetched",
    "dumps",
    "loads",
]

log = logging.getLogger("bastion.cache")

T = TypeVar("T")
CacheScope = Literal["user", "role", "public"]
Source = Literal["hit", "miss", "shared", "uncached"]

# Part of every key: a change of the key or value format leaves older entries unreachable.
FORMAT = "c3"
_TAG = "$t"
_SAFE_IDENT = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


# -- values ------------------------------------------------------------------------------


def dumps(value: object) -> bytes:
    """Encode ``value`` as JSON that :func:`loads` turns back into an equal value of the
    same type. Raises :class:`TypeError` for any type it cannot bring back exactly."""
    return _json(_encode(value)).encode("ascii")


def loads(data: bytes) -> Any:
    """Decode what :func:`dumps` produced; :class:`ValueError` for anything else."""
    try:
        return _decode(json.loads(data))
    except (KeyError, TypeError, ValueError, IndexError, ArithmeticError) as exc:
        raise ValueError(f"not a cached value: {type(exc).__name__}") from None


def _json(obj: object) -> str:
    return json.dumps(obj, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def _encode(v: object) -> Any:
    t = type(v)
    # Exact type checks: a subclass (an IntEnum, a str subclass...) would come back as its
    # base type, which is not an exact round trip.
    if v is None or t is bool or t is int or t is str:
        return v
    if t is float:
        number = cast(float, v)
        return number if math.isfinite(number) else {_TAG: "float", "v": repr(number)}
    if t is list:
        return [_encode(x) for x in cast(list[object], v)]
    if t is dict:
        mapping = cast(dict[object, object], v)
        if _TAG not in mapping and all(type(k) is str for k in mapping):
            return {cast(str, k): _encode(x) for k, x in mapping.items()}
        return {_TAG: "dict", "v": [[_encode(k), _encode(x)] for k, x in mapping.items()]}
    if t is tuple:
        return {_TAG: "tuple", "v": [_encode(x) for x in cast(tuple[object, ...], v)]}
    if t is set or t is frozenset:
        members = [_encode(x) for x in cast(Iterable[object], v)]
        members.sort(key=_json)  # canonical: equal sets encode to equal text
        return {_TAG: t.__name__, "v": members}
    if t is bytes:
        return {_TAG: "bytes", "v": base64.b64encode(cast(bytes, v)).decode("ascii")}
    if t is datetime:
        moment = cast(datetime, v)
        return {
            _TAG: "datetime",
            "v": moment.replace(tzinfo=None).isoformat(),
            "fold": moment.fold,
            "tz": _encode_tz(moment.tzinfo),
        }
    if t is date:
        return {_TAG: "date", "v": cast(date, v).isoformat()}
    if t is time:
        clock_time = cast(time, v)
        return {
            _TAG: "time",
            "v": clock_time.replace(tzinfo=None).isoformat(),
            "fold": clock_time.fold,
            "tz": _encode_tz(clock_time.tzinfo),
        }
    if t is timedelta:
        delta = cast(timedelta, v)
        return {_TAG: "timedelta", "v": [delta.days, delta.seconds, delta.microseconds]}
    if t is UUID:
        return {_TAG: "uuid", "v": str(v)}
    if t is Decimal:
        return {_TAG: "decimal", "v": str(v)}
    raise TypeError(
        f"cannot cache a value of type {t.__module__}.{t.__qualname__}: use JSON types, "
        "datetime, date, time, timedelta, UUID, Decimal, bytes, tuple, set or frozenset"
    )


def _encode_tz(tz: tzinfo | None) -> Any:
    if tz is None:
        return None
    if type(tz) is timezone:
        offset = tz.utcoffset(None)
        name = tz.tzname(None)
        unnamed = timezone(offset).tzname(None)
        return {
            "offset": [offset.days, offset.seconds, offset.microseconds],
            "name": None if name == unnamed else name,
        }
    if type(tz) is ZoneInfo and tz.key:
        return {"zone": tz.key}
    raise TypeError(
        f"cannot cache a datetime with a {type(tz).__qualname__} tzinfo: "
        "use datetime.timezone or zoneinfo.ZoneInfo"
    )


def _decode_tz(data: Any) -> tzinfo | None:
    if data is None:
        return None
    if "zone" in data:
        return ZoneInfo(str(data["zone"]))
    days, seconds, micros = data["offset"]
    offset = timedelta(days=days, seconds=seconds, microseconds=micros)
    name = data["name"]
    return timezone(offset) if name is None else timezone(offset, str(name))


def _decode_datetime(o: dict[str, Any]) -> datetime:
    naive = datetime.fromisoformat(o["v"])
    return naive.replace(tzinfo=_decode_tz(o["tz"]), fold=int(o["fold"]))


def _decode_time(o: dict[str, Any]) -> time:
    naive = time.fromisoformat(o["v"])
    return naive.replace(tzinfo=_decode_tz(o["tz"]), fold=int(o["fold"]))


def _float(text: str) -> float:
    if text not in ("nan", "inf", "-inf"):
        raise ValueError("not a non-finite float")
    return float(text)


_DECODERS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "float": lambda o: _float(o["v"]),
    "dict": lambda o: {_decode(k): _decode(x) for k, x in o["v"]},
    "tuple": lambda o: tuple(_decode(x) for x in o["v"]),
    "set": lambda o: {_decode(x) for x in o["v"]},
    "frozenset": lambda o: frozenset(_decode(x) for x in o["v"]),
    "bytes": lambda o: base64.b64decode(o["v"], validate=True),
    "datetime": _decode_datetime,
    "date": lambda o: date.fromisoformat(o["v"]),
    "time": _decode_time,
    "timedelta": lambda o: timedelta(days=o["v"][0], seconds=o["v"][1], microseconds=o["v"][2]),
    "uuid": lambda o: UUID(o["v"]),
    "decimal": lambda o: Decimal(o["v"]),
}


def _decode(o: Any) -> Any:
    if isinstance(o, list):
        return [_decode(x) for x in o]
    if isinstance(o, dict):
        if _TAG not in o:
            return {k: _decode(x) for k, x in o.items()}
        return _DECODERS[o[_TAG]](o)
    return o


# Entries parsed lately, by their exact bytes: a hot entry served from Redis's local copies
# (or the memory store) is the same bytes on every hit, and parsing its JSON was a third of
# a cache hit's cost. Only the parse is shared: the envelope is never handed out or changed,
# and _decode builds fresh containers from it for every caller. Bounded by entry count
# and size (a large entry is parsed every time rather than kept).
_PARSED: dict[bytes, Any] = {}
_PARSED_ENTRIES = 256
_PARSED_MAX_BYTES = 16 * 1024


def _parse_entry(raw: bytes) -> Any:
    envelope = _PARSED.get(raw)
    if envelope is None:
        envelope = json.loads(raw)
        if len(raw) <= _PARSED_MAX_BYTES:
            if len(_PARSED) >= _PARSED_ENTRIES:
                _PARSED.clear()
            _PARSED[bytes(raw)] = envelope
    return envelope


# -- keys --------------------------------------------------------------------------------


def _ident(value: int | str) -> str:
    """A store-safe, unambiguous token for a user id or role name (no braces or colons)."""
    if type(value) is int:
        return str(value)
    if type(value) is str:
        if _SAFE_IDENT.fullmatch(value):
            return value
        # "~" is outside the safe alphabet, so a hashed name never equals a plain one.
        return "~" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    raise TypeError(f"an identity must be an int or a str, not {type(value).__qualname__}")


@dataclass(frozen=True, slots=True)
class CacheKey:
    """What an entry is for. Build it with :meth:`build`, which checks that the identity
    matches the scope; the store key is derived from these fields and nothing else."""

    scope: CacheScope
    name: str
    user: str | None = None
    roles: tuple[str, ...] = ()
    vary: str = "[]"
    # Derived from the fields above once, at construction: a lookup needs it several times.
    digest: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = [FORMAT, self.scope, self.name, self.user, list(self.roles), self.vary]
        digest = hashlib.sha256(_json(fields).encode("ascii")).hexdigest()
        object.__setattr__(self, "digest", digest)  # frozen: set once, here

    @classmethod
    def build(
        cls,
        name: str,
        *,
        scope: CacheScope,
        user_id: int | str | None = None,
        roles: Iterable[str] | None = None,
        vary: Mapping[str, object] | None = None,
    ) -> CacheKey:
        """``scope="user"`` needs ``user_id``; ``"role"`` needs ``roles`` (possibly empty);
        ``"public"`` takes neither. ``vary`` values are encoded like cached values, so an
        object without an exact JSON form is refused rather than keyed by its repr."""
        if not isinstance(name, str) or not name:
            raise ValueError("a cache name must be a non-empty string")
        if scope not in get_args(CacheScope):
            raise ValueError(f"scope must be 'user', 'role' or 'public', not {scope!r}")
        if scope == "user":
            if user_id is None:
                raise ValueError("scope='user' needs the user id")
            if roles is not None:
                raise ValueError("scope='user' is keyed by the user; do not pass roles")
        elif user_id is not None:
            raise ValueError(f"scope={scope!r} entries are shared: do not pass a user id")
        if scope == "role":
            if roles is None or isinstance(roles, str | bytes):
                raise ValueError("scope='role' needs the caller's roles as a collection")
            role_set = frozenset(roles)
            if not all(type(r) is str for r in role_set):
                raise TypeError("role names must be str")
            sorted_roles = tuple(sorted(role_set))
        elif roles is not None:
            raise ValueError(f"scope={scope!r} is not keyed by roles; do not pass roles")
        else:
            sorted_roles = ()
        varied = sorted((vary or {}).items())
        if not all(type(k) is str for k, _ in varied):
            raise TypeError("vary names must be str")
        return cls(
            scope=scope,
            name=name,
            user=None if user_id is None else _ident(user_id),
            roles=sorted_roles,
            vary=_json([[k, _encode(v)] for k, v in varied]),
        )

    def __repr__(self) -> str:
        # Names only: vary values may be user input and have no place in logs.
        return f"CacheKey(scope={self.scope!r}, name={self.name!r})"

    def generation_keys(self) -> list[str]:
        """The store keys of the generations this entry depends on."""
        if self.scope == "user":
            return [_user_generation(self.user or "")]
        if self.scope == "role":
            return [_role_generation(_ident(role)) for role in self.roles]
        return ["cp:g"]

    @property
    def entry_key(self) -> str:
        """The store key of this entry: the same under every generation (the entry records
        the generation tokens it was computed under)."""
        if self.scope == "user":
            return f"{{cu:{self.user}}}:e:{self.digest}"
        return f"{'cr' if self.scope == 'role' else 'cp'}:e:{self.digest}"


def _user_generation(ident: str) -> str:
    return f"{{cu:{ident}}}:g"


def _role_generation(ident: str) -> str:
    return f"{{cr:{ident}}}:g"


# -- the cache ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Computed(Generic[T]):
    """What a compute function of :meth:`Cache.fetch` returns: the value, and whether it
    may be stored and handed to concurrent callers of the same key."""

    value: T
    store: bool = True


@dataclass(frozen=True, slots=True)
class Fetched(Generic[T]):
    """The outcome of :meth:`Cache.fetch`.

    ``source``: ``"hit"`` (read from the store), ``"shared"`` (computed by a concurrent
    caller of this process), ``"miss"`` (computed by this call), ``"uncached"`` (this call
    computed it while the store was unavailable). ``age``: seconds since it was computed.
    ``stored``: for this call's own computation, whether the value was cacheable.
    """

    value: T
    source: Source
    age: float = 0.0
    stored: bool = True


@dataclass(slots=True)
class _Health:
    down: bool = False
    retry_at: float = 0.0
    pending: set[str] = field(default_factory=set)  # generation keys still to bump


class Cache:
    """Scoped entries on a :class:`~bastion.stores.base.Store` (memory, Redis, SQL).

    ``max_ttl`` caps every entry's TTL (generations live twice as long);
    ``retry_interval`` is how long the cache leaves an unavailable store alone;
    values whose encoding exceeds ``max_entry_bytes`` are computed but not stored.
    """

    def __init__(
        self,
        store: Store,
        *,
        clock: Clock = system_clock,
        max_ttl: float = 86_400.0,
        retry_interval: float = 5.0,
        max_entry_bytes: int = 1 << 20,
    ) -> None:
        check_ttl(max_ttl)
        if not (retry_interval >= 0 and math.isfinite(retry_interval)):
            raise ValueError("retry_interval must be a finite number of seconds >= 0")
        self.store = store
        self.clock = clock
        self.max_ttl = max_ttl
        self.retry_interval = retry_interval
        self.max_entry_bytes = max_entry_bytes
        self._flights: dict[str, asyncio.Future[bytes | None]] = {}
        self._health = _Health()
        self._flushing: asyncio.Lock | None = None

    def __repr__(self) -> str:
        return f"Cache(store={self.store!r})"

    @property
    def available(self) -> bool:
        """False from a store failure until the store answers again."""
        return not self._health.down

    # -- reading and computing -----------------------------------------------------------

    async def get_or_set(
        self,
        name: str,
        compute: Callable[[], Awaitable[T]],
        *,
        ttl: float,
        scope: CacheScope,
        user_id: int | str | None = None,
        roles: Iterable[str] | None = None,
        vary: Mapping[str, object] | None = None,
    ) -> T:
        """The cached value for this identity, or ``await compute()`` stored for ``ttl``
        seconds. A hit returns a fresh decoded copy, never an object another caller holds.

        ``scope`` is required on purpose: ``"user"`` with ``user_id``, ``"role"`` with the
        caller's ``roles``, or ``"public"`` for values that are the same for everyone.
        """
        key = CacheKey.build(name, scope=scope, user_id=user_id, roles=roles, vary=vary)

        async def computed() -> Computed[T]:
            return Computed(await compute())

        fetched = await self.fetch(key, computed, ttl=ttl)
        return fetched.value

    async def fetch(
        self, key: CacheKey, compute: Callable[[], Awaitable[Computed[T]]], *, ttl: float
    ) -> Fetched[T]:
        """The entry at ``key``, or the result of ``compute`` (stored when its ``store`` is
        true). The lower-level form of :meth:`get_or_set` for callers such as the FastAPI
        decorator that must decide per result whether it may be kept."""
        check_ttl(ttl)
        if ttl > self.max_ttl:
            raise ValueError(f"ttl must not exceed max_ttl ({self.max_ttl:g} s)")
        looked = await self._look(key)
        absent: list[str] = []
        if looked is None:  # the store is unavailable: carry on uncached
            target: CacheKey | None = None
            generations: list[str] = []
            flight_key = f"uncached:{key.digest}"
        else:
            generations, raw = looked
            if raw is not None and (hit := self._unpack(raw, "hit", generations)) is not None:
                return hit
            target = key
            gen_keys = key.generation_keys()
            absent = [g for g, got in zip(gen_keys, generations, strict=True) if got == "0"]
            # Per generation: a caller that read newer tokens never waits for a value
            # computed under older ones.
            flight_key = _json([key.entry_key, generations])
        while (flight := self._flights.get(flight_key)) is not None:
            try:
                shared = await asyncio.shield(flight)
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if flight.cancelled() and not (current and current.cancelling()):
                    continue  # the leader's request went away, not ours: try again
                raise
            if shared is None:
                # The leader's result was not cacheable (it set a cookie, say): it belonged
                # to that request alone, so compute our own, without a flight.
                return await self._compute(target, generations, compute, ttl)
            unpacked = self._unpack(shared, "shared")
            if unpacked is not None:
                return unpacked
        return await self._lead(target, flight_key, compute, ttl, absent)

    async def _lead(
        self,
        key: CacheKey | None,
        flight_key: str,
        compute: Callable[[], Awaitable[Computed[T]]],
        ttl: float,
        absent: Sequence[str] = (),
    ) -> Fetched[T]:
        future: asyncio.Future[bytes | None] = asyncio.get_running_loop().create_future()
        future.add_done_callback(_retrieve)
        self._flights[flight_key] = future
        try:
            generations: list[str] = []
            if key is not None:
                await self._store_absent_generations(absent)
                # A leader that finished between our read and our flight stored its value
                # before leaving: look once more (one round trip again), so N misses
                # compute exactly once. The value is then stored with the generations of
                # this look, the last one before computing.
                looked = await self._look(key)
                if looked is None:
                    key = None
                else:
                    generations, raw = looked
                    hit = None if raw is None else self._unpack(raw, "hit", generations)
                    if hit is not None:
                        future.set_result(raw)
                        return hit
            fetched, payload = await self._compute_and_store(key, generations, compute, ttl)
            future.set_result(payload)
            return fetched
        except asyncio.CancelledError:
            future.cancel()
            raise
        except Exception as exc:
            future.set_exception(exc)  # the waiting callers get the same error
            raise
        finally:
            if not future.done():
                future.cancel()
            if self._flights.get(flight_key) is future:
                del self._flights[flight_key]

    async def _compute(
        self,
        key: CacheKey | None,
        generations: list[str],
        compute: Callable[[], Awaitable[Computed[T]]],
        ttl: float,
    ) -> Fetched[T]:
        fetched, _ = await self._compute_and_store(key, generations, compute, ttl)
        return fetched

    async def _compute_and_store(
        self,
        key: CacheKey | None,
        generations: list[str],
        compute: Callable[[], Awaitable[Computed[T]]],
        ttl: float,
    ) -> tuple[Fetched[T], bytes | None]:
        """Compute, and store the value at ``key`` (None: uncached) recording
        ``generations``, the tokens read before ``compute`` started: if one is bumped
        meanwhile, the entry no longer matches and is never served."""
        computed_at = self.clock()
        result = await compute()
        if not result.store:
            return Fetched(result.value, "miss", stored=False), None
        # Always encode, even during an outage: an uncacheable value fails the same way
        # whatever the state of the store.
        envelope = {"t": computed_at, "g": generations, "v": _encode(result.value)}
        payload = _json(envelope).encode("ascii")
        source: Source = "miss"
        if key is None:
            source = "uncached"
        elif len(payload) > self.max_entry_bytes:
            log.debug("cache entry of %d bytes not stored (max_entry_bytes)", len(payload))
        else:
            try:
                await self.store.set(key.entry_key, payload, ttl=ttl)
            except StoreUnavailable as exc:
                self._failed(exc)
                source = "uncached"
            else:
                self._ok()
        return Fetched(result.value, source), payload

    def _unpack(
        self, raw: bytes, source: Source, generations: list[str] | None = None
    ) -> Fetched[Any] | None:
        """The entry in ``raw``; None when unreadable or, given ``generations``, when it was
        computed under other generation tokens (an invalidated entry)."""
        try:
            envelope = _parse_entry(raw)
            computed_at = float(envelope["t"])
            recorded = envelope["g"]
            if generations is not None and recorded != generations:
                return None
            value = _decode(envelope["v"])
        except (KeyError, TypeError, ValueError, IndexError, ArithmeticError):
            log.warning("unreadable cache entry ignored")
            return None
        return Fetched(value, source, age=max(0.0, self.clock() - computed_at))

    # -- the store, guarded --------------------------------------------------------------

    async def _look(self, key: CacheKey) -> tuple[list[str], bytes | None] | None:
        """The current generation tokens of ``key`` and its raw entry, in one round trip;
        None when the store is unavailable."""
        if not await self._ready():
            return None
        gen_keys = key.generation_keys()
        try:
            values = await self.store.get_many([*gen_keys, key.entry_key])
        except StoreUnavailable as exc:
            self._failed(exc)
            return None
        self._ok()
        *tokens, raw = values
        return ["0" if v is None else v.decode("ascii", "replace") for v in tokens], raw

    async def _ready(self) -> bool:
        """Whether to use the store now; replays deferred invalidations first."""
        health = self._health
        if health.down and self.clock() < health.retry_at:
            return False
        if health.pending:
            if self._flushing is None:
                self._flushing = asyncio.Lock()
            async with self._flushing:
                while health.pending:
                    gen_key = next(iter(health.pending))
                    try:
                        await self._write_generation(gen_key)
                    except StoreUnavailable as exc:
                        self._failed(exc)
                        return False
                    health.pending.discard(gen_key)
                    log.info("deferred cache invalidation written")
        return True

    def _failed(self, exc: StoreUnavailable) -> None:
        health = self._health
        health.retry_at = self.clock() + self.retry_interval
        if not health.down:
            health.down = True
            log.warning(
                "cache unavailable (%s): serving uncached, retrying every %g s",
                exc.detail or exc.component,
                self.retry_interval,
            )

    def _ok(self) -> None:
        if self._health.down:
            self._health.down = False
            log.warning("cache available again: caching resumes")

    # -- invalidation --------------------------------------------------------------------

    async def invalidate_user(self, user_id: int | str) -> None:
        """Drop every entry of this user, on every process sharing the store (logout,
        password change, role change, disabling). Never raises for an outage: the bump is
        replayed before this process reads the store again."""
        await self._bump(_user_generation(_ident(user_id)))

    async def invalidate_role(self, role: str) -> None:
        """Drop every role-scoped entry of every role set that contains ``role``."""
        if type(role) is not str:
            raise TypeError("a role name must be a str")
        await self._bump(_role_generation(_ident(role)))

    async def invalidate_public(self) -> None:
        """Drop every public entry."""
        await self._bump("cp:g")

    async def _bump(self, gen_key: str) -> None:
        health = self._health
        if health.down and self.clock() < health.retry_at:
            health.pending.add(gen_key)
            return
        try:
            await self._write_generation(gen_key)
        except StoreUnavailable as exc:
            self._failed(exc)
            health.pending.add(gen_key)
            log.info("cache invalidation deferred until the cache answers again")
            return
        self._ok()

    async def _store_absent_generations(self, gen_keys: Sequence[str]) -> None:
        """Write "0", what an absent generation reads as, to each of ``gen_keys`` that is
        still absent (``add``: never over a token a bump wrote meanwhile).

        Nothing changes for the entries (they record "0" either way, and a bump replaces
        it as it would replace nothing), but an absent key is read from the store on every
        hit, while a value is kept by the process-local copies of Redis keys
        (:mod:`bastion.stores.redis_tracking`), so a hit then reads nothing remote. Done
        by a miss's leader; it lives as long as a token (``2 * max_ttl``), and "0" coming
        back after it expires is what an absent key always meant. A failure only leaves
        the generation absent."""
        for gen_key in gen_keys:
            try:
                await self.store.add(gen_key, b"0", ttl=2 * self.max_ttl)
            except StoreUnavailable as exc:
                self._failed(exc)
                return

    async def _write_generation(self, gen_key: str) -> None:
        # A fresh random token, never a counter: see the module docstring.
        token = secrets.token_hex(8).encode("ascii")
        await self.store.set(gen_key, token, ttl=2 * self.max_ttl)


def _retrieve(future: asyncio.Future[bytes | None]) -> None:
    """Mark a flight's error as seen when no follower was there to see it."""
    if not future.cancelled():
        future.exception()
