"""docs/caching.md: a public cached route for signed-in users only, with a dependency
vouched for (run by tests/unit/test_docs_snippets.py)."""

# --8<-- [start:notice]
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request

from bastion.fastapi import cached, install
from bastion.fastapi.caching import reads_no_identity
from bastion.fastapi.dependencies import current_user

app = FastAPI(title="Shop")
install(app)


@reads_no_identity
def app_title(request: Request) -> str:
    title: str = request.app.title
    return title


@app.get("/api/notice", dependencies=[Depends(current_user)])
@cached(ttl=60, scope="public")
async def notice(title: Annotated[str, Depends(app_title)]) -> dict[str, Any]:
    return {"title": title, "notice": "maintenance on Sunday"}
    # --8<-- [end:notice]
