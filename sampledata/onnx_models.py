"""Small real models built in code for the registry tests, and the packages (good and hostile) around them."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import numpy as np
from onnx import TensorProto, helper, numpy_helper

SIZE = 32
MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]


def conv_net(*, dimension: int = 16, classes: int | None = None, probabilities: bool = False, seed: int = 0,
             domain_op: tuple[str, str] | None = None, nan: bool = False) -> bytes:
    """A conv net: NCHW float 3x32x32 in -> Conv 3x3 -> Relu -> GlobalAveragePool -> Flatten -> Gemm.

    An embedding model ends at the Gemm (``dimension`` values); a classifier adds a Gemm to ``classes``
    logits (and a Softmax when ``probabilities``). ``domain_op`` adds a node from another domain; ``nan``
    ends in sqrt(-|x|), a graph every check passes and whose outputs are NaN.
    """
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.2, (8, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(np.zeros(8, np.float32), "conv_b"),
        numpy_helper.from_array(rng.normal(0, 0.3, (8, dimension)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(np.zeros(dimension, np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["pixels", "conv_w", "conv_b"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["pre" if nan else "embedding" if classes is None else "features"]),
    ]
    if nan:
        nodes += [helper.make_node("Abs", ["pre"], ["abs"]), helper.make_node("Neg", ["abs"], ["neg"]),
                  helper.make_node("Sqrt", ["neg"], ["embedding"])]
    out_name, out_dim = "embedding", dimension
    if classes is not None:
        inits += [
            numpy_helper.from_array(rng.normal(0, 0.3, (dimension, classes)).astype(np.float32), "head_w"),
            numpy_helper.from_array(np.zeros(classes, np.float32), "head_b"),
        ]
        nodes.append(helper.make_node("Gemm", ["features", "head_w", "head_b"], ["logits"]))
        out_name, out_dim = "logits", classes
        if probabilities:
            nodes.append(helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1))
            out_name = "probabilities"
    opsets = [helper.make_opsetid("", 17)]
    if domain_op is not None:
        nodes.append(helper.make_node(domain_op[1], [out_name], ["custom_out"], domain=domain_op[0]))
        opsets.append(helper.make_opsetid(domain_op[0], 1))
        out_name = "custom_out"
    graph = helper.make_graph(
        nodes, "registry-test-net",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info(out_name, TensorProto.FLOAT, ["batch", out_dim])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=opsets, ir_version=8, producer_name="engineshed-tests")
    return model.SerializeToString()


def normalised_manifest(**output: object) -> dict:
    """What the graph does not state: the value mapping (ImageNet mean/std). Size and layout come from it."""
    manifest: dict = {"input": {"color_order": "RGB", "mean": MEAN, "std": STD}}
    if output:
        manifest["output"] = dict(output)
    return manifest


def external_data_net(location: str) -> bytes:
    """The embedding net with its first weight kept in an external file at ``location``."""
    from onnx import ModelProto

    model = ModelProto()
    model.ParseFromString(conv_net())
    tensor = model.graph.initializer[0]
    tensor.ClearField("raw_data")
    tensor.ClearField("float_data")
    tensor.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(8 * 3 * 3 * 3 * 4))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value
    return model.SerializeToString()


def with_versions(data: bytes, *, ir: int | None = None, opset: int | None = None) -> bytes:
    """The same model claiming another IR version or ai.onnx opset."""
    from onnx import ModelProto

    model = ModelProto()
    model.ParseFromString(data)
    if ir is not None:
        model.ir_version = ir
    if opset is not None:
        model.opset_import[0].version = opset
    return model.SerializeToString()


def broken_graph() -> bytes:
    """A graph whose node reads a tensor nothing defines: it parses, and onnx.checker refuses it."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["nowhere"], ["embedding"])], "broken",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["batch", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["batch", 16])],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()


def external_data_weights() -> bytes:
    """The bytes external_data_net keeps outside: conv_net()'s first weight."""
    from onnx import ModelProto

    model = ModelProto()
    model.ParseFromString(conv_net())
    return model.graph.initializer[0].raw_data


def zip_of(files: dict[str, bytes], *, symlinks: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, body in files.items():
            zf.writestr(name, body)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)
            zf.writestr(info, target)
    return buffer.getvalue()


