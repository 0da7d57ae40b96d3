"""Mail templates: subject, text and HTML of each message, overridable by the application.

A message named ``reset`` is three files under ``mail/`` of the template folders:
``reset.subject.txt`` (one line), ``reset.txt`` and, optionally, ``reset.html``. Every string
a reader sees is in those files (so they can be translated). The application's folder comes
first, as for pages: its ``mail/reset.txt`` replaces Bastion's, whose originals stay
reachable as ``bastion/mail/...`` (an override can extend the original).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from jinja2 import Environment, StrictUndefined, TemplateNotFound, select_autoescape

from bastion.i18n.jinja import install_translations
from bastion.mail.addresses import MailError
from bastion.mail.message import Message
from bastion.settings import is_one_line
from bastion.template_folders import template_loader

FOLDER = "mail"


class MailTemplates:
    """Renders :class:`Message` objects; ``site_name`` and ``public_url`` are in every one."""

    def __init__(
        self,
        directory: str | Path | None = None,
        *,
        site_name: str = "Bastion",
        public_url: str = "",
    ) -> None:
        self.env = Environment(
            loader=template_loader(directory),
            # HTML parts escape what they insert; the subject and the text part are plain text,
            # where an escaped "&amp;" would be shown as it is.
            autoescape=select_autoescape(enabled_extensions=("html",), default=False),
            # A variable the template needs and the caller forgot fails the render at once,
            # not as an empty gap in a mail already sent.
            undefined=StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
            extensions=["jinja2.ext.i18n"],
        )
        # In the language of the request that sends the mail (see bastion.i18n).
        install_translations(self.env)
        self.env.globals.update(site_name=site_name, public_url=public_url)

    def render(self, template: str, *, to: str, context: Mapping[str, Any]) -> Message:
        """The message ``template`` makes for ``to``; :class:`MailError` for a subject that is
        not one line (a value in ``context`` trying to add a header) or a missing template."""
        values = dict(context)
        try:
            subject = self._render(f"{template}.subject.txt", values).strip()
            text = self._render(f"{template}.txt", values)
        except TemplateNotFound as error:
            raise MailError(f"no mail template {error.name!r}") from error
        if not subject or not is_one_line(subject):
            raise MailError(f"the subject of mail template {template!r} is not one line")
        html_name = f"{template}.html"
        try:
            html: str | None = self._render(html_name, values)
        except TemplateNotFound as error:
            if error.name != f"{FOLDER}/{html_name}":
                raise MailError(f"no mail template {error.name!r}") from error
            html = None  # a text-only message
        return Message(to=to, subject=subject, text=text.rstrip("\n") + "\n", html=html)

    def _render(self, name: str, context: dict[str, Any]) -> str:
        return self.env.get_template(f"{FOLDER}/{name}").render(context)


__all__ = ["MailTemplates"]
