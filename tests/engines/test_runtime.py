"""Execution providers: CUDA is never a silent fallback, and artifacts open in onnxruntime 1.31."""

from __future__ import annotations

import numpy as np
import onnx
import pytest

from engines.artifact import ArtifactMeta, Label, build_classifier_artifact, build_gallery_artifact
from engines.backbone import build_backbone, default_backbone
from engines.interface import EngineError
from engines.runtime import CPU, Runner, choose_providers, cuda_usable, get_runner

no_gpu = pytest.mark.skipif(cuda_usable(), reason="this machine has a usable CUDA provider")


@no_gpu
def test_asking_for_cuda_without_a_gpu_raises_instead_of_running_on_the_cpu():
    with pytest.raises(EngineError, match="'cuda' was requested but CUDA is not usable"):
        choose_providers("cuda")
    with pytest.raises(EngineError):
        Runner(default_backbone().model, "cuda")


@no_gpu
def test_auto_without_a_gpu_reports_the_cpu_provider():
    assert get_runner(default_backbone().model, "auto").provider == CPU


def test_an_unknown_provider_setting_is_refused():
    with pytest.raises(EngineError, match="unknown execution provider setting 'tpu'"):
        choose_providers("tpu")


def test_sessions_are_created_once_per_model_and_provider():
    model = default_backbone().model
    assert get_runner(model, "cpu") is get_runner(model, "cpu")


def test_the_backbone_is_deterministic_and_outputs_unit_embeddings():
    assert build_backbone().SerializeToString() == build_backbone().SerializeToString()
    images = np.random.default_rng(1).integers(0, 256, (5, 32, 32, 1), dtype=np.uint8)
    embedding = get_runner(default_backbone().model, "cpu").run(images)
    assert embedding.shape == (5, 512) and embedding.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, rtol=1e-5)
    # Standardised per image: brightness and contrast changes do not move the embedding.
    brighter = (images // 2 + 60).astype(np.uint8)
    np.testing.assert_allclose(get_runner(default_backbone().model, "cpu").run(brighter), embedding, atol=0.05)


def _meta(entities: int) -> ArtifactMeta:
    labels = tuple(Label(i, f"e{i}", f"E{i}", (f"i{i}",)) for i in range(entities))
    spec = default_backbone()
    return ArtifactMeta("test", "1", spec.name, spec.digest, "lib", 32, 1, 3, 0.5, "cosine", labels)


def test_artifact_graphs_use_an_ir_version_onnxruntime_1_31_reads():
    spec = default_backbone()
    rng = np.random.default_rng(0)
    gallery = build_gallery_artifact(spec, rng.standard_normal((4, 512)), np.array([0, 1, 2, 3]), _meta(4))
    classifier = build_classifier_artifact(spec, rng.standard_normal((512, 4)), np.zeros(4), _meta(4))
    for data in (gallery, classifier, spec.model):
        model = onnx.load_from_string(data)
        assert model.ir_version <= 13
        onnx.checker.check_model(model)
        get_runner(data, "cpu")


def test_the_io_binding_path_used_on_cuda_gives_the_plain_runs_answers():
    # Exercised on the CPU device here; on a GPU machine the same code binds "cuda" memory.
    runner = Runner(default_backbone().model, "cpu")
    images = np.random.default_rng(2).integers(0, 256, (3, 32, 32, 1), dtype=np.uint8)
    np.testing.assert_allclose(runner._run_bound(images, "cpu")[0], runner.run(images), rtol=1e-6)
