"""Rewrites a hand-typed multipart body into the canonical form python-multipart parses, as it streams.

The established API's own curl example (``curl -d '<pasted text>'``) sends a multipart body with bare LF
line endings and no blank line after each part's headers. python-multipart accepts neither, so the body
is repaired on its way in, chunk by chunk:

- the line ending of the first delimiter line decides the body's style: a bare LF there means every
  delimiter is ``\\n--boundary`` and every header line ends in ``\\n``; both are re-emitted with CRLF;
- in a part's header section, the first line that is not a ``Name: value`` header (a token, then a colon)
  starts the content: a blank line is inserted before it.

Content bytes pass through unchanged (a bare LF inside a file stays a bare LF), and nothing else is
judged here: part counts, header sizes, the field and file limits stay python-multipart's and
Starlette's, which see the repaired stream. Memory is bounded: at most one delimiter's length of content,
or one header name's worth of bytes, is held back between chunks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

# python-multipart refuses a header line longer than this; a longer run of name characters is passed on
# as a header line so that its own limit refuses it, as it would without this module.
MAX_HEADER_NAME = 4096 + 128
# Transport padding after a delimiter (RFC 2046 allows whitespace); more is not a delimiter line.
MAX_DELIMITER_LINE = 1024
_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")

_START, _DELIMITER_LINE, _HEADER_START, _HEADER_LINE, _CONTENT, _VERBATIM = range(6)


class MultipartRepair:
    """Feed it the body's chunks in order; it returns the canonical bytes so far (``finish`` the rest)."""

    def __init__(self, boundary: bytes) -> None:
        self._dash = b"--" + boundary
        self._delimiter = b"\r\n" + self._dash  # becomes b"\n--boundary" for a bare-LF body
        self._state = _START
        self._held = b""
        self._line_had_cr = False
        self._first = True

    def feed(self, data: bytes) -> bytes:
        if self._state == _VERBATIM:
            return data
        data = self._held + data if self._held else data
        self._held = b""
        out: list[bytes] = []
        position = 0
        while position < len(data):
            position = self._step(data, position, out)
            if position < 0:  # needs more bytes: what is left is held back
                break
        return b"".join(out)

    def finish(self) -> bytes:
        """The end of the body: whatever was held back goes out as it came (the parser judges it)."""
        held, self._held = self._held, b""
        return held

    def _hold(self, data: bytes, position: int) -> int:
        self._held = data[position:]
        return -1

    def _step(self, data: bytes, position: int, out: list[bytes]) -> int:
        state = self._state
        if state == _START:
            # The body must open with --boundary; anything else goes to the parser unchanged.
            needed = len(self._dash)
            if len(data) - position < needed:
                if not self._dash.startswith(data[position:]):
                    self._state = _VERBATIM
                    out.append(data[position:])
                    return len(data)
                return self._hold(data, position)
            if not data.startswith(self._dash, position):
                self._state = _VERBATIM
                out.append(data[position:])
                return len(data)
            out.append(self._dash)
            self._state = _DELIMITER_LINE
            return position + needed
        if state == _DELIMITER_LINE:
            # After a delimiter: "--" closes the body; otherwise padding up to the line end, then headers.
            if len(data) - position < 2:
                return self._hold(data, position)
            if data.startswith(b"--", position):
                self._state = _VERBATIM
                out.append(data[position:])
                return len(data)
            end = data.find(b"\n", position, position + MAX_DELIMITER_LINE)
            if end < 0:
                if len(data) - position >= MAX_DELIMITER_LINE:
                    self._state = _VERBATIM
                    out.append(data[position:])
                    return len(data)
                return self._hold(data, position)
            crlf = end > position and data[end - 1] == 0x0D
            if self._first:
                self._first = False
                if not crlf:
                    self._delimiter = b"\n" + self._dash
            out.append(data[position : end - 1 if crlf else end])
            out.append(b"\r\n")
            self._state = _HEADER_START
            return end + 1
        if state == _HEADER_START:
            # A blank line ends the headers; "Name:" starts a header; anything else starts the content.
            index = position
            limit = min(len(data), position + MAX_HEADER_NAME)
            while index < limit and data[index] in _TOKEN:
                index += 1
            if index == limit and limit - position < MAX_HEADER_NAME:
                return self._hold(data, position)
            stop = data[index] if index < len(data) else None
            if stop == 0x3A and index > position or index - position >= MAX_HEADER_NAME:  # "Name:" (or too long to be one)
                self._state = _HEADER_LINE
                self._line_had_cr = False
                return position
            if data.startswith(b"\r\n", position) or data.startswith(b"\n", position):
                out.append(b"\r\n")
                self._state = _CONTENT
                return position + (2 if data[position] == 0x0D else 1)
            if data[position] == 0x0D and len(data) - position < 2:
                return self._hold(data, position)
            out.append(b"\r\n")  # the missing blank line
            self._state = _CONTENT
            return position
        if state == _HEADER_LINE:
            end = data.find(b"\n", position)
            if end < 0:
                out.append(data[position:])
                self._line_had_cr = data[-1] == 0x0D
                return len(data)
            had_cr = data[end - 1] == 0x0D if end > position else self._line_had_cr
            out.append(data[position:end])
            out.append(b"\n" if had_cr else b"\r\n")
            self._state = _HEADER_START
            return end + 1
        if state == _CONTENT:
            found = data.find(self._delimiter, position)
            if found < 0:
                keep = min(len(self._delimiter) - 1, len(data) - position)
                out.append(data[position : len(data) - keep])
                return self._hold(data, len(data) - keep) if keep else len(data)
            out.append(data[position:found])
            out.append(b"\r\n" + self._dash)
            self._state = _DELIMITER_LINE
            return found + len(self._delimiter)
        out.append(data[position:])
        return len(data)


def boundary_of(content_type: str) -> bytes | None:
    options = content_type.split(";")
    if options[0].strip().lower() != "multipart/form-data":
        return None
    for option in options[1:]:
        key, _, value = option.strip().partition("=")
        value = value.strip().strip('"')
        if key.strip().lower() == "boundary" and value:
            return value.encode("latin-1")
    return None


def repaired(receive: Callable[[], Awaitable[dict[str, Any]]], boundary: bytes) -> Callable[[], Awaitable[dict[str, Any]]]:
    """An ASGI receive whose request body is the canonical form of the one ``receive`` yields."""
    repair = MultipartRepair(boundary)

    async def wrapped() -> dict[str, Any]:
        message = await receive()
        if message["type"] == "http.request":
            more = message.get("more_body", False)
            body = repair.feed(message.get("body", b""))
            if not more:
                body += repair.finish()
            message = {**message, "body": body}
        return message

    return wrapped
