"""docs/passwords.md: the process's shared hasher and a stronger one (run by
tests/unit/test_docs_snippets.py)."""

# --8<-- [start:setup]
from bastion.passwords import Passwords, default_passwords

passwords = default_passwords()  # shared per process: one CPU budget
stronger = Passwords(memory_cost=65_536, time_cost=3)
# --8<-- [end:setup]
