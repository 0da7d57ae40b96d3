"""A small notes application with its own models and migrations, and Bastion added
(docs/existing-app.md walks through it)."""
