"""The README's example: Bastion in your own FastAPI app (run by tests/unit/test_examples.py).

BASTION_DATA_DIR=.bastion uvicorn docs.examples.hello_app:app
"""

# --8<-- [start:app]
from html import escape

from fastapi import Depends, FastAPI
from fastapi.responses import HTMLResponse

from bastion.fastapi import CurrentUser, SignedInUser, install, require_role

app = FastAPI()
install(app)  # settings from BASTION_* environment variables


@app.get("/hello")
async def hello(user: CurrentUser) -> dict[str, str]:
    return {"hello": user.username}


@app.get("/welcome", response_class=HTMLResponse)
async def welcome(user: SignedInUser) -> str:
    return f"<h1>Welcome, {escape(user.username)}</h1>"


@app.get("/reports", dependencies=[Depends(require_role("staff"))])
async def reports() -> dict[str, list[str]]:
    return {"reports": []}
    # --8<-- [end:app]
