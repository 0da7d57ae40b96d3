"""The vendored Swagger UI: version 5 (4 cannot read OpenAPI 3.1), as its README says."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import bastion

ASSETS = Path(bastion.__file__).resolve().parent / "static" / "swagger-ui"


def test_vendored_swagger_ui_is_version_5() -> None:
    package = json.loads((ASSETS / "package.json").read_text())
    assert package["name"] == "swagger-ui-dist"
    assert package["license"] == "Apache-2.0"
    assert package["version"].split(".")[0] == "5"
    assert (ASSETS / "LICENSE").is_file()
    assert (ASSETS / "NOTICE").is_file()


def test_vendored_swagger_ui_readme_names_its_version_and_checksums() -> None:
    readme = (ASSETS / "README.md").read_text()
    version = json.loads((ASSETS / "package.json").read_text())["version"]
    assert f"`swagger-ui-dist` {version}" in readme
    for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
        digest = hashlib.sha256((ASSETS / name).read_bytes()).hexdigest()
        assert f"`{name}` {digest}" in readme, name
