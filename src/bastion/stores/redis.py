"""A store on Redis (standalone, Sentinel or Cluster) through ``redis.asyncio``.

Keys are ``<namespace>:<key>``. Every command touches a single key, except the MGET of
``get_many``, which on Cluster is split by slot, so each works on Redis Cluster; a hash tag
in the caller's key (``{user:42}``) decides the slot, which is why the namespace may not
contain braces. TTLs travel in milliseconds so fractions of a second work.

On standalone Redis and Sentinel, reads (``get``, ``get_many``) that are ready in the same
event-loop turn go out together as one MGET (:mod:`bastion.stores.redis_batch`).

With ``local=`` (:class:`~bastion.stores.redis_tracking.LocalCopies`), reads of the keys it
covers are answered from process-local copies that Redis's invalidations keep exact;
misses are read together with their PTTL (one script per batch, or per slot on Cluster),
and every write of a covered key evicts its copy before and after the write.
"""

from __future__ import annotations

import asyncio
import builtins
import copy
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import unquote

from redis.asyncio import Redis, RedisCluster
from redis.asyncio.cluster import ClusterNode
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel, SentinelConnectionPool
from redis.backoff import ExponentialBackoff
from redis.crc import key_slot
from redis.exceptions import RedisClusterException, RedisError, ResponseError

from bastion.exceptions import StoreUnavailable
from bastion.stores.base import NO_EXPIRY, check_ttl
from bastion.stores.redis_batch import ReadBatcher
from bastion.stores.redis_tracking import LocalCopies

_REDIS_ERRORS = (RedisError, RedisClusterException, OSError, TimeoutError)

# Fixed-window counter: the TTL is set only by the call that creates the key.
_INCR = """
local created = redis.call('EXISTS', KEYS[1]) == 0
local value = redis.call('INCRBY', KEYS[1], ARGV[1])
if created and ARGV[2] ~= '' then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return value
"""

# PERSIST alone answers 0 both for "absent" and "had no expiry"; touch must tell them apart.
_PERSIST = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return 0
end
redis.call('PERSIST', KEYS[1])
return 1
"""

# The local copies' reads: each value with its PTTL, so a copy never outlives its key.
# A key of another type reads as absent, as in MGET.
_GET_WITH_PTTL = """
local out = {}
for i, key in ipairs(KEYS) do
  local value = redis.pcall('GET', key)
  if type(value) == 'table' then
    value = false
  end
  out[2 * i - 1] = value
  out[2 * i] = redis.call('PTTL', key)
