"""Model packages: unpacking (bounded, member by member) and the static checks a model passes before
anything is stored.

A package is one of: a bare ``.onnx`` file (its manifest comes with the request); a ``.zip`` or
``.tar.gz`` holding one ``.onnx`` file or a TF.js graph model (``model.json`` and its weight shards), a
manifest and, for classifiers, the ordered label list. Nothing here runs the model: the trial inference
happens on a worker (gateway/services/models/trial.py); the modules here are archives (unpacking), contents
(what a package holds), graph (the ONNX checks) and manifest. Everything here is CPU work on bytes in memory;
callers run it in a thread.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

from gateway.services.models.packages.archives import (
    Limits,
    check_member_name,
    open_zip,
    unpack,
)
from gateway.services.models.packages.contents import (
    EXPORT_HINT,
    PICKLE_SUFFIXES,
    merge_manifests,
    package_labels,
    package_manifest,
    package_model,
    refuse_code,
)
from gateway.services.models.packages.errors import PackageError
from gateway.services.models.packages.graph import (
    check_graph,
    fold_external_data,
    parse_onnx,
    runtime_reads,
)
from gateway.services.models.packages.manifest import complete_manifest, label_list

__all__ = ["APPLICATIONS", "Limits", "Package", "PackageError", "check_graph", "check_member_name",
           "complete_manifest", "label_list", "read_package", "runtime_reads", "unpack"]

APPLICATIONS = ("embedding", "auto_tagging", "auto_annotation")


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
        refuse_code(members)
        packaged = package_manifest(members)
        labels_file = package_labels(members)
        merged = merge_manifests(packaged, manifest)
        model, fmt = package_model(members, merged, limits)
    else:
        if len(data) > limits.max_bytes:
            raise PackageError(f"the model is larger than the limit of {limits.max_bytes} bytes", "too_large")
        model = parse_onnx(data)
        members = {}
        merged = merge_manifests(None, manifest)
        fmt = "onnx"
    fold_external_data(model, members)
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
        with open_zip(data) as zf:
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
