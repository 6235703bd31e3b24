"""The package installs quietly: its metadata uses the forms current build tools take without warnings."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_licence_is_an_spdx_string_which_setuptools_takes_without_a_deprecation_banner():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert project["project"]["license"] == "Apache-2.0"
    # A table ({text = ...}) makes setuptools 77+ print its deprecation banner once per build step.
    assert any(req.startswith("setuptools>=") and int(req.split(">=")[1].split(".")[0]) >= 77
               for req in project["build-system"]["requires"])
