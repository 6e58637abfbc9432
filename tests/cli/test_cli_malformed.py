"""Every CLI verb that reads the registry tolerates a wrongly typed item (issue 11 §2): the item is
reported (which key, which field) and skipped, never a traceback for everyone, and the documented
repairs (`registry add --replace`, `registry remove`, `registry import`) work on it."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_runner import Cli, cli_fixture  # noqa: F401 - provides the `cli` fixture

from conftest import CONSUMER, OTHER, grant
from vpce_approver.model import GrantStatus
from vpce_approver.tables import RegistryItem
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.stack import LocalDeployment

SVC = "vpce-svc-0123456789abcdef0"
ROOT = f"arn:aws:iam::{CONSUMER}:root"

# Attributes whose DynamoDB type is not the table schema's: pynamodb cannot even build the item.
WRONG_TYPES: dict[str, dict[str, Any]] = {
    "max_endpoints as a string": {"max_endpoints": {"S": "lots"}},
    "principals as a string": {"principals": {"S": ROOT}},
    "status as a number": {"status": {"N": "1"}},
    "revoke as a string": {"revoke": {"S": "yes"}},
}


def raw_put(deployment: LocalDeployment, service_id: str, **attrs: dict[str, Any]) -> None:
    """A hand edit in the console: no validation, any types."""
    item: dict[str, Any] = {
        "service_id": {"S": service_id},
        "consumer": {"S": CONSUMER},
        "status": {"S": "allow"},
        "principals": {"L": [{"S": ROOT}]},
        **attrs,
    }
    deployment.provider.client("dynamodb").put_item(
        TableName=deployment.settings.registry_table, Item=item
    )


def field_of(case: str) -> str:
    return next(iter(WRONG_TYPES[case]))


@pytest.fixture(params=list(WRONG_TYPES))
def case(request: pytest.FixtureRequest, deployment: LocalDeployment) -> str:
    """A wrongly typed item at (SVC, CONSUMER) next to a good grant for OTHER (SVC enrolled)."""
    registry = deployment.deps().registry
    registry.enroll(SVC, name=None, notification_id=None, by="a", now=datetime.now(UTC))
    registry.put(grant(SVC, consumer=OTHER), by="a", now=datetime.now(UTC))
    raw_put(deployment, SVC, **WRONG_TYPES[request.param])
    return str(request.param)


def assert_reported(err: str, case: str, service_id: str = SVC) -> None:
    assert "Traceback" not in err
    assert f"registry item {service_id}/{CONSUMER} is malformed: {field_of(case)}" in err
    assert "registry add --replace" in err


def test_list_and_export_report_and_skip(cli: Cli, case: str, tmp_path: Path) -> None:
    for argv in (
        ("registry", "list"),
        ("registry", "list", "--service", SVC),
        ("registry", "list", "--consumer", CONSUMER),
    ):
        code, out, err = cli(*argv)
        assert code == 0, err
        assert_reported(err, case)
        assert CONSUMER not in out
    code, out, err = cli("registry", "list", "--format", "json")
    assert [(g["service_id"], g["consumer"]) for g in json.loads(out)] == [(SVC, OTHER)]

    target = tmp_path / "grants.yaml"
    code, _, err = cli("registry", "export", "--file", str(target))
    assert code == 0
    assert_reported(err, case)
    exported = yaml.safe_load(target.read_text())
    rows = exported["grants"] if isinstance(exported, dict) else exported
    assert [r["consumer"] for r in rows] == [OTHER]


def test_plan_reads_it_and_plans_its_replacement(cli: Cli, case: str, tmp_path: Path) -> None:
    source = tmp_path / "wanted.yaml"
    rows = [{"service_id": SVC, "consumer": c} for c in (CONSUMER, OTHER)]
    source.write_text(yaml.safe_dump({"grants": rows}))
    code, out, err = cli("registry", "plan", str(source))
    assert "Traceback" not in err
    assert code == 2, err  # changes to make: the malformed item is replaced by the file's grant
    assert "0 to add, 1 to change, 0 to remove" in out


def test_show_names_the_field_and_the_repair(cli: Cli, case: str) -> None:
    code, out, err = cli("registry", "show", SVC, CONSUMER)
    assert code == 0, err
    shown = yaml.safe_load(out)
    assert shown["field"] == field_of(case)
    assert shown["malformed"].startswith(f"registry item {SVC}/{CONSUMER} is malformed")
    assert "registry add --replace" in shown["repair"]


def test_suspend_refuses_with_the_repair(cli: Cli, case: str) -> None:
    code, _, err = cli("registry", "suspend", SVC, CONSUMER)
    assert code == 2
    assert_reported(err, case)


def test_add_replace_repairs_it(cli: Cli, case: str) -> None:
    code, _, err = cli("registry", "add", SVC, CONSUMER, "--max-endpoints", "2")
    assert code == 2
    assert "use --replace" in err
    code, out, err = cli("registry", "add", SVC, CONSUMER, "--max-endpoints", "2", "--replace")
    assert code == 0, err
    repaired = RegistryItem.get(SVC, CONSUMER)  # decodes again
    assert (repaired.status, repaired.max_endpoints) == ("allow", 2)
    code, out, err = cli("registry", "list")
    assert (code, "malformed" in err) == (0, False)
    assert CONSUMER in out


def test_remove_repairs_it(cli: Cli, case: str) -> None:
    code, _, err = cli("registry", "remove", SVC, CONSUMER, "--by", "dave")
    assert code == 2  # destructive: confirmed on a terminal or with --yes
    assert f"remove the grant {SVC}/{CONSUMER} (malformed: {field_of(case)})" in err
    code, out, err = cli("registry", "remove", SVC, CONSUMER, "--by", "dave", "--yes")
    assert (code, out.strip()) == (0, f"removed {SVC}/{CONSUMER}"), err
    assert [i.consumer for i in RegistryItem.scan() if i.consumer != "#service"] == [OTHER]
    code, _, err = cli("registry", "remove", SVC, CONSUMER, "--yes")
    assert (code, f"no grant for {SVC}/{CONSUMER}" in err) == (2, True)


def test_import_replaces_it(cli: Cli, case: str, tmp_path: Path) -> None:
    source = tmp_path / "fix.yaml"
    source.write_text(
        yaml.safe_dump([{"service_id": SVC, "consumer": CONSUMER, "status": "suspended"}])
    )
    code, out, err = cli("registry", "import", str(source))
    assert code == 0, err
    assert "1 replaced" in out
    assert RegistryItem.get(SVC, CONSUMER).status == "suspended"


def test_explain_pending_doctor_report_it(
    cli: Cli,
    deployment: LocalDeployment,
    provider: Provider,
    service: EndpointService,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The connection's deciding reads (the service's item and the `*` item) are both wrongly
    typed: the CLI's previews show malformed-grant, with the key and field, and do not crash."""
    monkeypatch.setenv("NOTIFICATION_TOPIC_ARN", deployment.topic_arn)
    waiting = provider.consumer(CONSUMER).create_endpoint(service.service_name)
    raw_put(deployment, service.service_id, max_endpoints={"S": "lots"})
    raw_put(deployment, "*", status={"N": "1"})
    code, out, err = cli("explain", waiting, "--format", "json")
    assert code == 0, err
    data = json.loads(out)
    assert data["decision"]["code"] == "malformed-grant"
    assert "max_endpoints" in data["registry_error"] or "status" in data["registry_error"]

    code, out, err = cli("pending", "--format", "json")
    assert code == 0, err
    [row] = json.loads(out)
    assert (row["owner"], row["code"]) == (CONSUMER, "malformed-grant")

    code, out, err = cli("doctor", waiting, "--format", "json")
    assert "Traceback" not in err
    assert code in (0, 1)  # a verdict, whatever it is, not a crash
    assert "malformed" in out

    # and a live deny next to the malformed item still wins (issue 11 §2)
    deployment.deps().registry.put(
        grant("*", status=GrantStatus.DENY, principals=()), by="a", now=datetime.now(UTC)
    )
    code, out, _ = cli("explain", waiting, "--format", "json")
    assert json.loads(out)["decision"]["code"] == "denied"
