"""The multipart repair on its own: canonical bodies pass unchanged, hand-typed ones come out canonical,
whatever the chunking, and it never holds more than a bounded number of bytes back."""

from __future__ import annotations

import os
import random

import pytest

from gateway.web.multipart_repair import MAX_DELIMITER_LINE, MAX_HEADER_NAME, MultipartRepair, boundary_of

BOUNDARY = b"---------------------------9051914041544843365972754266"


def body(parts: list[tuple[list[bytes], bytes]], newline: bytes = b"\r\n", blank: bool = True, close: bytes = b"--\r\n") -> bytes:
    """parts: (header lines, content)."""
    out = b""
    for headers, content in parts:
        out += b"--" + BOUNDARY + newline + b"".join(h + newline for h in headers) + (newline if blank else b"") + content + newline
    return out + b"--" + BOUNDARY + close


def repaired(data: bytes, chunks: list[int] | None = None) -> bytes:
    repair = MultipartRepair(BOUNDARY)
    out = b""
    position = 0
    for size in chunks or [len(data)]:
        out += repair.feed(data[position : position + size])
        position += size
    out += repair.feed(data[position:]) + repair.finish()
    return out


def random_chunks(rng: random.Random, total: int) -> list[int]:
    sizes = []
    while sum(sizes) < total:
        sizes.append(rng.choice([1, 2, 3, 5, 17, 64, 1000]))
    return sizes


PARTS = [
    ([b'Content-Disposition: form-data; name="query"'], b"mutation {\nx\n}"),
    ([b'Content-Disposition: form-data; name="file"; filename="a.bin"', b"Content-Type: application/octet-stream"],
     b"\r\n--not-the-boundary\n\r\x00" + os.urandom(3000) + b"\n-" + BOUNDARY[:-1]),
]


@pytest.mark.parametrize("seed", range(20))
def test_a_canonical_body_passes_unchanged_in_any_chunking(seed):
    rng = random.Random(seed)
    data = body(PARTS)
    assert repaired(data, random_chunks(rng, len(data))) == data


@pytest.mark.parametrize("seed", range(20))
def test_bare_lf_and_missing_blank_lines_come_out_canonical(seed):
    rng = random.Random(seed)
    parts = [PARTS[0], ([b'Content-Disposition: form-data; name="file"; filename="a.txt"', b"Content-Type: text/plain"], b"one\ntwo\n")]
    canonical = body(parts)
    for typed in (body(parts, b"\n"), body(parts, b"\n", blank=False), body(parts, b"\r\n", blank=False)):
        assert repaired(typed, random_chunks(rng, len(typed))) == canonical


def test_without_the_blank_line_a_first_content_line_shaped_like_a_header_is_a_header():
    """The documented rule: the first line that is not `Name: value` starts the content."""
    typed = b"--" + BOUNDARY + b'\nContent-Disposition: form-data; name="q"\nX-Note: hi\n{ a }\n--' + BOUNDARY + b"--"
    assert repaired(typed) == (
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="q"\r\nX-Note: hi\r\n\r\n{ a }\r\n--' + BOUNDARY + b"--"
    )


def test_the_seed_body_as_curl_sends_it():
    typed = (
        b"--" + BOUNDARY + b'\nContent-Disposition: form-data; name="query"\nmutation {\nid\n}\n'
        b"--" + BOUNDARY + b'\nContent-Disposition: form-data; name="file"; filename="file1.txt"\nContent-Type: text/plain\n'
        b"contents of file1.txt\n--" + BOUNDARY + b"--"
    )
    expected = (
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="query"\r\n\r\nmutation {\nid\n}\r\n'
        b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="file"; filename="file1.txt"\r\nContent-Type: text/plain\r\n\r\n'
        b"contents of file1.txt\r\n--" + BOUNDARY + b"--"
    )
    assert repaired(typed) == expected
    assert repaired(typed, [1] * len(typed)) == expected


def test_a_body_that_does_not_open_with_its_boundary_passes_unchanged():
    for data in (b"garbage\n--" + BOUNDARY + b"\n", b"-", b"", b"--other\r\n"):
        assert repaired(data, [1] * len(data)) == data


def test_bytes_held_back_stay_bounded():
    repair = MultipartRepair(BOUNDARY)
    worst = 0
    stream = [b"--" + BOUNDARY + b"\n", b'Content-Disposition: form-data; name="f"; filename="x"\n\n']
    stream += [os.urandom(4096) for _ in range(200)]  # content: held back at most one delimiter
    stream += [b"\n--" + BOUNDARY + b"\n", b"X" * (3 * MAX_HEADER_NAME)]  # a header name longer than any allowed
    stream += [b" " * (3 * MAX_DELIMITER_LINE)]
    for chunk in stream:
        for i in range(0, len(chunk), 97):
            repair.feed(chunk[i : i + 97])
            worst = max(worst, len(repair._held))
    assert worst <= MAX_HEADER_NAME + 97


@pytest.mark.parametrize(("header", "expected"), [
    ("multipart/form-data; boundary=abc", b"abc"),
    ('Multipart/Form-Data; charset=utf-8; boundary="a b"', b"a b"),
    ("multipart/form-data", None),
    ("multipart/form-data; boundary=", None),
    ("multipart/mixed; boundary=abc", None),
    ("application/json", None),
])
def test_boundary_of(header, expected):
    assert boundary_of(header) == expected
