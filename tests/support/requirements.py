"""What a test needs from its environment, and what happens when it is missing.

On a developer's machine a test whose environment lacks something (the reference documents next to the clone,
Chromium, espeak-ng, podman, the package registry) skips and says why. In CI a skip like that would turn a whole
suite green without running it, so where the environment variable ``ENGINESHED_REQUIRE`` names the thing
(comma-separated names, or ``all``) the test fails instead.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import NoReturn

import pytest

REQUIRE = "ENGINESHED_REQUIRE"
THINGS = frozenset({"shared", "chromium", "espeak-ng", "podman", "registry", "node", "curl"})
SHARED = Path(__file__).resolve().parents[2].parent / "shared"


def required(what: str) -> bool:
    """Whether ``ENGINESHED_REQUIRE`` makes ``what`` a must."""
    assert what in THINGS, f"unknown environment requirement {what!r}; known: {sorted(THINGS)}"
    names = {name.strip() for name in os.environ.get(REQUIRE, "").split(",") if name.strip()}
    return "all" in names or what in names


def need(what: str, reason: str) -> NoReturn:
    """``what`` is missing here: skip with the reason, or fail where ``ENGINESHED_REQUIRE`` requires it.

    Callable in a test, a fixture or at module level (a module-level call skips or fails the whole module).
    """
    if required(what):
        pytest.fail(f"{what} is required here ({REQUIRE}={os.environ[REQUIRE]}) but missing: {reason}", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


def shared_file(*parts: str) -> Path:
    """A file of the reference documents next to this clone (``../shared``), or ``need('shared', …)``."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        need("shared", f"the reference documents are not next to this clone: {path} is missing")
    return path
