"""docs/passwords.md: an application that keeps its own users checks a password and
replaces an outdated hash at the one moment it has the clear text (run by
tests/unit/test_docs_snippets.py, with a bcrypt hash that becomes Argon2id)."""

from bastion.passwords import default_passwords

passwords = default_passwords()
users: dict[str, dict[str, str]] = {}  # the application's own users, by name


# --8<-- [start:check]
async def check_login(username: str, password: str) -> bool:
    user = users.get(username)
    if user is None:
        return await passwords.verify_unknown_user(password)  # same cost, always False
    ok, needs_rehash = await passwords.verify_async(password, user["password_hash"])
    if ok and needs_rehash:
        user["password_hash"] = await passwords.hash_async(password)
    return ok
    # --8<-- [end:check]
