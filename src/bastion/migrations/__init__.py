"""Bastion's Alembic migrations (``env.py``, ``versions/``) and the schema they share."""
