"""A strict check of raw JSON-protocol bodies (Organizations) against botocore's output shapes.

botocore's JSON parser is lenient: it skips members the shape does not know, never checks enums
and converts what it can. :func:`check_json_response` reports every key the shape does not
define, every value of the wrong JSON type (a string where an integer belongs, a list where a
structure belongs...), every timestamp botocore cannot read, every enum value not in the model,
and error bodies without ``__type`` and a message. ``null`` is reported unless ``allow_null``:
botocore treats it as absent, AWS omits the key (moto sends ``"NextToken": null`` on some list
calls; see docs/EMULATOR.md).
"""

from __future__ import annotations

import json
from typing import Any

from botocore.model import OperationModel, Shape
from botocore.utils import parse_timestamp

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "blob": (str,),
    "boolean": (bool,),
    "integer": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "structure": (dict,),
    "map": (dict,),
    "list": (list,),
}


def _walk(shape: Shape, value: Any, path: str, problems: list[str], allow_null: bool) -> None:
    kind = shape.type_name
    if value is None:
        if not allow_null:
            problems.append(f"{path}: null (AWS omits an absent member)")
        return
    if kind == "timestamp":
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            problems.append(f"{path}: {value!r} is not a timestamp")
            return
        try:
            parse_timestamp(value)
        except (ValueError, TypeError, OverflowError):
            problems.append(f"{path}: {value!r} is not a timestamp")
        return
    expected = _JSON_TYPES.get(kind)
    if expected is None:
        problems.append(f"{path}: shape type {kind} is not checked")
        return
    if not isinstance(value, expected) or (kind in ("integer", "long") and value is True):
        problems.append(f"{path}: {type(value).__name__} where {kind} {shape.name} belongs")
        return
    if kind == "structure":
        members: dict[str, Shape] = shape.members  # type: ignore[attr-defined]
        for key, item in value.items():
            member = members.get(key)
            if member is None:
                problems.append(f"{path}/{key}: not in shape {shape.name}")
            else:
                _walk(member, item, f"{path}/{key}", problems, allow_null)
    elif kind == "list":
        member_shape: Shape = shape.member  # type: ignore[attr-defined]
        for i, item in enumerate(value):
            _walk(member_shape, item, f"{path}[{i}]", problems, allow_null)
    elif kind == "map":
        value_shape: Shape = shape.value  # type: ignore[attr-defined]
        for key, item in value.items():
            _walk(value_shape, item, f"{path}/{key}", problems, allow_null)
    elif kind == "string" and shape.enum and value not in shape.enum:
        problems.append(f"{path}: {value!r} is not one of {shape.name}'s values")


def check_json_response(
    operation: OperationModel, status: int, body: bytes, *, allow_null: bool = True
) -> list[str]:
    """Problems found in one raw JSON-protocol response (empty when it matches the model)."""
    name = operation.name
    try:
        doc = json.loads(body or b"{}")
    except ValueError as exc:
        return [f"{name}: body is not JSON ({exc})"]
    if not isinstance(doc, dict):
        return [f"{name}: body is not a JSON object"]
    if status >= 300:
        problems = []
        if not isinstance(doc.get("__type"), str) or not doc["__type"]:
            problems.append(f"{name}: error without __type")
        message = doc.get("message", doc.get("Message"))
        if not isinstance(message, str) or not message.strip():
            problems.append(f"{name}: error without a message")
        return problems
    shape = operation.output_shape
    if shape is None:
        return [] if not doc else [f"{name}: a body where the model has no output"]
    problems = []
    _walk(shape, doc, name, problems, allow_null)
    return problems
