"""Another ONNX backbone can replace the built-in one, as long as it keeps the contract."""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from engines.backbone import build_backbone, load_backbone
from engines.gallery import GalleryEngine
from tests.engines.accuracy import top1
from tests.engines.memory_context import MemoryContext


def _renamed_output(model: onnx.ModelProto, name: str) -> onnx.ModelProto:
    old = model.graph.output[0].name
    for node in model.graph.node:
        node.output[:] = [name if o == old else o for o in node.output]
    model.graph.output[0].name = name
    return model


async def test_a_gallery_trains_and_recognises_with_a_backbone_loaded_from_a_file(tmp_path, decode_pool, digit_library):
    path = tmp_path / "small-backbone.onnx"
    onnx.save(_renamed_output(build_backbone(size=16, dim=128, seed=3), "features_out"), str(path))
    spec = load_backbone(path, input_size=16, channels=1)
    assert spec.dim == 128 and spec.name == "small-backbone"
    engine = GalleryEngine(backbone=spec)
    ctx = MemoryContext(digit_library.train[:400], config=engine.info.validate_config({}), decode_pool=decode_pool)
    artifact = await engine.train(ctx)
    assert artifact.jsondata["backbone"] == {"name": "small-backbone", "digest": spec.digest}
    answers = await engine.recognize(
        artifact.data, digit_library.test_images, top_k=1, threshold=0.0, execution_provider="cpu"
    )
    assert top1(answers, digit_library.test_entity_ids) >= 0.9


def test_a_backbone_taking_float_input_is_refused(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 16, 16, 1])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 256])
    graph = helper.make_graph([helper.make_node("Flatten", ["x"], ["y"], axis=1)], "g", [x], [y])
    path = tmp_path / "float.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=10), str(path))
    with pytest.raises(ValueError, match="uint8 NHWC"):
        load_backbone(path, input_size=16, channels=1)
