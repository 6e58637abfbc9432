"""`vpce-approver registry …` in-process on the emulator (mock_aws): every action, its errors,
and the effect of an edit through the registry stream."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cli_runner import Cli, cli_fixture  # noqa: F401 - provides the `cli` fixture

from conftest import CONSUMER, OTHER, THIRD
from vpce_approver.tables import AuditItem, RegistryItem
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.stack import LocalDeployment
from vpce_tools.stream_poller import registry_poller

SVC = "vpce-svc-0123456789abcdef0"
UNMANAGED = "vpce-svc-0fedcba9876543210"


@pytest.fixture
def enrolled(deployment: LocalDeployment) -> None:
    """SVC is a service this deployment manages (a grant for another one needs --force)."""
    deployment.deps().registry.enroll(
        SVC, name="svc", notification_id=None, by="test", now=datetime.now(UTC)
    )


def stored() -> dict[tuple[str, str], RegistryItem]:
    return {(i.service_id, i.consumer): i for i in RegistryItem.scan() if i.consumer != "#service"}


@pytest.mark.usefixtures("enrolled")
def test_add_show_list_suspend_remove(cli: Cli) -> None:
    code, out, _ = cli(
        "registry", "add", SVC, CONSUMER, "--expires", "30d", "--max-endpoints", "2",
        "--region", "eu-west-1", "--owner", "team-a", "--note", "payments", "--by", "alice",
    )  # fmt: skip
    assert code == 0, out
    assert f"allow {SVC}/{CONSUMER} written" in out
    item = stored()[(SVC, CONSUMER)]
    assert item.principals == [f"arn:aws:iam::{CONSUMER}:root"]
    assert (item.max_endpoints, item.regions, item.updated_by) == (2, ["eu-west-1"], "alice")
    assert item.expires_at > (datetime.now(UTC) + timedelta(days=29)).timestamp()

    code, out, _ = cli("registry", "show", SVC, CONSUMER)
    shown = yaml.safe_load(out)
    assert (code, shown["status"], shown["owner"], shown["updated_by"]) == (
        0,
        "allow",
        "team-a",
        "alice",
    )

    cli("registry", "add", "*", OTHER, "--status", "deny", "--by", "bob")
    code, out, err = cli("registry", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split()[:3] == ["SERVICE", "CONSUMER", "STATUS"]
    rows = {tuple(line.split()[:3]) for line in lines[1:] if not line.startswith(" ")}
    assert rows == {(SVC, CONSUMER, "allow"), ("*", OTHER, "deny")}
    assert "2 grant(s)" in err
    code, out, _ = cli("registry", "list", "--consumer", OTHER, "--format", "json")
    assert [(g["service_id"], g["status"]) for g in yaml.safe_load(out)] == [("*", "deny")]

    code, out, _ = cli("registry", "suspend", SVC, CONSUMER, "--revoke", "--by", "carol", "--yes")
    assert code == 0
    assert "live connections will be rejected" in out
    item = stored()[(SVC, CONSUMER)]
    assert (item.status, item.revoke, item.updated_by) == ("suspended", True, "carol")

    code, out, _ = cli("registry", "remove", SVC, CONSUMER, "--by", "dave", "--yes")
    assert (code, out.strip()) == (0, f"removed {SVC}/{CONSUMER}")
    assert (SVC, CONSUMER) not in stored()


@pytest.mark.usefixtures("enrolled")
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("registry", "add", "vpce-svc-nope", CONSUMER), "service: 'vpce-svc-nope' is not"),
        (("registry", "add", SVC, "1234"), "consumer: '1234' is not a 12-digit"),
        (("registry", "add", SVC, CONSUMER, "--principal", "arn:aws:iam::222222222222:root"),
         "belongs to account 222222222222"),
        (("registry", "add", SVC, CONSUMER, "--principal", "*"), "would allow every AWS account"),
        (("registry", "add", SVC, CONSUMER, "--principal", "arn:aws:iam::111111111111:role/a/b"),
         "is not an IAM principal ARN"),
        (("registry", "add", SVC, CONSUMER, "--expires", "2001-01-01T00:00:00Z"), "in the past"),
        (("registry", "add", SVC, CONSUMER, "--expires", "soon"), "not an ISO 8601 time"),
        (("registry", "add", SVC, CONSUMER, "--region", "mars-1"), "is not an AWS region"),
        (("registry", "add", SVC, CONSUMER, "--max-endpoints", "0"), "max_endpoints"),
        (("registry", "show", SVC, CONSUMER), "no grant for"),
        (("registry", "suspend", SVC, CONSUMER), "no grant for"),
        (("registry", "remove", SVC, CONSUMER), "no grant for"),
        (("registry", "import", "/nonexistent.yaml"), "no such file"),
        (("pending", "--service", UNMANAGED), f"not managed by stack vpce-approver: {UNMANAGED}"),
        (("registry", "add", UNMANAGED, CONSUMER), "not enrolled needs --force"),
        (("registry", "add", SVC, CONSUMER, "--region", "eu-westt-1"),
         "'eu-westt-1' is not a region of this partition"),
        (("registry", "add", SVC, CONSUMER, "--region", "cn-north-1"),
         "'cn-north-1' is not a region of this partition"),
    ],
)  # fmt: skip
def test_bad_input_is_one_clear_line(cli: Cli, argv: tuple[str, ...], message: str) -> None:
    code, _, err = cli(*argv)
    assert code == 2
    assert message in err
    assert err.startswith("vpce-approver: error: ")
    assert len(err.strip().splitlines()) == 1
    assert stored() == {}


@pytest.mark.parametrize(
    "argv", [("registry", "list"), ("registry", "export"), ("audit",), ("pending",), ("sweep",)]
)
def test_a_stack_without_tables_is_one_clear_line(cli: Cli, argv: tuple[str, ...]) -> None:
    code, _, err = cli("--stack", "nostack", *argv)
    assert code == 2
    assert err.startswith("vpce-approver: error: DynamoDB table not found: nostack-")
    assert "is --stack right?" in err
    assert len(err.strip().splitlines()) == 1  # the sweep logs no traceback first


def test_no_credentials_is_one_clear_line(
    cli: Cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    for argv in (("registry", "list"), ("sweep",), ("explain", "vpce-0a1b2c3d4e5f60718")):
        code, _, err = cli(*argv)
        assert (code, err.splitlines()) == (
            2,
            [
                "vpce-approver: error: no AWS credentials found (set AWS_PROFILE or"
                " AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY; for the emulator, any value and"
                " --endpoint-url)"
            ],
        ), argv


def test_malformed_yaml_file_is_one_clear_line(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "g.yaml"
    source.write_text("- service_id: [unclosed\n")
    code, _, err = cli("registry", "import", str(source))
    assert code == 2
    assert err.splitlines() == [
        f"vpce-approver: error: {source}: not valid YAML: line 2:"
        " expected ',' or ']', but got '<stream end>'"
    ]


@pytest.mark.usefixtures("enrolled")
def test_add_refuses_to_overwrite_without_replace(cli: Cli) -> None:
    assert cli("registry", "add", SVC, CONSUMER, "--by", "a")[0] == 0
    code, _, err = cli("registry", "add", SVC, CONSUMER, "--status", "deny", "--by", "b")
    assert code == 2
    assert "--replace" in err
    assert stored()[(SVC, CONSUMER)].status == "allow"
    assert cli("registry", "add", SVC, CONSUMER, "--status", "deny", "--replace")[0] == 0
    assert stored()[(SVC, CONSUMER)].status == "deny"


GOOD_YAML = f"""\
grants:
  - service_id: {SVC}
    consumer: "{CONSUMER}"
    principals: [arn:aws:iam::{CONSUMER}:role/app]
    regions: [us-east-1, eu-west-1]
    max_endpoints: 3
    revoke: true
  - service_id: "*"
    consumer: 011111111111
    status: deny
    note: offboarded
