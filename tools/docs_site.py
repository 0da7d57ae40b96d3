"""mkdocs hooks of the documentation site (``hooks:`` in mkdocs.yml).

Generated reference: a page holding a marker line ``<!-- generated: NAME -->`` gets, in its
place, text generated from the code at build time, so the reference cannot drift from it:

- ``settings``: every field of ``bastion.settings.Settings`` (variable, default, meaning);
- ``cli``: every command of the Typer app ``bastion.cli.app`` with its usage and options;
- ``http-api``: every operation of the reference app's OpenAPI document (the built site also
  gets the document itself, ``http-api/openapi.json``).

Mermaid: the material theme loads mermaid.js from a CDN unless the page already has it. The
site ships its own copy instead: a pinned release of the npm package ``mermaid`` is fetched
once from the npm registry (its tarball, over HTTPS, with no need for npm itself; checked
against its pinned sha512 integrity), its self-contained
``dist/mermaid.min.js`` kept in the git-ignored ``.cache/docs/``, published as
``assets/javascripts/mermaid.min.js`` and loaded, before the theme's script, by the pages
that have a diagram. The site loads nothing from other hosts (tests/unit/test_docs_site.py).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import re
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: no lock, concurrent builds there are unlikely
    fcntl = None  # type: ignore[assignment]

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page
from mkdocs.utils import get_relative_url

ROOT = Path(__file__).resolve().parents[1]
CACHE = ROOT / ".cache" / "docs"

MERMAID_VERSION = "11.17.2"  # the major version the material theme's script expects
MERMAID_INTEGRITY = (
    "sha512-V6K3C8EBdEsPFZXSKMJe6ppQOENxuHARr9GvHX4hh47lAbhMRD9qf4oEK7LoaRQxULMa80/"
    "qt5gHO73aCleBBg=="
)
MERMAID_SITE_PATH = "assets/javascripts/mermaid.min.js"

MARKER = re.compile(r"^<!-- generated: ([a-z-]+) -->$", re.M)


# ---- settings -------------------------------------------------------------------------


def _prose(text: str) -> str:
    """``text`` for Markdown: ``<data dir>`` outside code spans is text, not an HTML tag."""
    parts = text.split("`")
    for index in range(0, len(parts), 2):  # the even parts are outside code spans
        parts[index] = parts[index].replace("<", "&lt;").replace(">", "&gt;")
    return "`".join(parts)


def _cell(text: str) -> str:
    return _prose(text).replace("|", "\\|").replace("\n", " ")


def settings_table() -> str:
    """Markdown table of every setting, from the settings class itself."""
    from pydantic_core import PydanticUndefined

    from bastion.settings import Settings

    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        if field.default_factory is not None:
            produced = field.default_factory()  # type: ignore[call-arg]
            default = "(empty)" if produced in ([], "", None) else str(produced)
        elif field.default is None:
            default = "(derived)"
        elif field.default is PydanticUndefined:
            default = "(required)"
        else:
            default = str(field.default)
        shown = f"`{default}`" if default else ""
        rows.append(
            f"| `BASTION_{name.upper()}` | {_cell(shown)} | {_cell(field.description or '')} |"
        )
    return "\n".join(rows) + "\n"


# ---- command line ---------------------------------------------------------------------


# Typer carries its own copy of click (typer._click): its objects are used through the
# methods click documents, not through isinstance checks against the click package.


def _commands(command: Any, path: list[str], parent: Any) -> Iterator[tuple[list[str], Any, Any]]:
    context = command.context_class(command, info_name=path[-1], parent=parent)
    yield path, command, context
    if hasattr(command, "list_commands"):
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is not None and not sub.hidden:
                yield from _commands(sub, [*path, name], context)


def cli_reference() -> str:
    """Markdown of every command of the ``bastion`` command line, from the Typer app."""
    import typer.main

    from bastion.cli import app

    root = typer.main.get_command(app)
    parts: list[str] = []
    for path, command, context in _commands(root, ["bastion"], None):
        name = " ".join(path)
        if hasattr(command, "list_commands") and len(path) > 1:
            parts.append(f"## `{name}`\n\n{_prose(command.help or '')}\n")
            continue
        if len(path) > 1:
            parts.append(f"{'#' * len(path)} `{name}`\n")
        usage = " ".join(command.collect_usage_pieces(context))
        parts.append(f"```text\n{context.command_path} {usage}\n```\n")
        if command.help:
            parts.append(_prose(command.help.strip()) + "\n")
        rows = []
        for param in command.get_params(context):
            record = param.get_help_record(context)
            if record is not None and record[0] != "--help":
                names, help_text = record
                rows.append(f"| `{names}` | {_cell(help_text)} |")
        if rows:
            parts.append("| argument or option | meaning |\n|---|---|\n" + "\n".join(rows) + "\n")
    return "\n".join(parts)


# ---- HTTP API -------------------------------------------------------------------------


def openapi_document() -> dict[str, Any]:
    """The OpenAPI document of the reference app (``bastion serve``), built on a throwaway
    data folder so that nothing of the builder's environment or files is read or written."""
    from bastion.settings import Settings
    from bastion.webapp.app import create_app

    saved = {name: value for name, value in os.environ.items() if name.startswith("BASTION_")}
    for name in saved:
        del os.environ[name]
    try:
        with tempfile.TemporaryDirectory() as folder:
            settings = Settings(_env_file=None, data_dir=Path(folder))
            document: dict[str, Any] = create_app(settings).openapi()
    finally:
        os.environ.update(saved)
    return document


