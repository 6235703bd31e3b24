"""Face boxes are reported in the photo's own pixels and inside the photo."""

from __future__ import annotations

import numpy as np

from engines.face.decode import faces_in


def _outputs(*boxes: tuple[float, float, float, float]) -> dict[str, np.ndarray]:
    n = len(boxes)
    return {"boxes": np.array(boxes, np.float32), "detection_scores": np.full(n, 0.9, np.float32),
            "landmarks": np.zeros((n, 5, 2), np.float32)}


def test_a_box_reaching_past_the_edges_is_clipped_to_the_photo():
    # A 320×240 photo fed at half size (scale 2): the fed photo is 160×120.
    faces = faces_in(_outputs((-20, -5, 50, 60), (100, 80, 190, 140)), 2.0, (120, 160, 3))
    assert faces[0]["box"] == {"left": 0.0, "top": 0.0, "width": 100.0, "height": 120.0}
    assert faces[1]["box"] == {"left": 200.0, "top": 160.0, "width": 120.0, "height": 80.0}


def test_a_box_inside_the_photo_is_only_scaled():
    (face,) = faces_in(_outputs((10, 20, 30, 50)), 1.5, (100, 100, 3))
    assert face["box"] == {"left": 15.0, "top": 30.0, "width": 30.0, "height": 45.0}
    assert face["detectionScore"] == 0.9
