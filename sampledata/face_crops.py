"""Photos that trip a face engine up: dataset-style face crops, busy scenes with a face-like decoy, and no-face scenes.

The faces are sampledata/faces.py's package-shipped photos (one sitting per person, Obama's two other
photos aside), so the variants of a person are of one sitting: what they test is the engine's handling of
crops and scenes, not pose.

* ``crops`` — 92×112 px crops tight around each person's face, as the photos of a face dataset are (the
  detector's box in them is under 80 px): ``ENROLLED`` per person to train on and ``QUERIES`` others
  (another framing, light, mirror, tilt and JPEG quality), plus Obama's other photos cropped the same way;
* ``busy`` — a person's face pasted on clutter beside a larger painted face-like decoy (a poster face that
  the detector scores lower than a real one but boxes larger);
* ``empty`` — clutter with a painted decoy and no face at all.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageOps

from sampledata import face_scenes
from sampledata.face_scenes import Head, Placed, Scene
from sampledata.faces import Detector, jpeg

CROP_SIZE = (92, 112)
ENROLLED, QUERIES = 3, 3


@dataclass(frozen=True)
class CropSet:
    enrolled: dict[str, list[bytes]]
    queries: list[tuple[str, bytes]]  # (person, JPEG) never enrolled


def _crop(image: Image.Image, box: tuple[float, float, float, float], rng: np.random.Generator) -> bytes:
    x1, y1, x2, y2 = box
    side = max(x2 - x1, y2 - y1)
    width = side * float(rng.uniform(1.28, 1.4))
    height = width * CROP_SIZE[1] / CROP_SIZE[0]
    cx = (x1 + x2) / 2 + side * float(rng.uniform(-0.04, 0.04))
    cy = (y1 + y2) / 2 + side * float(rng.uniform(0.0, 0.08))
    picture = image.rotate(float(rng.uniform(-6, 6)), Image.Resampling.BILINEAR, center=(cx, cy))
    picture = picture.crop((round(cx - width / 2), round(cy - height / 2), round(cx + width / 2), round(cy + height / 2)))
    picture = picture.resize(CROP_SIZE, Image.Resampling.LANCZOS)
    if rng.random() < 0.5:
        picture = ImageOps.mirror(picture)
    picture = ImageEnhance.Brightness(picture).enhance(float(rng.uniform(0.8, 1.2)))
    return jpeg(picture, quality=int(rng.integers(70, 95)))


def crops(photos: dict[str, bytes], detector: Detector, seed: int = 7) -> CropSet:
    """``ENROLLED`` + ``QUERIES`` crops per person; Obama's other photos are queries too."""
    rng = np.random.default_rng(seed)

    def open_(name: str) -> Image.Image:
        return ImageOps.exif_transpose(Image.open(io.BytesIO(photos[name]))).convert("RGB")

    sources = [("obama", open_("obama2.jpg"), detector.boxes(open_("obama2.jpg"))[0]),
               ("biden", open_("biden.jpg"), detector.boxes(open_("biden.jpg"))[0])]
    for i in range(6):
        image = open_(f"sample{i + 1}.jpg")
        sources += [(f"group{i + 1}-{k}", image, box) for k, box in enumerate(detector.boxes(image))]
    enrolled, queries = {}, []
    for person, image, box in sources:
        made = [_crop(image, box, rng) for _ in range(ENROLLED + QUERIES)]
        enrolled[person] = made[:ENROLLED]
        queries += [(person, photo) for photo in made[ENROLLED:]]
    for name in ("obama.jpg", "obama3.jpg"):
        image = open_(name)
        queries.append(("obama", _crop(image, detector.boxes(image)[0], rng)))
    return CropSet(enrolled, queries)


def decoy(draw: ImageDraw.ImageDraw, x: int, y: int, side: int, rng: np.random.Generator) -> None:
    """A painted face: a skin-toned oval, two dark eyes, a nose and a smile (what a poster or a mask shows)."""
    skin = tuple(int(v) for v in rng.integers([170, 120, 90], [240, 190, 160]))
    draw.ellipse((x, y, x + side, y + int(side * 1.2)), fill=skin)
    e = side / 10
    for ex in (0.3, 0.7):
        draw.ellipse((x + side * ex - e, y + side * 0.45 - e, x + side * ex + e, y + side * 0.45 + e), fill=(30, 30, 30))
    draw.line((x + side * 0.5, y + side * 0.55, x + side * 0.45, y + side * 0.75), fill=(120, 70, 60),
              width=max(2, side // 40))
    draw.arc((x + side * 0.3, y + side * 0.7, x + side * 0.7, y + side * 0.95), 20, 160, fill=(150, 40, 40),
             width=max(2, side // 25))


def busy(head: Head, rng: np.random.Generator, size: tuple[int, int] = (1000, 750)) -> Scene:
    """``head``'s face (130-170 px) in the left half, a decoy about twice its size in the right half."""
    scene = face_scenes.compose([head], rng, size=(size[0] // 2, size[1]), face_px=(130, 170))
    canvas = face_scenes.clutter(size, rng)
    canvas.paste(Image.open(io.BytesIO(scene.data)), (0, 0))
    side = int(rng.integers(260, 330))
    decoy(ImageDraw.Draw(canvas), int(rng.integers(size[0] // 2, size[0] - side)),
          int(rng.integers(0, size[1] - int(side * 1.2))), side, rng)
    return Scene(face_scenes.jpeg(canvas.filter(ImageFilter.GaussianBlur(0.8))),
                 [Placed(p.person, p.box) for p in scene.faces], size)


def empty(rng: np.random.Generator, size: tuple[int, int] = (900, 700)) -> Scene:
    """Clutter and a painted decoy of 150-350 px: no face."""
    canvas = face_scenes.clutter(size, rng)
    side = int(rng.integers(150, 350))
    decoy(ImageDraw.Draw(canvas), int(rng.integers(0, size[0] - side)), int(rng.integers(0, size[1] - int(side * 1.2))),
          side, rng)
    return Scene(face_scenes.jpeg(canvas.filter(ImageFilter.GaussianBlur(1))), [], size)
