"""The application's own tables. It has no users table: a note belongs to one of
Bastion's users, by ``bastion_users.id``."""

from sqlalchemy import ForeignKey, MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from bastion.users.schema import users_table


class Base(DeclarativeBase):
    # Named constraints and indexes, so that Alembic can change them later.
    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(column_0_label)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


# --8<-- [start:note]
# bastion_users (its id only) in our metadata, so that ForeignKey("bastion_users.id")
# resolves. The table stays Bastion's: its migrations make it, ours never touch it.
users_table(Base.metadata)


class Note(Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    # A user's notes go with the user, whoever deletes it (admin pages, bastion users delete).
    owner_id: Mapped[int] = mapped_column(
        ForeignKey("bastion_users.id", ondelete="CASCADE"), index=True
    )
    text: Mapped[str] = mapped_column(String(500))
    # --8<-- [end:note]
