"""`engineshed engine init | run | check` as a developer runs them: real processes against the test stack."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
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
from tests.support.waits import wait_for
from tests.worker.conftest import task_of

CLAIM = "mutation($e: ID!) { claimTasks(engineId: $e, limit: 1) { task { id } } }"


def engineshed(org, *args: str, cwd: Path = ROOT, timeout: float = 180, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engineshed.cli.main", *args], cwd=cwd, env={**org.stack.env, **env},
                          capture_output=True, text=True, timeout=timeout)


def start(org, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "engineshed.cli.main", *args], cwd=ROOT, env=org.stack.env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_ctrl_c_hands_the_claimed_task_back_to_the_queue(org, digit_library):
    engine_id = create_engine(org)
    library = build_digit_library(org, digit_library, digits_wanted=2, per_entity=2)
    job_id, task_id, model_id = train_job(org, library.id, engine_id)
    engine = start(org, "engine", "run", "tests.engine_kit.engines:Slow", "--engine-id", engine_id,
                   "--url", org.gateway.url, "--token", org.token_for("engine", engine_id))
    try:
        wait_for(lambda: task_of(org, job_id)["progressMessage"] == "thinking", timeout=30, what="the engine training")
        engine.send_signal(signal.SIGINT)
        _, stderr = engine.communicate(timeout=15)
    finally:
        engine.kill()

    assert engine.returncode == 130, stderr
    assert "released" in stderr
    assert task_of(org, job_id)["status"] == "queued"
    assert model(org, model_id)["trainStatus"] == "queued"
    # Another engine process takes it over at once: no lease to run out, no retry backoff, no attempt spent.
    other = org.client_for("engine", engine_id)
    claimed = other.query(CLAIM, e=engine_id).ok()["claimTasks"]
    assert claimed and claimed[0]["task"]["id"] == task_id


def test_against_the_local_stack_run_creates_the_engine_and_its_token_itself(org, digit_library, tmp_path):
    data_dir = tmp_path / ".engineshed"
    data_dir.mkdir()
    (data_dir / "admin-token").write_text(org.token)  # what `make run` leaves for the local tools
    engine_id = f"dev-engine-{time.monotonic_ns() % 10**8}"
    engine = start(org, "engine", "run", "tests.engine_kit.engines:Centroids", "--engine-id", engine_id, "--once",
                   "--url", org.gateway.url, "--data-dir", str(data_dir), "--json")
    try:
        wait_for(lambda: org.client.query("query($id: ID!) { engines(id: $id) { records { id } } }", id=engine_id)
                 .ok()["engines"]["records"], timeout=30, what="the engine to be created")
        library = build_digit_library(org, digit_library, digits_wanted=2, per_entity=3)
        job_id, task_id, model_id = train_job(org, library.id, engine_id)
        stdout, stderr = engine.communicate(timeout=60)
    finally:
        engine.kill()

    assert engine.returncode == 0, stderr
    assert f"created the external engine {engine_id}" in stderr
    assert json.loads(stdout) == [{"taskId": task_id, "libraryEngineModelId": model_id, "status": "complete", "error": None}]
    assert job(org, job_id)["status"] == "complete"
    # The engine token it made for the run is revoked when the run ends.
    tokens = org.client.query("query { tokens { label engineId revoked } }").ok()["tokens"]
    assert [t["revoked"] for t in tokens if t["engineId"] == engine_id] == [True]


def test_outside_the_local_stack_run_needs_an_engine_token(org, tmp_path):
    away = engineshed(org, "engine", "run", "tests.engine_kit.engines:Centroids", "--engine-id", "x",
                      "--url", "http://gateway.example.com")
    assert away.returncode == 2
    assert "no engine token: pass --token or set ENGINESHED_ENGINE_TOKEN" in away.stderr
    assert "engineshed token create --org ORG --scope engine --engine x" in away.stderr
    # On this machine, but no `make run` data dir with its admin token: the same.
    local = engineshed(org, "engine", "run", "tests.engine_kit.engines:Centroids", "--engine-id", "x",
                       "--url", org.gateway.url, "--data-dir", str(tmp_path))
    assert local.returncode == 2 and "no engine token" in local.stderr


def test_a_token_that_cannot_claim_the_engine_id_is_named_for_what_it_is(org):
    engine_id = create_engine(org)
    token = org.token_for("engine", engine_id)
    other = engineshed(org, "engine", "run", "tests.engine_kit.engines:Centroids", "--engine-id", "no-such-engine",
                       "--url", org.gateway.url, "--token", token)
    assert other.returncode == 3
    assert "the token cannot claim no-such-engine's tasks" in other.stderr
    refused = engineshed(org, "engine", "run", "tests.engine_kit.engines:Centroids", "--engine-id", engine_id,
                         "--url", org.gateway.url, "--token", "not-a-token")
    assert refused.returncode == 3 and "the server refused the token" in refused.stderr


@pytest.mark.parametrize(("spec", "message"), [
    ("tests.engine_kit.engines", "'tests.engine_kit.engines' is not MODULE:ATTR"),
    ("tests.engine_kit.nosuch:Engine", "no module named 'tests.engine_kit.nosuch'"),
    ("tests.engine_kit.engines:Nope", "module 'tests.engine_kit.engines' has no attribute 'Nope'"),
    ("tests.engine_kit.engines:not_an_engine", "is a int: expected a train function, or a class or object with a train"),
])
def test_a_bad_module_attr_is_a_usage_error_that_says_why(org, spec, message):
    for command in ("run", "check"):
        result = engineshed(org, "engine", command, spec, "--engine-id", "x", "--url", org.gateway.url, "--token", org.token)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr


def test_the_contract_check_passes_a_good_engine(org):
    result = engineshed(org, "engine", "check", "tests.engine_kit.engines:Centroids", "--url", org.gateway.url,
                        "--token", org.token, "--json")
    report = json.loads(result.stdout)
    assert result.returncode == 0, report
    assert report["ok"] is True
    names = {item["name"]: item["detail"] for item in report["items"]}
    assert names["the model was running while it trained"] == "status when train began: running"
    assert names["the model file is stored with its content type"].endswith("contentType application/json, jsondata.contentType application/json")
    assert names["the model maps back to the library's entity or identifier IDs"].startswith("3 of 3 entities")
    assert names["recognize answers with the library's entity IDs"].startswith("3 of 3 held-out files")


def test_the_contract_check_fails_an_engine_that_returns_no_model_and_says_why(org):
    result = engineshed(org, "engine", "check", "tests.engine_kit.engines:Empty", "--url", org.gateway.url, "--token", org.token)
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "the model ended complete" in result.stdout
    assert "train returned nothing: return an Artifact" in result.stdout
    assert "the engine fails" in result.stderr


def test_engine_init_writes_a_project_whose_own_test_trains_it(org, tmp_path):
    made = engineshed(org, "engine", "init", "colour-engine", "--dir", str(tmp_path / "colour-engine"))
    assert made.returncode == 0, made.stderr
    project = tmp_path / "colour-engine"
    assert sorted(p.name for p in project.rglob("*") if p.is_file()) == [
        "README.md", "colour_engine.py", "pyproject.toml", "test_colour_engine.py"]

    tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=project, capture_output=True,
                            text=True, timeout=300,
                            env={**org.stack.env, "ENGINESHED_URL": org.gateway.url, "ENGINESHED_TOKEN": org.token})
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "1 passed" in tested.stdout

    again = engineshed(org, "engine", "init", "colour-engine", "--dir", str(project))
    assert again.returncode == 2 and "already exists and is not empty" in again.stderr
