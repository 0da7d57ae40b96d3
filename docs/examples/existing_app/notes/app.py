"""The notes application: its own page, form and JSON API, behind Bastion.

From the folder holding alembic.ini (docs/existing-app.md):

    bastion db upgrade      # Bastion's tables first
    alembic upgrade head    # then the application's, which refer to bastion_users
    bastion serve --app notes.app:app
"""

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bastion.db import create_engine
from bastion.fastapi import CurrentUser, SignedInUser, add_template_helpers, install
from bastion.settings import Settings

from .models import Note

HERE = Path(__file__).parent
# --8<-- [start:settings]
settings = Settings()  # BASTION_* environment variables (or a .env file)
# --8<-- [end:settings]

# --8<-- [start:engine]
# One connection pool for the application's queries and Bastion's own.
engine = create_engine(settings.resolved_database_url, timeout=settings.store_timeout)
new_session = async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    yield
    await engine.dispose()  # the application's engine: Bastion never closes it
    # --8<-- [end:engine]


# --8<-- [start:install]
app = FastAPI(title="Notes", lifespan=lifespan)
# Sign-in pages, sessions, CSRF, security headers; overrides/ holds our versions of
# Bastion's templates (its pages get a link to ours).
install(app, settings, engine=engine, templates_dir=HERE / "overrides")
# --8<-- [end:install]

# --8<-- [start:templates]
templates = Jinja2Templates(directory=HERE / "templates")
add_template_helpers(templates)  # csrf_field(), csrf_meta(), csp_nonce()
templates.env.globals["site_name"] = settings.site_name  # BASTION_SITE_NAME
# --8<-- [end:templates]


async def database() -> AsyncIterator[AsyncSession]:
    async with new_session() as session:
        yield session


Database = Annotated[AsyncSession, Depends(database)]


class NewNote(BaseModel):
    text: str = Field(min_length=1, max_length=500)


class NoteOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    text: str


async def notes_of(db: AsyncSession, user_id: int) -> Sequence[Note]:
    query = select(Note).where(Note.owner_id == user_id).order_by(Note.id)
    return (await db.scalars(query)).all()


# --8<-- [start:notes_page]
@app.get("/notes", response_class=HTMLResponse)
async def notes_page(request: Request, user: SignedInUser, db: Database) -> HTMLResponse:
    # An anonymous browser is sent to /login?next=/notes; an API client gets 401.
    context = {"user": user, "notes": await notes_of(db, user.user_id)}
    return templates.TemplateResponse(request, "notes.html", context)
    # --8<-- [end:notes_page]


# --8<-- [start:add_note]
@app.post("/notes")
async def add_note(
    user: SignedInUser, db: Database, text: Annotated[str, Form(min_length=1, max_length=500)]
) -> RedirectResponse:
    # The page's form: Bastion has checked its hidden csrf_token field.
    db.add(Note(owner_id=user.user_id, text=text))
    await db.commit()
    return RedirectResponse("/notes", status_code=303)
    # --8<-- [end:add_note]


# --8<-- [start:list_notes]
@app.get("/api/notes")
async def list_notes(user: CurrentUser, db: Database) -> list[NoteOut]:
    # A bearer token, or the session cookie.
    return [NoteOut.model_validate(note) for note in await notes_of(db, user.user_id)]
    # --8<-- [end:list_notes]


@app.post("/api/notes", status_code=201)
async def create_note(user: CurrentUser, db: Database, new: NewNote) -> NoteOut:
    # With the session cookie, Bastion requires the X-CSRF-Token header (403 without).
    note = Note(owner_id=user.user_id, text=new.text)
    db.add(note)
    await db.commit()
    return NoteOut.model_validate(note)
