"""Published public keys (RFC 7517). Symmetric keys are never published."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

router = APIRouter(tags=["keys"])


@router.get("/.well-known/jwks.json", summary="Public signing keys")
async def jwks(request: Request) -> JSONResponse:
    body: dict[str, Any] = request.app.state.bastion.services.keyring.public_jwks()
    return JSONResponse(body, headers={"Cache-Control": "public, max-age=300"})
