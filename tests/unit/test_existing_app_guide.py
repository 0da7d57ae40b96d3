"""docs/existing-app.md stays true to its example, docs/examples/existing_app: the files it
names exist, the blocks that name a file are that file's text, its Python blocks compile and
its SQL points an application's rows at the users imported into Bastion."""

from __future__ import annotations

import re
import sqlite3
import textwrap
from contextlib import closing
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GUIDE = ROOT / "docs" / "existing-app.md"
EXAMPLE = ROOT / "docs" / "examples" / "existing_app"
FENCED = re.compile(r"^```(\w*)[^\n]*\n(.*?)^```", re.S | re.M)
TITLED = re.compile(r'^```python title="(?P<path>[^"]+)"\n(?P<body>.*?)^```', re.S | re.M)
INCLUDE = re.compile(r'^--8<-- "(?P<path>[^":]+):(?P<section>[\w-]+)"$')
SECTION = r"--8<-- \[{kind}:{name}\]"
# A block that shows a file starts with a comment naming it: "# docs/..." or "{# docs/... #}".
NAMES_FILE = re.compile(r"^(?:#|\{#) (docs/\S+)(?: #\})?$")
PATH = re.compile(r"(?<![\w/.-])((?:docs|tests)/[\w/.-]*\w)")


def blocks() -> list[tuple[str, str]]:
    """The guide's fenced blocks: (language, text)."""
    return FENCED.findall(GUIDE.read_text())


def tree_files() -> set[str]:
    """The files of the example, as the guide's tree of it lists them."""
    [tree] = [text for language, text in blocks() if language == "text"]
    lines = tree.splitlines()
    assert lines[0] == "docs/examples/existing_app/"
    folders: list[str] = []
    files = set()
    for line in lines[1:]:
        branch = line.index("── ")
        depth = branch // 4
        name = line[branch + 3 :].split()[0]
        del folders[depth:]
        if name.endswith("/"):
            folders.append(name.rstrip("/"))
        else:
            files.add("/".join([*folders, name]))
    return files


def test_every_path_the_guide_names_exists() -> None:
    paths = set(PATH.findall(GUIDE.read_text()))

    assert "docs/examples/existing_app/notes/app.py" in paths
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []


def test_the_guides_tree_lists_every_file_of_the_example() -> None:
    files = {
        str(path.relative_to(EXAMPLE))
        for path in EXAMPLE.rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }

    assert tree_files() == files


def test_blocks_that_name_a_file_show_its_text() -> None:
    shown = 0
    for _, text in blocks():
        first, *lines = text.splitlines()
        named = NAMES_FILE.match(first)
        if named is None:
            continue
        source = {line.strip() for line in (ROOT / named.group(1)).read_text().splitlines()}
        missing = [line for line in lines if line.strip() not in source]
        assert missing == [], named.group(1)
        shown += 1
    assert shown >= 1


def section(path: str, name: str) -> str:
    """The lines between a file's ``--8<-- [start:name]`` and ``[end:name]`` markers."""
    text = (ROOT / path).read_text()
    start = re.search(SECTION.format(kind="start", name=name) + ".*\n", text)
    end = re.search(".*" + SECTION.format(kind="end", name=name), text)
    assert start is not None, (path, name)
    assert end is not None, (path, name)
    return textwrap.dedent(text[start.end() : end.start()])


def test_every_python_block_is_a_section_of_the_file_its_title_names() -> None:
    titled = TITLED.findall(GUIDE.read_text())
    assert len(titled) >= 10
    assert len(titled) == len([language for language, _ in blocks() if language == "python"])
    for path, body in titled:
        includes = [INCLUDE.match(line) for line in body.splitlines() if line.strip()]
        assert includes, path
        for include in includes:
            assert include is not None, (path, body)
            assert include["path"] == path
            # Each part shown is Python on its own (a function's or a class's lines whole).
            compile(section(path, include["section"]), path, "exec")


def test_the_guides_sql_points_the_applications_rows_at_the_imported_users() -> None:
    [update] = [text for language, text in blocks() if language == "sql"]
    with closing(sqlite3.connect(":memory:")) as db:
        db.executescript(
            """
            CREATE TABLE users (id INTEGER PRIMARY KEY, username TEXT NOT NULL);
            CREATE TABLE bastion_users (id INTEGER PRIMARY KEY, username TEXT NOT NULL);
            CREATE TABLE notes (id INTEGER PRIMARY KEY, user_id INTEGER, owner_id INTEGER);
            INSERT INTO users VALUES (7, 'ann'), (9, 'ben');
            -- imported in another order: Bastion numbers its users itself
            INSERT INTO bastion_users VALUES (1, 'ben'), (2, 'ann');
            INSERT INTO notes (id, user_id) VALUES (1, 7), (2, 9), (3, 7);
            """
        )
        db.executescript(update)
        moved = db.execute("SELECT id, owner_id FROM notes ORDER BY id").fetchall()

    assert moved == [(1, 2), (2, 1), (3, 2)]


def test_readme_links_the_guide() -> None:
    assert "`docs/existing-app.md`" in (ROOT / "README.md").read_text()