def tar_gz_of(files: dict[str, bytes], *, extra: list[tarfile.TarInfo] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tf.addfile(info, io.BytesIO(body))
        for info in extra or []:
            tf.addfile(info)
    return buffer.getvalue()


def symlink(name: str, target: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = tarfile.SYMTYPE, target
    return info


def device(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
    return info


def classifier_package(labels: list[str], classes: int | None = None, fmt: str = "zip") -> bytes:
    """A classifier archive as users make it: model.onnx, manifest.json and label_list.yaml."""
    files = {
        "cats-and-dogs/model.onnx": conv_net(classes=classes or len(labels)),
        "cats-and-dogs/manifest.json": json.dumps(normalised_manifest(kind="logits")).encode(),
        "cats-and-dogs/label_list.yaml": "".join(f"- {label}\n" for label in labels).encode(),
    }
    return zip_of(files) if fmt == "zip" else tar_gz_of(files)


def seed_layout_package() -> bytes:
    """The seed's layout: code/inference.py, code/requirements.txt, label_list.yaml and a .pt checkpoint."""
    return zip_of({
        "yolo/code/inference.py": b"def model_fn(model_dir):\n    import torch\n    return torch.load('x.pt')\n",
        "yolo/code/requirements.txt": b"torch\nultralytics\n",
        "yolo/label_list.yaml": b"- person\n- car\n",
        "yolo/yolov8l.pt": b"PK\x03\x04 a torch checkpoint would be here",
    })


def pickle_bytes() -> bytes:
    """A protocol-4 pickle, as torch.save writes inside its checkpoints (built by hand: never loaded)."""
    return b"\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x94\x8c\x04eval\x94\x93\x94."


def tfjs_package(*, dimension: int = 8) -> bytes:
    """A TF.js graph model as tensorflowjs_converter writes one (model.json + one weight shard), zipped:
    NHWC float 32x32x3 in -> Conv2D 3x3 SAME -> Relu -> Mean over height and width."""
    import base64

    rng = np.random.default_rng(7)
    filters = rng.normal(0, 0.2, (3, 3, 3, dimension)).astype("<f4")
    b64 = lambda text: base64.b64encode(text.encode()).decode()  # noqa: E731 - TF.js writes strings as base64
    nodes = [
        {"name": "input", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}, "shape": {"shape": {"dim": [
            {"size": "-1"}, {"size": str(SIZE)}, {"size": str(SIZE)}, {"size": "3"}]}}}},
        {"name": "conv/filter", "op": "Const", "attr": {"dtype": {"type": "DT_FLOAT"}}},
        {"name": "conv", "op": "Conv2D", "input": ["input", "conv/filter"], "attr": {
            "strides": {"list": {"i": ["1", "1", "1", "1"]}}, "padding": {"s": b64("SAME")},
            "data_format": {"s": b64("NHWC")}, "T": {"type": "DT_FLOAT"}}},
        {"name": "relu", "op": "Relu", "input": ["conv"], "attr": {"T": {"type": "DT_FLOAT"}}},
        {"name": "pool/axes", "op": "Const", "attr": {"dtype": {"type": "DT_INT32"}, "value": {"tensor": {
            "dtype": "DT_INT32", "tensorShape": {"dim": [{"size": "2"}]}, "intVal": [1, 2]}}}},
        {"name": "embedding", "op": "Mean", "input": ["relu", "pool/axes"], "attr": {"keep_dims": {"b": False}}},
    ]
    model_json = {
        "format": "graph-model", "generatedBy": "engineshed-tests", "convertedBy": "hand",
        "modelTopology": {"node": nodes, "library": {}, "versions": {"producer": 1}},
        "weightsManifest": [{"paths": ["group1-shard1of1.bin"],
                             "weights": [{"name": "conv/filter", "shape": [3, 3, 3, dimension], "dtype": "float32"}]}],
    }
    manifest = {"input": {"color_order": "RGB", "range": [-1, 1]}, "output": {"name": "embedding"}}
    return zip_of({"web_model/model.json": json.dumps(model_json).encode(),
                   "web_model/group1-shard1of1.bin": filters.tobytes(),
                   "web_model/manifest.json": json.dumps(manifest).encode()})


def tiny_detector(boxes: int = 2) -> bytes:
    """A single-class detector's shape of outputs: boxes [K, 4] and scores [K] for one NCHW image."""
    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array(rng.normal(0, 1, (3, boxes * 4)).astype(np.float32), "box_w"),
        numpy_helper.from_array(rng.normal(0, 1, (3, boxes)).astype(np.float32), "score_w"),
        numpy_helper.from_array(np.array([boxes, 4], np.int64), "box_shape"),
        numpy_helper.from_array(np.array([boxes], np.int64), "score_shape"),
    ]
    nodes = [
        helper.make_node("GlobalAveragePool", ["image"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"]),
        helper.make_node("MatMul", ["flat", "box_w"], ["box_flat"]),
        helper.make_node("Reshape", ["box_flat", "box_shape"], ["boxes"]),
        helper.make_node("MatMul", ["flat", "score_w"], ["score_flat"]),
        helper.make_node("Reshape", ["score_flat", "score_shape"], ["score_logits"]),
        helper.make_node("Sigmoid", ["score_logits"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes, "tiny-detector", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("boxes", TensorProto.FLOAT, [boxes, 4]),
         helper.make_tensor_value_info("scores", TensorProto.FLOAT, [boxes])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8).SerializeToString()
