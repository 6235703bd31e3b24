"""Trial inference of a registered model, run as its own process: ``python -m engines.model_trial``.

The parent (gateway/services/models/trial.py) bounds the process in time and memory and reads one JSON
line from stdout. Reading a model's graph is safe to do anywhere; running it is not (an operator with a
bug, a graph that allocates without end), so it runs here, where a crash or a kill costs only this process.

stdin: {"model_path", "manifest", "application", "provider", "batch", "memory_bytes"}
stdout: {"ok": true, "throughput", "batch", "provider", "outputs": {name: shape}} or {"ok": false, "error"}
"""

from __future__ import annotations

import json
import re
import sys
import time
from typing import Any

import numpy as np

TIMED_SECONDS = 1.0  # measure for about this long after the warm-up run
MAX_TIMED_RUNS = 20

_NUMPY_TYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
}


_PATH = re.compile(r"(?<![\w.])/[^\s:'\"]+")


class TrialError(Exception):
    """The model ran but did not do what its manifest says."""


def pixels_to_input(pixels: np.ndarray, spec: dict[str, Any], element_type: str) -> np.ndarray:
    """uint8 NHWC pixels -> the graph's input, as the manifest declares (layout, colour order, values)."""
    dtype = _NUMPY_TYPES.get(element_type)
    if dtype is None:
        raise TrialError(f"the input's element type {element_type} is not one an image model takes")
    x = pixels
    if spec.get("channels", 3) == 3 and spec.get("color_order", "RGB") == "BGR":
        x = x[..., ::-1]
    if dtype is not np.uint8:
        x = x.astype(np.float32) / 255.0
        if "range" in spec:
            lo, hi = spec["range"]
            x = lo + x * (hi - lo)
        else:
            x = (x - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
        x = x.astype(dtype)
    if spec.get("layout", "NHWC") == "NCHW":
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x)


def _check_outputs(outputs: dict[str, np.ndarray], manifest: dict[str, Any], application: str, batch: int) -> None:
    out = manifest.get("output") or {}
    if application in ("embedding", "auto_tagging"):
        name = out.get("name") or next(iter(outputs))
        value = outputs[name]
        if not np.all(np.isfinite(value)):
            raise TrialError(f"output {name} has values that are not finite (NaN or infinity) for ordinary input")
        per_image = value.size // max(batch, 1)
        if value.shape[0] != batch or per_image != out.get("dimension"):
            raise TrialError(
                f"output {name} has shape {list(value.shape)} for a batch of {batch}; the manifest says "
                f"[{batch}, {out.get('dimension')}]"
            )
        if application == "auto_tagging" and out.get("kind") == "probabilities":
            if value.min() < -1e-4 or value.max() > 1 + 1e-4:
                raise TrialError(f"output {name} is declared as probabilities but has values outside 0..1")
        return
    boxes = outputs[out["boxes"]]
    if boxes.shape[-1] != 4:
        raise TrialError(f"the boxes output {out['boxes']} has shape {list(boxes.shape)}; its last dimension must be 4")
    scores = outputs[out["scores"]]
    if scores.size * 4 != boxes.size:
        raise TrialError(f"the scores output {out['scores']} has {scores.size} values for {boxes.size // 4} boxes")


def run_trial(model_path: str, manifest: dict[str, Any], application: str, provider: str, batch: int) -> dict[str, Any]:
    import onnxruntime as ort

    from engines.runtime import CPU, choose_providers

    providers = choose_providers(provider)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(model_path, sess_options=options, providers=providers)
    active = session.get_providers()[0]
    if provider == "cuda" and active == CPU:
        raise TrialError("execution provider 'cuda' was requested but the session runs on the CPU")
    spec = manifest["input"]
    graph_input = next(i for i in session.get_inputs() if i.name == spec["name"])
    leading = graph_input.shape[0] if graph_input.shape else None
    if isinstance(leading, int) and leading > 0:
        batch = leading  # a graph with a fixed batch size is measured at that size
    rng = np.random.default_rng(0)
    if spec.get("layout") == "NTC":  # audio features (power mel pieces): non-negative floats
        feed = {spec["name"]: rng.random((batch, spec["frames"], spec["mels"]), dtype=np.float32)}
    else:
        pixels = rng.integers(0, 256, size=(batch, spec["height"], spec["width"], spec.get("channels", 3)), dtype=np.uint8)
        feed = {spec["name"]: pixels_to_input(pixels, spec, graph_input.type)}
    names = [o.name for o in session.get_outputs()]
    first = dict(zip(names, session.run(names, feed)))
    _check_outputs(first, manifest, application, batch)
    runs = 0
    started = time.perf_counter()
    while runs < MAX_TIMED_RUNS and (runs < 2 or time.perf_counter() - started < TIMED_SECONDS):
        session.run(names, feed)
        runs += 1
    seconds = time.perf_counter() - started
    return {
        "ok": True,
        "throughput": batch * runs / seconds,
        "batch": batch,
        "provider": active,
        "outputs": {name: list(value.shape) for name, value in first.items()},
    }


def _bound_memory(limit: int | None) -> None:
    # Before ONNX Runtime loads: the bound covers every allocation the model makes, and a process may
    # lower its own hard limit but never raise it again.
    if limit:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (int(limit), int(limit)))


def main() -> None:
    request = json.loads(sys.stdin.read())
    try:
        _bound_memory(request.get("memory_bytes"))
        result = run_trial(
            request["model_path"], request["manifest"], request["application"], request.get("provider", "cpu"),
            int(request.get("batch", 32)),
        )
    except TrialError as exc:
        result = {"ok": False, "error": str(exc)}
    except (MemoryError, ImportError):  # a bound too small even to load ONNX Runtime fails its import
        result = {"ok": False, "error": "the model ran out of the trial's memory bound"}
    except Exception as exc:  # ONNX Runtime's own failures name the node; that is the reason to record
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        text = _PATH.sub("<path>", text)  # the worker's file system is nobody's business
        result = {"ok": False, "error": f"ONNX Runtime could not run the model: {text[:500]}"}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
