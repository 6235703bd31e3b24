"""The Node.js example engine (examples/node-engine) trains through the same API with a GraphQL client from npm:
the flow needs nothing from Python. Its packages are installed under the test's tmp dir, never in the repo."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tests.engine_kit.conftest import (
    build_digit_library,
    create_engine,
    job,
    model,
    train_job,
)
from tests.support.requirements import need
from tests.worker.conftest import download

EXAMPLE = ROOT / "examples" / "node-engine"


@pytest.fixture(scope="module")
def node_engine(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("node") is None or shutil.which("npm") is None:
        need("node", "node and npm are not installed: the Node.js example engine cannot run")
    directory = tmp_path_factory.mktemp("node-engine")
    for name in ("package.json", "package-lock.json", "engine.mjs"):
        shutil.copy(EXAMPLE / name, directory / name)
    installed = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--cache", str(directory / ".npm")], cwd=directory,
                               capture_output=True, text=True, timeout=300)
    if installed.returncode != 0:
        need("registry", f"npm could not install the example's packages:\n{installed.stderr[-2000:]}")
    return directory


def test_the_node_example_engine_trains_a_model_through_the_public_api(org, digit_library, node_engine):
    engine_id = create_engine(org)
    library = build_digit_library(org, digit_library, digits_wanted=3, per_entity=4)
    job_id, task_id, model_id = train_job(org, library.id, engine_id)

    ran = subprocess.run(["node", "engine.mjs"], cwd=node_engine, capture_output=True, text=True, timeout=120,
                         env={"PATH": org.stack.env["PATH"], "ENGINESHED_URL": org.gateway.url, "ENGINE_ID": engine_id,
                              "ENGINE_TOKEN": org.token_for("engine", engine_id), "ONCE": "1"})

    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert f"claimed task {task_id}" in ran.stdout
    assert job(org, job_id)["status"] == "complete"
    trained = model(org, model_id)
    assert trained["trainStatus"] == "complete"
    assert trained["contentType"] == "application/json"
    assert trained["jsondata"] == {"fingerprints": 12, "entities": 3, "contentType": "application/json"}
    stored = json.loads(download(trained["dataUrl"]))
    # Its model maps each fingerprint back to the library's entity and identifier IDs.
    assert {f["entityId"] for f in stored["fingerprints"]} == set(library.entity_ids.values())
    assert len({f["identifierId"] for f in stored["fingerprints"]}) == 12


def test_the_node_example_without_a_token_says_how_to_get_one(node_engine):
    ran = subprocess.run(["node", "engine.mjs"], cwd=node_engine, capture_output=True, text=True, timeout=60,
                         env={"PATH": os.environ["PATH"]})
    assert ran.returncode == 2
    assert "set ENGINE_ID and ENGINE_TOKEN" in ran.stderr
