"""An application's own Alembic history, in a database it shares with Bastion.

Its models keep their data in tables of their own (``users`` for its members, as many
applications have one, and ``notes`` referring to Bastion's users), its revisions are
recorded in Alembic's default ``alembic_version``, and its ``env.py`` leaves Bastion's
tables to Bastion (docs/existing-app.md).
"""
