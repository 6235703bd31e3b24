"""What a package holds: its model (ONNX or TF.js), manifest and label list, and the layouts refused
because they hold code."""

from __future__ import annotations

import json
import posixpath
from typing import Any

import onnx

from gateway.services.models.packages.archives import Limits, check_member_name
from gateway.services.models.packages.errors import PackageError
from gateway.services.models.packages.graph import parse_onnx
from gateway.services.models.packages.manifest import label_list

MANIFEST_NAMES = ("manifest.json", "manifest.yaml", "manifest.yml")
LABEL_NAMES = ("label_list.yaml", "label_list.yml", "labels.yaml", "labels.yml", "label_list.json", "labels.json",
               "label_list.txt", "labels.txt")
# Files that are code to run, or weights that are pickles (which are code too): a package may hold neither.
CODE_SUFFIXES = (".py", ".pyc", ".ipynb", ".sh", ".so", ".dll", ".dylib")
PICKLE_SUFFIXES = (".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib")

EXPORT_HINT = (
    "Export the model to ONNX and register the .onnx file instead: from PyTorch, "
    "torch.onnx.export(model.eval(), torch.zeros(1, 3, 224, 224), \"model.onnx\", input_names=[\"input\"], "
    "output_names=[\"output\"], dynamic_axes={\"input\": {0: \"batch\"}, \"output\": {0: \"batch\"}}); from "
    "TensorFlow, python -m tf2onnx.convert --saved-model DIR --output model.onnx. Give the preprocessing in "
    "a manifest (input layout, size, channels, colour order, value range or mean/std) and, for a classifier, "
    "the labels in order in label_list.yaml."
)


def _basename_index(members: dict[str, bytes]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for path in members:
        index.setdefault(posixpath.basename(path).lower(), []).append(path)
    return index


def refuse_code(members: dict[str, bytes]) -> None:
    code = sorted(p for p in members if p.lower().endswith(CODE_SUFFIXES) or posixpath.basename(p).lower() == "requirements.txt")
    pickles = sorted(p for p in members if p.lower().endswith(PICKLE_SUFFIXES))
    if not code and not pickles:
        return
    found = ", ".join((code + pickles)[:6])
    raise PackageError(
        f"the package holds {found}: this is the code-and-checkpoint layout (code/inference.py, requirements.txt, "
        "a .pt file), which is refused. Uploaded code is never run, and a .pt file is a pickle, which is code too. "
        + EXPORT_HINT,
        "code_package",
    )


def _one(members: dict[str, bytes], names: tuple[str, ...], what: str) -> str | None:
    index = _basename_index(members)
    found = [p for n in names for p in index.get(n, [])]
    if len(found) > 1:
        raise PackageError(f"the package holds several {what} files: {', '.join(sorted(found))}", "ambiguous")
    return found[0] if found else None


def package_manifest(members: dict[str, bytes]) -> dict[str, Any] | None:
    path = _one(members, MANIFEST_NAMES, "manifest")
    if path is None:
        return None
    value = _parse_text(path, members[path])
    if not isinstance(value, dict):
        raise PackageError(f"{path} must hold an object (input, output, labels)", "manifest")
    return value


def _parse_text(path: str, body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise PackageError(f"{path} is not UTF-8 text", "manifest") from None
    if path.lower().endswith(".json"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise PackageError(f"{path} is not valid JSON: {exc}", "manifest") from None
    if path.lower().endswith((".yaml", ".yml")):
        import yaml

        try:
            return yaml.safe_load(text)  # the safe loader builds plain data only, never objects
        except yaml.YAMLError as exc:
            raise PackageError(f"{path} is not valid YAML: {str(exc).splitlines()[0]}", "manifest") from None
    return [line.strip() for line in text.splitlines() if line.strip()]


def package_labels(members: dict[str, bytes]) -> list[str] | None:
    path = _one(members, LABEL_NAMES, "label list")
    if path is None:
        return None
    return label_list(_parse_text(path, members[path]), path)


def merge_manifests(package: dict[str, Any] | None, given: dict[str, Any] | None) -> dict[str, Any]:
    """The request's manifest fields win over the package's, section by section."""
    if given is not None and not isinstance(given, dict):
        raise PackageError("manifest must be a JSON object", "manifest")
    merged: dict[str, Any] = {k: (dict(v) if isinstance(v, dict) else v) for k, v in (package or {}).items()}
    for key, value in (given or {}).items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key].update(value)
        else:
            merged[key] = value
    return merged


def package_model(members: dict[str, bytes], manifest: dict[str, Any], limits: Limits) -> tuple[onnx.ModelProto, str]:
    models = sorted(p for p in members if p.lower().endswith(".onnx"))
    if len(models) > 1:
        raise PackageError(f"the package holds several .onnx files ({', '.join(models)}); it must hold one", "ambiguous")
    if models:
        return parse_onnx(members[models[0]]), "archive"
    tfjs = _one(members, ("model.json",), "model.json")
    if tfjs is None:
        raise PackageError("the package holds no .onnx file and no TF.js model.json", "no_model")
    return _convert_tfjs(members, tfjs, manifest), "tfjs"


def _convert_tfjs(members: dict[str, bytes], path: str, manifest: dict[str, Any]) -> onnx.ModelProto:
    try:
        from engines.convert import tfjs
    except ImportError:
        raise PackageError("TF.js packages need the TF.js converter (engines/convert/tfjs.py), which this build lacks",
                           "tfjs_unavailable") from None
    base = posixpath.dirname(path)

    def read_file(name: str) -> bytes:
        inside = check_member_name(posixpath.join(base, name))
        if inside not in members:
            raise PackageError(f"model.json names the weight file {name!r}, which the package does not hold", "tfjs")
        return members[inside]

    out = manifest.get("output") or {}
    wanted = [out["name"]] if isinstance(out.get("name"), str) else None
    try:
        return tfjs.convert(members[path], read_file, wanted)
    except PackageError:
        raise
    except Exception as exc:  # the converter's own errors say which op or tensor it could not take
        raise PackageError(f"the TF.js model could not be converted: {exc}", "tfjs") from None
