"""Second factors (TOTP, recovery codes, passkeys) and re-authentication.

Core modules only: nothing here imports FastAPI or Starlette. The routes are in
``bastion.fastapi.mfa`` (and its neighbours).
"""
