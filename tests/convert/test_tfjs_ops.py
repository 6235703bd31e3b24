"""The TF.js converter op by op, on small hand-built graphs, against numpy written from TF's semantics."""

from __future__ import annotations

import numpy as np
import pytest

from engines.convert import tfjs
from tests.convert.tfjs_graphs import Graph, avg_pool, conv2d, depthwise, max_pool, run

RNG = np.random.default_rng(7)
TOL = dict(rtol=1e-5, atol=1e-5)


def rand(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("size,stride,padding,dilation", [
    (7, 1, "SAME", 1), (7, 2, "SAME", 1), (8, 2, "SAME", 1), (7, 1, "VALID", 1), (9, 2, "VALID", 1),
    (9, 1, "SAME", 2),
])
def test_conv2d(size: int, stride: int, padding: str, dilation: int) -> None:
    g = Graph()
    x, w = rand(2, size, size, 3), rand(3, 3, 3, 4)
    g.op("Conv2D", "y", [g.placeholder("x", [-1, size, size, 3]), g.const("w", w)], strides=[1, stride, stride, 1],
         padding=padding, dilations=[1, dilation, dilation, 1], data_format="NHWC")
    (y,) = run(g, {"x": x})
    np.testing.assert_allclose(y, conv2d(x, w, stride, padding, dilation), **TOL)


def test_conv2d_explicit_padding() -> None:
    g = Graph()
    x, w = rand(1, 6, 6, 2), rand(3, 3, 2, 3)
    g.op("Conv2D", "y", [g.placeholder("x", [1, 6, 6, 2]), g.const("w", w)], strides=[1, 1, 1, 1],
         padding="EXPLICIT", explicit_paddings=[0, 0, 1, 2, 0, 1, 0, 0])
    (y,) = run(g, {"x": x})
    np.testing.assert_allclose(y, conv2d(x, w, 1, (1, 2, 0, 1)), **TOL)


@pytest.mark.parametrize("stride,multiplier", [(1, 1), (2, 2)])
def test_depthwise(stride: int, multiplier: int) -> None:
    g = Graph()
    x, w = rand(1, 9, 9, 3), rand(3, 3, 3, multiplier)
    g.op("DepthwiseConv2dNative", "y", [g.placeholder("x", [1, 9, 9, 3]), g.const("w", w)],
         strides=[1, stride, stride, 1], padding="SAME")
    (y,) = run(g, {"x": x})
    np.testing.assert_allclose(y, depthwise(x, w, stride), **TOL)


@pytest.mark.parametrize("fused,act", [
    (["BiasAdd"], lambda v: v), (["BiasAdd", "Relu"], lambda v: np.maximum(v, 0)),
    (["BiasAdd", "Relu6"], lambda v: np.clip(v, 0, 6)), (["BiasAdd", "LeakyRelu"], lambda v: np.where(v > 0, v, 0.1 * v)),
    (["BiasAdd", "Sigmoid"], lambda v: 1 / (1 + np.exp(-v))), (["BiasAdd", "Elu"], lambda v: np.where(v > 0, v, np.expm1(v))),
])
def test_fused_conv(fused: list[str], act) -> None:
    g = Graph()
    x, w, b, dw = rand(1, 6, 6, 2), rand(1, 1, 2, 5) * 3, rand(5), rand(3, 3, 5, 1)
    h = g.op("_FusedConv2D", "h", [g.placeholder("x", [1, 6, 6, 2]), g.const("w", w), g.const("b", b)],
             strides=[1, 1, 1, 1], padding="VALID", fused_ops=fused, num_args=1, leakyrelu_alpha=0.1)
    g.op("_FusedDepthwiseConv2dNative", "y", [h, g.const("dw", dw), g.const("db", b)], strides=[1, 2, 2, 1],
         padding="SAME", fused_ops=["BiasAdd"], num_args=1)
    (y,) = run(g, {"x": x})
    np.testing.assert_allclose(y, depthwise(act(conv2d(x, w, 1, "VALID") + b), dw, 2) + b, **TOL)


def test_fused_conv_refuses_batchnorm_fusion() -> None:
    g = Graph()
    g.op("_FusedConv2D", "y", [g.placeholder("x", [1, 4, 4, 1]), g.const("w", rand(1, 1, 1, 1)), g.const("b", rand(1))],
         strides=[1, 1, 1, 1], padding="VALID", fused_ops=["FusedBatchNorm"], num_args=1)
    with pytest.raises(tfjs.TfjsConversionError, match="fused ops"):
        run(g, {})


BINARY = {"Add": np.add, "AddV2": np.add, "BiasAdd": np.add, "Sub": np.subtract, "Mul": np.multiply,
          "RealDiv": np.divide, "Maximum": np.maximum, "Minimum": np.minimum}


# BiasAdd takes a per-channel vector only, so it is paired with that shape alone.
CASES = [(op, shape) for op in sorted(BINARY) for shape in [(4,), (1, 1, 5, 4), (5, 5, 4), ()]
         if op != "BiasAdd" or shape == (4,)]


@pytest.mark.parametrize(("op", "const_shape"), CASES)
def test_elementwise_after_conv_broadcasts_constants_the_nhwc_way(op: str, const_shape: tuple[int, ...]) -> None:
    g = Graph()
    x, w = rand(2, 5, 5, 3), rand(1, 1, 3, 4)
    c = (np.abs(rand(*const_shape)) + 0.5).astype(np.float32)
    h = g.op("Conv2D", "h", [g.placeholder("x", [-1, 5, 5, 3]), g.const("w", w)], strides=[1, 1, 1, 1], padding="SAME")
    g.op(op, "y", [h, g.const("c", c)])
    g.op(op if op != "BiasAdd" else "Add", "z", [g.const("c2", c), "y"])  # constant on the left
    (z,) = run(g, {"x": x}, ["z"])
    f = BINARY[op]
    # c / (conv / c): a conv output near zero (cancellation in its sum, whose float32 order differs between
    # numpy and ONNX Runtime) has a large relative error that the division carries into the result.
    tol = dict(rtol=2e-4, atol=1e-5) if op == "RealDiv" else TOL
    np.testing.assert_allclose(z, f(c, f(conv2d(x, w), c)), **tol)


def test_elementwise_mixes_an_nhwc_input_with_an_nchw_conv_output() -> None:
    g = Graph()
    x, w = rand(1, 4, 4, 3), rand(3, 3, 3, 3)
    h = g.op("Conv2D", "h", [g.placeholder("x", [1, 4, 4, 3]), g.const("w", w)], strides=[1, 1, 1, 1], padding="SAME")
    g.op("AddV2", "y", ["x", h])
    (y,) = run(g, {"x": x})
    np.testing.assert_allclose(y, x + conv2d(x, w), **TOL)


@pytest.mark.parametrize("op,ref", [
    ("Relu", lambda v: np.maximum(v, 0)), ("Relu6", lambda v: np.clip(v, 0, 6)), ("Sigmoid", lambda v: 1 / (1 + np.exp(-v))),
    ("Tanh", np.tanh), ("Elu", lambda v: np.where(v > 0, v, np.expm1(v))), ("Neg", np.negative), ("Exp", np.exp),
    ("Abs", np.abs), ("LeakyRelu", lambda v: np.where(v > 0, v, 0.3 * v)),
])
def test_unary(op: str, ref) -> None:
    g = Graph()
    x = rand(2, 3, 3, 2) * 4
    g.op(op, "y", [g.placeholder("x", [2, 3, 3, 2])], alpha=0.3)
    (y,) = run(g, {"x": x})
    np.testing.assert_allclose(y, ref(x), **TOL)


def test_pad_channels_after_conv_and_padv2_spatially() -> None:
    g = Graph()
    x, w = rand(1, 4, 4, 2), rand(1, 1, 2, 2)
    h = g.op("Conv2D", "h", [g.placeholder("x", [1, 4, 4, 2]), g.const("w", w)], strides=[1, 1, 1, 1], padding="SAME")
    p1 = np.array([[0, 0], [0, 0], [0, 0], [0, 3]], np.int32)
    p2 = np.array([[0, 0], [1, 2], [0, 1], [0, 0]], np.int32)
    a = g.op("Pad", "a", [h, g.const("p1", p1)])
    g.op("PadV2", "y", ["x", g.const("p2", p2), g.const("v", np.array(-2.5, np.float32))])
    ya, yb = run(g, {"x": x}, ["a", "y"])
    np.testing.assert_allclose(ya, np.pad(conv2d(x, w), p1), **TOL)
    np.testing.assert_allclose(yb, np.pad(x, p2, constant_values=-2.5), **TOL)


@pytest.mark.parametrize("op,ref", [("MaxPool", max_pool), ("AvgPool", avg_pool)])
@pytest.mark.parametrize("size,k,stride,padding", [(7, 2, 2, "SAME"), (7, 3, 2, "SAME"), (8, 3, 1, "VALID")])
def test_pools(op: str, ref, size: int, k: int, stride: int, padding: str) -> None:
    g = Graph()
    x = rand(1, size, size, 3)
    g.op(op, "y", [g.placeholder("x", [1, size, size, 3])], ksize=[1, k, k, 1], strides=[1, stride, stride, 1],
         padding=padding)
    (y,) = run(g, {"x": x})
    np.testing.assert_allclose(y, ref(x, k, stride, padding), **TOL)


def test_reshape_after_conv_flattens_in_nhwc_order() -> None:
    g = Graph()
    x, w = rand(1, 4, 4, 2), rand(3, 3, 2, 3)
    h = g.op("Conv2D", "h", [g.placeholder("x", [1, 4, 4, 2]), g.const("w", w)], strides=[1, 1, 1, 1], padding="SAME")
    g.op("Reshape", "y", [h, g.const("s", np.array([1, -1, 3], np.int32))])
    (y,) = run(g, {"x": x})
    np.testing.assert_allclose(y, conv2d(x, w).reshape(1, -1, 3), **TOL)


@pytest.mark.parametrize("op,ref", [("Mean", np.mean), ("Sum", np.sum), ("Max", np.max)])
@pytest.mark.parametrize("axes,keep", [([1, 2], False), ([1, 2], True), ([3], False), ([2], False), ([-1], True)])
def test_reductions_after_conv(op: str, ref, axes: list[int], keep: bool) -> None:
    g = Graph()
    x, w = rand(2, 4, 5, 2), rand(1, 1, 2, 3)
    h = g.op("Conv2D", "h", [g.placeholder("x", [-1, 4, 5, 2]), g.const("w", w)], strides=[1, 1, 1, 1], padding="SAME")
    g.op(op, "y", [h, g.const("axes", np.array(axes, np.int32))], keep_dims=keep)
    (y,) = run(g, {"x": x})
    np.testing.assert_allclose(y, ref(conv2d(x, w), axis=tuple(axes), keepdims=keep), **TOL)


def test_matmuls_and_softmax() -> None:
    g = Graph()
    x, w1, b1, w2 = rand(3, 6), rand(6, 4), rand(4), rand(5, 4)
    h = g.op("_FusedMatMul", "h", [g.placeholder("x", [-1, 6]), g.const("w1", w1), g.const("b1", b1)],
             fused_ops=["BiasAdd", "Relu"], num_args=1, transpose_a=False, transpose_b=False)
    z = g.op("MatMul", "z", [h, g.const("w2", w2)], transpose_b=True)
    g.op("Softmax", "y", [z])
    (y,) = run(g, {"x": x})
    logits = np.maximum(x @ w1 + b1, 0) @ w2.T
    e = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(y, e / e.sum(1, keepdims=True), **TOL)


def test_matmul_transpose_a_of_a_computed_input() -> None:
    g = Graph()
    x, w = rand(4, 3), rand(4, 2)
    g.op("MatMul", "y", [g.placeholder("x", [4, 3]), g.const("w", w)], transpose_a=True)
    (y,) = run(g, {"x": x})
    np.testing.assert_allclose(y, x.T @ w, **TOL)


def test_concat_of_conv_outputs_and_of_inputs() -> None:
    g = Graph()
    x, w1, w2 = rand(1, 4, 4, 2), rand(1, 1, 2, 3), rand(3, 3, 2, 1)
    a = g.op("Conv2D", "a", [g.placeholder("x", [1, 4, 4, 2]), g.const("w1", w1)], strides=[1, 1, 1, 1], padding="SAME")
    b = g.op("Conv2D", "b", ["x", g.const("w2", w2)], strides=[1, 1, 1, 1], padding="SAME")
    g.op("ConcatV2", "y", [a, b, g.const("axis", np.array(-1, np.int32))])
    g.op("ConcatV2", "z", ["x", "x", g.const("axis1", np.array(1, np.int32))])
    y, z = run(g, {"x": x}, ["y", "z"])
    np.testing.assert_allclose(y, np.concatenate([conv2d(x, w1), conv2d(x, w2)], -1), **TOL)
    np.testing.assert_allclose(z, np.concatenate([x, x], 1), **TOL)


def test_outputs_from_signature_keep_tf_names_and_the_nhwc_layout() -> None:
    g = Graph()
    x, w = rand(2, 4, 4, 1), rand(3, 3, 1, 2)
    h = g.op("Conv2D", "block/conv", [g.placeholder("input_1", [-1, 4, 4, 1]), g.const("w", w)],
             strides=[1, 1, 1, 1], padding="SAME")
    g.op("Identity", "out", [h])
    model_json, read = g.model(signature_outputs=["block/conv"])
    model = tfjs.convert(model_json, read)
    assert [o.name for o in model.graph.output] == ["block/conv"]
    assert [i.name for i in model.graph.input] == ["input_1"]
    dims = [d.dim_value or d.dim_param for d in model.graph.output[0].type.tensor_type.shape.dim]
    assert dims == ["N", 4, 4, 2]
    assert model.ir_version == 10
    # no signature: the node nothing consumes
    (y,) = run(g, {"input_1": x})
    np.testing.assert_allclose(y, conv2d(x, w), **TOL)


@pytest.mark.parametrize("quantize", ["float16", "uint8"])
def test_quantized_weights_and_several_shards(quantize: str) -> None:
    g = Graph()
    x, w = rand(1, 3, 3, 2), rand(1, 1, 2, 2)
    g.op("Conv2D", "y", [g.placeholder("x", [1, 3, 3, 2]), g.const("w", w, quantize=quantize)], strides=[1, 1, 1, 1],
         padding="SAME")
    g.op("Add", "z", ["y", g.const("c", rand(2))])
    model_json, read = g.model(shards=3)
    weights = tfjs.read_weights(model_json["weightsManifest"], read)
    tol = 1e-3 if quantize == "float16" else (w.max() - w.min()) / 255 / 2 + 1e-6
    np.testing.assert_allclose(weights["w"], w, atol=tol)
    (z,) = run(g, {"x": x}, shards=3)
    np.testing.assert_allclose(z, conv2d(x, weights["w"]) + weights["c"], **TOL)


# ------------------------------------------------------------------ refusals


def test_unknown_ops_are_refused_all_named() -> None:
    g = Graph()
    h = g.op("Cumsum", "h", [g.placeholder("x", [1, 4])])
    g.op("Erf", "y", [h])
    with pytest.raises(tfjs.TfjsConversionError, match="unsupported TF ops: Cumsum, Erf"):
        run(g, {})


def test_short_shards_and_extra_bytes_are_refused() -> None:
    g = Graph()
    g.op("Add", "y", [g.placeholder("x", [1, 2]), g.const("c", rand(2))])
    model_json, read = g.model()
    with pytest.raises(tfjs.TfjsConversionError, match="needs bytes 0..8"):
        tfjs.convert(model_json, lambda p: read(p)[:5])
    with pytest.raises(tfjs.TfjsConversionError, match="no weight describes"):
        tfjs.convert(model_json, lambda p: read(p) + b"\0\0\0\0")


@pytest.mark.parametrize("path", ["../secret.bin", "/etc/passwd", "a/../../b.bin", ""])
def test_shard_paths_outside_the_model_are_refused(path: str) -> None:
    manifest = [{"paths": [path], "weights": []}]
    with pytest.raises(tfjs.TfjsConversionError, match="relative path inside"):
        tfjs.read_weights(manifest, lambda p: pytest.fail("read a file outside the model"))


def test_a_shard_named_twice_is_refused_before_anything_is_joined() -> None:
    reads: list[str] = []
    for manifest in ([{"paths": ["a.bin"] * 1000, "weights": []}],
                     [{"paths": ["a.bin"], "weights": []}, {"paths": ["a.bin"], "weights": []}]):
        with pytest.raises(tfjs.TfjsConversionError, match="more than once"):
            tfjs.read_weights(manifest, lambda p: reads.append(p) or b"")
    assert reads == ["a.bin"]  # the second manifest's first group was read; nothing was read 1,000 times


def _const_node(tensor: dict) -> dict:
    return {"format": "graph-model", "modelTopology": {"node": [
        {"name": "x", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"},
                                                    "shape": {"shape": {"dim": [{"size": "1"}]}}}},
        {"name": "c", "op": "Const", "attr": {"value": {"tensor": tensor}, "dtype": {"type": "DT_FLOAT"}}},
        {"name": "y", "op": "AddV2", "input": ["x", "c"]},
    ]}, "weightsManifest": []}


