"""docs/caching.md: a route cached per user (run by tests/unit/test_docs_snippets.py)."""

# --8<-- [start:imports]
from typing import Any

from fastapi import FastAPI

from bastion.fastapi import CurrentUser, cached, install

# --8<-- [end:imports]
ORDERS: dict[int, list[str]] = {}  # a real application asks its database
LOADS: list[int] = []


async def load_orders(user_id: int, page: int) -> list[str]:
    LOADS.append(user_id)
    return ORDERS.get(user_id, [])[(page - 1) * 10 : page * 10]


# --8<-- [start:route]
app = FastAPI()
install(app)


@app.get("/api/orders")
@cached(ttl=60, scope="user", vary=["page"])
async def orders(user: CurrentUser, page: int = 1) -> dict[str, Any]:
    return {"page": page, "orders": await load_orders(user.user_id, page)}
    # --8<-- [end:route]
