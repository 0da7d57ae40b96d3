"""docs/sessions.md: the application's routes read the session through Bastion's
dependencies (run by tests/unit/test_docs_snippets.py)."""

# --8<-- [start:routes]
from fastapi import Depends, FastAPI

from bastion.fastapi import CurrentUser, OptionalUser, install, require_role

app = FastAPI()
install(app)


@app.get("/reports")
async def reports(user: CurrentUser) -> dict[str, str]:  # 401 with a Bearer challenge
    return {"for": user.username}


@app.get("/greeting")
async def greeting(user: OptionalUser) -> dict[str, str]:  # None when signed out
    return {"hello": user.username if user else "stranger"}


@app.get("/admin-only", dependencies=[Depends(require_role("admin"))])
async def admin_only() -> dict[str, bool]:  # 403 without the role
    return {"admin": True}
    # --8<-- [end:routes]
