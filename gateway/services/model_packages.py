"""Model packages: unpacking (bounded, member by member) and the static checks a model passes before
anything is stored.

A package is one of: a bare ``.onnx`` file (its manifest comes with the request); a ``.zip`` or
``.tar.gz`` holding one ``.onnx`` file or a TF.js graph model (``model.json`` and its weight shards), a
manifest and, for classifiers, the ordered label list. Nothing here runs the model: the trial inference
happens on a worker (gateway/services/model_trials.py). Everything here is CPU work on bytes in memory;
callers run it in a thread.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import posixpath
import re
import stat
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import onnx
from onnx import external_data_helper

from gateway.errors import InvalidInput

# Operator domains ONNX Runtime ships kernels for; anything else would need a custom-op library.
ALLOWED_DOMAINS = {"": "ai.onnx", "ai.onnx": "ai.onnx", "ai.onnx.ml": "ai.onnx.ml", "com.microsoft": "com.microsoft"}
MIN_IR_VERSION = 3
MIN_OPSET = 7
MAX_OPSET_OTHER = {"ai.onnx.ml": 5, "com.microsoft": 1}
RATIO_FLOOR_BYTES = 1024 * 1024  # below this a member may compress as well as it likes (small files do)
CHUNK = 256 * 1024

APPLICATIONS = ("embedding", "auto_tagging", "auto_annotation")
MANIFEST_NAMES = ("manifest.json", "manifest.yaml", "manifest.yml")
LABEL_NAMES = ("label_list.yaml", "label_list.yml", "labels.yaml", "labels.yml", "label_list.json", "labels.json",
               "label_list.txt", "labels.txt")
# The seed's layout and its kin: code to run, or weights that are pickles (which are code too).
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


class PackageError(InvalidInput):
    """The package was refused; the message says why. ``reason`` names the check for clients and tests."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message, data={"reason": reason})
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int
    max_members: int
    max_ratio: int


@dataclass
class Package:
    """A package that passed every static check: one self-contained ONNX file and its completed manifest."""

    onnx_bytes: bytes
    sha256: str
    manifest: dict[str, Any]
    dimension: int | None
    labels: list[str] | None
    format: str  # onnx | archive | tfjs
    checks: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ the entry point


def read_package(
    data: bytes, *, filename: str | None, application: str, manifest: dict[str, Any] | None, limits: Limits
) -> Package:
    """Unpack and check a package; raises PackageError with the first problem found."""
    started = time.perf_counter()
    if application not in APPLICATIONS:
        raise PackageError(f"application must be one of {', '.join(APPLICATIONS)}", "application")
    name = (filename or "").lower()
    kind = _sniff(data, name)
    labels_file: list[str] | None = None
    if kind == "pickle":
        raise PackageError(
            f"{filename or 'the file'} is a Python pickle (a PyTorch .pt/.pth checkpoint or similar). A pickle is "
            "code: loading it runs whatever it says, so it is never loaded here. " + EXPORT_HINT,
            "pickle",
        )
    if kind in ("zip", "tar"):
        members = unpack(data, kind, limits)
        _refuse_code(members)
        package_manifest = _package_manifest(members)
        labels_file = _package_labels(members)
        merged = _merge_manifests(package_manifest, manifest)
        model, fmt = _package_model(members, merged, limits)
    else:
        if len(data) > limits.max_bytes:
            raise PackageError(f"the model is larger than the limit of {limits.max_bytes} bytes", "too_large")
        model = _parse_onnx(data)
        members = {}
        merged = _merge_manifests(None, manifest)
        fmt = "onnx"
    _fold_external_data(model, members)
    checks = check_graph(model)
    completed, dimension, labels = complete_manifest(model, merged, application, labels_file)
    onnx_bytes = model.SerializeToString()
    if len(onnx_bytes) > limits.max_bytes:
        raise PackageError(f"the model is larger than the limit of {limits.max_bytes} bytes", "too_large")
    checks["seconds"] = round(time.perf_counter() - started, 4)
    return Package(
        onnx_bytes=onnx_bytes,
        sha256=hashlib.sha256(onnx_bytes).hexdigest(),
        manifest=completed,
        dimension=dimension,
        labels=labels,
        format=fmt,
        checks=checks,
    )


