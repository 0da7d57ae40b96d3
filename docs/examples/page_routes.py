"""docs/protecting-routes.md: pages that browsers visit (run by
tests/unit/test_docs_snippets.py)."""

# --8<-- [start:routes]
from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

from bastion.fastapi import SignedInUser, install, require_role

app = FastAPI()
install(app)


@app.get("/notes", response_class=HTMLResponse)
async def notes(user: SignedInUser) -> str:
    # An anonymous browser goes to /login?next=/notes; an API client gets 401.
    return "<h1>Notes</h1>"


@app.get("/reports", dependencies=[Depends(require_role("staff", browser=True))])
async def reports() -> HTMLResponse:
    return HTMLResponse("<h1>Reports</h1>")
    # --8<-- [end:routes]
