"""Engines are found through entry points, as a third-party package would register one."""

from __future__ import annotations

import logging
from importlib.metadata import EntryPoint, entry_points

import pytest

import engines.registry as registry
from engines.interface import EngineError, EngineInfo
from engines.registry import DuplicateEngineError, discover_engines

# The engines this package registers in pyproject.toml, by id, with their categories.
BUILT_IN = {
    "engineshed-gallery": "face-recognition",
    "engineshed-classifier": "object-classification",
    "engineshed-speaker": "speaker-recognition",
    "engineshed-face": "face-recognition",
}


class EchoEngine:
    """A minimal engine, added through a "module:attr" spec."""

    info = EngineInfo("test-echo", "Echo", "test", ("image",), ("objects",))

    async def train(self, ctx):  # pragma: no cover - never trained here
        raise EngineError("echo does not train")

    async def recognize(self, artifact, images, *, top_k, threshold, execution_provider):  # pragma: no cover
        return []


def test_the_four_built_in_engines_are_discovered_through_entry_points():
    engines = discover_engines()
    assert {engine_id: engines[engine_id].info.category_id for engine_id in BUILT_IN if engine_id in engines} == BUILT_IN
    ours = {ep.load() for ep in entry_points(group=registry.ENTRY_POINT_GROUP) if ep.dist and ep.dist.name == "engineshed"}
    assert {type(engines[engine_id]) for engine_id in BUILT_IN} == ours


def test_an_extra_module_attr_spec_adds_an_engine():
    engines = discover_engines(extra=["tests.engines.test_registry:EchoEngine"])
    assert isinstance(engines["test-echo"], EchoEngine)


def test_two_engines_with_one_id_are_an_error():
    with pytest.raises(DuplicateEngineError, match="engineshed-gallery"):
        discover_engines(extra=["engines.gallery:GalleryEngine"])


def test_a_malformed_extra_spec_is_refused():
    with pytest.raises(EngineError, match="module:attr"):
        discover_engines(extra=["engines.gallery"])


def test_a_broken_plugin_is_logged_and_skipped(monkeypatch, caplog):
    real = registry.entry_points

    def with_broken(*, group):
        broken = EntryPoint("broken", "no_such_engine_package:Engine", group)
        return [*real(group=group), broken]

    monkeypatch.setattr(registry, "entry_points", with_broken)
    with caplog.at_level(logging.ERROR, logger="engines.registry"):
        engines = discover_engines()
    assert "engineshed-gallery" in engines
    assert "broken" in caplog.text
