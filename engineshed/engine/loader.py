"""Finding an engine from ``MODULE:ATTR``: a class or an object with a ``train`` method (and optionally
``recognize``), or a bare ``train`` function. What it declares (``id``, ``identifier_types``) is read with defaults."""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_IDENTIFIER_TYPES = ("face",)


class EngineLoadError(Exception):
    """``MODULE:ATTR`` does not name a usable engine; the message says why and what was expected."""


class Engine:
    """A convenient base: set ``identifier_types`` (the identifier types the engine trains on) and define
    ``train(library, model)`` (plain or ``async``) returning an :class:`~engineshed.engine.Artifact`; optionally
    ``recognize(model, media) -> [{"entityId": ..., "score": ...}]``. ``id`` is the engine's default ID."""

    id: str | None = None
    name: str | None = None
    identifier_types: tuple[str, ...] = DEFAULT_IDENTIFIER_TYPES

    def train(self, library: Any, model: Any) -> Any:
        raise NotImplementedError("define train(library, model) in your engine")


@dataclass(frozen=True, slots=True)
class LoadedEngine:
    spec: str
    train: Callable[..., Any]
    recognize: Callable[..., Any] | None
    identifier_types: tuple[str, ...]
    id: str | None
    name: str

    @property
    def modes(self) -> list[str]:
        return ["library-train", "library-run"] if self.recognize is not None else ["library-train"]


def _import(module_name: str) -> Any:
    # An engine project is usually run from its own folder, which is not on sys.path for a console script.
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise EngineLoadError(f"no module named {module_name!r} (run from the folder that holds it, or install it)") from None
        raise EngineLoadError(f"importing {module_name!r} failed: {exc}") from exc
    except Exception as exc:
        raise EngineLoadError(f"importing {module_name!r} failed: {exc.__class__.__name__}: {exc}") from exc


def _types(value: Any, spec: str) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_IDENTIFIER_TYPES
    if isinstance(value, str):
        return (value,)
    types = tuple(value)
    if not types or not all(isinstance(t, str) and t for t in types):
        raise EngineLoadError(f"{spec}: identifier_types must name at least one identifier type, like ('face',)")
    return types


def load_engine(spec: str) -> LoadedEngine:
    """The engine ``MODULE:ATTR`` names; raises :class:`EngineLoadError` with the reason."""
    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise EngineLoadError(f"{spec!r} is not MODULE:ATTR (for example my_engine:Engine)")
    module = _import(module_name)
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise EngineLoadError(f"module {module_name!r} has no attribute {attr!r}")
        target = getattr(target, part)
    if inspect.isclass(target):
        try:
            target = target()
        except Exception as exc:
            raise EngineLoadError(f"{spec}: creating the engine failed: {exc.__class__.__name__}: {exc}") from exc
    train = getattr(target, "train", None)
    if callable(train):
        recognize = getattr(target, "recognize", None)
        return LoadedEngine(spec=spec, train=train, recognize=recognize if callable(recognize) else None,
                            identifier_types=_types(getattr(target, "identifier_types", None), spec),
                            id=getattr(target, "id", None), name=str(getattr(target, "name", None) or attr))
    if callable(target):
        return LoadedEngine(spec=spec, train=target, recognize=None,
                            identifier_types=_types(getattr(target, "identifier_types", None), spec), id=None, name=attr)
    raise EngineLoadError(f"{spec} is a {type(target).__name__}: expected a train function, or a class or object with a "
                          "train(library, model) method")


def is_async(function: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(getattr(function, "__call__", None))
