"""Read template.yaml (CloudFormation short-form tags included) so that local tables, tests and the
emulator are built from the same definitions that deploy: they cannot drift."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"

# Logical table ID -> the Settings field that names it.
TABLES = {
    "RegistryTable": "registry_table",
    "AuditTable": "audit_table",
    "EscalationsTable": "escalations_table",
}


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that keeps `!Ref X` and friends as {"Ref": X} / {"Fn::X": ...}."""


def _construct(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    if isinstance(node, yaml.ScalarNode):
        value: Any = loader.construct_scalar(node)
        if suffix == "GetAtt" and isinstance(value, str):
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _construct)


@functools.cache
def load(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        data = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - a SafeLoader subclass
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a CloudFormation template")
    return data


def create_table_kwargs(logical_id: str, table_name: str, path: Path = TEMPLATE) -> dict[str, Any]:
    """CreateTable arguments for a table of the template (key schema, GSIs, stream)."""
    props = load(path)["Resources"][logical_id]["Properties"]
    kwargs: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": "PAY_PER_REQUEST",
    }
    if props.get("GlobalSecondaryIndexes"):
        kwargs["GlobalSecondaryIndexes"] = [
            {k: v for k, v in gsi.items() if k in {"IndexName", "KeySchema", "Projection"}}
            for gsi in props["GlobalSecondaryIndexes"]
        ]
    if props.get("StreamSpecification"):
        kwargs["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": props["StreamSpecification"]["StreamViewType"],
        }
    return kwargs


def ttl_attribute(logical_id: str, path: Path = TEMPLATE) -> str | None:
    spec = load(path)["Resources"][logical_id]["Properties"].get("TimeToLiveSpecification")
    return str(spec["AttributeName"]) if spec and spec.get("Enabled") else None
