"""Archive unpacking, bounded member by member: names, types, count, size and expansion ratio."""

from __future__ import annotations

import io
import re
import stat
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from gateway.services.models.packages.errors import PackageError

RATIO_FLOOR_BYTES = 1024 * 1024  # below this a member may compress as well as it likes (small files do)
CHUNK = 256 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    max_bytes: int
    max_members: int
    max_ratio: int


def open_zip(data: bytes) -> zipfile.ZipFile:
    try:
        return zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise PackageError(f"the .zip archive cannot be read: {exc}", "bad_archive") from None


def check_member_name(name: str) -> str:
    """The member's path, normalised; refuses absolute paths and any ``..``."""
    if not name or "\x00" in name:
        raise PackageError("an archive member has an empty name", "bad_member")
    text = name.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:", text):
        raise PackageError(f"the archive member {name!r} has an absolute path; members must be relative", "absolute_path")
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise PackageError(f"the archive member {name!r} climbs out of the package with '..'", "path_traversal")
    return "/".join(parts)


class _Budget:
    """Counts what unpacking produces: members, total bytes, and how far each member expands."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.members = 0
        self.total = 0

    def member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise PackageError(f"the archive has more than {self.limits.max_members} members", "too_many_members")

    def grow(self, name: str, produced: int, consumed: int, added: int) -> None:
        self.total += added
        if self.total > self.limits.max_bytes:
            raise PackageError(f"the archive unpacks to more than {self.limits.max_bytes} bytes", "too_large")
        if produced > RATIO_FLOOR_BYTES and produced > self.limits.max_ratio * max(consumed, 1):
            raise PackageError(
                f"the archive member {name!r} expands more than {self.limits.max_ratio} times (a zip bomb?); refused "
                "while unpacking",
                "compression_ratio",
            )


def unpack(data: bytes, kind: str, limits: Limits) -> dict[str, bytes]:
    """Members by normalised path. Links, devices, duplicates, and anything past the limits are refused,
    each as it is met, before more is read."""
    budget = _Budget(limits)
    members: dict[str, bytes] = {}
    items = _zip_members(data, budget) if kind == "zip" else _tar_members(data, budget)
    for path, body in items:
        if path in members:
            raise PackageError(f"the archive holds {path!r} twice", "duplicate_member")
        members[path] = body
    if not members:
        raise PackageError("the archive holds no files", "empty_archive")
    return members


def _zip_members(data: bytes, budget: _Budget) -> Iterator[tuple[str, bytes]]:
    with open_zip(data) as zf:
        infos = zf.infolist()
        if len(infos) > budget.limits.max_members:
            raise PackageError(f"the archive has more than {budget.limits.max_members} members", "too_many_members")
        for info in infos:
            budget.member()
            path = check_member_name(info.filename)
            mode = info.external_attr >> 16
            if stat.S_ISLNK(mode):
                raise PackageError(f"the archive member {info.filename!r} is a symbolic link; links are refused", "link")
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
                raise PackageError(f"the archive member {info.filename!r} is a device or pipe; refused", "device")
            if info.is_dir():
                continue
            body = bytearray()
            try:
                with zf.open(info) as stream:
                    while chunk := stream.read(CHUNK):
                        body += chunk
                        budget.grow(path, len(body), _zip_consumed(stream, info), len(chunk))
            except (zipfile.BadZipFile, OSError, EOFError, NotImplementedError, RuntimeError) as exc:
                raise PackageError(f"the archive member {info.filename!r} cannot be read: {exc}", "bad_archive") from None
            yield path, bytes(body)


def _zip_consumed(stream: Any, info: zipfile.ZipInfo) -> int:
    """Compressed bytes the member's stream has read so far. The header's compress_size alone would let a
    forged (huge) size hide a bomb; CPython's ZipExtFile counts down what is left of the real data."""
    left = getattr(stream, "_compress_left", None)
    consumed = info.compress_size - left if isinstance(left, int) else info.compress_size
    return min(consumed, info.compress_size) + CHUNK


class _CountingReader(io.RawIOBase):
    """The compressed bytes consumed so far, so a tar.gz member's expansion can be judged as it streams."""

    def __init__(self, data: bytes) -> None:
        self._stream = io.BytesIO(data)
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._stream.readinto(buffer)
        self.consumed += n
        return n


def _tar_members(data: bytes, budget: _Budget) -> Iterator[tuple[str, bytes]]:
    raw = _CountingReader(data)
    try:
        archive = tarfile.open(fileobj=io.BufferedReader(raw, 64 * 1024), mode="r|*")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise PackageError(f"the .tar.gz archive cannot be read: {exc}", "bad_archive") from None
    try:
        while True:
            try:
                info = archive.next()
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise PackageError(f"the .tar.gz archive cannot be read: {exc}", "bad_archive") from None
            if info is None:
                return
            budget.member()
            path = check_member_name(info.name)
            if info.issym() or info.islnk():
                raise PackageError(f"the archive member {info.name!r} is a link; links are refused", "link")
            if info.ischr() or info.isblk() or info.isfifo() or info.isdev():
                raise PackageError(f"the archive member {info.name!r} is a device or pipe; refused", "device")
            if info.isdir():
                continue
            if not info.isfile():
                raise PackageError(f"the archive member {info.name!r} is not a regular file", "bad_member")
            if info.size > budget.limits.max_bytes:
                raise PackageError(f"the archive unpacks to more than {budget.limits.max_bytes} bytes", "too_large")
            stream = archive.extractfile(info)
            body = bytearray()
            start = raw.consumed
            try:
                while chunk := stream.read(CHUNK):
                    body += chunk
                    # Compressed input consumed for this member (read-ahead makes it an overestimate).
                    budget.grow(path, len(body), raw.consumed - start + CHUNK, len(chunk))
            except (tarfile.TarError, OSError, EOFError) as exc:
                raise PackageError(f"the archive member {info.name!r} cannot be read: {exc}", "bad_archive") from None
            yield path, bytes(body)
    finally:
        archive.close()
