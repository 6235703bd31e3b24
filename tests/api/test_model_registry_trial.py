"""The trial inference's child process: it measures, and it is bounded in time and memory."""

from __future__ import annotations

import asyncio

import pytest

from gateway.services.models.packages import Limits, PackageError, read_package
from gateway.services.models.trial import run_trial
from gateway.settings import MiB, Settings
from sampledata import onnx_models as m

LIMITS = Limits(max_bytes=64 * MiB, max_members=100, max_ratio=100)


def _checked(data: bytes, application: str = "embedding", manifest: dict | None = None):
    return read_package(data, filename="x.onnx", application=application, manifest=manifest, limits=LIMITS)


def test_a_good_model_is_measured_at_batch_32_on_the_cpu():
    package = _checked(m.conv_net(), manifest=m.normalised_manifest())
    result = asyncio.run(run_trial(Settings(onnx_provider="cpu"), package.onnx_bytes, package.manifest, "embedding"))
    assert result.ok and result.batch == 32 and result.provider == "CPUExecutionProvider" and result.throughput > 0
    assert result.details["trialOutputs"] == {"embedding": [32, 16]}


def test_outputs_that_disagree_with_the_manifest_fail_the_trial():
    package = _checked(m.classifier_package(["a", "b", "c"]), "auto_tagging")
    wrong = {**package.manifest, "output": {**package.manifest["output"], "dimension": 5}}
    result = asyncio.run(run_trial(Settings(onnx_provider="cpu"), package.onnx_bytes, wrong, "auto_tagging"))
    assert not result.ok and "[32, 5]" in result.error


def test_a_memory_bound_too_small_for_the_model_fails_the_trial_instead_of_the_worker():
    package = _checked(m.conv_net(), manifest=m.normalised_manifest())
    settings = Settings(onnx_provider="cpu", model_trial_memory_bytes=64 * MiB)
    result = asyncio.run(run_trial(settings, package.onnx_bytes, package.manifest, "embedding"))
    assert not result.ok and "memory" in result.error and "/" not in result.error


def test_a_trial_past_its_time_bound_is_stopped():
    package = _checked(m.conv_net(), manifest=m.normalised_manifest())
    settings = Settings(onnx_provider="cpu", model_trial_seconds=0.05)
    result = asyncio.run(run_trial(settings, package.onnx_bytes, package.manifest, "embedding"))
    assert not result.ok and "longer than 0.05 s" in result.error


def test_a_single_class_detector_is_checked_and_run_at_its_fixed_batch():
    manifest = {"input": {"range": [0, 1]}, "output": {"boxes": "boxes", "scores": "scores"}, "labels": ["face"]}
    package = _checked(m.tiny_detector(), "auto_annotation", manifest)
    assert package.labels == ["face"] and package.dimension is None
    result = asyncio.run(run_trial(Settings(onnx_provider="cpu"), package.onnx_bytes, package.manifest, "auto_annotation"))
    assert result.ok and result.batch == 1 and result.details["trialOutputs"] == {"boxes": [2, 4], "scores": [2]}


def test_a_detector_manifest_must_name_graph_outputs_and_a_class():
    for manifest, words in (
        ({"input": {"range": [0, 1]}, "output": {"boxes": "boxes"}, "labels": ["face"]}, "output.scores"),
        ({"input": {"range": [0, 1]}, "output": {"boxes": "boxes", "scores": "nope"}, "labels": ["face"]}, "output.scores"),
        ({"input": {"range": [0, 1]}, "output": {"boxes": "boxes", "scores": "scores"}}, "single-class"),
    ):
        with pytest.raises(PackageError) as info:
            _checked(m.tiny_detector(), "auto_annotation", manifest)
        assert words in info.value.message, info.value.message
