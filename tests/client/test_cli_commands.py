"""``engineshed train | recognize | models | jobs`` against the real stack: tables, --json and exit statuses."""

from __future__ import annotations

import json

from engineshed.client import Client
from tests.client.helpers import cli, cli_json, image_folder, png
from sampledata import onnx_models as m

SLEEPER = "test-sleeper"


def test_train_wait_follows_the_job_to_the_end_and_a_failed_training_exits_1(org, tmp_path, start_worker):
    image_folder(tmp_path / "f", {"a": 2, "b": 2})
    cli_json(org, "import", str(tmp_path / "f"), "--library", "lib", "--entity-per-folder")
    start_worker()
    done = cli(org, "train", "lib", "--engine", SLEEPER, "--config", '{"seconds": 1, "steps": 4}', "--wait")
    assert done.returncode == 0, done.stderr
    assert "100%" in done.stderr and "trained: model" in done.stderr
    failed = cli(org, "train", "lib", "--engine", SLEEPER, "--config", '{"fail": "engine", "steps": 1}', "--wait", "--json")
    assert failed.returncode == 1
    job = json.loads(failed.stdout)
    assert job["status"] == "failed" and "asked to fail" in job["tasks"]["records"][0]["failureMessage"]
    text = cli(org, "train", "lib", "--engine", SLEEPER, "--config", '{"fail": "engine", "steps": 1}', "--wait")
    assert text.returncode == 1 and "asked to fail" in text.stderr


def test_train_without_wait_prints_the_job_and_bad_input_is_refused(org, tmp_path):
    with Client(org.gateway.url, org.token) as client:
        client.create_library("lib", "objects")
    started = cli_json(org, "train", "lib", "--engine", SLEEPER, "--config", '{"seconds": 60}')
    assert started["status"] == "queued" and started["libraryEngineModelId"]
    assert cli(org, "train", "no-such-library").returncode == 6  # not found
    bad = cli(org, "train", "lib", "--config", "{not json")
    assert bad.returncode == 2 and "not JSON" in bad.stderr
    unknown = cli(org, "train", "lib", "--engine", "no-such-engine")
    assert unknown.returncode == 6 and "Traceback" not in unknown.stderr and unknown.stderr.strip()  # not found

    listed = cli_json(org, "jobs", "list", "--status", "queued")
    assert [j["id"] for j in listed] == [started["id"]]
    table = cli(org, "jobs", "list")
    assert started["id"] in table.stdout and "queued" in table.stdout and SLEEPER in table.stdout
    assert cli(org, "jobs", "cancel", started["id"]).returncode == 0
    retry = cli(org, "jobs", "retry", started["id"])
    assert retry.returncode == 1 and "not_allowed: only failed jobs" in retry.stderr  # the job's state, not the usage
    missing = cli(org, "jobs", "cancel", "00000000-0000-0000-0000-000000000009")
    assert missing.returncode == 6 and "not_found" in missing.stderr


def test_recognize_needs_a_trained_model_and_one_way_to_name_it(org, tmp_path):
    with Client(org.gateway.url, org.token) as client:
        client.create_library("empty", "people")
    photo = tmp_path / "q.png"
    photo.write_bytes(png(5))
    untrained = cli(org, "recognize", str(photo), "--library", "empty")
    assert untrained.returncode == 6 and "no trained model" in untrained.stderr
    both = cli(org, "recognize", str(photo), "--library", "empty", "--model-id", "x")
    assert both.returncode == 2
    nothing = cli(org, "recognize", str(tmp_path / "missing.png"), "--library", "empty")
    assert nothing.returncode == 2 and "not a file" in nothing.stderr


def test_models_list_and_show(org, tmp_path):
    package = tmp_path / "pets"
    package.mkdir()
    (package / "model.onnx").write_bytes(m.conv_net(classes=2))
    (package / "manifest.json").write_text(json.dumps(m.normalised_manifest(kind="logits")))
    (package / "label_list.yaml").write_text("- cat\n- dog\n")
    with Client(org.gateway.url, org.token) as client:
        client.register_model(package, "pets", "auto_tagging", wait=False)  # listing needs no trial
    listed = cli_json(org, "models", "list", "--name", "pets")
    assert [r["ref"] for r in listed] == ["pets@1"]
    table = cli(org, "models", "list", "--application", "auto_tagging")
    assert table.returncode == 0 and "pets@1" in table.stdout and "auto_tagging" in table.stdout
    shown = cli_json(org, "models", "show", "pets@1")
    assert shown["classLabels"] == ["cat", "dog"]
    assert cli_json(org, "models", "show", "pets@default")["ref"] == "pets@1"
    assert "classLabels" in cli(org, "models", "show", "pets").stdout
    missing = cli(org, "models", "show", "pets@7")
    assert missing.returncode == 6 and "not_found" in missing.stderr


def test_the_servers_own_commands_still_work_beside_the_clients(org):
    engines = cli(org, "engines")
    assert engines.returncode == 0 and "engineshed-gallery" in engines.stdout
    pull = cli(org, "models", "pull", "no-such-model")
    assert pull.returncode != 0 and "no-such-model" in (pull.stderr + pull.stdout)
