"""Request bodies as real NVR clients send them: multipart (a file part with or without a
filename or content type, fields in any order, extra fields), urlencoded, JSON, or the query."""

from __future__ import annotations

import asyncio
import json
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from litestar import Request
from multipart import MultipartSegment, ParserError, ParserLimitReached, PushMultipartParser, parse_options_header

from edgewatch.daemon.api.errors import ApiError


@dataclass
class Form:
    fields: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)  # the first file part of each name
    first_file: bytes | None = None
    file_parts: list[tuple[str, bytes]] = field(default_factory=list)  # every file part, in order

    def images(self, name: str = "image") -> list[bytes]:
        """Every file part named ``name`` or ``name1``, ``name2``…, in the order sent (clients send both)."""
        pattern = re.compile(rf"{re.escape(name)}\d*")
        return [data for part, data in self.file_parts if pattern.fullmatch(part)]

    def image(self, name: str = "image") -> bytes:
        """The part ``name`` (``image``; License Plate Reader's is ``upload``), or as CodeProject.AI
        does, the first file part whatever its name."""
        if name in self.files:
            return self.files[name]
        if name in self.fields:  # sent as a plain field
            return self.fields[name].encode("utf-8", "surrogateescape")
        if self.first_file is not None:
            return self.first_file
        raise ApiError(400, f"no {name!r} file in the request: send multipart/form-data with the snapshot "
                            f"in a part named {name!r}")


URLENCODED_MAX_BYTES = 64 * 1024  # urlencoded and JSON forms carry a few small settings, never an image
URLENCODED_MAX_FIELDS = 100
OFF_LOOP_BYTES = 4 * 1024 * 1024  # larger bodies are parsed on a worker thread (multipart: about 0.6 ms a MB)
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded", "application/json")


async def read_form(request: Request, max_small_body: int = URLENCODED_MAX_BYTES,
                    require_form_type: bool = False) -> Form:
    """Parse the body (size-limited by the app: over the limit is 413) plus query parameters.

    Urlencoded and JSON bodies over ``max_small_body`` are refused with 413. With
    ``require_form_type`` a body of any other content type is refused with 415 (a browser page on
    another site can send ``text/plain`` without asking first; it cannot send these types).
    """
    body = await request.body()
    mime, options = parse_options_header(request.headers.get("content-type", ""))
    if mime in FORM_TYPES[1:] and len(body) > max_small_body:
        raise ApiError(413, f"a {mime} body of {len(body)} bytes is over the limit of {max_small_body}: it carries "
                            "only small fields; send images as multipart/form-data")
    if require_form_type and body and mime not in FORM_TYPES:
        raise ApiError(415, f"unsupported Content-Type {mime or '(none)'!r}: send multipart/form-data, "
                            "application/x-www-form-urlencoded or application/json")
    parsed = await _parsed_body(request, body, mime, options)
    query = {k: v for k, v in request.query_params.items()}
    return Form(fields={**query, **parsed.fields}, files=parsed.files, first_file=parsed.first_file,
                file_parts=parsed.file_parts)


async def form_fields(request: Request, names: tuple[str, ...]) -> dict[str, str]:
    """The text fields ``names`` of a form body (its parse is kept for :func:`read_form`), without the size
    and type checks the route makes; empty for a body of another type."""
    mime, options = parse_options_header(request.headers.get("content-type", ""))
    if mime not in FORM_TYPES:
        return {}
    parsed = await _parsed_body(request, await request.body(), mime, options)
    return {name: parsed.fields[name] for name in names if name in parsed.fields}


_PARSED = "edgewatch.parsed_form"


async def _parsed_body(request: Request, body: bytes, mime: str, options: dict[str, str]) -> Form:
    """The body's fields and files, parsed once per request."""
    state = request.scope.setdefault("state", {})  # type: ignore[typeddict-item]
    if _PARSED not in state:
        form = Form()
        if len(body) > OFF_LOOP_BYTES:
            await asyncio.to_thread(_parse_body, body, mime, options, form)
        else:
            _parse_body(body, mime, options, form)
        state[_PARSED] = form
    return state[_PARSED]


def _parse_body(body: bytes, mime: str, options: dict[str, str], form: Form) -> None:
    if mime == "multipart/form-data":
        _parse_multipart(body, options.get("boundary", ""), form)
    elif mime == "application/x-www-form-urlencoded":
        try:
            form.fields.update(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True,
                                         max_num_fields=URLENCODED_MAX_FIELDS))
        except ValueError:
            raise ApiError(400, f"too many fields in the form (at most {URLENCODED_MAX_FIELDS})") from None
    elif mime == "application/json" and body:
        try:
            data = json.loads(body)
        except ValueError:
            raise ApiError(400, "the JSON body is not valid JSON") from None
        if not isinstance(data, dict):
            raise ApiError(400, "the JSON body must be an object of names to values")
        if len(data) > URLENCODED_MAX_FIELDS:
            raise ApiError(400, f"too many fields in the JSON object (at most {URLENCODED_MAX_FIELDS})")
        form.fields.update({k: v if isinstance(v, str) else json.dumps(v) for k, v in data.items()})


def _parse_multipart(body: bytes, boundary: str, form: Form) -> None:
    if not boundary:
        raise ApiError(400, "multipart/form-data without a boundary: let your HTTP client build the form")
    segment: MultipartSegment | None = None
    chunks: list[bytes] = []
    try:
        with PushMultipartParser(boundary, max_segment_count=64) as parser:
            for event in parser.parse(body):
                if isinstance(event, MultipartSegment):
                    segment, chunks = event, []
                elif event:
                    chunks.append(bytes(event))
                elif segment is not None:
                    _store_part(segment, b"".join(chunks), form)
                    segment = None
            parser.parse(b"")
    except ParserLimitReached:
        raise ApiError(400, "too many parts in the multipart form (at most 64)") from None
    except ParserError as exc:
        raise ApiError(400, f"malformed multipart/form-data ({exc}): let your HTTP client build the form") from None


def _store_part(segment: MultipartSegment, data: bytes, form: Form) -> None:
    is_file = segment.filename is not None or segment.name == "image" or (
        segment.content_type is not None and not segment.content_type.startswith("text/"))
    if is_file:
        form.file_parts.append((segment.name, data))
        form.files.setdefault(segment.name, data)
        if form.first_file is None:
            form.first_file = data
    else:
        try:
            form.fields[segment.name] = data.decode(segment.charset or "utf-8", "replace")
        except (LookupError, ValueError):  # a charset Python lacks, or no text codec (base64, idna…): UTF-8
            form.fields[segment.name] = data.decode("utf-8", "replace")
