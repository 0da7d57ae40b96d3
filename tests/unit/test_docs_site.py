"""The documentation site builds with ``mkdocs build --strict`` (no broken link anywhere),
its reference pages are generated from the code, and it loads nothing from other hosts:
mermaid.js is the site's own copy (tools/docs_site.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer.main

from bastion.cli import app as cli_app
from bastion.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
# src= and href= of the elements a browser loads by itself (links to follow are not loaded).
LOADED = re.compile(
    r"<(?:script|img|iframe|audio|video|source|embed)\b[^>]*?\bsrc=\"(?P<src>[^\"]*)\""
    r"|<link\b(?P<link>[^>]*)>",
    re.I,
)
CSS_URL = re.compile(r"(?:url\(\s*['\"]?|@import\s+['\"])(?P<url>[^'\")]*)", re.I)
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|//)", re.I)  # http:, https:, //host, data: ...


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    built = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(built)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return built


def text_of(page: Path) -> str:
    return re.sub(r"<[^>]+>", "", page.read_text())


def test_mkdocs_builds_the_site_strictly(site: Path) -> None:
    assert (site / "index.html").is_file()
    pages = [
        "quick-start", "tutorial", "existing-app", "protecting-routes",
        "sessions", "csrf", "tokens", "keys", "caching", "bruteforce", "mfa",
        "external-providers", "stores", "scaling",
        "howto/nginx", "howto/redis-postgresql", "howto/rotate-keys",
        "howto/several-processes", "templates", "howto/import-users", "howto/store-backend",
        "settings", "cli", "http-api", "python-api",
        "security", "threat-model", "benchmarks", "changelog",
        "zh/quick-start", "zh/tutorial", "zh/existing-app",
    ]  # fmt: skip
    missing = [page for page in pages if not (site / page / "index.html").is_file()]
    assert missing == []
    # The example applications are code the pages include, not part of the site.
    assert not (site / "examples").exists()
    assert not (site / "deploy").exists()


def article(page: Path) -> str:
    """The page's own content, without the navigation around it."""
    html = page.read_text()
    return html[html.index("<article") : html.index("</article>")]


def test_the_quick_start_and_tutorials_link_their_chinese_pages(site: Path) -> None:
    for page in ("quick-start", "tutorial", "existing-app"):
        assert f'href="../zh/{page}/"' in article(site / page / "index.html"), page
        assert '<html lang="zh-Hans"' in (site / "zh" / page / "index.html").read_text()
        chinese = article(site / "zh" / page / "index.html")
        assert f'href="../../{page}/"' in chinese, page
        # Written in Chinese: most of its letters are CJK characters.
        letters = re.findall(
            r"[A-Za-z\u4e00-\u9fff]", re.sub(r"<pre.*?</pre>|<[^>]+>", "", chinese, flags=re.S)
        )
        cjk = [c for c in letters if c >= "\u4e00"]
        assert len(cjk) > 200, page
        # No line break of the Markdown source is left inside a Chinese sentence: a browser
        # would show it as a space.
        prose = re.sub(r"<pre.*?</pre>", "", chinese, flags=re.S)
        assert re.search("[\u4e00-\u9fff\uff0c\u3002]\n[\u4e00-\u9fff]", prose) is None, page


def test_the_settings_page_lists_every_setting(site: Path) -> None:
    text = text_of(site / "settings" / "index.html")
    missing = [n for n in Settings.model_fields if f"BASTION_{n.upper()}" not in text]
    assert missing == []


def test_the_cli_page_lists_every_command(site: Path) -> None:
    text = text_of(site / "cli" / "index.html")
    root: Any = typer.main.get_command(cli_app)  # a group: typer's copy of click
    context = root.context_class(root, info_name="bastion")
    expected = []
    for name in root.list_commands(context):
        command = root.get_command(context, name)
        if hasattr(command, "list_commands"):
            expected += [f"bastion {name} {sub}" for sub in command.list_commands(context)]
        else:
            expected.append(f"bastion {name}")
    assert len(expected) >= 20
    assert [command for command in expected if command not in text] == []


def test_the_http_api_page_lists_every_operation_of_the_published_document(site: Path) -> None:
    document = json.loads((site / "http-api" / "openapi.json").read_text())
    text = text_of(site / "http-api" / "index.html")
    operations = [
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    ]
    assert "POST /api/token" in operations
    assert [operation for operation in operations if operation not in text] == []


def test_the_python_api_page_is_made_from_the_docstrings(site: Path) -> None:
    text = text_of(site / "python-api" / "index.html")
    for name in ("install", "require_role", "Principal", "Store", "Hooks", "Cache"):
        assert name in text
    # install()'s own docstring, not a copy of it.
    assert "Add sessions, CSRF, security headers" in text
    # Sphinx roles of the docstrings are shown as code, not as ":class:" text.
    assert re.search(r":(class|func|meth|mod|data):", text) is None


def test_the_site_loads_nothing_from_other_hosts(site: Path) -> None:
    external = []
    for page in site.rglob("*.html"):
        html = page.read_text()
        for match in LOADED.finditer(html):
            if match["src"] is not None:
                urls = [match["src"]]
            else:
                attributes = match["link"]
                rel = re.search(r'\brel="([^"]*)"', attributes)
                if rel is not None and rel.group(1) in ("canonical", "prev", "next"):
                    continue  # links to follow, not loaded
                urls = re.findall(r'\bhref="([^"]*)"', attributes)
            external += [f"{page.relative_to(site)}: {url}" for url in urls if EXTERNAL.match(url)]
        for style in re.findall(r"<style\b[^>]*>(.*?)</style>", html, re.S):
            external += [f"{page}: {m['url']}" for m in CSS_URL.finditer(style)]
    for sheet in site.rglob("*.css"):
        for match in CSS_URL.finditer(sheet.read_text()):
            if EXTERNAL.match(match["url"]) and not match["url"].startswith("data:"):
                external.append(f"{sheet.relative_to(site)}: {match['url']}")
    assert external == []


def test_pages_with_diagrams_load_the_sites_own_mermaid_first(site: Path) -> None:
    script = site / "assets" / "javascripts" / "mermaid.min.js"
    assert script.stat().st_size > 1_000_000
    assert b"mermaid" in script.read_bytes()[:100_000]
    with_diagrams = {}
    for page in site.rglob("*.html"):
        html = page.read_text()
        diagrams = html.count('class="mermaid"')
        if diagrams == 0:
            assert "mermaid.min.js" not in html, page
            continue
        with_diagrams[str(page.relative_to(site).parent)] = diagrams
        own = html.find('assets/javascripts/mermaid.min.js"></script>')
        theme = html.find("assets/javascripts/bundle.")
        assert -1 < own < theme, page  # the theme finds mermaid defined and fetches nothing
    # The sign-in flow, the JWT + session check, refresh rotation, the deployment picture.
    assert with_diagrams.get("sessions") == 1
    assert with_diagrams.get("tokens") == 2
    assert with_diagrams.get("scaling") == 1
    assert with_diagrams.get("howto/several-processes") == 1
