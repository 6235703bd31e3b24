"""What an identifier's first bytes say it is, checked as the upload streams in.

An identifier type holds one kind of data (``entity_identifier_types.data_type``). A text file named
``photo.jpg``, an empty part or an HTML error page fetched from a URL would otherwise be stored as a face, counted
as usable, and fail only later in a training's decode. The signature (the format's magic bytes) is checked as the
stream starts; once the whole image is in, it is decoded (:func:`check_whole_image`), so a file cut short after
its header (a truncated JPEG) is refused at upload too, not found by a training's decode weeks later. The
decode is bounded: a JPEG decodes at 1/8 scale (its whole entropy-coded stream is still read, so a cut is
found), and an image over the decoders' pixel limit is not decoded here (the worker skips it as too large).

Images must be a format the engines decode (Pillow: JPEG, PNG, GIF, WebP, BMP, TIFF). A declared image type
is kept as the client gave it (``contentType`` is stored as given); any other declared type
(``application/octet-stream`` from ``curl -F file=@photo``, ``text/plain``) gives way to the one the bytes show. Audio is read by FFmpeg, which knows far more
containers than a list of signatures would, so audio and the other data types are only refused when empty.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

from gateway.errors import InvalidInput

HEAD_BYTES = 18  # enough for every check below (a BMP's DIB header size sits at bytes 14-17)

_IMAGE_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)
# "BM" alone would take any text that starts with it: a BMP's DIB header says its own size, one of these.
_BMP_HEADER_SIZES = {12, 16, 40, 52, 56, 64, 108, 124}
IMAGE_FORMATS = "JPEG, PNG, GIF, WebP, BMP or TIFF"


def image_type(head: bytes) -> str | None:
    """The MIME type of an image format the engines decode, from its first bytes; None when it is not one."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES:
        return "image/bmp"
    for signature, mime in _IMAGE_SIGNATURES:
        if head.startswith(signature):
            return mime
    return None


def content_type_for(data_type: str | None, head: bytes, declared: str) -> str:
    """The content type to store for a file of ``data_type`` that starts with ``head`` (the whole file when
    shorter than HEAD_BYTES); InvalidInput when the bytes cannot be that kind of data."""
    if not head:
        raise InvalidInput("the file is empty", data={"reason": "empty"})
    if data_type != "image":
        return declared
    sniffed = image_type(head)
    if sniffed is None:
        raise InvalidInput(
            f"the file is not an image ({IMAGE_FORMATS}); this identifier type holds images", data={"reason": "not-an-image"},
        )
    return declared if declared.startswith("image/") else sniffed


async def with_head(chunks: AsyncIterator[bytes]) -> tuple[bytes, AsyncIterator[bytes]]:
    """The first HEAD_BYTES of the stream (fewer when it is shorter), and the whole stream again from its start."""
    head = bytearray()
    taken: list[bytes] = []
    async for chunk in chunks:
        if chunk:
            taken.append(chunk)
            head += chunk
            if len(head) >= HEAD_BYTES:
                break

    async def again() -> AsyncIterator[bytes]:
        for chunk in taken:
            yield chunk
        async for chunk in chunks:
            yield chunk

    return bytes(head[:HEAD_BYTES]), again()


def whole_image_fault(data: bytes) -> str | None:
    """Why ``data`` does not decode whole as an image, or None when it does (CPU-bound: run off the event loop)."""
    import warnings

    from PIL import Image

    from engines.decode import DEFAULT_MAX_PIXELS, error_text

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > DEFAULT_MAX_PIXELS:
                    return None  # not decoded here: training skips it as too-large, and says so
                image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))  # JPEG: DCT scaling
                image.load()
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, ... for damaged data
        return error_text(exc)
    return None


async def check_whole_image(data: bytes) -> None:
    """InvalidInput (reason ``corrupt``) unless ``data`` decodes whole; decoded in a thread, since Pillow's
    decoders release the GIL, so the event loop keeps serving while a large image decodes."""
    fault = await asyncio.to_thread(whole_image_fault, data)
    if fault is not None:
        raise InvalidInput(f"the image does not decode whole ({fault}); nothing was stored", data={"reason": "corrupt"})
