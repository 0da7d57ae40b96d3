"""docs/existing-app.md, "One database": an application's model that refers to Bastion's
users, one connection pool for both, and a hook that gives each new account a row of the
application's own. Run by tests/unit/test_docs_snippets.py (a registration makes the row;
deleting the user deletes it)."""

# --8<-- [start:imports]
from fastapi import FastAPI
from sqlalchemy import ForeignKey, String
from sqlalchemy.ext.asyncio import async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bastion.db import create_engine
from bastion.fastapi import install
from bastion.hooks import Hooks, Registered
from bastion.settings import Settings
from bastion.users.schema import users_table

# --8<-- [end:imports]


# --8<-- [start:models]
class Base(DeclarativeBase):
    pass


users_table(Base.metadata)


class Profile(Base):
    __tablename__ = "profiles"

    user_id: Mapped[int] = mapped_column(
        ForeignKey("bastion_users.id", ondelete="CASCADE"), primary_key=True
    )
    display_name: Mapped[str] = mapped_column(String(100))
    # --8<-- [end:models]


def create_app(settings: Settings) -> FastAPI:
    app = FastAPI()
    # --8<-- [start:engine]
    engine = create_engine(settings.resolved_database_url, timeout=settings.store_timeout)
    # --8<-- [end:engine]
    new_session = async_sessionmaker(engine, expire_on_commit=False)

    # --8<-- [start:hook]
    async def make_profile(event: Registered) -> None:
        async with new_session() as db:
            db.add(Profile(user_id=event.user_id, display_name=event.username))
            await db.commit()

    install(app, settings, engine=engine, hooks=Hooks(on_registered=make_profile))
    # --8<-- [end:hook]
    app.state.engine = engine  # the application disposes it at the end of its lifespan
    return app