def _sniff(data: bytes, name: str) -> str:
    if data[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        with _zip(data) as zf:
            if any(n.endswith("data.pkl") or n.endswith(".pkl") for n in zf.namelist()) and not name.endswith(".zip"):
                return "pickle"  # PyTorch's zip checkpoint format: archive/data.pkl beside the tensors
        return "zip"
    if data[:2] == b"\x1f\x8b" or data[257:262] == b"ustar":
        return "tar"
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        return "pickle"
    if name.endswith(PICKLE_SUFFIXES):
        return "pickle"
    return "onnx"


# ------------------------------------------------------------------ archives


def _zip(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise PackageError(f"the .zip archive cannot be read: {exc}", "bad_archive") from None


def check_member_name(name: str) -> str:
    """The member's path, normalised; refuses absolute paths and any ``..``."""
    if not name or "\x00" in name:
        raise PackageError("an archive member has an empty name", "bad_member")
    text = name.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise PackageError(f"the archive member {name!r} has an absolute path; members must be relative", "absolute_path")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise PackageError(f"the archive member {name!r} climbs out of the package with '..'", "path_traversal")
    return "/".join(parts)


class _Budget:
    """Counts what unpacking produces: members, total bytes, and how far each member expands."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.members = 0
        self.total = 0

    def member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise PackageError(f"the archive has more than {self.limits.max_members} members", "too_many_members")

    def grow(self, name: str, produced: int, consumed: int, added: int) -> None:
        self.total += added
        if self.total > self.limits.max_bytes:
            raise PackageError(f"the archive unpacks to more than {self.limits.max_bytes} bytes", "too_large")
        if produced > RATIO_FLOOR_BYTES and produced > self.limits.max_ratio * max(consumed, 1):
            raise PackageError(
                f"the archive member {name!r} expands more than {self.limits.max_ratio} times (a zip bomb?); refused "
                "while unpacking",
                "compression_ratio",
            )


def unpack(data: bytes, kind: str, limits: Limits) -> dict[str, bytes]:
    """Members by normalised path. Links, devices, duplicates, and anything past the limits are refused,
    each as it is met, before more is read."""
    budget = _Budget(limits)
    members: dict[str, bytes] = {}
    items = _zip_members(data, budget) if kind == "zip" else _tar_members(data, budget)
    for path, body in items:
        if path in members:
            raise PackageError(f"the archive holds {path!r} twice", "duplicate_member")
        members[path] = body
    if not members:
        raise PackageError("the archive holds no files", "empty_archive")
    return members


def _zip_members(data: bytes, budget: _Budget) -> Iterator[tuple[str, bytes]]:
    with _zip(data) as zf:
        infos = zf.infolist()
        if len(infos) > budget.limits.max_members:
            raise PackageError(f"the archive has more than {budget.limits.max_members} members", "too_many_members")
        for info in infos:
            budget.member()
            path = check_member_name(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise PackageError(f"the archive member {info.filename!r} is a symbolic link; links are refused", "link")
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                raise PackageError(f"the archive member {info.filename!r} is a device or pipe; refused", "device")
            if info.is_dir():
                continue
            body = bytearray()
            try:
                with zf.open(info) as stream:
                    while chunk := stream.read(CHUNK):
                        body += chunk
                        budget.grow(path, len(body), info.compress_size, len(chunk))
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                raise PackageError(f"the archive member {info.filename!r} cannot be read: {exc}", "bad_archive") from None
            yield path, bytes(body)


class _CountingReader(io.RawIOBase):
    """The compressed bytes consumed so far, so a tar.gz member's expansion can be judged as it streams."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._stream.readinto(buffer)
        self.consumed += n
        return n


def _tar_members(data: bytes, budget: _Budget) -> Iterator[tuple[str, bytes]]:
    raw = _CountingReader(data)
    try:
        archive = tarfile.open(fileobj=io.BufferedReader(raw, 64 * 1024), mode="r|*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PackageError(f"the .tar.gz archive cannot be read: {exc}", "bad_archive") from None
    try:
        while True:
            try:
                info = archive.next()
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise PackageError(f"the .tar.gz archive cannot be read: {exc}", "bad_archive") from None
            if info is None:
                return
            budget.member()
            path = check_member_name(info.name)
            if info.issym() or info.islnk():
                raise PackageError(f"the archive member {info.name!r} is a link; links are refused", "link")
            if info.ischr() or info.isblk() or info.isfifo() or info.isdev():
                raise PackageError(f"the archive member {info.name!r} is a device or pipe; refused", "device")
            if info.isdir():
                continue
            if not info.isfile():
                raise PackageError(f"the archive member {info.name!r} is not a regular file", "bad_member")
            if info.size > budget.limits.max_bytes:
                raise PackageError(f"the archive unpacks to more than {budget.limits.max_bytes} bytes", "too_large")
            stream = archive.extractfile(info)
            body = bytearray()
            start = raw.consumed
            try:
                while chunk := stream.read(CHUNK):
                    body += chunk
                    # Compressed input consumed for this member (read-ahead makes it an overestimate).
                    budget.grow(path, len(body), raw.consumed - start + CHUNK, len(chunk))
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise PackageError(f"the archive member {info.name!r} cannot be read: {exc}", "bad_archive") from None
            yield path, bytes(body)
    finally:
        archive.close()


def _basename_index(members: dict[str, bytes]) -> dict[str, list[str]]:
    index: dict[str, list[str]] = {}
    for path in members:
        index.setdefault(posixpath.basename(path).lower(), []).append(path)
    return index


def _refuse_code(members: dict[str, bytes]) -> None:
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


def _package_manifest(members: dict[str, bytes]) -> dict[str, Any] | None:
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


def _package_labels(members: dict[str, bytes]) -> list[str] | None:
    path = _one(members, LABEL_NAMES, "label list")
    if path is None:
        return None
    return label_list(_parse_text(path, members[path]), path)


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


def _merge_manifests(package: dict[str, Any] | None, given: dict[str, Any] | None) -> dict[str, Any]:
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


def _package_model(members: dict[str, bytes], manifest: dict[str, Any], limits: Limits) -> tuple[onnx.ModelProto, str]:
    models = sorted(p for p in members if p.lower().endswith(".onnx"))
    if len(models) > 1:
        raise PackageError(f"the package holds several .onnx files ({', '.join(models)}); it must hold one", "ambiguous")
    if models:
        return _parse_onnx(members[models[0]]), "archive"
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


# ------------------------------------------------------------------ the graph


def _parse_onnx(data: bytes) -> onnx.ModelProto:
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception:  # protobuf's DecodeError, or a RuntimeWarning turned error
        raise PackageError("the file is not an ONNX model (it does not parse as an ONNX protobuf)", "bad_onnx") from None
    if not model.HasField("graph") or not model.graph.node:
        raise PackageError("the file is not an ONNX model (it has no graph)", "bad_onnx")
    return model


def _fold_external_data(model: onnx.ModelProto, members: dict[str, bytes]) -> None:
    """Tensors kept in external files are read from inside the package and folded into the one ONNX file;
    a path that points outside the package (or a bare .onnx with external data) is refused."""
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


# ------------------------------------------------------------------ the manifest


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


def _number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x and abs(x) < 1e9
