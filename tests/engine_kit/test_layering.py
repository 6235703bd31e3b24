"""The kit reaches the server only over HTTP, like an engine in any other language: it imports nothing of the
server (gateway, storage, engines), nor does its command line."""

from __future__ import annotations

import pytest

from tests.test_layering import violations


@pytest.mark.parametrize("package", ["engineshed.engine", "engineshed.cli.engine"])
def test_the_engine_kit_imports_nothing_of_the_server(package):
    assert violations(package, ("gateway", "storage", "engines")) == []