@pytest.mark.parametrize(("tensor", "message"), [
    # 111 bytes of JSON asking for 256 MB, and for ~100 GB
    ({"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": 4000}, {"size": 4000}, {"size": 4}]}, "floatVal": [1.0]},
     "would fill more than"),
    ({"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": 40000}, {"size": 40000}, {"size": 16}]}}, "would fill more than"),
    ({"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": -3}]}, "floatVal": [1.0]}, "negative dimension"),
    ({"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": "x"}]}, "floatVal": [1.0]}, "malformed tensorShape"),
    ({"dtype": "DT_FLOAT", "tensorShape": {"dim": [{"size": 3}]}, "floatVal": [1.0, 2.0]}, "gives 2 values"),
])
def test_inline_constants_are_bounded_and_well_formed(tensor: dict, message: str) -> None:
    with pytest.raises(tfjs.TfjsConversionError, match=message):
        tfjs.convert(_const_node(tensor), lambda p: b"")


def test_bad_models_are_refused_with_reasons() -> None:
    with pytest.raises(tfjs.TfjsConversionError, match="not JSON"):
        tfjs.convert(b"{nope", lambda p: b"")
    with pytest.raises(tfjs.TfjsConversionError, match="only TF.js graph models"):
        tfjs.convert({"format": "layers-model", "modelTopology": {}}, lambda p: b"")
    with pytest.raises(tfjs.TfjsConversionError, match="modelTopology.node"):
        tfjs.convert({"format": "graph-model"}, lambda p: b"")
    with pytest.raises(tfjs.TfjsConversionError, match="dtype 'string'"):
        tfjs.read_weights([{"paths": ["a.bin"], "weights": [{"name": "s", "shape": [1], "dtype": "string"}]}],
                          lambda p: b"abcd")
    g = Graph()
    g.op("Conv2D", "y", [g.placeholder("x", [1, 4, 4, 1]), "x"], strides=[1, 1, 1, 1], padding="SAME")
    with pytest.raises(tfjs.TfjsConversionError, match="filter must be a constant"):
        run(g, {})
    g = Graph()
    g.op("Relu", "y", ["missing"])
    with pytest.raises(tfjs.TfjsConversionError, match="'missing' is not a node"):
        run(g, {})


