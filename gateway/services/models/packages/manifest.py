"""The manifest: completed from what the graph states, checked against what it contradicts, and the
ordered label list."""

from __future__ import annotations

from typing import Any

import onnx

from gateway.services.models.packages.errors import PackageError


def label_list(value: Any, where: str = "labels") -> list[str]:
    """Labels in order from a list, an {index: name} mapping, or a {names|labels: ...} wrapper (YOLO style)."""
    if isinstance(value, dict) and len(value) == 1 and next(iter(value)) in ("names", "labels", "classes"):
        value = next(iter(value.values()))
    if isinstance(value, dict):
        try:
            keyed = sorted((int(k), v) for k, v in value.items())
        except (TypeError, ValueError):
            raise PackageError(f"{where}: a mapping of labels needs the class indices as keys", "labels") from None
        if [k for k, _ in keyed] != list(range(len(keyed))):
            raise PackageError(f"{where}: the class indices must be 0..{len(keyed) - 1} without gaps", "labels")
        value = [v for _, v in keyed]
    if not isinstance(value, list) or not value:
        raise PackageError(f"{where} must be a non-empty list of labels in class order", "labels")
    labels = [str(v).strip() if isinstance(v, (str, int, float)) and not isinstance(v, bool) else None for v in value]
    if any(not label for label in labels):
        raise PackageError(f"{where}: every label must be a non-empty string", "labels")
    if len(set(labels)) != len(labels):
        raise PackageError(f"{where}: labels must be unique", "labels")
    return labels  # type: ignore[return-value]


def _dims(value_info: onnx.ValueInfoProto) -> list[int | None] | None:
    t = value_info.type.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in t.shape.dim]


def complete_manifest(
    model: onnx.ModelProto, manifest: dict[str, Any], application: str, labels_file: list[str] | None
) -> tuple[dict[str, Any], int | None, list[str] | None]:
    """Fill in what the graph states, check what it contradicts; returns (manifest, dimension, labels)."""
    allowed = {"input", "output", "labels"}
    unknown = sorted(set(manifest) - allowed)
    if unknown:
        raise PackageError(f"the manifest has unknown fields {', '.join(unknown)} (it takes input, output, labels)", "manifest")
    spec = _complete_input(model, dict(manifest.get("input") or {}))
    labels = None
    if manifest.get("labels") is not None:
        labels = label_list(manifest["labels"], "manifest labels")
    if labels_file is not None:
        if labels is not None and labels != labels_file:
            raise PackageError("the manifest's labels and the package's label list differ", "label_mismatch")
        labels = labels_file
    output = dict(manifest.get("output") or {})
    if not isinstance(manifest.get("output", {}), dict):
        raise PackageError("manifest output must be an object", "manifest")
    outputs = {o.name: o for o in model.graph.output}
    dimension: int | None = None
    if application == "auto_annotation":
        for key in ("boxes", "scores"):
            if not isinstance(output.get(key), str) or output[key] not in outputs:
                raise PackageError(
                    f"a detection manifest names its {key} output (output.{key}), one of the graph's outputs: "
                    f"{', '.join(outputs)}", "manifest")
        for key in ("labels", "keypoints"):
            if output.get(key) is not None and output[key] not in outputs:
                raise PackageError(f"output.{key} names {output[key]!r}, which is not a graph output", "manifest")
        if "labels" not in output and labels is None:
            raise PackageError("a detector without a labels output gives its class names in the manifest's labels "
                               "(a single-class detector: [\"face\"])", "labels")
    else:
        name = output.get("name")
        if name is None:
            name = model.graph.output[0].name
        if name not in outputs:
            raise PackageError(f"output.name {name!r} is not a graph output (the graph has {', '.join(outputs)})", "manifest")
        output["name"] = name
        dims = _dims(outputs[name]) or []
        stated = 1
        for d in dims[1:]:
            stated = stated * d if (stated is not None and d is not None) else None
        if not dims[1:]:
            stated = None
        given = output.get("dimension")
        if given is not None and (not isinstance(given, int) or isinstance(given, bool) or given <= 0):
            raise PackageError("output.dimension must be a positive integer", "manifest")
        if given is not None and stated is not None and given != stated:
            raise PackageError(
                f"the manifest says output dimension {given}, but the graph's output {name!r} has {stated} values per "
                "image", "dimension_mismatch")
        dimension = given if given is not None else stated
        if application == "auto_tagging":
            if labels is None:
                raise PackageError("a classifier (auto_tagging) needs its labels in class order: label_list.yaml, "
                                   "labels.json or labels.txt in the package, or the manifest's labels", "labels")
            if dimension is None:
                dimension = len(labels)
            if len(labels) != dimension:
                raise PackageError(
                    f"the label list has {len(labels)} labels but the output {name!r} has {dimension} classes",
                    "label_mismatch")
            kind = output.setdefault("kind", "logits")
            if kind not in ("logits", "probabilities"):
                raise PackageError("output.kind must be logits or probabilities", "manifest")
        if dimension is None:
            raise PackageError(f"the graph's output {name!r} has no fixed size: give output.dimension in the manifest",
                               "manifest")
        output["dimension"] = dimension
    completed: dict[str, Any] = {"input": spec, "output": output}
    if labels is not None:
        completed["labels"] = labels
    return completed, dimension, labels


