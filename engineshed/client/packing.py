"""Model packages for ``register_model``: a file goes as it is; a directory is packed as a .tar.gz first.

The server inspects the package (gateway/services/model_packages): it takes ONNX and converts what it can, and
refuses what would need running the uploader's code (the seed's ``code/inference.py`` and ``.pt`` pickles), with
a message of its own the client passes through. Packing does not second-guess it.
"""

from __future__ import annotations

import os
import tarfile
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engineshed.client.errors import InvalidInputError
from engineshed.client.transport import Upload

# The seed's spellings of the applications, as registerModel's ModelApplication enum names them.
APPLICATIONS = {
    "embedding": "embedding", "embeddings": "embedding", "embedding generation": "embedding",
    "auto_tagging": "auto_tagging", "autotagging": "auto_tagging", "auto tagging": "auto_tagging", "auto-tagging": "auto_tagging",
    "auto_annotation": "auto_annotation", "autoannotation": "auto_annotation", "auto annotation": "auto_annotation",
}


def application(value: str) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"application must be embedding, auto_tagging or auto_annotation, not {value!r}")
    try:
        return APPLICATIONS[value.strip().lower()]
    except KeyError:
        raise InvalidInputError(f"application must be embedding, auto_tagging or auto_annotation, not {value!r}") from None


@contextmanager
def package(path: Path) -> Iterator[Upload]:
    """The Upload for ``path``: the file itself, or a temporary .tar.gz of the directory (removed afterwards)."""
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidInputError(f"path must be a file or directory path, not {type(path).__name__}")
    path = Path(path)
    if path.is_file():
        yield Upload.of(path)
        return
    if not path.is_dir():
        raise InvalidInputError(f"{path} is neither a file nor a directory")
    fd, name = tempfile.mkstemp(prefix=f"{path.name or 'model'}-", suffix=".tar.gz")
    os.close(fd)
    try:
        with tarfile.open(name, "w:gz") as archive:
            for member in sorted(path.rglob("*")):
                if member.is_symlink():
                    continue  # a link could point outside the folder: never send what the user did not put there
                archive.add(member, arcname=str(member.relative_to(path)), recursive=False)
        yield Upload(Path(name), f"{path.name or 'model'}.tar.gz", "application/gzip")
    finally:
        os.unlink(name)