end
return out
"""

_SADD_WITH_TTL = """
local added = redis.call('SADD', KEYS[1], unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return added
"""


def _ms(ttl: float) -> int:
    return max(1, math.ceil(ttl * 1000))


def _check_namespace(namespace: str) -> str:
    if not namespace:
        raise ValueError("namespace must not be empty")
    if "{" in namespace or "}" in namespace:
        # A brace in the namespace would become the hash tag of every key on Cluster.
        raise ValueError("a Redis namespace must not contain braces")
    return namespace


def _describe(exc: BaseException, timeout: float) -> str:
    """What went wrong, for logs: the error class and Redis error code, never keys or hosts."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    detail = type(exc).__name__
    if isinstance(exc, ResponseError) and exc.args:
        code = str(exc.args[0]).split(" ", 1)[0]
        if code.isalpha() and code.isupper():  # READONLY, OOM, CLUSTERDOWN, WRONGTYPE...
            detail += f": {code}"
    return detail


@dataclass(slots=True)
class _Shared:
    closed: bool = False


class RedisStore:
    """A :class:`~bastion.stores.base.Store` on a ``redis.asyncio`` client.

    The client must return bytes (``decode_responses=False``). ``timeout`` bounds every
    call whatever the client's own timeouts and retries; a failure or timeout raises
    :class:`StoreUnavailable` naming ``component``. :meth:`aclose` closes the client only
    with ``owns_client``.
    """

    def __init__(
        self,
        client: Redis | RedisCluster,
        namespace: str = "bastion",
        component: str = "session store",
        *,
        timeout: float = 2.0,
        owns_client: bool = False,
        local: LocalCopies | None = None,
    ) -> None:
        if client.get_encoder().decode_responses:
            raise ValueError("RedisStore needs a client with decode_responses=False")
        self._client = client
        self._namespace = _check_namespace(namespace)
        self.component = component
        self._timeout = timeout
        self._owns_client = owns_client
        self._shared = _Shared()
        # Cluster needs the keys of one MGET in one slot, so its reads go one by one.
        self._batcher = (
            None if isinstance(client, RedisCluster) else ReadBatcher(client, timeout=timeout)
        )
        self._incr = client.register_script(_INCR)
        self._persist = client.register_script(_PERSIST)
        self._sadd_with_ttl = client.register_script(_SADD_WITH_TTL)
        self._get_with_pttl = client.register_script(_GET_WITH_PTTL)
        self._local = local
        self._tracked_batcher = (
            None
            if isinstance(client, RedisCluster) or local is None
            else ReadBatcher(client, timeout=timeout, fetch=self._read_with_pttl, width=2)
        )

    def __repr__(self) -> str:
        return f"RedisStore(namespace={self._namespace!r})"

    @property
    def namespace(self) -> str:
        return self._namespace

    def child(self, namespace: str) -> RedisStore:
        view = copy.copy(self)  # same client, scripts and shared state
        view._namespace = f"{self._namespace}:{_check_namespace(namespace)}"
        view._owns_client = False  # only the parent closes what they share
        return view

    def _key(self, key: str) -> str:
        return f"{self._namespace}:{key}"

    @asynccontextmanager
    async def _guard(self, *written: str) -> AsyncIterator[None]:
        """Bound the block by the timeout and turn every failure into StoreUnavailable.

        ``written`` are the full keys the block writes: their local copies are evicted
        before and after it (after also when it fails: the write may have happened)."""
        local = self._local
        if local is not None:
            for key in written:
                local.evict(key)
        try:
            async with asyncio.timeout(self._timeout):
                if isinstance(self._client, RedisCluster):
                    # Until it has the slot map, redis-py's cluster client (8.1) sends keyed
                    # commands to a node chosen without the key; a burst of them gets MOVED
                    # replies, resets every connection mid-command and sends some twice (an
                    # INCR counted twice, AttributeError from a closed socket). Fetch the
                    # map first: a no-op once it is known.
                    await self._client.initialize()
                yield
        except _REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None
        finally:
            if local is not None:
                for key in written:
                    local.evict(key)

    def _unavailable(self, exc: BaseException) -> StoreUnavailable:
        # Raise it `from None`: redis-py messages name the host and sometimes the key.
        return StoreUnavailable(self.component, _describe(exc, self._timeout))

    async def _batched(self, batcher: ReadBatcher, keys: list[str]) -> list[bytes | None]:
        # No _guard: the batch's MGET runs under the same timeout, and its failure or
        # timeout reaches every caller of the batch.
        try:
            return await batcher.get(keys)
        except _REDIS_ERRORS as exc:
            raise self._unavailable(exc) from None

    # -- the Store contract ----------------------------------------------------------

    async def _read_with_pttl(self, keys: list[str]) -> list[Any]:
        """[value, pttl, value, pttl, ...] of ``keys``, which share a slot on Cluster."""
        return cast(list[Any], await self._get_with_pttl(keys=keys))

    async def _read_tracked(self, local: LocalCopies, full: list[str]) -> list[bytes | None]:
        """Values of covered keys that had no local copy, kept locally when still exact."""
        token = local.begin()  # before sending: what arrives after it may spoil the read
        if self._tracked_batcher is not None:
            try:
                flat = await self._tracked_batcher.get(full)
            except _REDIS_ERRORS as exc:
                raise self._unavailable(exc) from None
        else:
            async with self._guard():
                if len(full) == 1:
                    flat = await self._read_with_pttl(full)
                else:
                    encode = cast(Callable[[str], bytes], self._client.get_encoder().encode)
                    by_slot: dict[int, list[str]] = {}
                    for key in dict.fromkeys(full):
                        by_slot.setdefault(key_slot(encode(key)), []).append(key)
                    groups = list(by_slot.values())
                    # One script per slot, sent to the nodes concurrently.
                    answers = await asyncio.gather(*(self._read_with_pttl(g) for g in groups))
                    found: dict[str, tuple[Any, Any]] = {}
                    for group, answer in zip(groups, answers, strict=True):
                        for i, key in enumerate(group):
                            found[key] = (answer[2 * i], answer[2 * i + 1])
                    flat = [item for key in full for item in found[key]]
        values = cast(list[bytes | None], flat[0::2])
        local.fill(token, full, values, [int(p) for p in flat[1::2]])
        return values

    async def get(self, key: str) -> bytes | None:
        local = self._local
        if local is not None:
            full = self._key(key)
            if full.startswith(local.prefixes):
                found = local.get(full)
                if found is not None:
                    return found
                return (await self._read_tracked(local, [full]))[0]
        if self._batcher is not None:
            (found,) = await self._batched(self._batcher, [self._key(key)])
            return found
        async with self._guard():
            value = await self._client.get(self._key(key))
        return cast(bytes | None, value)  # decode_responses=False, checked in __init__

    async def get_many(self, keys: Sequence[str]) -> list[bytes | None]:
        if not keys:
            return []
        full = [self._key(k) for k in keys]
        local = self._local
        if local is not None and any(k.startswith(local.prefixes) for k in full):
            return await self._get_many_tracked(local, full)
        return await self._get_many_remote(full)

    async def _get_many_tracked(self, local: LocalCopies, full: list[str]) -> list[bytes | None]:
        answers: dict[str, bytes | None] = {}
        tracked: list[str] = []
        remote: list[str] = []
        for key in dict.fromkeys(full):
            if not key.startswith(local.prefixes):
                remote.append(key)
                continue
            found = local.get(key)
            if found is None:
                tracked.append(key)
            else:
                answers[key] = found
        if tracked:
            answers.update(zip(tracked, await self._read_tracked(local, tracked), strict=True))
        if remote:
            answers.update(zip(remote, await self._get_many_remote(remote), strict=True))
        return [answers[key] for key in full]

    async def _get_many_remote(self, full: list[str]) -> list[bytes | None]:
        if self._batcher is not None:
            return await self._batched(self._batcher, full)
        async with self._guard():
            client = self._client
            if isinstance(client, RedisCluster):
                encode = cast(Callable[[str], bytes], client.get_encoder().encode)
                if len({key_slot(encode(k)) for k in full}) > 1:
                    # One MGET per slot, sent to the nodes concurrently, reassembled in order.
                    spread = await client.mget_nonatomic(full)
                    return cast(list[bytes | None], spread)
            values = await client.mget(full)
        return cast(list[bytes | None], values)

    async def set(self, key: str, value: bytes, ttl: float | None = None) -> None:
        check_ttl(ttl)
        px = None if ttl is None else _ms(ttl)
        full = self._key(key)
        async with self._guard(full):
            await self._client.set(full, value, px=px)  # SET clears an old TTL

    async def add(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        check_ttl(ttl)
        px = None if ttl is None else _ms(ttl)
        full = self._key(key)
        async with self._guard(full):
            stored = await self._client.set(full, value, px=px, nx=True)
        return bool(stored)

    async def replace(self, key: str, value: bytes, ttl: float | None = None) -> bool:
        check_ttl(ttl)
        px = None if ttl is None else _ms(ttl)
        full = self._key(key)
        async with self._guard(full):
            stored = await self._client.set(full, value, px=px, xx=True)
        return bool(stored)

    async def pop(self, key: str) -> bytes | None:
        full = self._key(key)
        async with self._guard(full):
            value = await self._client.getdel(full)
        return cast(bytes | None, value)

    async def delete(self, *keys: str) -> int:
        if not keys:
            return 0
        full = [self._key(key) for key in keys]
        async with self._guard(*full):
            if len(full) == 1:
                deleted: int = await self._client.delete(full[0])
                return deleted
            # One DEL per key: on Cluster the keys may live in different slots.
            pipe = self._client.pipeline(transaction=False)
            for one in full:
                pipe.delete(one)
            results: list[int] = await pipe.execute()
        return sum(results)

    async def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        check_ttl(ttl)
        px = "" if ttl is None else str(_ms(ttl))
        full = self._key(key)
        async with self._guard(full):
            value = await self._incr(keys=[full], args=[amount, px])
        return int(value)

    async def ttl(self, key: str) -> float | None:
        async with self._guard():
            ms: int = await self._client.pttl(self._key(key))
        if ms == -2:
            return None
        if ms == -1:
            return NO_EXPIRY
        return ms / 1000

    async def touch(self, key: str, ttl: float | None) -> bool:
        check_ttl(ttl)
        full = self._key(key)
        async with self._guard(full):
            if ttl is None:
                touched = await self._persist(keys=[full])
            else:
                touched = await self._client.pexpire(full, _ms(ttl))
        return bool(touched)

    async def sadd(self, key: str, *members: str, ttl: float | None = None) -> int:
        check_ttl(ttl)
        if not members:
            return 0
        full = self._key(key)
        async with self._guard(full):
            if ttl is None:
                added = await self._client.sadd(full, *members)
            else:
                added = await self._sadd_with_ttl(keys=[full], args=[_ms(ttl), *members])
        return int(added)

    async def srem(self, key: str, *members: str) -> int:
        if not members:
            return 0
        full = self._key(key)
        async with self._guard(full):
            removed: int = await self._client.srem(full, *members)
        return removed

    async def smembers(self, key: str) -> builtins.set[str]:
        async with self._guard():
            members = await self._client.smembers(self._key(key))
        return {m.decode() if isinstance(m, bytes) else m for m in members}

    async def ping(self) -> None:
        async with self._guard():
            await self._client.ping()

    async def aclose(self) -> None:
        if self._owns_client and not self._shared.closed:
            self._shared.closed = True
            await self._client.aclose()


# -- clients -----------------------------------------------------------------------------


class _SentinelMaster(Redis):
    """The master client of a Sentinel setup; closing it closes the Sentinel clients too."""

    async def aclose(self, close_connection_pool: bool | None = None) -> None:
        await super().aclose(close_connection_pool)
        pool = self.connection_pool
        if isinstance(pool, SentinelConnectionPool):
            await pool.sentinel_manager.aclose()


def uses_sentinel(client: Redis | RedisCluster) -> bool:
    """True for the master client of a ``redis+sentinel://`` URL."""
    return isinstance(client, Redis) and isinstance(client.connection_pool, SentinelConnectionPool)


def _retry() -> Retry:
    # One quick retry replaces a connection the server dropped while idle; more would only
    # stretch an outage past the timeout.
    return Retry(ExponentialBackoff(cap=0.1, base=0.02), retries=1)


def _parse_hosts(netloc: str, default_port: int) -> list[tuple[str, int]]:
    hosts: list[tuple[str, int]] = []
    for item in netloc.split(","):
        if item.startswith("["):  # [IPv6]:port
            host, _, tail = item[1:].partition("]")
            port_text = tail.removeprefix(":")
        else:
            host, _, port_text = item.partition(":")
        if not host:
            raise ValueError("a Redis URL lists an empty host")
        try:
            port = int(port_text) if port_text else default_port
        except ValueError:
            raise ValueError("a Redis URL has an invalid port") from None
        hosts.append((unquote(host), port))
    return hosts


def create_redis_client(url: str, *, timeout: float = 2.0) -> Redis | RedisCluster:
    """A client for ``url`` that fails within about ``timeout`` seconds when Redis is down.

    Understands ``redis://``, ``rediss://`` and ``unix://`` (see redis-py's ``from_url``),
    ``redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster`` for
    TLS) and ``redis+sentinel://[user:password@]host:port[,host:port...]/service[/db]``
    (``rediss+sentinel``), whose credentials are the master's, not the Sentinels'.
    Errors never repeat the URL, which may hold a password.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep:
        raise ValueError("a Redis URL needs a scheme such as redis://")
    options: dict[str, Any] = {
        # No per-socket read/write timeout: every RedisStore call is bounded by its own
        # asyncio timeout, and a socket timeout would wrap each command in
        # asyncio.wait_for (a task per command, a sixth of a GET's CPU). A cancelled read
        # disconnects the connection, so no reply is ever read by the wrong command.
        "socket_timeout": None,
        "socket_connect_timeout": timeout,
        "health_check_interval": 10,  # PING a connection idle this long before reusing it
        "retry": _retry(),
    }
    if scheme in ("redis", "rediss", "unix"):
        client: Redis = Redis.from_url(url, **options)
        return client

    base, _, kind = scheme.partition("+")
    use_tls = base == "rediss"
    if base not in ("redis", "rediss") or kind not in ("cluster", "sentinel"):
        raise ValueError(f"unsupported Redis URL scheme {scheme!r}")
    rest, _, query = rest.partition("?")
    if query:
        raise ValueError(f"{scheme} URLs take no query options")
    netloc, _, path = rest.partition("/")
    userinfo, _, hostlist = netloc.rpartition("@")
    username, _, password = userinfo.partition(":")
    options["username"] = unquote(username) or None
    options["password"] = unquote(password) or None

    if kind == "cluster":
        if path.strip("/"):
            raise ValueError("redis+cluster URLs take no path: Cluster has only database 0")
        nodes = [ClusterNode(h, p) for h, p in _parse_hosts(hostlist, 6379)]
        return RedisCluster(startup_nodes=nodes, ssl=use_tls, **options)

    service, _, db_text = path.strip("/").partition("/")
    if not service:
        raise ValueError("redis+sentinel URLs need a service name: .../service_name[/db]")
    try:
        db = int(db_text) if db_text else 0
    except ValueError:
        raise ValueError("a redis+sentinel URL has an invalid database number") from None
    sentinel_options = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
    sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]  # typed since redis 8.2
        _parse_hosts(hostlist, 26379),
        sentinel_kwargs={**sentinel_options, "retry": _retry()},
    )
    master: Redis = sentinel.master_for(
        unquote(service),
        redis_class=_SentinelMaster,
        db=db,
        ssl=use_tls,
        **options,
    )
    return master