"""


@pytest.mark.usefixtures("enrolled")
def test_import_yaml_then_export_round_trips(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "grants.yaml"
    source.write_text(GOOD_YAML)
    code, out, _ = cli("registry", "import", str(source), "--by", "importer")
    assert code == 0
    assert "2 grant(s): 2 added, 0 replaced, 0 unchanged" in out
    items = stored()
    assert items[("*", "011111111111")].status == "deny"  # leading zero kept
    assert items[(SVC, CONSUMER)].principals == [f"arn:aws:iam::{CONSUMER}:role/app"]
    assert items[(SVC, CONSUMER)].revoke is True

    code, out, _ = cli("registry", "import", str(source))
    assert "0 added, 0 replaced, 2 unchanged" in out

    for fmt in ("yaml", "csv"):
        target = tmp_path / f"export.{fmt}"
        assert cli("registry", "export", "-o", fmt, "--file", str(target))[0] == 0
        for item in RegistryItem.scan():
            if item.consumer != "#service":
                item.delete()
        code, out, _ = cli("registry", "import", str(target))
        assert code == 0, out
        assert "2 added" in out
        assert {k: (i.status, i.principals, i.regions, i.max_endpoints, i.revoke)
                for k, i in stored().items()} == {k: (i.status, i.principals, i.regions,
                i.max_endpoints, i.revoke) for k, i in items.items()}  # fmt: skip


@pytest.mark.usefixtures("enrolled")
def test_import_with_bad_rows_changes_nothing_and_names_every_row(cli: Cli, tmp_path: Path) -> None:
    cli("registry", "add", SVC, THIRD, "--by", "before")
    before = {k: i.attribute_values for k, i in stored().items()}
    source = tmp_path / "grants.csv"
    source.write_text(
        "service_id,consumer,status,principals,expires_at,note\n"
        f"{SVC},{CONSUMER},allow,,,fine\n"
        f"{SVC},12345,allow,,,bad account\n"
        f"{SVC},{OTHER},allow,arn:aws:iam::{OTHER}:root arn:aws:iam::{OTHER}:role/x/y,,bad arn\n"
        f'{SVC},{THIRD},allow,,2001-01-01T00:00:00Z,"expired,\nmultiline"\n'
        f"{SVC},{CONSUMER},deny,,,duplicate\n"
    )
    code, _, err = cli("registry", "import", str(source))
    assert code == 2  # bad input, as every other usage error
    assert f"{source}: line 3: consumer: '12345' is not a 12-digit AWS account ID" in err
    assert f"{source}: line 4: principals: 'arn:aws:iam::{OTHER}:role/x/y'" in err
    assert f"{source}: line 5: expires_at:" in err
    assert "is in the past" in err
    assert f"{source}: line 7: {SVC}/{CONSUMER} is already on line 2" in err
    assert "4 bad row(s) of 5; nothing was imported" in err
    assert {k: i.attribute_values for k, i in stored().items()} == before


@pytest.mark.usefixtures("enrolled")
def test_import_yaml_bad_row_line_numbers_and_unknown_fields(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "g.yml"
    source.write_text(
        f"- service_id: {SVC}\n  consumer: '{CONSUMER}'\n"
        f"- service_id: {SVC}\n  consumer: '{OTHER}'\n  principal: x\n"
        "- just a string\n"
    )
    code, _, err = cli("registry", "import", str(source))
    assert code == 2  # bad input, as every other usage error
    assert "line 3: unknown field(s) principal" in err
    assert "line 6: each grant must be a mapping" in err
    assert stored() == {}


@pytest.mark.usefixtures("enrolled")
def test_import_shows_progress_for_large_files(cli: Cli, tmp_path: Path) -> None:
    rows = ["service_id,consumer"] + [f"{SVC},{100000000000 + i}" for i in range(250)]
    source = tmp_path / "many.csv"
    source.write_text("\n".join(rows) + "\n")
    code, out, err = cli("registry", "import", str(source), "--by", "bulk")
    assert code == 0
    assert "  100/250 (40%)" in err
    assert "  250/250 (100%)" in err
    assert "250 grant(s): 250 added" in out
    assert len(stored()) == 250


@pytest.mark.usefixtures("enrolled")
def test_import_dry_run_writes_nothing(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "grants.yaml"
    source.write_text(GOOD_YAML)
    code, out, _ = cli("registry", "import", str(source), "--dry-run")
    assert (code, stored()) == (0, {})
    assert "2 grant(s) valid" in out


def test_cli_edit_takes_effect_through_the_stream(
    cli: Cli,
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
) -> None:
    stream = registry_poller(deployment, start="LATEST")
    vpce = consumer.create_endpoint(service.service_name)
    assert cli("registry", "add", service.service_id, CONSUMER, "--by", "alice")[0] == 0
    stream.drain()
    [conn] = provider.connections(service.service_id)
    assert conn["VpcEndpointState"] == "available"
    assert cli("registry", "remove", service.service_id, CONSUMER, "--by", "bob", "-y")[0] == 0
    stream.drain()
    subject = f"grant#{service.service_id}#{CONSUMER}"
    trail = [(i.action, i.actor) for i in AuditItem.query(subject)]
    assert ("grant-added", "registry:alice") in trail
    assert ("grant-removed", "registry:bob") in trail  # the CLI stamps who removed it
    assert vpce == conn["VpcEndpointId"]
