"""Wheel build hook: compile the gettext catalogues (``.po``) into the wheel as ``.mo``.

The repository keeps only the ``.po`` sources; each wheel carries the compiled form, next
to them in ``bastion/locale``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CatalogueBuildHook(BuildHookInterface):  # type: ignore[misc]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if self.target_name != "wheel" or version == "editable":
            return  # a checkout compiles the catalogues in memory (bastion.i18n.catalogue)
        sys.path.insert(0, str(Path(self.root) / "tools"))
        from translations import compile_into

        self._folder = tempfile.TemporaryDirectory()
        target = Path(self._folder.name)
        for path in compile_into(target):
            inside = path.relative_to(target).as_posix()
            build_data["force_include"][str(path)] = f"bastion/locale/{inside}"
