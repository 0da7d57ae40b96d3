"""Write the users of a Bastion database as a CSV file for ``bastion users import`` into
another one: from the embedded SQLite file to PostgreSQL (docs/howto/redis-postgresql.md).
Run by tests/unit/test_docs_howto.py.

    python export_bastion_users.py sqlite:///.bastion/bastion.db users.csv

Each user keeps its name, address, password hash (the user signs in with the same
password), roles and active flag.
"""

# --8<-- [start:export]
import csv
import sys

from sqlalchemy import create_engine, text

USERS = text("SELECT id, username, email, password_hash, is_active FROM bastion_users ORDER BY id")
ROLES = text(
    "SELECT user_roles.user_id, roles.name FROM bastion_user_roles AS user_roles"
    " JOIN bastion_roles AS roles ON roles.id = user_roles.role_id"
)
FIELDS = ["username", "email", "password_hash", "roles", "is_active"]


def export_users(url: str, path: str) -> set[str]:
    """Write the users at ``url`` (a synchronous SQLAlchemy URL) to the CSV file ``path``;
    the roles they hold, which the other database must define before the import."""
    engine = create_engine(url)
    roles: dict[int, list[str]] = {}
    try:
        with engine.connect() as connection, open(path, "w", newline="") as file:
            for user_id, role in connection.execute(ROLES):
                roles.setdefault(user_id, []).append(role)
            writer = csv.DictWriter(file, fieldnames=FIELDS)
            writer.writeheader()
            for user in connection.execute(USERS):
                writer.writerow(
                    {
                        "username": user.username,
                        "email": user.email or "",
                        "password_hash": user.password_hash,  # Argon2id: kept as it is
                        "roles": " ".join(sorted(roles.get(user.id, []))),
                        "is_active": "true" if user.is_active else "false",
                    }
                )
    finally:
        engine.dispose()
    return {role for held in roles.values() for role in held}


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python export_bastion_users.py DATABASE_URL FILE.csv")
    needed = sorted(export_users(sys.argv[1], sys.argv[2]) - {"admin"})
    print(f"users written to {sys.argv[2]}")
    for role in needed:
        print(f"define first: bastion roles create {role}")
# --8<-- [end:export]
