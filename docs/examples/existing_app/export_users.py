"""Write the users of an application's own ``users`` table as a CSV file for
``bastion users import`` (docs/existing-app.md, "When the application already has users").

    python export_users.py sqlite:///app.db users.csv
    bastion users import users.csv

The query is for a typical table (``id``, ``username``, ``email``, ``password`` as the
application stored it, ``is_admin``, ``is_active``): adapt it to yours. The URL is the
application's usual synchronous SQLAlchemy one (``postgresql://...`` with psycopg).
"""

import csv
import sys

from sqlalchemy import create_engine, text

# --8<-- [start:query]
QUERY = text("SELECT username, email, password, is_admin, is_active FROM users ORDER BY id")
FIELDS = ["username", "email", "password_hash", "roles", "is_active"]
# --8<-- [end:query]


def export_users(url: str, path: str) -> int:
    """Write the users at ``url`` to the CSV file ``path``; how many were written."""
    engine = create_engine(url)
    try:
        with engine.connect() as connection, open(path, "w", newline="") as file:
            writer = csv.DictWriter(file, fieldnames=FIELDS)
            writer.writeheader()
            count = 0
            for user in connection.execute(QUERY):
                writer.writerow(
                    {
                        "username": user.username,
                        "email": user.email or "",
                        # bcrypt, argon2 or Django's format, as stored: verified at the
                        # user's next sign-in, then replaced by an Argon2id hash.
                        "password_hash": user.password,
                        # Roles must be defined first: `bastion roles create NAME`
                        # (admin is built in).
                        "roles": "admin" if user.is_admin else "",
                        "is_active": "true" if user.is_active else "false",
                    }
                )
                count += 1
    finally:
        engine.dispose()
    return count


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python export_users.py DATABASE_URL FILE.csv")
    written = export_users(sys.argv[1], sys.argv[2])
    print(f"{written} user(s) written to {sys.argv[2]}")