# ------------------------------------------------------------------ Relu/Minimum/Maximum chains become Clip


def _clip_graph(lo: float, hi: float, share: bool = False) -> tuple[Graph, np.ndarray]:
    g = Graph()
    x, w = rand(1, 5, 5, 2) * 8, rand(1, 1, 2, 3)
    h = g.op("Conv2D", "h", [g.placeholder("x", [1, 5, 5, 2]), g.const("w", w)], strides=[1, 1, 1, 1], padding="SAME")
    r = g.op("Relu", "r", [h])
    m = g.op("Minimum", "m", [r, g.const("hi", np.array(hi, np.float32))])
    g.op("Maximum", "y", [m, g.const("lo", np.array(lo, np.float32))])
    if share:
        g.op("AddV2", "z", ["y", m])  # the Minimum's value is used twice: it must stay
    return g, x


def test_clipped_relu_chain_becomes_one_clip() -> None:
    g, x = _clip_graph(0.0, 6.0)
    model_json, read = g.model()
    ops = [n.op_type for n in tfjs.convert(model_json, read).graph.node]
    assert ops.count("Clip") == 1 and not {"Relu", "Min", "Max"} & set(ops)
    (y,) = run(g, {"x": x})
    np.testing.assert_allclose(y, np.maximum(np.minimum(np.maximum(conv2d(x, g_w(g)), 0), 6), 0), **TOL)


def g_w(g: Graph) -> np.ndarray:
    return np.frombuffer(bytes(g.blob[:24]), "<f4").reshape(1, 1, 2, 3)


def test_clip_fusion_keeps_shared_values_and_disjoint_ranges() -> None:
    g, x = _clip_graph(0.0, 6.0, share=True)
    ref_m = np.minimum(np.maximum(conv2d(x, g_w(g)), 0), 6)
    y, z = run(g, {"x": x}, ["y", "z"])
    np.testing.assert_allclose(z, np.maximum(ref_m, 0) + ref_m, **TOL)
    g, x = _clip_graph(3.0, 1.0)  # Minimum 1 then Maximum 3: the constant 3, not a Clip with lo > hi
    (y,) = run(g, {"x": x})
    np.testing.assert_allclose(y, np.full_like(y, 3.0), **TOL)
