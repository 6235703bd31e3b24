"""The half-precision backbone (used for embedding on GPUs) agrees with the float32 one."""

import numpy as np
import onnx
from onnx.reference import ReferenceEvaluator

from engines.backbone import build_backbone, default_backbone


def test_the_float16_backbone_embeds_like_the_float32_one():
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, size=(16, 32, 32, 1), dtype=np.uint8)
    # The reference evaluator runs fp16 on any machine (the CPU provider need not have fp16 kernels).
    full = ReferenceEvaluator(build_backbone(float16=False)).run(None, {"images": images})[0]
    half = ReferenceEvaluator(build_backbone(float16=True)).run(None, {"images": images})[0]

    assert half.dtype == np.float32 and half.shape == full.shape == (16, 512)
    cosine = np.sum(full * half, axis=1) / (np.linalg.norm(full, axis=1) * np.linalg.norm(half, axis=1))
    assert cosine.min() > 0.999


def test_the_float16_backbone_is_a_different_backbone_for_the_embedding_cache():
    full, half = default_backbone(32, 1), default_backbone(32, 1, float16=True)
    assert full.digest != half.digest and half.name.endswith("-fp16")
    model = onnx.load_from_string(half.model)
    assert model.ir_version <= 13
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)
