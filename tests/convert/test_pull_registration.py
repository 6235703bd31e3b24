"""Pulled models registered as system models through the registry's service (real PostgreSQL and S3)."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from gateway.resources import open_resources
from gateway.services.models import pull as model_pull
from gateway.services.models import registry as models
from gateway.services.models.pull import catalogue as pull_catalogue
from gateway.services.models.pull import conversion as pull_conversion
from gateway.settings import Settings


def with_resources(stack: Any, work) -> Any:
    settings = Settings.from_env(dict(stack.env, ENGINESHED_ONNX_PROVIDER="cpu"))

    async def run() -> Any:
        async with open_resources(settings, role="test", run_migrations=False, load_engines=False) as res:
            return await work(res)

    return asyncio.run(run())


@pytest.fixture(autouse=True, scope="module")
def no_system_defaults_left(stack: Any) -> Any:
    """The stack is shared by the session: later tests that train without ``modelId`` expect the built-in
    pixel projection, not these models, so their ``default`` aliases go when this module ends."""
    yield
    stack.db.fetch(
        "DELETE FROM model_aliases WHERE alias = 'default' AND model_id IN "
        "(SELECT id FROM models WHERE org_id IS NULL AND name = ANY($1::text[]))",
        list(pull_catalogue.CATALOGUE),
    )


def test_each_pulled_model_registers_once_and_becomes_the_default(stack, model_cache: Path, package_files) -> None:
    pulled = {e.name: asyncio.run(pull_conversion.prepare(e, model_cache)) for e in pull_catalogue.CATALOGUE.values()}

    async def work(res: Any) -> dict[str, Any]:
        out = {}
        for name, model in pulled.items():
            t0 = time.perf_counter()
            version = await model_pull.register(res, model)
            print(f"\nregister {name}: {time.perf_counter() - t0:.2f}s (validation + trial inference + store)")
            again = await model_pull.register(res, model)
            assert again.id == version.id  # idempotent: the same bytes under the same name
            out[name] = version
        out["missing"] = await model_pull.missing_system_models(res)
        out["face"] = await models.default_model(res, None, "embedding", "face")
        out["image"] = await models.default_model(res, None, "embedding", "image")
        out["speaker"] = await models.default_model(res, None, "embedding", "audio-recording")
        return out

    got = with_resources(stack, work)
    for name, entry in pull_catalogue.CATALOGUE.items():
        v = got[name]
        assert (v.name, v.application, v.status, v.organization_id) == (name, entry.application, "ready", None)
        assert v.sha256 == pulled[name].sha256
        assert v.source["package"] == entry.package and v.source["sha256"] == entry.files[0].sha256
        assert "default" in v.aliases
    assert got["face-embedding"].dimension == 1024 and got["image-embedding"].dimension == 1280
    assert got["missing"] == []
    assert got["face"].name == "face-embedding" and got["image"].name == "image-embedding"
    assert got["speaker"].name == "speaker-embedding" and got["speaker-embedding"].dimension == 256


def test_a_pull_gives_back_a_lost_default_and_leaves_a_moved_alias_alone(stack, model_cache: Path, package_files) -> None:
    pulled = asyncio.run(pull_conversion.prepare(pull_catalogue.CATALOGUE["image-embedding"], model_cache))
    first = with_resources(stack, lambda res: model_pull.register(res, pulled))
    stack.db.fetch("DELETE FROM model_aliases WHERE version_id = $1 AND alias = 'default'", first.id)
    again = with_resources(stack, lambda res: model_pull.register(res, pulled))
    assert again.id == first.id and "default" in again.aliases  # a system model always has a default

    # An alias that points at another version of the model is not taken back by a pull.
    other = uuid.uuid4()
    stack.db.execute(
        "INSERT INTO model_versions (id, model_id, org_id, version, status, sha256, size_bytes, manifest) "
        "SELECT $1, model_id, NULL, 99, 'ready', sha256, size_bytes, manifest FROM model_versions WHERE id = $2",
        other, first.id,
    )
    stack.db.execute("UPDATE model_aliases SET version_id = $1 WHERE version_id = $2 AND alias = 'default'", other, first.id)
    try:
        third = with_resources(stack, lambda res: model_pull.register(res, pulled))
        assert third.id == first.id and "default" not in third.aliases
    finally:
        stack.db.execute("UPDATE model_aliases SET version_id = $1 WHERE version_id = $2", first.id, other)
        stack.db.execute("DELETE FROM model_versions WHERE id = $1", other)


ROOT = Path(__file__).resolve().parents[2]


def _env(base: dict[str, str], **extra: str) -> dict[str, str]:
    env = {k: v for k, v in base.items() if not k.startswith("ENGINESHED_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1", ENGINESHED_ONNX_PROVIDER="cpu", **extra)
    return env


def test_cli_pull_registers_from_the_data_dir_cache(stack, model_cache: Path, package_files, tmp_path: Path) -> None:
    import subprocess
    import sys

    (tmp_path / "models").symlink_to(model_cache)  # the archives and conversions the session already made
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "models", "pull", "face-detector"],
                          env=_env(stack.env, ENGINESHED_DATA_DIR=str(tmp_path)), capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("face-detector\tok\tregistered"), done.stdout


def test_dev_starts_offline_and_says_which_models_it_lacks(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    from gateway.devstack import find_free_port

    dead = f"http://127.0.0.1:{find_free_port()}/"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "S3_ENDPOINT_URL")}
    env = _env(env, ENGINESHED_NPM_REGISTRY=dead, ENGINESHED_PYPI_INDEX=dead, PORT=str(find_free_port()))
    log_path = tmp_path / "dev.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "dev", "--data-dir", str(tmp_path / "data")],
                                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        text = ""
        while time.monotonic() < deadline and proc.poll() is None:
            text = log_path.read_text(errors="replace")
            if "engineshed is starting at" in text and "running without" in text:
                break
            time.sleep(0.5)
        assert "engineshed is starting at" in text, text[-3000:]
        assert "running without face-embedding, face-detector, image-embedding, speaker-embedding" in text, text[-3000:]
        assert "built-in pixel projection" in text
        assert proc.poll() is None  # still serving
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
