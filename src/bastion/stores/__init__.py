"""Store backends behind one contract (see :mod:`bastion.stores.base`)."""

from bastion.stores.base import NO_EXPIRY, Store
from bastion.stores.memory import MemoryStore
from bastion.stores.redis import RedisStore, create_redis_client
from bastion.stores.sql import SQLStore, create_store_tables

__all__ = [
    "NO_EXPIRY",
    "MemoryStore",
    "RedisStore",
    "SQLStore",
    "Store",
    "create_redis_client",
    "create_store_tables",
]
