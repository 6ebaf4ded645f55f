"""Incremental parser for MJPEG over HTTP (``multipart/x-mixed-replace``): bytes in, JPEGs out."""

from __future__ import annotations

import re

MAX_FRAME_BYTES = 16 * 1024 * 1024
"""The largest JPEG taken from an HTTP camera (an MJPEG part or a snapshot body): more is refused."""

_CONTENT_LENGTH = re.compile(rb"(?im)^content-length:\s*(\d+)\s*$")
_SOI, _EOI = b"\xff\xd8", b"\xff\xd9"


def boundary_of(content_type: str) -> str | None:
    """The multipart boundary named in a Content-Type header, or None."""
    m = re.search(r'boundary="?([^";]+)"?', content_type or "", re.I)
    return m.group(1).strip() if m else None


class MjpegParser:
    """Feed it chunks as they arrive; it returns each complete part body (a JPEG) once whole.

    Parts are cut by Content-Length when the part has one, else at the next boundary. Servers that
    write the boundary with or without the leading ``--`` both work. Without a boundary it falls back
    to JPEG start/end markers. More than ``max_part_bytes`` without a complete part raises ValueError.
    """

    def __init__(self, boundary: str | None, max_part_bytes: int = MAX_FRAME_BYTES) -> None:
        self._delim = boundary.lstrip("-").encode() if boundary else None
        self._buf = bytearray()
        self._max = max_part_bytes

    def feed(self, data: bytes) -> list[bytes]:
        self._buf += data
        parts: list[bytes] = []
        while (part := self._next()) is not None:
            if part:
                parts.append(part)
        if len(self._buf) > self._max:
            raise ValueError(f"no complete MJPEG part in {len(self._buf)} bytes")
        return parts

    def _next(self) -> bytes | None:
        return self._next_by_markers() if self._delim is None else self._next_by_boundary()

    def _next_by_boundary(self) -> bytes | None:
        buf, delim = self._buf, self._delim
        assert delim is not None
        start = buf.find(delim)
        if start < 0:
            return None
        eol = buf.find(b"\n", start)
        if eol < 0:
            return None
        if buf[start + len(delim):eol].strip().startswith(b"--"):  # closing boundary
            del buf[:eol + 1]
            return b""
        head_end, sep = buf.find(b"\r\n\r\n", eol - 1), 4
        alt = buf.find(b"\n\n", eol)
        if head_end < 0 or (0 <= alt < head_end):
            head_end, sep = alt, 2
        if head_end < 0:
            return None
        headers = bytes(buf[eol + 1:head_end])
        body_start = head_end + sep
        m = _CONTENT_LENGTH.search(headers)
        if m:
            body_end = body_start + int(m.group(1))
            if len(buf) < body_end:
                return None
            part = bytes(buf[body_start:body_end])
            del buf[:body_end]
            return part
        nxt = buf.find(delim, body_start)
        if nxt < 0:
            return None
        part = bytes(buf[body_start:nxt]).rstrip(b"-").rstrip(b"\r\n")
        del buf[:nxt]
        return part

    def _next_by_markers(self) -> bytes | None:
        buf = self._buf
        start = buf.find(_SOI)
        if start < 0:
            del buf[:max(0, len(buf) - 1)]
            return None
        end = buf.find(_EOI, start + 2)
        if end < 0:
            return None
        part = bytes(buf[start:end + 2])
        del buf[:end + 2]
        return part
