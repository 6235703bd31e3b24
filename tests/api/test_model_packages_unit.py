"""Package reading without the stack: label lists in every accepted form, manifests merged, the graph read."""

from __future__ import annotations

import json

import pytest

from gateway.services.models.packages import (
    Limits,
    PackageError,
    label_list,
    read_package,
)
from sampledata import onnx_models as m

LIMITS = Limits(max_bytes=64 * 1024 * 1024, max_members=100, max_ratio=100)


@pytest.mark.parametrize("name, body", [
    ("label_list.yaml", b"- cat\n- dog\n- bird\n"),
    ("label_list.yaml", b"names:\n  0: cat\n  1: dog\n  2: bird\n"),  # the YOLO form
    ("labels.json", json.dumps(["cat", "dog", "bird"]).encode()),
    ("labels.json", json.dumps({"2": "bird", "0": "cat", "1": "dog"}).encode()),
    ("labels.txt", b"cat\ndog\n\nbird\n"),
])
def test_the_label_list_is_read_in_class_order_from_yaml_json_or_text(name, body):
    package = m.zip_of({"model.onnx": m.conv_net(classes=3), name: body,
                        "manifest.json": json.dumps(m.normalised_manifest()).encode()})
    read = read_package(package, filename="p.zip", application="auto_tagging", manifest=None, limits=LIMITS)
    assert read.labels == ["cat", "dog", "bird"] and read.dimension == 3


def test_yaml_is_read_with_the_safe_loader_so_tags_build_no_objects():
    package = m.zip_of({"model.onnx": m.conv_net(classes=2), "label_list.yaml": b"!!python/object/apply:os.system ['true']\n",
                        "manifest.json": json.dumps(m.normalised_manifest()).encode()})
    with pytest.raises(PackageError) as info:
        read_package(package, filename="p.zip", application="auto_tagging", manifest=None, limits=LIMITS)
    assert info.value.reason == "manifest" and "not valid YAML" in info.value.message


@pytest.mark.parametrize("value", [[], ["a", "a"], {"0": "a", "2": "b"}, [None], "cat"])
def test_label_lists_that_cannot_be_in_class_order_are_refused(value):
    with pytest.raises(PackageError):
        label_list(value)


def test_the_requests_manifest_wins_over_the_packages_section_by_section():
    package = m.zip_of({"model.onnx": m.conv_net(), "manifest.json": json.dumps(
        {"input": {"range": [0, 1], "color_order": "BGR"}, "output": {"name": "embedding"}}).encode()})
    read = read_package(package, filename="p.zip", application="embedding", manifest={"input": {"color_order": "RGB"}},
                        limits=LIMITS)
    assert read.manifest["input"]["color_order"] == "RGB" and read.manifest["input"]["range"] == [0, 1]


def test_a_manifest_that_contradicts_the_graph_is_refused():
    manifest = m.normalised_manifest()
    manifest["input"]["height"] = 224
    with pytest.raises(PackageError) as info:
        read_package(m.conv_net(), filename="x.onnx", application="embedding", manifest=manifest, limits=LIMITS)
    assert "input.height 224" in info.value.message and "32" in info.value.message


def test_the_archive_size_bound_holds_while_unpacking():
    small = Limits(max_bytes=1024 * 1024, max_members=100, max_ratio=10_000)
    package = m.zip_of({"model.onnx": b"\x01" * (2 * 1024 * 1024)})
    with pytest.raises(PackageError) as info:
        read_package(package, filename="p.zip", application="embedding", manifest=None, limits=small)
    assert info.value.reason == "too_large"


def test_a_sparse_tensor_with_external_data_is_refused_before_any_path_is_looked_up():
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load_from_string(m.conv_net(dimension=4))
    values = numpy_helper.from_array(np.array([1.0], np.float32), "sparse_values")
    values.ClearField("raw_data")
    values.data_location = TensorProto.EXTERNAL
    entry = values.external_data.add()
    entry.key, entry.value = "location", "pyproject.toml"  # a file that exists beside the gateway
    model.graph.sparse_initializer.append(
        helper.make_sparse_tensor(values, numpy_helper.from_array(np.array([0], np.int64), "sparse_indices"), [4]))
    for name, package in (("m.onnx", model.SerializeToString()),
                          ("p.zip", m.zip_of({"model.onnx": model.SerializeToString(), "pyproject.toml": b"x",
                                              "manifest.json": json.dumps(m.normalised_manifest()).encode()}))):
        with pytest.raises(PackageError, match="sparse tensor 'sparse_values' keeps its data in an external file"):
            read_package(package, filename=name, application="embedding", manifest=m.normalised_manifest(), limits=LIMITS)
