"""The compiled catalogues ship in the wheel, built from the .po sources the repository keeps."""

from __future__ import annotations

import io
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
PO = ROOT / "src" / "bastion" / "locale" / "zh_CN" / "LC_MESSAGES" / "bastion.po"


@pytest.mark.slow
def test_the_wheel_carries_the_catalogue_compiled_from_the_po(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("bastion-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        compiled = archive.read("bastion/locale/zh_CN/LC_MESSAGES/bastion.mo")
    shipped = read_mo(io.BytesIO(compiled))
    with PO.open("rb") as file:
        source = read_po(file)
    translated = {_key(m.id): _key(m.string) for m in source if m.id and m.string and not m.fuzzy}
    assert translated, "the catalogue has translations"
    assert {_key(m.id): _key(m.string) for m in shipped if m.id} == translated


def _key(value: object) -> object:
    return tuple(value) if isinstance(value, list | tuple) else value


def test_no_compiled_catalogue_is_kept_in_the_repository() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*.mo"], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert tracked.stdout == ""
