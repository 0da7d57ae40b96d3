"""Sign-in with external providers: OpenID Connect (by issuer discovery) and GitHub's
OAuth 2.0, and the links between their identities and Bastion's users.

Core modules only: nothing here imports FastAPI or Starlette. The routes are in
``bastion.fastapi.federation``.
"""
