"""Where Bastion's Jinja2 templates are found, for pages and mail alike.

The application's own folder comes first: a file there named like one of Bastion's replaces
it. Bastion's originals also answer under the ``bastion/`` prefix, whatever the
application's folder holds, so a replacement can extend the original
(``{% extends "bastion/login.html" %}``) instead of copying it.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import BaseLoader, ChoiceLoader, FileSystemLoader, PackageLoader, PrefixLoader

ORIGINALS_PREFIX = "bastion"


def template_loader(directory: str | Path | None = None) -> ChoiceLoader:
    """Bastion's templates under the application's ``directory`` (when given)."""
    originals = PackageLoader("bastion", "templates")
    loaders: list[BaseLoader] = [PrefixLoader({ORIGINALS_PREFIX: originals})]
    if directory is not None:
        loaders.append(FileSystemLoader(str(directory)))
    loaders.append(originals)
    return ChoiceLoader(loaders)


__all__ = ["ORIGINALS_PREFIX", "template_loader"]
