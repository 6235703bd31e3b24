"""Settings: every variable is in the README's table (the issue asks for all of them), and bad values are refused by name."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from gateway.settings import _ENV_NAMES, Settings, SettingsError

README = Path(__file__).resolve().parents[1] / "README.md"


def documented_names(text: str) -> set[str]:
    """Names in backticks, with shortened families expanded: `ENGINESHED_DB_POOL_MIN` / `_MAX` names both."""
    names = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", text))
    for head, tail in re.findall(r"`([A-Z][A-Z0-9_]+)`((?:\s*/\s*`_[A-Z0-9_]+`)+)", text):
        for suffix in re.findall(r"`(_[A-Z0-9_]+)`", tail):
            cuts = [i for i, ch in enumerate(head) if ch == "_"]
            names.update(head[:i] + suffix for i in cuts)
    return names


def test_every_settings_variable_is_in_the_readme():
    names = documented_names(README.read_text())
    missing = [
        _ENV_NAMES.get(f.name, "ENGINESHED_" + f.name.upper())
        for f in dataclasses.fields(Settings)
        if _ENV_NAMES.get(f.name, "ENGINESHED_" + f.name.upper()) not in names
    ]
    assert missing == []


def test_a_presigned_link_lifetime_s3_would_refuse_is_refused_at_start():
    for value in ("0", "604801"):
        with pytest.raises(SettingsError, match="ENGINESHED_PRESIGN_TTL_SECONDS"):
            Settings.from_env({"ENGINESHED_PRESIGN_TTL_SECONDS": value})
    assert Settings.from_env({"ENGINESHED_PRESIGN_TTL_SECONDS": "604800"}).presign_ttl_seconds == 604800