def _complete_input(model: onnx.ModelProto, spec: dict[str, Any]) -> dict[str, Any]:
    initializers = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if not inputs:
        raise PackageError("the graph has no input", "manifest")
    name = spec.get("name")
    if name is None:
        if len(inputs) != 1:
            raise PackageError(f"the graph has several inputs ({', '.join(i.name for i in inputs)}): name the image "
                               "input in input.name", "manifest")
        name = inputs[0].name
    chosen = next((i for i in inputs if i.name == name), None)
    if chosen is None:
        raise PackageError(f"input.name {name!r} is not a graph input", "manifest")
    spec["name"] = name
    elem = chosen.type.tensor_type.elem_type
    if elem not in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16, onnx.TensorProto.DOUBLE, onnx.TensorProto.UINT8):
        raise PackageError(f"the input {name!r} is of type {onnx.TensorProto.DataType.Name(elem)}; an image model "
                           "takes float or uint8", "manifest")
    dims = _dims(chosen)
    if spec.get("layout") == "NTC":
        return _complete_sequence_input(spec, dims)
    if dims is not None and len(dims) != 4:
        raise PackageError(f"the input {name!r} has {len(dims)} dimensions; an image input has 4 (batch, and height, "
                           "width, channels in NHWC or NCHW order)", "manifest")
    layout = spec.get("layout")
    if layout is None and dims is not None:
        nchw, nhwc = dims[1] in (1, 3), dims[3] in (1, 3)
        layout = "NCHW" if nchw and not nhwc else "NHWC" if nhwc and not nchw else None
    if layout not in ("NHWC", "NCHW"):
        raise PackageError("input.layout must be NHWC or NCHW (the graph does not say which)", "manifest")
    spec["layout"] = layout
    if dims is not None:
        stated = dict(zip(("height", "width", "channels"), (dims[2], dims[3], dims[1]) if layout == "NCHW" else dims[1:]))
        for key, value in stated.items():
            if value is None:
                continue
            if spec.get(key) is not None and spec[key] != value:
                raise PackageError(f"the manifest says input.{key} {spec[key]}, but the graph's input has {value}",
                                   "manifest")
            spec[key] = value
    for key in ("height", "width"):
        v = spec.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 8192:
            raise PackageError(f"input.{key} must be given (the graph's input has no fixed {key}): 1 to 8192", "manifest")
    channels = spec.setdefault("channels", 3)
    if channels not in (1, 3):
        raise PackageError("input.channels must be 1 or 3", "manifest")
    order = spec.setdefault("color_order", "RGB")
    if order not in ("RGB", "BGR"):
        raise PackageError("input.color_order must be RGB or BGR", "manifest")
    has_range, has_norm = "range" in spec, ("mean" in spec or "std" in spec)
    if has_range == has_norm:
        raise PackageError("the manifest's input gives exactly one value mapping: range [lo, hi], or mean and std "
                           "per channel", "manifest")
    if has_range:
        r = spec["range"]
        if not (isinstance(r, list) and len(r) == 2 and all(_number(x) for x in r) and r[0] != r[1]):
            raise PackageError("input.range must be [lo, hi], two different numbers", "manifest")
    else:
        mean, std = spec.get("mean"), spec.get("std")
        for key, value in (("mean", mean), ("std", std)):
            if not (isinstance(value, list) and len(value) == channels and all(_number(x) for x in value)):
                raise PackageError(f"input.{key} must give one number per channel ({channels})", "manifest")
        if any(s == 0 for s in std):
            raise PackageError("input.std must not be zero", "manifest")
    return spec


def _complete_sequence_input(spec: dict[str, Any], dims: list[int | None] | None) -> dict[str, Any]:
    """An audio feature input ``[batch, frames, mels]`` (the speaker encoder's power mel pieces)."""
    if dims is not None and len(dims) != 3:
        raise PackageError(f"an NTC input has 3 dimensions (batch, frames, mels), the graph's has {len(dims)}", "manifest")
    for key, index in (("frames", 1), ("mels", 2)):
        stated = dims[index] if dims is not None else None
        if stated is not None and spec.get(key) not in (None, stated):
            raise PackageError(f"the manifest says input.{key} {spec[key]}, but the graph's input has {stated}", "manifest")
        spec.setdefault(key, stated)
        v = spec.get(key)
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 8192:
            raise PackageError(f"input.{key} must be given for an NTC input: 1 to 8192", "manifest")
    return spec


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and abs(x) < 1e9
