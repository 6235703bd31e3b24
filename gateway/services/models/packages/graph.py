"""The ONNX graph: parsing, external data folded in from the package, and the checks before any run."""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Iterator
from typing import Any

import onnx
from onnx import external_data_helper

from gateway.services.models.packages.archives import check_member_name
from gateway.services.models.packages.errors import PackageError

ALLOWED_DOMAINS = {"": "ai.onnx", "ai.onnx": "ai.onnx", "ai.onnx.ml": "ai.onnx.ml", "com.microsoft": "com.microsoft"}
MIN_IR_VERSION = 3
MIN_OPSET = 7
MAX_OPSET_OTHER = {"ai.onnx.ml": 5, "com.microsoft": 1}


def parse_onnx(data: bytes) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:  # protobuf's DecodeError, or a RuntimeWarning turned error
        raise PackageError("the file is not an ONNX model (it does not parse as an ONNX protobuf)", "bad_onnx") from None
    if not model.HasField("graph") or not model.graph.node:
        raise PackageError("the file is not an ONNX model (it has no graph)", "bad_onnx")
    return model


def _sparse_tensors(graph: onnx.GraphProto):
    """The values and indices of every sparse tensor, in this graph and its subgraphs: onnx's own walk
    (external_data_helper._get_all_tensors) leaves them out."""
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("sparse_tensor"):
                yield attr.sparse_tensor.values
                yield attr.sparse_tensor.indices
            for sparse in attr.sparse_tensors:
                yield sparse.values
                yield sparse.indices
            if attr.HasField("g"):
                yield from _sparse_tensors(attr.g)
            for sub in attr.graphs:
                yield from _sparse_tensors(sub)


def fold_external_data(model: onnx.ModelProto, members: dict[str, bytes]) -> None:
    """Tensors kept in external files are read from inside the package and folded into the one ONNX file;
    a path that points outside the package (or a bare .onnx with external data) is refused. Sparse tensors
    must hold their data: nothing real keeps those outside, and the checker would look the path up on the
    gateway's own disk."""
    for tensor in _sparse_tensors(model.graph):
        if external_data_helper.uses_external_data(tensor) or tensor.external_data:
            raise PackageError(
                f"sparse tensor {tensor.name!r} keeps its data in an external file; sparse tensors must hold their "
                "data in the model file", "external_data")
    for tensor in external_data_helper._get_all_tensors(model):
        if not external_data_helper.uses_external_data(tensor):
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        if not members:
            raise PackageError(
                f"tensor {tensor.name!r} keeps its data in an external file ({location!r}); a bare .onnx upload must "
                "hold all its data, or upload a .zip/.tar.gz with the data file inside", "external_data")
        try:
            inside = check_member_name(location)
        except PackageError:
            raise PackageError(
                f"tensor {tensor.name!r} keeps its data at {location!r}, outside the package; external data must be a "
                "file inside the package", "external_data") from None
        candidates = [inside] + [posixpath.join(posixpath.dirname(p), inside) for p in members if p.lower().endswith(".onnx")]
        body = next((members[c] for c in candidates if c in members), None)
        if body is None:
            raise PackageError(f"tensor {tensor.name!r} keeps its data in {location!r}, which the package does not hold",
                               "external_data")
        try:
            offset = int(info.get("offset", 0))
            length = int(info["length"]) if "length" in info else len(body) - offset
        except ValueError:
            raise PackageError(f"tensor {tensor.name!r} has a malformed external-data offset or length", "external_data") from None
        if offset < 0 or length < 0 or offset + length > len(body):
            raise PackageError(f"tensor {tensor.name!r} reads past the end of {location!r}", "external_data")
        tensor.raw_data = body[offset : offset + length]
        del tensor.external_data[:]
        tensor.ClearField("data_location")  # unset, not DEFAULT: the bytes then match a model saved whole


@functools.cache
def runtime_reads() -> tuple[int, int]:
    """The newest IR version and ai.onnx opset the installed ONNX Runtime opens, found once by opening a
    one-node graph of our own (no user model runs here): a table by version would go stale with upgrades."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    def opens(ir: int, opset: int) -> bool:
        x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "probe", [x], [y])
        probe = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=ir)
        try:
            ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
            return True
        except Exception:
            return False

    ir = max((i for i in range(MIN_IR_VERSION, 20) if opens(i, 13)), default=10)
    opset = max((o for o in range(MIN_OPSET, 40) if opens(min(ir, 10), o)), default=21)
    return ir, opset


def check_graph(model: onnx.ModelProto) -> dict[str, Any]:
    """IR version, opsets, operator domains, onnx.checker (full) and shape inference."""
    max_ir, max_opset = runtime_reads()
    if not MIN_IR_VERSION <= model.ir_version <= max_ir:
        raise PackageError(
            f"the model's IR version is {model.ir_version}; the runtime reads IR versions {MIN_IR_VERSION} to "
            f"{max_ir}", "ir_version")
    opsets: dict[str, int] = {}
    for entry in model.opset_import:
        domain = ALLOWED_DOMAINS.get(entry.domain)
        if domain is None:
            local = {f.domain for f in model.functions}
            if entry.domain in local:
                continue
            raise PackageError(
                f"the model imports the operator domain {entry.domain!r}, which the runtime does not ship; only "
                "ai.onnx, ai.onnx.ml and com.microsoft operators are accepted (custom-op libraries are never loaded)",
                "custom_domain")
        opsets[domain] = entry.version
    if "ai.onnx" in opsets and not MIN_OPSET <= opsets["ai.onnx"] <= max_opset:
        raise PackageError(
            f"the model's ai.onnx opset is {opsets['ai.onnx']}; the runtime reads opsets {MIN_OPSET} to "
            f"{max_opset}", "opset")
    for domain, newest in MAX_OPSET_OTHER.items():
        if domain in opsets and opsets[domain] > newest:
            raise PackageError(f"the model's {domain} opset is {opsets[domain]}; the runtime reads up to {newest}",
                               "opset")
    local_functions = {(f.domain, f.name) for f in model.functions}
    for node in _all_nodes(model):
        if node.domain not in ALLOWED_DOMAINS and (node.domain, node.op_type) not in local_functions:
            raise PackageError(
                f"node {node.name or node.op_type!r} uses the operator {node.domain}.{node.op_type}, from a domain the "
                "runtime does not ship; only ai.onnx, ai.onnx.ml and com.microsoft operators are accepted",
                "custom_domain")
    try:
        onnx.checker.check_model(model, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise PackageError(f"onnx.checker refused the model: {_first_line(exc)}", "onnx_checker") from None
    except Exception as exc:
        raise PackageError(f"onnx.checker refused the model: {_first_line(exc)}", "onnx_checker") from None
    try:
        inferred = onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise PackageError(f"shape inference failed: {_first_line(exc)}", "shape_inference") from None
    # The outputs with the shapes inference found, so the manifest can be read from the graph.
    del model.graph.output[:]
    model.graph.output.extend(inferred.graph.output)
    return {"irVersion": model.ir_version, "opsets": opsets, "nodes": sum(1 for _ in _all_nodes(model))}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else exc.__class__.__name__)[:400]


def _all_nodes(model: onnx.ModelProto) -> Iterator[onnx.NodeProto]:
    def walk(graph: onnx.GraphProto) -> Iterator[onnx.NodeProto]:
        for node in graph.node:
            yield node
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.GRAPH:
                    yield from walk(attr.g)
                for sub in attr.graphs:
                    yield from walk(sub)

    yield from walk(model.graph)
    for function in model.functions:
        yield from function.node
