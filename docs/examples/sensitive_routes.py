"""docs/mfa.md and docs/protecting-routes.md: the application's own sensitive routes ask
for a recent sign-in (run by tests/unit/test_docs_snippets.py)."""

# --8<-- [start:routes]
from fastapi import Depends, FastAPI
from fastapi.responses import RedirectResponse

from bastion.fastapi import RecentUser, install, require_recent_auth

app = FastAPI()
install(app)


@app.post("/billing/card")
async def change_card(user: RecentUser) -> dict[str, str]:
    # Signed in (or re-authenticated) within BASTION_REAUTH_WINDOW; a browser signed in
    # longer ago is sent to /reauth, an API client gets 401 insufficient_user_authentication.
    return {"changed_by": user.username}


@app.post("/profile/close")
async def close_account(user: RecentUser) -> RedirectResponse:
    return RedirectResponse("/", status_code=303)


@app.post("/api/payouts", dependencies=[Depends(require_recent_auth(role="finance"))])
async def payout() -> dict[str, bool]:
    return {"paid": True}
    # --8<-- [end:routes]
