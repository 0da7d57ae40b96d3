"""The language switcher in every page's footer: a plain form, no script needed."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import RedirectResponse

from bastion.asgi.language import LANGUAGE_COOKIE_MAX_AGE
from bastion.asgi.sessions import session_state
from bastion.fastapi.install import BastionDep
from bastion.i18n import LANGUAGE_COOKIE, normalize_language
from bastion.redirects import safe_next

router = APIRouter(include_in_schema=False)
LANGUAGE_PATH = "/language"


@router.post(LANGUAGE_PATH)
async def choose_language(
    request: Request,
    bastion: BastionDep,
    lang: Annotated[str, Form(max_length=35)],
    next: Annotated[str, Form(max_length=2048)] = "/",
) -> RedirectResponse:
    """Keep the chosen language in the ``bastion_lang`` cookie and, for a signed-in user,
    as their own choice (their sessions on every device follow it); back to ``next``."""
    state = session_state(request.scope)
    language = normalize_language(lang)
    if language is not None:
        state.other_cookies.append(
            state.cookie_header(LANGUAGE_COOKIE, language, max_age=LANGUAGE_COOKIE_MAX_AGE)
        )
        if state.session is not None and state.session.language != language:
            await bastion.accounts.set_language(state.session.user_id, language)
    return RedirectResponse(safe_next(next, "/"), status_code=status.HTTP_303_SEE_OTHER)
