"""docs/caching.md: ``get_or_set`` in service code (run by tests/unit/test_docs_snippets.py)."""

# --8<-- [start:imports]
from typing import Any

from bastion.cache import Cache

# --8<-- [end:imports]
BUILT: list[tuple[int, str]] = []


async def build_report(user_id: int, month: str) -> dict[str, Any]:
    BUILT.append((user_id, month))
    return {"user": user_id, "month": month, "total": 42}


# --8<-- [start:report]
async def monthly_report(cache: Cache, user_id: int, month: str) -> dict[str, Any]:
    async def compute() -> dict[str, Any]:
        return await build_report(user_id, month)

    return await cache.get_or_set(
        "reports.monthly", compute, ttl=600, scope="user", user_id=user_id, vary={"month": month}
    )
    # --8<-- [end:report]
