"""docs/protecting-routes.md's example: the application's own page, form and script
behind Bastion (run in Chromium by tests/browser/test_app_pages.py).

BASTION_DATA_DIR=.bastion bastion serve --app docs.examples.protected_pages.app:app
"""

# --8<-- [start:app]
from pathlib import Path
from typing import Annotated

from fastapi import FastAPI, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, Field

from bastion.fastapi import CurrentUser, SignedInUser, add_template_helpers, install

app = FastAPI()
# The notes page may show pictures from the app's image host; every other page (Bastion's
# own included) keeps the strict policy.
install(app, csp_additions={"/notes": {"img-src": ["https://images.example"]}})

# --8<-- [start:templates]
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")
add_template_helpers(templates)  # csrf_field(), csrf_meta(), csp_nonce()
# --8<-- [end:templates]

NOTES: dict[int, list[str]] = {}  # a real application keeps them in its database


class NewNote(BaseModel):
    text: str = Field(min_length=1, max_length=500)


@app.get("/notes", response_class=HTMLResponse)
async def notes_page(request: Request, user: SignedInUser) -> HTMLResponse:
    # Anonymous browsers are sent to /login?next=/notes; API clients get 401.
    context = {"user": user, "notes": NOTES.get(user.user_id, [])}
    return templates.TemplateResponse(request, "notes.html", context)


@app.post("/notes")
async def add_note(
    user: SignedInUser, text: Annotated[str, Form(min_length=1, max_length=500)]
) -> RedirectResponse:
    # The page's form: its hidden csrf_token field passed Bastion's CSRF check.
    NOTES.setdefault(user.user_id, []).append(text)
    return RedirectResponse("/notes", status_code=303)


@app.post("/api/notes", status_code=201)
async def add_note_from_script(user: CurrentUser, note: NewNote) -> dict[str, str]:
    # The page's script: fetch() sent the X-CSRF-Token header with the session cookie.
    NOTES.setdefault(user.user_id, []).append(note.text)
    return {"text": note.text}


@app.post("/api/notes/attachments", status_code=201)
async def attach(user: CurrentUser, file: UploadFile) -> dict[str, int]:
    # A multipart upload: the token travels in the header (bastion.fetch adds it).
    return {"size": len(await file.read())}
    # --8<-- [end:app]
