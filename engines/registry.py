"""Engine discovery: the ``engineshed.engines`` entry points, plus ``module:attr`` specs."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from importlib.metadata import entry_points
from typing import Any

from engines.interface import Engine, EngineError

__all__ = ["ENTRY_POINT_GROUP", "DuplicateEngineError", "discover_engines", "load_spec"]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "engineshed.engines"


class DuplicateEngineError(EngineError):
    """Two engines claim the same id."""


def discover_engines(extra: Sequence[str] = ()) -> dict[str, Engine]:
    """Engines by id: every entry point of ENTRY_POINT_GROUP, then each ``"module:attr"`` in ``extra``.

    An entry point that fails to load or instantiate is logged and skipped, so one broken plugin
    does not take the gateway down; an ``extra`` spec was asked for explicitly, so it raises.
    Two engines with the same id raise DuplicateEngineError.
    """
    engines: dict[str, Engine] = {}
    sources: dict[str, str] = {}

    def add(engine: Engine, source: str) -> None:
        engine_id = engine.info.id
        if engine_id in engines:
            raise DuplicateEngineError(f"engine id {engine_id!r} is provided by both {sources[engine_id]} and {source}")
        engines[engine_id] = engine
        sources[engine_id] = source

    for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        source = f"entry point {ep.name!r} ({ep.value})"
        try:
            engine = _instantiate(ep.load(), source)
        except Exception:
            log.exception("skipping engine plugin %s: it failed to load", source)
            continue
        add(engine, source)
    for spec in extra:
        add(load_spec(spec), f"{spec!r}")
    return engines


def load_spec(spec: str) -> Engine:
    """The engine named by ``"module:attr"`` (a class is instantiated with no arguments)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise EngineError(f"engine spec {spec!r} is not of the form 'module:attr'")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return _instantiate(target, spec)


def _instantiate(target: Any, source: str) -> Engine:
    engine = target() if isinstance(target, type) else target
    info = getattr(engine, "info", None)
    if info is None or not isinstance(getattr(info, "id", None), str):
        raise EngineError(f"{source} is not an engine: it has no info.id")
    for method in ("train", "recognize"):
        if not callable(getattr(engine, method, None)):
            raise EngineError(f"{source} is not an engine: it has no {method}()")
    return engine
