"""The request bodies of the routes that read their own (CodeProject.AI-style forms, a camera's JSON)
in the OpenAPI schema.

Those handlers read their bodies themselves (:func:`edgewatch.daemon.api.forms.read_form`: any
client's multipart, urlencoded or JSON), so Litestar cannot see what they take. A handler names its
form with ``operation_class=multipart_form(...)``; the schema then shows the parts, Swagger UI can
send them, and the API fuzz test (tests/test_fuzz_api.py) reaches each route's decoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from pydantic import BaseModel


def file_part(what: str = "the snapshot (JPEG, PNG, BMP, WebP)") -> Schema:
    return Schema(type=OpenAPIType.STRING, format="binary", description=f"{what}; filename and content type optional")


def text_part(description: str, max_length: int | None = None) -> Schema:
    return Schema(type=OpenAPIType.STRING, description=description, max_length=max_length)


def number_part(description: str, minimum: float = 0.0, maximum: float = 1.0) -> Schema:
    return Schema(type=OpenAPIType.NUMBER, minimum=minimum, maximum=maximum, description=description)


def integer_part(description: str, minimum: int, maximum: int | None = None) -> Schema:
    return Schema(type=OpenAPIType.INTEGER, minimum=minimum, maximum=maximum, description=description)


MIN_CONFIDENCE = number_part("drop predictions below this confidence (default: the module's min_confidence setting)")


def _operation(body: RequestBody) -> type[Operation]:
    @dataclass
    class BodyOperation(Operation):
        def __post_init__(self) -> None:
            self.request_body = body

    return BodyOperation


def multipart_form(required: tuple[str, ...] = (), **parts: Schema) -> type[Operation]:
    """An Operation class documenting a multipart/form-data body of ``parts`` (``required`` of them
    needed), for a handler's ``operation_class``."""
    return _operation(RequestBody(required=bool(required), content={"multipart/form-data": OpenAPIMediaType(
        schema=Schema(type=OpenAPIType.OBJECT, properties=parts, required=sorted(required) or None))}))


_KEYWORDS = {"type": "type", "pattern": "pattern", "enum": "enum", "const": "const", "minimum": "minimum",
             "maximum": "maximum", "exclusiveMinimum": "exclusive_minimum", "exclusiveMaximum": "exclusive_maximum",
             "minLength": "min_length", "maxLength": "max_length", "description": "description", "default": "default",
             "format": "format"}


def schema_from_json(js: dict[str, Any]) -> Schema:
    """An OpenAPI Schema from a JSON Schema (pydantic's): the keywords a request body's fields use;
    a ``$ref``'d part is left open (any value)."""
    out: dict[str, Any] = {}
    for key, name in _KEYWORDS.items():
        if key in js:
            out[name] = OpenAPIType(js[key]) if key == "type" and isinstance(js[key], str) else js[key]
    if "anyOf" in js:
        out["any_of"] = [schema_from_json(s) for s in js["anyOf"]]
    if "items" in js and isinstance(js["items"], dict):
        out["items"] = schema_from_json(js["items"])
    if isinstance(js.get("properties"), dict):
        out["properties"] = {k: schema_from_json(v) for k, v in js["properties"].items()}
        out["required"] = js.get("required") or None
    return Schema(**out)


def json_body(model: type[BaseModel], description: str) -> type[Operation]:
    """An Operation class documenting a JSON body that ``model`` (pydantic) validates, for a handler
    that reads and validates its body itself."""
    schema = schema_from_json(model.model_json_schema())
    schema.description = description
    return _operation(RequestBody(required=True, content={"application/json": OpenAPIMediaType(schema=schema)}))
