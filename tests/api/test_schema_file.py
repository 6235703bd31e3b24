"""schema.graphql in the repository is what the code publishes (regenerate it with `make schema`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent


def test_the_checked_in_schema_equals_the_exported_schema():
    strawberry = Path(sys.executable).parent / "strawberry"
    result = subprocess.run(
        [str(strawberry), "export-schema", "gateway.schema.export:schema"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    checked_in = (ROOT / "schema.graphql").read_text()
    assert result.stdout.rstrip("\n") == checked_in.rstrip("\n"), "schema.graphql is stale: run `make schema`"


def test_the_exported_schema_keeps_the_wire_names_clients_send():
    text = (ROOT / "schema.graphql").read_text()
    for declaration in (
        "input CreateLibrary {",
        "input UpdateLibrary {",
        "input CreateEntity {",
        "input CreateEntityIdentifier {",
        "scalar JSONData",
        "scalar DateTime",
        "scalar Upload",
    ):
        assert declaration in text, declaration
    assert "Input {" not in text  # upstream input types carry no Input suffix
