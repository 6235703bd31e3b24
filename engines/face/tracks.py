"""Faces over time: detections of sampled frames linked into tracks, and unknown people told apart.

Linking (:class:`Tracker`): each frame's detections are assigned to the open tracks by the Hungarian method
(scipy ``linear_sum_assignment``) on a cost mixing box overlap (IoU with the track's last box) and embedding
cosine (with the track's running mean). A pair may link only when the faces look alike (cosine at least
LINK_COSINE) and either overlap (IoU at least LINK_IOU) or look very alike (REJOIN_COSINE: the face moved
fast or was missed for a frame). So a cut between people at the same place splits the track: the boxes
overlap but the faces do not look alike. A track ends when it has not been seen for more than ``gap``
seconds; each track keeps its BEST_FRAMES best faces by detection score × face size, which is what it is
recognized from.

Unknown people (:class:`Unknowns`): an unrecognized track is compared with the unknowns seen before (their
tracks' mean embeddings); at SAME_PERSON cosine or more it is that person again and keeps their number.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from engines.media import FrameBox

__all__ = ["BEST_FRAMES", "Detection", "Track", "Tracker", "Unknowns", "track_gap"]

# Cosines measured with the pulled face-embedding on 70-100 px faces in 320×240 frames: the same face in
# consecutive samples (moving, scaling) 0.85-1.0; two people's faces a median 0.39, 99 % under 0.6, at most 0.66.
LINK_COSINE = 0.7
REJOIN_COSINE = 0.8  # alike enough to link without overlapping boxes
LINK_IOU = 0.1
IOU_WEIGHT = 0.4  # of the linking cost; the rest is the cosine
BEST_FRAMES = 5
SAME_PERSON = 0.72  # cosine of two unknown tracks' mean embeddings from which they are one person (see above)
MAX_UNKNOWNS = 10_000  # unknown people remembered for re-identification (2 KiB each at D = 512)
MEAN_WEIGHT = 0.3  # weight of the newest face in a track's running mean (linking follows slow changes of pose)

Box = tuple[float, float, float, float]  # x1, y1, x2, y2


def track_gap(interval: float) -> float:
    """Seconds a track may go unseen before it ends: two missed samples, and at least one second."""
    return max(2.0 * interval, 1.0)


@dataclass(frozen=True, slots=True)
class Detection:
    box: Box  # display pixels
    score: float
    embedding: np.ndarray  # unit vector

    @property
    def quality(self) -> float:
        """Detection score × face size: the frames a track is best judged from are sharp, frontal and large."""
        return self.score * max(0.0, min(self.box[2] - self.box[0], self.box[3] - self.box[1]))


@dataclass
class Track:
    id: int
    first: float
    last: float
    mean: np.ndarray  # running unit embedding, for linking
    last_box: Box
    boxes: list[FrameBox] = field(default_factory=list)
    best: list[tuple[float, float, np.ndarray]] = field(default_factory=list)  # (quality, time, embedding)
    best_time: float = 0.0
    best_box: Box = (0.0, 0.0, 0.0, 0.0)
    best_quality: float = -1.0
    best_changed: bool = False  # the best face is this frame's (the caller keeps its thumbnail)

    def add(self, t: float, d: Detection) -> None:
        self.last = t
        self.last_box = d.box
        x1, y1, x2, y2 = d.box
        self.boxes.append(FrameBox(round(t, 3), round(x1, 1), round(y1, 1), round(x2 - x1, 1), round(y2 - y1, 1)))
        blended = (1 - MEAN_WEIGHT) * self.mean + MEAN_WEIGHT * d.embedding
        self.mean = blended / max(float(np.linalg.norm(blended)), 1e-12)
        q = d.quality
        self.best_changed = q > self.best_quality
        if self.best_changed:
            self.best_quality, self.best_time, self.best_box = q, t, d.box
        if len(self.best) < BEST_FRAMES or q > self.best[-1][0]:
            self.best.append((q, t, d.embedding))
            self.best.sort(key=lambda item: -item[0])
            del self.best[BEST_FRAMES:]

    def embedding(self) -> np.ndarray:
        """The mean of the best faces' unit embeddings, normalised."""
        mean = np.mean([e for _, _, e in self.best], axis=0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ix * iy
    return ix * iy / union if union > 0 else 0.0


class Tracker:
    """Open tracks; :meth:`update` per sampled frame in time order, :meth:`finish` at the end."""

    def __init__(self, gap: float) -> None:
        self.gap = gap
        self.open: list[Track] = []
        self._next = 0

    def update(self, t: float, detections: list[Detection]) -> tuple[list[Track], list[Track]]:
        """Link ``detections`` (at time ``t``) into tracks. Returns the tracks each detection joined (in order)
        and the tracks that ended (not seen for more than the gap)."""
        ended = [tr for tr in self.open if t - tr.last > self.gap]
        self.open = [tr for tr in self.open if t - tr.last <= self.gap]
        joined: list[Track | None] = [None] * len(detections)
        for tr in self.open:
            tr.best_changed = False
        if self.open and detections:
            means = np.stack([tr.mean for tr in self.open])
            embs = np.stack([d.embedding for d in detections])
            cos = means @ embs.T
            overlap = np.array([[iou(tr.last_box, d.box) for d in detections] for tr in self.open])
            allowed = (cos >= LINK_COSINE) & ((overlap >= LINK_IOU) | (cos >= REJOIN_COSINE))
            cost = np.where(allowed, 1.0 - (IOU_WEIGHT * overlap + (1 - IOU_WEIGHT) * cos), 1e6)
            for r, c in zip(*linear_sum_assignment(cost), strict=True):
                if allowed[r, c]:
                    self.open[r].add(t, detections[c])
                    joined[c] = self.open[r]
        for i, d in enumerate(detections):
            if joined[i] is None:
                track = Track(self._next, t, t, d.embedding.copy(), d.box)
                self._next += 1
                track.add(t, d)
                self.open.append(track)
                joined[i] = track
        return [tr for tr in joined if tr is not None], ended

    def finish(self) -> list[Track]:
        ended, self.open = self.open, []
        return ended


class Unknowns:
    """Numbers for unknown people, kept when the same person comes back (module docstring)."""

    def __init__(self, same_person: float = SAME_PERSON) -> None:
        self.same_person = same_person
        self.people: list[np.ndarray] = []  # running unit means, person n + 1 at index n
        self.count = 0

    def number(self, embedding: np.ndarray) -> int:
        if self.people:
            sims = np.stack(self.people) @ embedding
            best = int(np.argmax(sims))
            if sims[best] >= self.same_person:
                merged = self.people[best] + embedding
                self.people[best] = merged / max(float(np.linalg.norm(merged)), 1e-12)
                return best + 1
        self.count += 1
        if len(self.people) < MAX_UNKNOWNS:  # past it, a newcomer gets a number but is not looked for again
            self.people.append(embedding)
        return self.count
