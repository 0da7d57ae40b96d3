"""docs/email.md: the application's own message, ``mail/welcome.*`` in its template folder,
sent through Bastion's mailer (run by tests/unit/test_docs_snippets.py)."""

from pathlib import Path

from fastapi import FastAPI

from bastion.fastapi import Bastion, install

app = FastAPI()
bastion = install(app, templates_dir=Path(__file__).parent / "templates")


# --8<-- [start:send]
async def welcome(bastion: Bastion, username: str, email: str) -> None:
    mailer = bastion.services.mailer
    # Rendered now, in the request's language; delivered in the background, with retries.
    await mailer.send("welcome", to=email, context={"username": username})


async def welcome_at_once(bastion: Bastion, username: str, email: str) -> None:
    mailer = bastion.services.mailer
    message = mailer.render("welcome", to=email, context={"username": username})  # a Message
    await mailer.deliver_now(message)  # now, once, raising DeliveryFailed (no queue)
    # --8<-- [end:send]
