"""The project ``engineshed engine init NAME`` writes: a runnable engine, its packaging, and a test that trains it
against a local stack with the contract check."""

from __future__ import annotations

import re
from pathlib import Path

NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,62}$")

PYPROJECT = '''[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "0.1.0"
description = "An external engine for engineshed"
requires-python = ">=3.11"
dependencies = ["engineshed", "pillow"]

[project.optional-dependencies]
test = ["pytest>=8"]

[tool.setuptools]
py-modules = ["{module}"]

[tool.pytest.ini_options]
testpaths = ["tests"]
'''

ENGINE = '''"""{name}: an external engine for engineshed.

It learns each entity's mean colour from its images and recognizes a new image as the entity whose mean colour is
nearest. Replace the insides of train and recognize with your own model; keep what they return.

Run it against the local stack (`make run` in engineshed):  engineshed engine run {module}:Engine --engine-id {name}
Check it the way the platform will use it:                  engineshed engine check {module}:Engine
"""

from __future__ import annotations

import io
import json

from PIL import Image

from engineshed.engine import Artifact, Engine as BaseEngine


def mean_colour(data: bytes) -> list[float]:
    image = Image.open(io.BytesIO(data)).convert("RGB").resize((16, 16))
    pixels = list(image.getdata())
    return [sum(p[c] for p in pixels) / len(pixels) for c in range(3)]


class Engine(BaseEngine):
    id = "{name}"
    identifier_types = ("face",)  # the identifier types this engine trains on

    def train(self, library, model):
        """Called once per training job, in a thread of its own. library.files() reads every identifier's file;
        reading (or model.progress) raises Cancelled when the job is cancelled, so there is nothing to check."""
        colours: dict[str, list[list[float]]] = {{}}
        for identifier, data in library.files():
            colours.setdefault(identifier.entity_id, []).append(mean_colour(data))
        # The model maps back to the library: keyed by entity ID, so recognitions name library entities.
        means = {{entity: [sum(c[i] for c in found) / len(found) for i in range(3)] for entity, found in colours.items()}}
        return Artifact(json.dumps({{"means": means}}).encode(), content_type="application/json", filename="means.json",
                        jsondata={{"entities": len(means)}})

    def recognize(self, model, media):
        """The trained model (model.data: the file train returned) and one file to recognize: matches, best first."""
        means = json.loads(model.data)["means"]
        colour = mean_colour(media)
        distance = {{e: sum((a - b) ** 2 for a, b in zip(colour, m)) ** 0.5 for e, m in means.items()}}
        return [{{"entityId": e, "score": round(1 / (1 + distance[e]), 4)}} for e in sorted(distance, key=distance.get)]
'''

TEST = '''"""Trains the engine on a small generated library through the public API of a running engineshed (the local
`make run` stack, or ENGINESHED_URL with an admin ENGINESHED_TOKEN) and asserts it passes the contract check."""

import asyncio

import pytest

from engineshed.client import resolve
from engineshed.engine import load_engine
from engineshed.engine.check import check_engine


def test_the_engine_trains_and_passes_the_contract_check():
    found = resolve()
    if not found.token:
        pytest.fail("no engineshed to train against: start `make run` in engineshed, or set ENGINESHED_URL and an admin "
                    "ENGINESHED_TOKEN")
    report = asyncio.run(check_engine(load_engine("{module}:Engine"), url=found.url, admin_token=found.token))
    assert report.ok, "\\n".join(f"{{'ok ' if i.ok else 'FAIL'}} {{i.name}}: {{i.detail}}" for i in report.items)
'''

README = '''# {name}

An external engine for engineshed, written with `engineshed.engine`.

```sh
pip install -e '.[test]'
engineshed engine run {module}:Engine --engine-id {name}   # trains every job queued for it (Ctrl-C stops)
engineshed engine check {module}:Engine                    # the contract check, on a generated library
pytest                                                     # the same check, as a test
```

Against `make run` nothing else is needed: the engine and an engine token are created for you. Elsewhere pass
`--url` and `--token` (an engine token: `engineshed token create --org ORG --scope engine --engine {name}`).
'''


def module_name(name: str) -> str:
    return name.replace("-", "_").lower()


def write_project(name: str, directory: Path) -> list[Path]:
    """Write the project into ``directory`` (absent or empty); the files written."""
    module = module_name(name)
    files = {
        directory / "pyproject.toml": PYPROJECT.format(name=name, module=module),
        directory / f"{module}.py": ENGINE.format(name=name, module=module),
        directory / "tests" / f"test_{module}.py": TEST.format(module=module),
        directory / "README.md": README.format(name=name, module=module),
    }
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files)
