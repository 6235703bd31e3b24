"""Shared setup for the client tests of operations built on other branches (#13 embeddings, #14 labeling, #15
training jobs): registered models made ready by a worker's trial, and small libraries.

These tests are written against CONTRACT.md's names and pass once the lead has merged those branches; on a
server without them the first call answers invalid_input (the field is unknown to the schema).
"""

from __future__ import annotations

import json
from pathlib import Path

from engineshed.client import Client
from tests.client.helpers import png
from tests.support.waits import wait_for
from sampledata import onnx_models as m

EMBEDDER = "tiny-embedder"
EMBEDDING_DIMENSION = 16
TAGGER = "pets"
TAGS = ["cat", "dog", "bird"]
SLEEPER = "test-sleeper"


def ready(client: Client, name: str) -> dict:
    def check() -> dict | None:
        model = client.model(name)
        return model if model["status"] != "validating" else None

    model = wait_for(check, timeout=120, what=f"the trial of {name}")
    assert model["status"] == "ready", model
    return model


def register_embedder(client: Client, tmp_path: Path) -> dict:
    path = tmp_path / "embedder.onnx"
    path.write_bytes(m.conv_net(dimension=EMBEDDING_DIMENSION))
    client.register_model(path, EMBEDDER, "embedding", manifest=m.normalised_manifest())
    return ready(client, EMBEDDER)


def register_tagger(client: Client, tmp_path: Path) -> dict:
    package = tmp_path / "pets"
    package.mkdir()
    (package / "model.onnx").write_bytes(m.conv_net(classes=len(TAGS)))
    (package / "manifest.json").write_text(json.dumps(m.normalised_manifest(kind="logits")))
    (package / "label_list.yaml").write_text("".join(f"- {tag}\n" for tag in TAGS))
    client.register_model(package, TAGGER, "auto_tagging")
    return ready(client, TAGGER)


def image_library(client: Client, name: str, count: int, *, seed: int = 0, assigned: bool = True) -> tuple[dict, list[dict]]:
    """An objects library holding ``count`` image identifiers named ``NNN.png`` (their uniqueName), in one entity or
    unassigned."""
    library = client.create_library(name, "objects")
    entity = client.create_entity(library["id"], "things") if assigned else None
    made = [client.create_entity_identifier(entity["id"] if entity else None, png(seed * 10_000 + n), filename=f"{n:03d}.png",
                                            identifier_type_id="image", library_id=None if entity else library["id"])
            for n in range(count)]
    return library, made
