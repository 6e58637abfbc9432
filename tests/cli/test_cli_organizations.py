"""OU and organization grants through the operator's CLI (issue 15): `registry add` with every
option an account grant has plus --principal-role, the clear refusals, list/show/export/import
and plan/apply round trips, and malformed OU items reported and skipped."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_runner import Cli, cli_fixture  # noqa: F401 - provides the `cli` fixture

from conftest import CONSUMER
from vpce_approver.tables import RegistryItem
from vpce_tools import grantfile
from vpce_tools.stack import LocalDeployment

SVC = "vpce-svc-0123456789abcdef0"
UNMANAGED = "vpce-svc-0fedcba9876543210"
ORG = "o-abcdefghij"
TOP = "ou-ab12-workload1"
CHILD = "ou-ab12-prod0001"


def stored() -> dict[tuple[str, str], RegistryItem]:
    return {(i.service_id, i.consumer): i for i in RegistryItem.scan() if i.consumer != "#service"}


@pytest.fixture(autouse=True)
def enrolled(deployment: LocalDeployment) -> None:
    deployment.deps().registry.enroll(
        SVC, name="svc", notification_id=None, by="test", now=datetime.now(UTC)
    )


def test_add_an_ou_grant_with_every_option(cli: Cli) -> None:
    code, out, err = cli(
        "registry", "add", SVC, CHILD, "--status", "allow", "--expires", "30d",
        "--max-endpoints", "2", "--region", "eu-west-1", "--region", "us-east-1",
        "--owner", "platform", "--note", "prod workloads", "--revoke",
        "--principal-role", "WorkloadRole", "--by", "alice",
    )  # fmt: skip
    assert code == 0, err
    assert out.strip() == (
        f"allow {SVC}/{CHILD} written (OU grant; allow-list: role/WorkloadRole of every member"
        " account) (takes effect through the registry stream)"
    )
    item = stored()[(SVC, CHILD)]
    assert (item.principal_role, item.principals, item.max_endpoints) == ("WorkloadRole", None, 2)
    assert (item.regions, item.owner, item.note) == (
        ["eu-west-1", "us-east-1"],
        "platform",
        "prod workloads",
    )
    assert (item.revoke, item.updated_by, item.status) == (True, "alice", "allow")
    assert item.expires_at > (datetime.now(UTC) + timedelta(days=29)).timestamp()


@pytest.mark.parametrize("status", ["deny", "suspended"])
def test_add_an_organization_grant_for_every_service(cli: Cli, status: str) -> None:
    code, out, err = cli("registry", "add", "*", ORG, "--status", status, "--no-revoke")
    assert code == 0, err
    assert out.startswith(f"{status} */{ORG} written (organization grant)")
    item = stored()[("*", ORG)]
    assert (item.status, item.principals, item.principal_role, item.revoke) == (
        status,
        None,
        None,
        False,
    )


def test_an_allow_ou_grant_defaults_to_each_members_root(cli: Cli) -> None:
    code, out, _ = cli("registry", "add", SVC, TOP)
    assert code == 0
    assert "allow-list: root of every member account" in out
    assert (stored()[(SVC, TOP)].principals, stored()[(SVC, TOP)].principal_role) == (None, None)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("registry", "add", SVC, CONSUMER, "--principal-role", "App"),
         f"--principal-role is for OU (ou-…) and organization (o-…) grants; {CONSUMER} is an"
         f" account: list its principals with --principal arn:aws:iam::{CONSUMER}:role/NAME"),
        (("registry", "add", SVC, CHILD, "--principal", "arn:aws:iam::111111111111:root"),
         f"--principal is for account grants; {CHILD} is an OU, whose member accounts each get"
         " their own principal: use --principal-role NAME (their role NAME) or nothing (their"
         " root)"),
        (("registry", "add", "*", ORG, "--principal", "arn:aws:iam::111111111111:role/App",
          "--principal-role", "App"),
         f"--principal is for account grants; {ORG} is an organization"),
        (("registry", "add", SVC, CHILD, "--principal-role", "path/App"),
         "principal_role: 'path/App' is not an IAM role name"),
        (("registry", "add", SVC, CHILD, "--principal-role", "x" * 65), "is not an IAM role name"),
        (("registry", "add", SVC, "ou-nope"),
         "consumer: 'ou-nope' is not a 12-digit AWS account ID, an OU ID (ou-xxxx-xxxxxxxx) or an"
         " organization ID (o-xxxxxxxxxx)"),
        (("registry", "add", SVC, "o-short"), "consumer: 'o-short' is not"),
        (("registry", "add", SVC, "r-ab12"), "consumer: 'r-ab12' is not"),
        (("registry", "add", SVC, CHILD, "--max-endpoints", "0"), "max_endpoints"),
        (("registry", "add", SVC, CHILD, "--region", "mars-1"), "is not an AWS region"),
        (("registry", "add", SVC, CHILD, "--expires", "2001-01-01T00:00:00Z"), "in the past"),
        (("registry", "add", UNMANAGED, CHILD), "not enrolled needs --force"),
        (("registry", "show", SVC, CHILD), "no grant for"),
        (("registry", "suspend", SVC, ORG), "no grant for"),
        (("registry", "remove", SVC, CHILD), "no grant for"),
        (("registry", "list", "--consumer", "ou-x"), "consumer: 'ou-x' is not"),
    ],
)  # fmt: skip
def test_bad_ou_input_is_one_clear_line(cli: Cli, argv: tuple[str, ...], message: str) -> None:
    code, _, err = cli(*argv)
    assert code == 2, err
    assert message in err
    assert err.startswith("vpce-approver: error: ")
    assert len(err.strip().splitlines()) == 1
    assert stored() == {}


def test_unenrolled_service_with_force_and_replace_rules_hold(cli: Cli) -> None:
    code, _, err = cli("registry", "add", UNMANAGED, CHILD, "--force")
    assert code == 0
    assert f"not enrolled in stack vpce-approver: {UNMANAGED}" in err
    assert cli("registry", "add", SVC, CHILD)[0] == 0
    code, _, err = cli("registry", "add", SVC, CHILD, "--status", "deny")
    assert code == 2
    assert f"a grant for {SVC}/{CHILD} exists; use --replace" in err
    assert stored()[(SVC, CHILD)].status == "allow"
    code, _, _ = cli("registry", "add", SVC, CHILD, "--status", "deny", "--replace")
    assert (code, stored()[(SVC, CHILD)].status) == (0, "deny")


@pytest.fixture
def mixed(cli: Cli) -> None:
    """An account grant, an OU grant with a role, an organization deny for every service."""
    assert cli("registry", "add", SVC, CONSUMER, "--owner", "team-a", "--note", "payments")[0] == 0
    assert (
        cli(
            "registry", "add", SVC, CHILD, "--principal-role", "WorkloadRole",
            "--max-endpoints", "2", "--region", "eu-west-1", "--owner", "platform",
            "--note", "prod workloads", "--revoke",
        )[0]
        == 0
    )  # fmt: skip
    assert cli("registry", "add", "*", ORG, "--status", "deny", "--note", "org-wide")[0] == 0


@pytest.mark.usefixtures("mixed")
def test_list_shows_the_scope_within_100_columns(cli: Cli) -> None:
    """Three grants with owners and notes are too wide for columns at 100 characters: each is
    a block of `FIELD value` lines (nothing cut); the status says OU / org."""
    code, out, err = cli("registry", "list")
    assert code == 0, err
    assert max(len(line) for line in out.splitlines()) <= 100
    blocks = {b.splitlines()[1].split()[1]: b for b in ("\n" + out).split(f"\n{SVC}")[1:]}
    assert set(blocks) == {CONSUMER, CHILD}
    assert "STATUS      allow\n" in blocks[CONSUMER]
    assert "PRINCIPALS  root\n" in blocks[CONSUMER]
    assert "STATUS      allow (OU)\n" in blocks[CHILD]
    assert "PRINCIPALS  each member's role/WorkloadRole\n" in blocks[CHILD]
    assert "TERMS       max 2 per account; eu-west-1; revoke\n" in blocks[CHILD]
    org = ("\n" + out).split("\n*\n")[1].split(f"\n{SVC}")[0]
    assert f"CONSUMER    {ORG}\n" in org
    assert "STATUS      deny (org)\n" in org
    assert "3 grant(s)" in err

    code, out, _ = cli("registry", "list", "--consumer", CHILD, "-o", "json")
    [shown] = json.loads(out)
    assert (shown["scope"], shown["principal_role"], shown["max_endpoints"]) == (
        "ou",
        "WorkloadRole",
        2,
    )
    assert shown["allow_list"] == "arn:<partition>:iam::<member account>:role/WorkloadRole"
    assert "principals" not in shown


def test_list_columns_when_they_fit(cli: Cli) -> None:
    assert cli("registry", "add", "*", TOP, "--principal-role", "App")[0] == 0
    assert cli("registry", "add", "*", ORG, "--status", "deny")[0] == 0
    assert cli("registry", "add", "*", CONSUMER)[0] == 0
    code, out, _ = cli("registry", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "SERVICE", "CONSUMER", "STATUS", "PRINCIPALS", "TERMS", "OWNER", "NOTE",
    ]  # fmt: skip
    assert max(len(line) for line in lines) <= 100
    rows = {line.split()[1]: line.split()[2:] for line in lines[1:]}
    assert rows == {
        CONSUMER: ["allow", "root", "-", "-", "-"],
        TOP: ["allow", "(OU)", "each", "member's", "role/App", "-", "-", "-"],
        ORG: ["deny", "(org)", "-", "-", "-", "-"],
    }


@pytest.mark.usefixtures("mixed")
def test_list_narrow_terminal_still_fits(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = cli("registry", "list")
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 80
    for value in (CHILD, ORG, "role/WorkloadRole"):
        assert value in out


@pytest.mark.usefixtures("mixed")
def test_show_an_ou_and_an_organization_grant(cli: Cli) -> None:
    code, out, _ = cli("registry", "show", SVC, CHILD)
    shown = yaml.safe_load(out)
    assert code == 0
    assert {k: shown[k] for k in ("consumer", "scope", "principal_role", "revoke")} == {
        "consumer": CHILD,
        "scope": "ou",
        "principal_role": "WorkloadRole",
        "revoke": True,
    }
    code, out, _ = cli("registry", "show", "*", ORG, "-o", "json")
    shown = json.loads(out)
    assert (shown["scope"], shown["status"], "allow_list" in shown) == (
        "organization",
        "deny",
        False,
    )


def export(cli: Cli, tmp_path: Path, fmt: str) -> Path:
    target = tmp_path / f"grants.{fmt}"
    code, _, err = cli("registry", "export", "-o", fmt, "--file", str(target))
    assert code == 0, err
    return target


@pytest.mark.usefixtures("mixed")
@pytest.mark.parametrize("fmt", ["yaml", "csv"])
def test_export_plan_is_a_no_op_and_import_round_trips(cli: Cli, tmp_path: Path, fmt: str) -> None:
    target = export(cli, tmp_path, fmt)
    text = target.read_text()
    assert "WorkloadRole" in text
    if fmt == "csv":
        assert text.splitlines()[0].endswith(",revoke,principal_role")
    code, out, err = cli("registry", "plan", str(target))
    assert (code, "plan: 0 to add, 0 to change, 0 to remove" in out) == (0, True), out + err

    before = {k: (i.status, i.principals, i.principal_role, i.max_endpoints, i.regions)
              for k, i in stored().items()}  # fmt: skip
    for key in list(before):
        RegistryItem(*key).delete()
    code, out, err = cli("registry", "import", str(target))
    assert code == 0, err
    assert "3 grant(s): 3 added" in out
    after = {k: (i.status, i.principals, i.principal_role, i.max_endpoints, i.regions)
             for k, i in stored().items()}  # fmt: skip
    assert after == before


@pytest.mark.usefixtures("mixed")
def test_plan_and_apply_an_ou_grant_change(cli: Cli, tmp_path: Path) -> None:
    target = export(cli, tmp_path, "yaml")
    data = yaml.safe_load(target.read_text())
    for row in data["grants"]:
        if row["consumer"] == CHILD:
            row["principal_role"] = "OtherRole"
    data["grants"].append({"service_id": SVC, "consumer": TOP, "status": "suspended"})
    target.write_text(yaml.safe_dump(data))
    code, out, _ = cli("registry", "plan", str(target), "-o", "json")
    plan = json.loads(out)
    assert code == 2
    assert [c["grant"] for c in plan["change"]] == [f"{SVC}/{CHILD}"]
    assert plan["change"][0]["fields"] == {
        "principal_role": {"old": "WorkloadRole", "new": "OtherRole"}
    }
    assert [(a["grant"], a["new"]["status"]) for a in plan["add"]] == [
        (f"{SVC}/{TOP}", "suspended")
    ]
    code, out, err = cli("registry", "apply", str(target), "--by", "ci")
    assert code == 0, err
    assert stored()[(SVC, CHILD)].principal_role == "OtherRole"
    assert stored()[(SVC, TOP)].status == "suspended"


@pytest.mark.usefixtures("mixed")
def test_pruning_or_suspending_a_revoking_ou_grant_asks_about_its_members(
    cli: Cli, tmp_path: Path
) -> None:
    target = tmp_path / "only-account.yaml"
    target.write_text(yaml.safe_dump([{"service_id": SVC, "consumer": CONSUMER}]))
    code, _, err = cli("registry", "apply", str(target), "--prune", "--by", "ci")
    assert code == 2
    assert f"removes {SVC}/{CHILD} and rejects its member accounts' live connections" in err, err
    assert (SVC, CHILD) in stored()
    code, _, err = cli("registry", "suspend", SVC, CHILD)
    assert code == 2
    assert f"suspend {SVC}/{CHILD} and reject its member accounts' live connections" in err
    code, out, _ = cli("registry", "suspend", SVC, CHILD, "--yes")
    assert (code, out.strip()) == (
        0,
        f"suspended {SVC}/{CHILD}: its member accounts' live connections will be rejected",
    )


# ----------------------------------------------------------------------------- malformed


def _row_error(text: str, fmt: str = "yaml") -> str:
    grants, errors = grantfile.load(text, fmt, now=datetime.now(UTC))
    assert grants == []
    [error] = errors
    return str(error)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"- {{service_id: {SVC}, consumer: {CHILD}, principal_role: [A, B]}}",
         "principal_role: ['A', 'B'] must be a single value, not a list"),
        (f"- {{service_id: {SVC}, consumer: {CHILD}, principals: [arn:aws:iam::{CONSUMER}:root]}}",
         "principals: ['arn:aws:iam::111111111111:root'] must be empty for an OU/organization"
         " grant"),
        (f"- {{service_id: {SVC}, consumer: '{CONSUMER}', principal_role: App}}",
         "principal_role: 'App' is for OU/organization grants (use principals)"),
        (f"- {{service_id: {SVC}, consumer: {ORG}, principal_role: 'a b'}}",
         "principal_role: 'a b' is not an IAM role name"),
        (f"- {{service_id: {SVC}, consumer: ou-x}}", "consumer: 'ou-x' is not"),
    ],
)  # fmt: skip
def test_bad_ou_rows_in_a_file_are_named(cli: Cli, tmp_path: Path, text: str, message: str) -> None:
    assert message in _row_error(text)
    source = tmp_path / "bad.yaml"
    source.write_text(text + "\n")
    code, _, err = cli("registry", "import", str(source))
    assert code == 2
    assert f"{source}: line 1: " in err
    assert message in err
    assert "nothing was imported" in err
    code, _, err = cli("registry", "plan", str(source))
    assert (code, message in err) == (2, True)
    assert stored() == {}


def test_bad_ou_row_in_csv_is_named(tmp_path: Path) -> None:
    text = f"service_id,consumer,principals,principal_role\n{SVC},{CHILD},,a/b\n"
    assert "line 2: principal_role: 'a/b' is not an IAM role name" in _row_error(text, "csv")


# Hand-edited OU items: read, reported (key and field) and skipped by every CLI reader.
MALFORMED_OU: dict[str, dict[str, Any]] = {
    "principal_role as a number": {"principal_role": {"N": "7"}},
    "principal_role as a list": {"principal_role": {"L": [{"S": "App"}]}},
    "an OU item with principals": {"principals": {"L": [{"S": f"arn:aws:iam::{CONSUMER}:root"}]}},
    "a bad role name": {"principal_role": {"S": "role/App"}},
}


@pytest.mark.parametrize("case", list(MALFORMED_OU))
def test_malformed_ou_items_are_reported_and_skipped(
    cli: Cli, deployment: LocalDeployment, case: str, tmp_path: Path
) -> None:
    assert cli("registry", "add", SVC, TOP)[0] == 0
    deployment.provider.client("dynamodb").put_item(
        TableName=deployment.settings.registry_table,
        Item={
            "service_id": {"S": SVC},
            "consumer": {"S": CHILD},
            "status": {"S": "allow"},
            **MALFORMED_OU[case],
        },
    )
    field = next(iter(MALFORMED_OU[case]))
    expected = f"registry item {SVC}/{CHILD} is malformed: {field}"
    code, out, err = cli("registry", "list")
    assert code == 0, err
    assert expected in err
    assert "Traceback" not in err
    assert TOP in out
    assert CHILD not in out

    code, out, err = cli("registry", "show", SVC, CHILD)
    shown = yaml.safe_load(out)
    assert (code, shown["field"]) == (0, field)
    assert "registry add --replace" in shown["repair"]

    target = tmp_path / "grants.yaml"
    code, _, err = cli("registry", "export", "--file", str(target))
    assert (code, expected in err) == (0, True)
    assert [r["consumer"] for r in yaml.safe_load(target.read_text())["grants"]] == [TOP]

    code, out, err = cli("registry", "plan", str(target), "--prune")
    assert code == 2, err
    assert "plan: 0 to add, 0 to change, 1 to remove" in out

    code, _, err = cli("registry", "add", SVC, CHILD, "--principal-role", "App", "--replace")
    assert code == 0, err
    assert stored()[(SVC, CHILD)].principal_role == "App"
    assert "malformed" not in cli("registry", "list")[2]


def test_the_documented_ou_commands_parse() -> None:
    """The `vpce-approver` calls of docs/ORGANIZATIONS.md and README's registry section parse
    (a renamed option cannot leave the docs behind)."""
    import shlex

    from vpce_tools.cli import parser

    root = Path(__file__).parents[2]
    text = (root / "docs" / "ORGANIZATIONS.md").read_text()
    text += (root / "README.md").read_text().split("## Registry edits are access grants", 1)[1]
    code = "\n".join(block.split("```", 1)[0] for block in text.split("```sh\n")[1:])
    calls = [
        shlex.split(line.split(" #", 1)[0])
        for line in code.replace("\\\n", " ").splitlines()
        if line.lstrip().startswith("vpce-approver ") and ("ou-" in line or " o-" in line)
    ]
    assert len(calls) >= 4
    for argv in calls:
        args = parser().parse_args(argv[1:])  # exits (SystemExit) on a call that does not parse
        assert args.consumer.startswith(("ou-", "o-"))