def _schema_name(schema: dict[str, Any]) -> str:
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " or ".join(_schema_name(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"list of {_schema_name(schema.get('items', {}))}"
    return str(schema.get("type", "any"))


def http_reference(document: dict[str, Any]) -> str:
    """Markdown of every operation of an OpenAPI document, grouped by tag."""
    by_tag: dict[str, list[str]] = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            tag = (operation.get("tags") or ["other"])[0]
            lines = [f"### `{method.upper()} {path}`\n"]
            if operation.get("summary"):
                lines.append(f"**{_prose(operation['summary'])}**\n")
            if operation.get("description"):
                lines.append(_prose(operation["description"].strip()) + "\n")
            parameters = operation.get("parameters", [])
            if parameters:
                lines.append("| parameter | in | type | required |\n|---|---|---|---|")
                for parameter in parameters:
                    lines.append(
                        f"| `{parameter['name']}` | {parameter['in']} | "
                        f"{_schema_name(parameter.get('schema', {}))} | "
                        f"{'yes' if parameter.get('required') else 'no'} |"
                    )
                lines.append("")
            body = operation.get("requestBody")
            if body:
                kinds = ", ".join(
                    f"`{kind}` ({_schema_name(media.get('schema', {}))})"
                    for kind, media in body.get("content", {}).items()
                )
                lines.append(f"Request body: {kinds}\n")
            responses = operation.get("responses", {})
            if responses:
                lines.append("| status | meaning |\n|---|---|")
                for status, response in responses.items():
                    lines.append(f"| {status} | {_cell(response.get('description', ''))} |")
                lines.append("")
            by_tag.setdefault(tag, []).append("\n".join(lines))
    parts = []
    for tag in sorted(by_tag):
        parts.append(f"## {tag}\n")
        parts.extend(by_tag[tag])
    return "\n".join(parts)


# ---- mermaid --------------------------------------------------------------------------


def _integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


def _tarball_address() -> str:
    """Where the registry keeps the pinned release (npm's own setting of the registry when the
    environment gives one, as ``npm`` itself would use)."""
    names = ("npm_config_registry", "NPM_CONFIG_REGISTRY")  # npm reads either spelling
    registry = next((os.environ[name] for name in names if os.environ.get(name)), None)
    base = (registry or "https://registry.npmjs.org/").rstrip("/")
    return f"{base}/mermaid/-/mermaid-{MERMAID_VERSION}.tgz"


def _download(address: str) -> bytes:
    if not address.startswith(("https://", "http://")):
        raise RuntimeError(f"mermaid: the npm registry must be an http(s) address: {address}")
    try:
        with urllib.request.urlopen(address, timeout=120) as answer:  # noqa: S310 - checked above
            data: bytes = answer.read()
    except OSError as error:
        raise RuntimeError(f"mermaid: could not fetch {address} ({error})") from error
    return data


def mermaid_script() -> Path:
    """The pinned mermaid.min.js, fetched once from the npm registry."""
    target = CACHE / f"mermaid-{MERMAID_VERSION}" / "mermaid.min.js"
    if target.is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    ignore = CACHE.parent / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# Downloads of the documentation build (tools/docs_site.py)\n*\n")
    with (CACHE / "install.lock").open("w") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # parallel builds fetch it once
        if target.is_file():
            return target
        data = _download(_tarball_address())
        if _integrity(data) != MERMAID_INTEGRITY:
            raise RuntimeError(f"mermaid {MERMAID_VERSION}: the package's integrity differs")
        with tarfile.open(fileobj=io.BytesIO(data)) as archive:
            member = archive.extractfile("package/dist/mermaid.min.js")
            if member is None:
                raise RuntimeError("mermaid: no package/dist/mermaid.min.js in the package")
            script = member.read()
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        partial.write_bytes(script)
        partial.replace(target)
    return target


# ---- the hooks ------------------------------------------------------------------------

_GENERATED: dict[str, str] = {}


def generated(name: str) -> str:
    """Text of one generated section, built once per build."""
    if name not in _GENERATED:
        if name == "settings":
            _GENERATED[name] = settings_table()
        elif name == "cli":
            _GENERATED[name] = cli_reference()
        elif name == "http-api":
            _GENERATED[name] = http_reference(json.loads(generated("openapi.json")))
        elif name == "openapi.json":
            _GENERATED[name] = json.dumps(openapi_document(), indent=2) + "\n"
        else:
            raise ValueError(f"unknown generated section {name!r}")
    return _GENERATED[name]


def on_startup(command: str, dirty: bool) -> None:
    _GENERATED.clear()


def on_config(config: MkDocsConfig) -> MkDocsConfig:
    _GENERATED.clear()
    return config


def on_files(files: Files, config: MkDocsConfig) -> Files:
    files.append(File.generated(config, MERMAID_SITE_PATH, abs_src_path=str(mermaid_script())))
    files.append(File.generated(config, "http-api/openapi.json", content=generated("openapi.json")))
    return files


# A line break between two Chinese characters (or full-width punctuation) of a wrapped
# paragraph: a browser would show it as a space, which Chinese text does not have.
_CJK = "\u3000-\u303f\u4e00-\u9fff\uff00-\uffef"
_CJK_BREAK = re.compile(f"(?<=[{_CJK}])\n[ \t]*(?=[{_CJK}])")
_FENCE = re.compile(r"^([ \t]*)```.*?^\1```", re.S | re.M)


def join_chinese_lines(markdown: str) -> str:
    """``markdown`` with the line breaks inside Chinese sentences removed (code blocks as
    they are)."""
    parts, last = [], 0
    for fence in _FENCE.finditer(markdown):
        parts.append(_CJK_BREAK.sub("", markdown[last : fence.start()]))
        parts.append(fence.group(0))
        last = fence.end()
    parts.append(_CJK_BREAK.sub("", markdown[last:]))
    return "".join(parts)


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    if page.file.src_uri.startswith("zh/"):
        markdown = join_chinese_lines(markdown)
    return MARKER.sub(lambda match: generated(match.group(1)), markdown)


# Sphinx roles in the docstrings (":class:`~bastion.cache.Cache`") as plain code.
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):<code>~?([^<]*)</code>")


def on_page_content(html: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    return _ROLE.sub(r"<code>\1</code>", html)


def on_post_page(output: str, page: Page, config: MkDocsConfig) -> str:
    if page.file.src_uri.startswith("zh/"):  # the Chinese pages say so (screen readers, fonts)
        output = output.replace('<html lang="en"', '<html lang="zh-Hans"', 1)
    if 'class="mermaid"' not in output:
        return output
    src = get_relative_url(MERMAID_SITE_PATH, page.url)
    bundle = re.search(r'<script src="[^"]*assets/javascripts/bundle\.[^"]*"', output)
    if bundle is None:
        raise RuntimeError(f"{page.file.src_uri}: the theme's script was not found")
    tag = f'<script src="{src}"></script>\n      '
    return output[: bundle.start()] + tag + output[bundle.start() :]
