"""Photos for the face engine's tests: real faces composited onto larger, cluttered backgrounds.

The faces are the package-shipped photos sampledata/faces.py fetches (pinned by checksum): each
person's head is cut from their source photo (a loose square around the detector's box, so hair and
shoulders come along) and pasted onto a generated background of random shapes, lines and noise, at a
random position and scale. Every scene records where each face went, so tests can check boxes.

* ``enrolled`` — one scene per person, the identifiers trained on;
* ``queries`` — another scene per person: other background, position and scale, mirrored, and for a
  share of them grey or rotated a few degrees;
* ``held_out`` — real photos of an enrolled person that were never enrolled (Obama), as shipped.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from sampledata.faces import Detector

HEAD = 2.2  # head cut-out side as a multiple of the face box's longer side


@dataclass(frozen=True)
class Placed:
    person: str
    box: tuple[float, float, float, float]  # where the face box went: x1, y1, x2, y2 in scene pixels


@dataclass(frozen=True)
class Scene:
    data: bytes  # JPEG
    faces: list[Placed] = field(default_factory=list)
    size: tuple[int, int] = (0, 0)


@dataclass(frozen=True)
class Head:
    person: str
    image: Image.Image  # square RGB cut-out
    box: tuple[float, float, float, float]  # the face box inside it


@dataclass(frozen=True)
class SceneSet:
    heads: dict[str, Head]
    enrolled: dict[str, list[Scene]]  # two scenes per person
    queries: dict[str, Scene]
    held_out: list[tuple[str, bytes]]  # (person, photo as shipped)
    group: Scene  # three enrolled people in one photo
    pair: Scene  # two people, the first one's face clearly larger
    no_face: Scene  # clutter only
    tiny: Scene  # one face whose box is about 40-50 px
    blurred: Scene  # one face blurred by a Gaussian of 4 % of its width


def jpeg(image: Image.Image, quality: int = 90) -> bytes:
    out = io.BytesIO()
    image.convert("RGB").save(out, "JPEG", quality=quality)
    return out.getvalue()


def clutter(size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """A busy background: noise, rectangles, ellipses and lines in random colours (no faces)."""
    w, h = size
    noise = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
    image = Image.fromarray(noise).resize((w, h), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    for _ in range(40):
        x, y = int(rng.integers(0, w)), int(rng.integers(0, h))
        dx, dy = int(rng.integers(10, w // 4)), int(rng.integers(10, h // 4))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = int(rng.integers(0, 3))
        if shape == 0:
            draw.rectangle((x, y, x + dx, y + dy), fill=colour)
        elif shape == 1:
            draw.ellipse((x, y, x + dx, y + dy), outline=colour, width=int(rng.integers(1, 6)))
        else:
            draw.line((x, y, x + dx, y + dy), fill=colour, width=int(rng.integers(1, 8)))
    return image


def cut_heads(photos: dict[str, bytes], detector: Detector) -> dict[str, Head]:
    """A head cut-out per person: Obama (obama2.jpg), Biden and each face of the six group photos."""

    def open_(name: str) -> Image.Image:
        return ImageOps.exif_transpose(Image.open(io.BytesIO(photos[name]))).convert("RGB")

    def head(person: str, image: Image.Image, box: tuple[float, float, float, float]) -> Head:
        x1, y1, x2, y2 = box
        cx, cy, half = (x1 + x2) / 2, (y1 + y2) / 2, max(x2 - x1, y2 - y1) * HEAD / 2
        left, top = round(cx - half), round(cy - half)
        cut = image.crop((left, top, round(cx + half), round(cy + half)))
        return Head(person, cut, (x1 - left, y1 - top, x2 - left, y2 - top))

    heads = {}
    for person, file in (("obama", "obama2.jpg"), ("biden", "biden.jpg")):
        image = open_(file)
        heads[person] = head(person, image, detector.boxes(image)[0])
    for i in range(6):
        image = open_(f"sample{i + 1}.jpg")
        for k, box in enumerate(detector.boxes(image)):
            heads[f"group{i + 1}-{k}"] = head(f"group{i + 1}-{k}", image, box)
    return heads


def compose(
    heads: list[Head], rng: np.random.Generator, *, size: tuple[int, int] = (960, 720), face_px: tuple[int, int] = (120, 220),
    mirror: bool = False, grey: bool = False, rotate: float = 0.0, blur: float = 0.0, sizes: list[float] | None = None,
) -> Scene:
    """``heads`` pasted side by side (each in its own column) at random scale and position on clutter."""
    w, h = size
    scene = clutter(size, rng)
    column = w // max(1, len(heads))
    placed = []
    for i, head in enumerate(heads):
        box_side = max(head.box[2] - head.box[0], head.box[3] - head.box[1])
        target = sizes[i] if sizes else float(rng.uniform(*face_px))
        scale = target / box_side
        side = round(head.image.width * scale)
        side = min(side, column - 4, h - 4)
        scale = side / head.image.width
        cut = head.image.resize((side, side), Image.Resampling.LANCZOS)
        fx1, fy1, fx2, fy2 = (v * scale for v in head.box)
        if mirror:
            cut = ImageOps.mirror(cut)
            fx1, fx2 = side - fx2, side - fx1
        if blur:
            cut = cut.filter(ImageFilter.GaussianBlur(blur * (fx2 - fx1)))
        if rotate:
            cut = cut.rotate(rotate, Image.Resampling.BILINEAR)
        x = i * column + int(rng.integers(0, max(1, column - side)))
        y = int(rng.integers(0, max(1, h - side)))
        # a round mask so the cut-out's square edge does not frame the face
        mask = Image.new("L", (side, side), 0)
        ImageDraw.Draw(mask).ellipse((0, 0, side - 1, side - 1), fill=255)
        scene.paste(cut, (x, y), mask.filter(ImageFilter.GaussianBlur(side / 30)))
        placed.append(Placed(head.person, (x + fx1, y + fy1, x + fx2, y + fy2)))
    if grey:
        scene = scene.convert("L")
    return Scene(jpeg(scene), placed, size)


def build(photos: dict[str, bytes], detector: Detector, seed: int = 12) -> SceneSet:
    rng = np.random.default_rng(seed)
    heads = cut_heads(photos, detector)
    enrolled = {p: [compose([h], rng), compose([h], rng, size=(720, 960))] for p, h in heads.items()}
    queries = {}
    for n, (person, head) in enumerate(heads.items()):
        queries[person] = compose(
            [head], rng, size=(800, 800), mirror=True, grey=n % 3 == 1, rotate=(8.0 if n % 3 == 2 else 0.0),
        )
    held_out = [("obama", photos[f]) for f in ("obama.jpg", "obama3.jpg")]
    group = compose([heads["obama"], heads["biden"], heads["group2-0"]], rng, size=(1200, 700), face_px=(110, 160))
    pair = compose([heads["group1-0"], heads["group3-1"]], rng, size=(1000, 700), sizes=[220.0, 110.0])
    no_face = Scene(jpeg(clutter((900, 700), rng)), [], (900, 700))
    tiny = compose([heads["group4-1"]], rng, face_px=(40, 50))
    blurred = compose([heads["group5-1"]], rng, face_px=(180, 200), blur=0.04)
    return SceneSet(heads, enrolled, queries, held_out, group, pair, no_face, tiny, blurred)


def iou(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0
