"""Every bad package gets its own clear invalid_input error and leaves PostgreSQL and S3 exactly as they were."""

from __future__ import annotations

import json

import pytest

from sampledata import onnx_models as m
from tests.api.test_model_registry import register_form, registry_state


def _manifest_json() -> bytes:
    return json.dumps(m.normalised_manifest()).encode()


# case -> (package bytes, file name, application, manifest, reason, words the message must carry)
CASES = {
    "path traversal": (lambda: m.tar_gz_of({"../evil.onnx": m.conv_net()}), "p.tar.gz", "embedding", None,
                       "path_traversal", ["'..'"]),
    "absolute path": (lambda: m.tar_gz_of({"/etc/evil.onnx": m.conv_net()}), "p.tar.gz", "embedding", None,
                      "absolute_path", ["absolute path"]),
    "symlink (tar)": (lambda: m.tar_gz_of({"model.onnx": m.conv_net(), "manifest.json": _manifest_json()},
                                          extra=[m.symlink("weights.bin", "/etc/passwd")]), "p.tar.gz", "embedding", None,
                      "link", ["link"]),
    "symlink (zip)": (lambda: m.zip_of({"model.onnx": m.conv_net()}, symlinks={"weights.bin": "/etc/passwd"}), "p.zip",
                      "embedding", None, "link", ["symbolic link"]),
    "device": (lambda: m.tar_gz_of({"model.onnx": m.conv_net()}, extra=[m.device("dev/mem")]), "p.tar.gz", "embedding",
               None, "device", ["device"]),
    "too many members": (lambda: m.zip_of({f"f{i}.txt": b"" for i in range(1001)}), "p.zip", "embedding", None,
                         "too_many_members", ["more than 1000 members"]),
    "zip bomb ratio": (lambda: m.zip_of({"model.onnx": b"\0" * (50 << 20)}), "p.zip", "embedding", None,
                       "compression_ratio", ["expands more than 100 times"]),
    "tar.gz bomb ratio": (lambda: m.tar_gz_of({"model.onnx": b"\0" * (50 << 20)}), "p.tar.gz", "embedding", None,
                          "compression_ratio", ["expands more than 100 times"]),
    "empty file": (lambda: b"", "x.onnx", "embedding", m.normalised_manifest(), "empty_file", ["empty"]),
    "not onnx": (lambda: b"not an onnx model at all", "x.onnx", "embedding", m.normalised_manifest(), "bad_onnx",
                 ["not an ONNX model"]),
    "checker refuses": (lambda: m.broken_graph(), "x.onnx", "embedding", m.normalised_manifest(), "onnx_checker",
                        ["onnx.checker"]),
    "IR version the runtime cannot read": (lambda: m.with_versions(m.conv_net(), ir=99), "x.onnx", "embedding",
                                           m.normalised_manifest(), "ir_version", ["IR version is 99"]),
    "opset the runtime cannot read": (lambda: m.with_versions(m.conv_net(), opset=99), "x.onnx", "embedding",
                                      m.normalised_manifest(), "opset", ["opset is 99"]),
    "custom op domain": (lambda: m.conv_net(domain_op=("com.evil", "Steal")), "x.onnx", "embedding",
                         m.normalised_manifest(), "custom_domain", ["com.evil", "custom-op libraries"]),
    "external data outside": (lambda: m.zip_of({"model.onnx": m.external_data_net("../weights.bin"),
                                                "manifest.json": _manifest_json()}), "p.zip", "embedding", None,
                              "external_data", ["outside the package"]),
    "external data on a bare file": (lambda: m.external_data_net("weights.bin"), "x.onnx", "embedding",
                                     m.normalised_manifest(), "external_data", ["external file"]),
    "wrong dimension": (lambda: m.conv_net(dimension=16), "x.onnx", "embedding", m.normalised_manifest(dimension=128),
                        "dimension_mismatch", ["dimension 128", "16"]),
    "label mismatch": (lambda: m.classifier_package(["cat", "dog", "bird"], classes=4), "p.zip", "auto_tagging", None,
                       "label_mismatch", ["3 labels", "4 classes"]),
    "classifier without labels": (lambda: m.conv_net(classes=3), "x.onnx", "auto_tagging", m.normalised_manifest(),
                                  "labels", ["label_list.yaml"]),
    "no value mapping": (lambda: m.conv_net(), "x.onnx", "embedding", {"input": {}}, "manifest", ["range", "mean"]),
    "seed layout with .pt": (m.seed_layout_package, "yolo.zip", "auto_tagging", None, "code_package",
                             ["never run", "pickle", "torch.onnx.export", "tf2onnx"]),
    "a pickle": (m.pickle_bytes, "model.pt", "embedding", None, "pickle", ["pickle", "never loaded", "torch.onnx.export"]),
    "a pickle inside an archive": (lambda: m.zip_of({"weights.pkl": m.pickle_bytes(), "manifest.json": _manifest_json()}),
                                   "p.zip", "embedding", None, "code_package", ["pickle"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_bad_package_is_refused_with_its_own_reason_and_nothing_is_stored(org, stack, bucket, case):
    make, filename, application, manifest, reason, words = CASES[case]
    before = registry_state(stack, bucket)
    reply = register_form(org, "bad-" + reason.replace("_", "-"), make(), filename, application=application, manifest=manifest)
    assert reply.status == 200 and reply.error_code == "invalid_input", reply.body
    error = reply.errors[0]
    assert error["extensions"]["data"]["reason"] == reason, error
    for word in words:
        assert word in error["message"], (word, error["message"])
    assert "Traceback" not in json.dumps(reply.body)
    assert registry_state(stack, bucket) == before


def test_a_tfjs_model_the_converter_cannot_take_is_refused_naming_the_op(org, stack, bucket):
    model_json = {"format": "graph-model", "modelTopology": {"node": [
        {"name": "input", "op": "Placeholder", "attr": {"dtype": {"type": "DT_FLOAT"}}},
        {"name": "out", "op": "Erf", "input": ["input"]}]}, "weightsManifest": []}
    before = registry_state(stack, bucket)
    package = m.zip_of({"web/model.json": json.dumps(model_json).encode()})
    reply = register_form(org, "tfjs-bad", package, "web.zip", manifest=m.normalised_manifest())
    assert reply.error_code == "invalid_input" and reply.errors[0]["extensions"]["data"]["reason"] == "tfjs"
    assert "Erf" in reply.error_message
    assert registry_state(stack, bucket) == before
