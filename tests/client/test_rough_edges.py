"""What a newcomer trips over in the command line and the client: imported files' unique names, the exit status of
a name that is not found, `engineshed engines --json`, how `models show` prints numbers, and the unquoted filter."""

from __future__ import annotations

import json
import re

import pytest

from engineshed.cli.output import NOT_FOUND
from engineshed.client import Client, InvalidInputError, TrainingJob
from engineshed.client.training import parse_filter
from sampledata import onnx_models as m
from tests.client.future import SLEEPER
from tests.client.helpers import cli, cli_json, image_folder, png
from tests.conftest import ROOT


def test_import_with_an_entity_per_folder_names_each_file_by_its_folder_and_file_name(org, tmp_path):
    image_folder(tmp_path / "faces", {"alice": 2, "bob": 2})  # 000.png and 001.png in each folder
    result = cli_json(org, "import", str(tmp_path / "faces"), "--library", "staff", "--entity-per-folder")
    assert result["uploaded"] == 4 and result["exitStatus"] == 0
    entities = org.client.query("query($l: [ID!]) { entities(libraryIds: $l) { records { name identifiers { records { uniqueName } } } } }",
                                l=[result["libraryId"]]).ok()["entities"]["records"]
    names = {e["name"]: sorted(i["uniqueName"] for i in e["identifiers"]["records"]) for e in entities}
    assert names == {"alice": ["alice/000.png", "alice/001.png"], "bob": ["bob/000.png", "bob/001.png"]}
    again = cli_json(org, "import", str(tmp_path / "faces"), "--library", "staff", "--entity-per-folder")
    assert (again["uploaded"], again["skipped"], again["failed"]) == (0, 4, [])


def test_a_library_job_or_model_that_does_not_exist_exits_with_the_not_found_status(org, tmp_path):
    photo = tmp_path / "q.png"
    photo.write_bytes(png(5))
    recognized = cli(org, "recognize", str(photo), "--library", "nosuchlib")
    assert recognized.returncode == NOT_FOUND == 6 and "no library 'nosuchlib'" in recognized.stderr
    assert cli(org, "train", "nosuchlib").returncode == NOT_FOUND
    assert cli(org, "jobs", "list", "--library", "nosuchlib").returncode == NOT_FOUND
    cancelled = cli(org, "jobs", "cancel", "00000000-0000-0000-0000-000000000009")
    assert cancelled.returncode == NOT_FOUND and "not_found" in cancelled.stderr
    # The status is documented where a user looks for it.
    assert "`6` not found" in (ROOT / "docs" / "tutorial.md").read_text()
    assert "6 not found" in (ROOT / "README.md").read_text()


def test_engines_takes_json_as_the_other_commands_do(org):
    listed = cli_json(org, "engines")
    gallery = next(e for e in listed if e["id"] == "engineshed-gallery")
    assert "image" in gallery["identifierTypeIds"] and "library-train" in gallery["modes"]
    assert gallery["name"] and gallery["concurrencyLimit"] >= 1
    assert [e["id"] for e in listed] == sorted(e["id"] for e in listed)
    assert "engineshed-gallery" in cli(org, "engines").stdout  # the lines for people are unchanged


def test_models_show_prints_whole_numbers_as_integers_a_readable_size_and_a_rounded_throughput(org, tmp_path, start_worker):
    package = tmp_path / "pets"
    package.mkdir()
    (package / "model.onnx").write_bytes(m.conv_net(classes=2))
    (package / "manifest.json").write_text(json.dumps(m.normalised_manifest(kind="logits")))
    (package / "label_list.yaml").write_text("- cat\n- dog\n")
    start_worker()
    with Client(org.gateway.url, org.token) as client:
        registered = client.register_model(package, "pets", "auto_tagging", timeout=180)  # the trial measures throughput
    assert registered["throughput"] and registered["sizeBytes"]
    shown = cli(org, "models", "show", "pets@1")
    assert shown.returncode == 0, shown.stderr
    cells = [[cell.strip() for cell in line.split("│")] for line in shown.stdout.splitlines()]
    rows = {row[1]: row[2] for row in cells if len(row) == 4}
    size = int(registered["sizeBytes"])
    assert re.fullmatch(rf"{size} \(\d+(\.\d)? (B|KiB|MiB)\)", rows["sizeBytes"]), rows["sizeBytes"]
    throughput = rows["throughput"]
    # Three significant figures, or a whole number from 100 images/s up.
    assert re.fullmatch(r"\d+", throughput) if float(throughput) >= 100 else len(throughput.replace(".", "").lstrip("0")) <= 3, throughput
    assert float(throughput) == pytest.approx(registered["throughput"], rel=0.01)
    assert ".0" not in rows["version"] and "e+" not in shown.stdout


def test_a_label_filter_takes_the_value_unquoted_or_quoted(org):
    assert parse_filter("labels.team=vision") == parse_filter('labels.team="vision"') == ({"team": "vision"}, [], None)
    assert parse_filter("labels.team=vision AND state=PIPELINE_STATE_QUEUED") == ({"team": "vision"}, ["queued"], None)
    with Client(org.gateway.url, org.token) as client:
        library = client.create_library("filtered", "objects")
        for name, team in (("seen", "vision"), ("other", "audio")):
            client.training_job(display_name=name, labels={"team": team}).run(
                library["id"], engine_id=SLEEPER, config={"seconds": 60}, sync=False)
        unquoted = TrainingJob.list(filter="labels.team=vision", client=client)
        quoted = TrainingJob.list(filter='labels.team="vision"', client=client)
        assert [j.display_name for j in unquoted] == [j.display_name for j in quoted] == ["seen"]
        for bad in ("labels.team=", "labels.team=a b", 'labels.team="vision', "labels.team>vision"):
            with pytest.raises(InvalidInputError, match="is not field=\"value\" or field=value"):
                TrainingJob.list(filter=bad, client=client)
