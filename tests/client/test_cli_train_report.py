"""``engineshed train --wait`` says what the training used and left out, and exits 5 when an entity was left with no
usable identifier (``--allow-missing``: 0); ``models list --library`` lists a library's models with accuracy,
coverage and the default; the client's training result carries the same report."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from engineshed.client import Client
from sampledata.digits import Digits, png
from tests.client.helpers import cli, cli_json

GALLERY = "engineshed-gallery"
SMALL = ("zero", "one", "two", "three")  # 24 px images: under minSize 32, so nothing of them is usable


def _digit_folder(root: Path, digits: Digits) -> None:
    """root/<digit name>/<n>.png: four images each of ten digits, the first four digits at 24 px, the rest at 48."""
    names = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    for digit, name in enumerate(names):
        folder = root / name
        folder.mkdir(parents=True)
        entries = [e for e in digits.train if e.entity_id == f"digit-{digit}"][:4]
        for n, entry in enumerate(entries):
            grey = np.asarray(Image.open(io.BytesIO(entry.data)).convert("L").resize((8, 8), Image.Resampling.BILINEAR), np.float64)
            (folder / f"{n}.png").write_bytes(png(grey * (16.0 / 255.0), 24 if name in SMALL else 48))


def test_train_wait_warns_and_exits_5_when_entities_were_left_without_a_usable_identifier(
    org, tmp_path, start_worker, digit_library: Digits,
) -> None:
    _digit_folder(tmp_path / "digits", digit_library)
    cli_json(org, "import", str(tmp_path / "digits"), "--library", "digits", "--type", "image", "--entity-per-folder")
    start_worker()
    config = json.dumps({"minSize": 32})

    done = cli(org, "train", "digits", "--engine", GALLERY, "--config", config, "--wait")
    assert done.returncode == 5, (done.returncode, done.stderr[-3000:])
    assert "trained: model" in done.stderr and "but 4 entities have no usable identifier" in done.stderr
    assert "used: 24 identifier(s) of 6 entities; skipped: 16" in done.stderr
    assert "skipped 16 too-small" in done.stderr and "under minSize 32" in done.stderr
    for name in SMALL:
        assert f"  {name} (" in done.stderr and "every identifier was skipped (4: 4 too-small)" in done.stderr
    assert "--allow-missing" in done.stderr

    allowed = cli(org, "train", "digits", "--engine", GALLERY, "--config", config, "--wait", "--allow-missing")
    assert allowed.returncode == 0, allowed.stderr[-3000:]
    assert "4 entities have no usable identifier" in allowed.stderr and "  two (" in allowed.stderr

    scripted = cli_json(org, "train", "digits", "--engine", GALLERY, "--config", config, "--wait", expect=5)
    assert scripted["exitStatus"] == 5 and scripted["status"] == "complete"
    report = scripted["trainingReport"]
    assert report["entitiesWithoutIdentifiersCount"] == 4
    assert sorted(e["name"] for e in report["entitiesWithoutIdentifiers"]) == sorted(SMALL)

    everyone = cli(org, "train", "digits", "--engine", GALLERY, "--config", json.dumps({"minSize": 16}), "--wait")
    assert everyone.returncode == 0, everyone.stderr[-3000:]
    assert "used: 40 identifier(s) of 10 entities; skipped: 0" in everyone.stderr
    assert "no usable identifier" not in everyone.stderr

    # models list --library: accuracy, coverage, and which one is the default. The ten-digit model knows everyone
    # the default knows but scores worse on the six both evaluated, so it is not promoted, and train said why.
    models = cli_json(org, "models", "list", "--library", "digits")
    assert len(models) == 4 and all(m["accuracy"] is not None for m in models)
    assert sorted(m["trainingReport"]["entitiesUsed"] for m in models) == [6, 6, 6, 10]
    [default] = [m for m in models if m["isDefault"]]
    tenth = next(m for m in models if m["trainingReport"]["entitiesUsed"] == 10)
    if not tenth["isDefault"]:
        assert default["trainingReport"]["entitiesUsed"] == 6
        assert "6 entities both evaluated" in tenth["promotion"]["reason"]
        assert "not the default: candidate knows 10 entities" in everyone.stderr
    table = cli(org, "models", "list", "--library", "digits")
    assert table.returncode == 0
    assert "10 entities / 40 identifiers" in table.stdout and "6 entities / 24 identifiers (4 entities left out)" in table.stdout
    assert table.stdout.count("default") >= 2  # the column and the default model's row

    # The Python client's training result carries the report.
    with Client(org.gateway.url, org.token) as client:
        library = client.find_library("digits")
        job = client.training_job("report")
        model = job.run(library["id"], GALLERY, {"minSize": 32})
        assert model["trainingReport"]["entitiesWithoutIdentifiersCount"] == 4
        assert job.training_report == model["trainingReport"]
        assert client.training_report(model["id"])["identifiersUsed"] == 24
