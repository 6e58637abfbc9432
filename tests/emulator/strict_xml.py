"""A strict check of raw EC2 query-protocol XML against botocore's output shapes.

botocore's parser is lenient: it ignores elements the model does not know and never checks
enums, so a response can "parse" and still be wrong. :func:`check_response` walks the raw body
and reports every element the shape does not define, every scalar that does not convert to its
type (integers, booleans, timestamps), every enum value that is not in the model (compared
case-insensitively: AWS sends ``pendingAcceptance`` where botocore's enum says
``PendingAcceptance``), and error bodies without the ``<Response><Errors><Error>`` frame,
``Code``/``Message`` or ``RequestID``.
"""

from __future__ import annotations

from xml.etree import ElementTree

from botocore.model import OperationModel, Shape
from botocore.utils import parse_timestamp


def _tag(node: ElementTree.Element) -> str:
    return node.tag.rsplit("}", 1)[-1]


def _key(member: Shape, name: str) -> str:
    serialized = member.serialization.get("name")
    return str(serialized) if serialized else name


def _scalar(shape: Shape, text: str, path: str, problems: list[str]) -> None:
    kind = shape.type_name
    try:
        if kind in ("integer", "long"):
            int(text)
        elif kind in ("float", "double"):
            float(text)
        elif kind == "boolean":
            if text not in ("true", "false"):
                raise ValueError(text)
        elif kind == "timestamp":
            parse_timestamp(text)
    except (ValueError, TypeError, OverflowError):
        problems.append(f"{path}: {text!r} is not a {kind}")
        return
    enum = shape.enum if kind == "string" else []
    if enum and text.lower() not in {e.lower() for e in enum}:
        problems.append(f"{path}: {text!r} is not one of {shape.name}'s values")


def _walk(shape: Shape, node: ElementTree.Element, path: str, problems: list[str]) -> None:
    kind = shape.type_name
    if kind == "structure":
        members: dict[str, Shape] = shape.members  # type: ignore[attr-defined]
        by_key = {_key(m, n): m for n, m in members.items()}
        for child in node:
            tag = _tag(child)
            member = by_key.get(tag)
            if member is None:
                problems.append(f"{path}/{tag}: not in shape {shape.name}")
            else:
                _walk(member, child, f"{path}/{tag}", problems)
    elif kind == "list":
        member_shape: Shape = shape.member  # type: ignore[attr-defined]
        item_tag = _key(member_shape, "member")
        for child in node:
            if _tag(child) != item_tag:
                problems.append(f"{path}/{_tag(child)}: list items must be <{item_tag}>")
            else:
                _walk(member_shape, child, f"{path}/{item_tag}", problems)
    elif kind == "map":  # pragma: no cover - no EC2 output used here has maps
        return
    else:
        if len(node):
            problems.append(f"{path}: scalar {shape.name} has child elements")
            return
        _scalar(shape, node.text or "", path, problems)


def check_response(operation: OperationModel, status: int, body: bytes) -> list[str]:
    """Problems found in one raw response (empty when it matches the model)."""
    try:
        root = ElementTree.fromstring(body)
    except ElementTree.ParseError as exc:
        return [f"{operation.name}: body is not XML ({exc})"]
    if status >= 300:
        tags = {_tag(c): c for c in root}
        errors = tags.get("Errors")
        error = None if errors is None else next((c for c in errors if _tag(c) == "Error"), None)
        problems = []
        if _tag(root) != "Response" or error is None:
            problems.append(f"{operation.name}: error body is not <Response><Errors><Error>")
        else:
            fields = {_tag(c): c for c in error}
            for field in ("Code", "Message"):
                value = fields.get(field)
                if value is None or not (value.text or "").strip():
                    problems.append(f"{operation.name}: error without {field}")
        if "RequestID" not in tags:
            problems.append(f"{operation.name}: error without RequestID")
        return problems
    problems = []
    if _tag(root) != f"{operation.name}Response":
        problems.append(f"{operation.name}: root element is <{_tag(root)}>")
    shape = operation.output_shape
    if shape is None:
        return problems
    for child in root:
        if _tag(child) == "requestId":
            continue
        holder = ElementTree.Element("root")
        holder.append(child)
        _walk(shape, holder, operation.name, problems)
    return problems


def served_operations() -> set[str]:
    """EC2 operations the emulator serves (handlers it adds to or wraps on moto's EC2Response)."""
    import botocore.session
    from botocore import xform_name

    from vpce_tools.emulator.responses import PrivateLinkResponses

    model = botocore.session.get_session().get_service_model("ec2")
    handlers = {n for n in vars(PrivateLinkResponses) if not n.startswith("_")}
    return {op for op in model.operation_names if xform_name(op) in handlers}
