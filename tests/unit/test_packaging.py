"""Package hygiene: one version everywhere, the license file matching the declared one,
a changelog entry for the version."""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
import tomllib

import yaml

import space_dra
from tests.support.gotools import REPO
from tests.support.hostdriver import CHART

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
VERSION = PYPROJECT["version"]
# The Apache License 2.0 text as the Apache Software Foundation publishes it
# (https://www.apache.org/licenses/LICENSE-2.0.txt).
APACHE_2_SHA256 = "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30"


def test_the_package_reports_the_pyproject_version() -> None:
    assert importlib.metadata.version("space-dra") == VERSION
    assert space_dra.__version__ == VERSION


def test_the_chart_version_and_app_version_are_the_pyproject_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["version"] == VERSION, "bump Chart.yaml version with pyproject.toml"
    assert chart["appVersion"] == VERSION, "bump Chart.yaml appVersion with pyproject.toml"


def test_the_license_file_is_the_declared_license() -> None:
    assert PYPROJECT["license"] == "Apache-2.0"
    text = (REPO / "LICENSE").read_bytes()
    assert hashlib.sha256(text).hexdigest() == APACHE_2_SHA256
    dockerfile = (REPO / "deployments" / "container" / "Dockerfile").read_text()
    assert "org.opencontainers.image.licenses=Apache-2.0" in dockerfile


def test_the_license_ships_in_the_distribution() -> None:
    files = importlib.metadata.files("space-dra") or []
    assert any(file.name == "LICENSE" for file in files)


def test_the_changelog_has_a_section_for_this_version() -> None:
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert re.search(rf"^## \[{re.escape(VERSION)}\]", changelog, re.MULTILINE)
