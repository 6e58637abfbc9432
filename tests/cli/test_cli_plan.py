"""`vpce-approver registry plan/apply`: the registry as code, through the real CLI on the
emulator (in-process runner)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from cli_runner import Cli, cli_fixture  # noqa: F401 - provides the `cli` fixture

from conftest import CONSUMER, OTHER, THIRD
from vpce_approver.model import Grant
from vpce_approver.tables import RegistryItem
from vpce_tools.commands import _support, plan
from vpce_tools.stack import LocalDeployment


def stored() -> dict[tuple[str, str], RegistryItem]:
    return {(i.service_id, i.consumer): i for i in RegistryItem.scan() if i.consumer != "#service"}


SVC = "vpce-svc-0123456789abcdef0"
UNMANAGED = "vpce-svc-0fedcba9876543210"


@pytest.fixture(autouse=True)
def enrolled(deployment: LocalDeployment) -> None:
    deployment.deps().registry.enroll(
        SVC, name="svc", notification_id=None, by="test", now=datetime.now(UTC)
    )


@pytest.fixture
def three(cli: Cli) -> None:
    """Three live grants, written with the CLI."""
    assert cli("registry", "add", SVC, CONSUMER, "--owner", "team-a", "--by", "a")[0] == 0
    assert cli("registry", "add", SVC, OTHER, "--max-endpoints", "2", "--by", "a")[0] == 0
    assert cli("registry", "add", "*", THIRD, "--status", "deny", "--by", "a")[0] == 0


def export(cli: Cli, tmp_path: Path, fmt: str = "yaml") -> Path:
    target = tmp_path / f"grants.{fmt}"
    code, _, err = cli("registry", "export", "-o", fmt, "--file", str(target))
    assert code == 0, err
    return target


@pytest.mark.usefixtures("three")
@pytest.mark.parametrize("fmt", ["yaml", "csv"])
def test_export_then_plan_is_a_no_op(cli: Cli, tmp_path: Path, fmt: str) -> None:
    source = export(cli, tmp_path, fmt)
    code, out, err = cli("registry", "plan", str(source))
    assert code == 0, err
    assert "3 unchanged" in out
    assert "plan: 0 to add, 0 to change, 0 to remove" in out
    before = {k: i.attribute_values for k, i in stored().items()}
    code, out, _ = cli("registry", "apply", str(source), "--prune")
    assert (code, out.splitlines()[-1]) == (0, "nothing to apply")
    assert {k: i.attribute_values for k, i in stored().items()} == before


def _edit(source: Path) -> None:
    """Add one grant, change one, drop one."""
    data = yaml.safe_load(source.read_text())
    rows = {(g["service_id"], g["consumer"]): g for g in data["grants"]}
    rows[(SVC, OTHER)]["max_endpoints"] = 5
    rows[(SVC, OTHER)]["note"] = "more endpoints"
    del rows[("*", THIRD)]
    rows[(SVC, "444444444444")] = {"service_id": SVC, "consumer": "444444444444"}
    source.write_text(yaml.safe_dump({"grants": list(rows.values())}))


@pytest.mark.usefixtures("three")
def test_plan_shows_add_change_remove_and_exits_2(cli: Cli, tmp_path: Path) -> None:
    source = export(cli, tmp_path)
    _edit(source)
    code, out, _ = cli("registry", "plan", str(source))
    assert code == 2
    lines = out.splitlines()
    assert any(line.startswith(f"+ add     {SVC}/444444444444") for line in lines), out
    change = next(line for line in lines if line.startswith(f"~ change  {SVC}/{OTHER}"))
    assert "max_endpoints: 2 -> 5; note: - -> more endpoints" in change
    assert "1 unchanged; 1 live grant(s) not in" in out  # kept: no --prune
    assert "plan: 1 to add, 1 to change, 0 to remove (digest " in out

    code, out, _ = cli("registry", "plan", str(source), "--prune", "-o", "json")
    assert code == 2
    shown = json.loads(out)
    assert [r["grant"] for r in shown["add"]] == [f"{SVC}/444444444444"]
    assert shown["change"][0]["fields"]["max_endpoints"] == {"old": "2", "new": "5"}
    assert [r["grant"] for r in shown["remove"]] == [f"*/{THIRD}"]
    assert len(shown["digest"]) == 16
    for line in cli("registry", "plan", str(source), "--prune")[1].splitlines():
        assert len(line) <= 100, line


@pytest.mark.usefixtures("three")
def test_apply_prune_asks_then_applies_exactly_the_plan(cli: Cli, tmp_path: Path) -> None:
    source = export(cli, tmp_path)
    _edit(source)
    before = {k: i.attribute_values for k, i in stored().items()}
    code, _, err = cli("registry", "apply", str(source), "--prune")
    assert code == 2
    assert "removes */" + THIRD in err
    assert "not confirmed (no terminal to ask on); add --yes to confirm" in err
    assert {k: i.attribute_values for k, i in stored().items()} == before  # nothing written

    code, out, _ = cli("registry", "apply", str(source), "--prune", "--yes", "--by", "gitops")
    assert code == 0, out
    assert out.splitlines()[-1].startswith("applied: 1 to add, 1 to change, 1 to remove")
    after = stored()
    assert set(after) == {(SVC, CONSUMER), (SVC, OTHER), (SVC, "444444444444")}
    assert (after[(SVC, OTHER)].max_endpoints, after[(SVC, OTHER)].updated_by) == (5, "gitops")
    assert after[(SVC, CONSUMER)].updated_by == "a"  # unchanged grants are not rewritten
    assert cli("registry", "plan", str(source), "--prune")[0] == 0  # converged


@pytest.mark.usefixtures("three")
def test_apply_refuses_a_plan_whose_registry_changed(cli: Cli, tmp_path: Path) -> None:
    source = export(cli, tmp_path)
    _edit(source)
    out = cli("registry", "plan", str(source))[1]
    digest = out.rsplit("(digest ", 1)[1].split(")")[0]
    # Someone edits a grant the plan changes, after the plan was reviewed.
    assert cli("registry", "add", SVC, OTHER, "--note", "hotfix", "--replace", "--by", "b")[0] == 0
    before = {k: i.attribute_values for k, i in stored().items()}
    code, _, err = cli("registry", "apply", str(source), "--digest", digest, "--yes")
    assert code == 1
    assert f"not {digest}: the registry (or the file) changed since that plan was shown" in err
    assert {k: i.attribute_values for k, i in stored().items()} == before


@pytest.mark.usefixtures("three")
def test_apply_refuses_when_the_registry_changes_while_it_asks(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = export(cli, tmp_path)
    _edit(source)

    def someone_edits_meanwhile(*_: object, **__: object) -> None:
        item = RegistryItem.get(SVC, OTHER)
        item.update(actions=[RegistryItem.note.set("changed meanwhile")])

    monkeypatch.setattr(_support, "confirm", someone_edits_meanwhile)
    code, _, err = cli("registry", "apply", str(source), "--prune")
    assert code == 1
    assert f"registry changed since the plan was shown ({SVC}/{OTHER})" in err
    assert "nothing was applied" in err
    items = stored()
    assert (SVC, "444444444444") not in items
    assert ("*", THIRD) in items
    assert items[(SVC, OTHER)].note == "changed meanwhile"


def test_a_write_is_conditional_on_the_version_the_plan_saw(
    cli: Cli, deployment: LocalDeployment
) -> None:
    """The last guard: between the re-check and the write, a change still wins over the plan."""
    assert cli("registry", "add", SVC, CONSUMER, "--by", "a")[0] == 0
    live = plan.read_live(allow_wildcard_principal=False)
    wanted = [(1, g) for g in [_grant(SVC, CONSUMER, note="from git")]]
    the_plan = plan.compute(wanted, live, prune=False)
    [step] = the_plan.steps
    assert cli("registry", "add", SVC, CONSUMER, "--note", "x", "--replace", "--by", "b")[0] == 0
    assert plan._write(step, by="gitops", allow_wildcard=False) is False
    assert stored()[(SVC, CONSUMER)].note == "x"


def _grant(service: str, consumer: str, **fields: object) -> Grant:
    from vpce_tools import grantfile

    row = {"service_id": service, "consumer": consumer, **fields}
    return grantfile.grant_from_row(row, now=datetime.now(UTC))


def test_plan_validates_like_import(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "grants.csv"
    source.write_text(
        "service_id,consumer,regions\n"
        f"{SVC},{CONSUMER},eu-west-1\n"
        f"{SVC},12345,\n"
        f"{SVC},{OTHER},eu-westt-1\n"
    )
    for argv in (("plan",), ("apply", "--yes")):
        code, _, err = cli("registry", argv[0], str(source), *argv[1:])
        assert code == 2
        assert f"{source}: line 3: consumer: '12345' is not a 12-digit AWS account ID" in err
        assert f"{source}: line 4: regions: 'eu-westt-1' is not a region of this partition" in err
        assert err.splitlines()[-1] == f"vpce-approver: error: {source}: 2 bad row(s) of 3"
    assert stored() == {}


def test_a_grant_for_a_service_not_enrolled_warns_and_needs_force(cli: Cli, tmp_path: Path) -> None:
    source = tmp_path / "grants.yaml"
    source.write_text(f"- service_id: {UNMANAGED}\n  consumer: '{CONSUMER}'\n")
    code, out, err = cli("registry", "plan", str(source))
    assert code == 2
    assert f"warning: not enrolled in stack vpce-approver: {UNMANAGED}" in err
    assert "1 to add" in out
    code, _, err = cli("registry", "apply", str(source), "--yes")
    assert code == 2
    assert "not enrolled needs --force" in err
    assert stored() == {}
    code, _, err = cli("registry", "import", str(source))
    assert (code, "needs --force" in err, stored()) == (2, True, {})
    assert cli("registry", "apply", str(source), "--force")[0] == 0
    assert set(stored()) == {(UNMANAGED, CONSUMER)}


def test_apply_or_import_that_revokes_needs_a_yes(cli: Cli, tmp_path: Path) -> None:
    assert cli("registry", "add", SVC, CONSUMER, "--revoke", "--by", "a")[0] == 0
    source = tmp_path / "grants.yaml"
    source.write_text(
        f"- service_id: {SVC}\n  consumer: '{CONSUMER}'\n  status: suspended\n  revoke: true\n"
    )
    for verb in ("apply", "import"):
        code, _, err = cli("registry", verb, str(source))
        assert code == 2, err
        assert f"revokes {SVC}/{CONSUMER} (its live connections will be rejected)" in err
        assert stored()[(SVC, CONSUMER)].status == "allow"
    assert cli("registry", "import", str(source), "--yes")[0] == 0
    assert stored()[(SVC, CONSUMER)].status == "suspended"


# ----------------------------------------------------------------------------- the pure core


def _live(grant: Grant, updated_at: str = "t1") -> plan.Live:
    return plan.Live(grant.key, grant, {"updated_at": json.dumps(updated_at)}, raw={})


@pytest.mark.parametrize(
    ("file", "live", "prune", "ops"),
    [
        ([], [], False, []),
        ([("a", {})], [], False, ["add"]),
        ([("a", {})], [("a", {})], False, []),
        ([("a", {"note": "x"})], [("a", {})], False, ["change"]),
        ([], [("a", {})], False, []),  # kept
        ([], [("a", {})], True, ["remove"]),
        ([("b", {})], [("a", {}), ("b", {"owner": "o"})], True, ["change", "remove"]),
    ],
)
def test_compute_as_a_table(
    file: list[tuple[str, dict[str, str]]],
    live: list[tuple[str, dict[str, str]]],
    prune: bool,
    ops: list[str],
) -> None:
    accounts = {"a": CONSUMER, "b": OTHER}
    wanted = [(n, _grant(SVC, accounts[k], **f)) for n, (k, f) in enumerate(file, start=1)]
    stored_now = {g.key: _live(g) for g in (_grant(SVC, accounts[k], **f) for k, f in live)}
    result = plan.compute(wanted, stored_now, prune=prune)
    assert [s.op for s in result.steps] == ops
    assert result.digest == plan.compute(wanted, stored_now, prune=prune).digest  # stable


def test_the_digest_changes_with_the_registry_version() -> None:
    grant = _grant(SVC, CONSUMER)
    wanted = [(1, _grant(SVC, CONSUMER, note="n"))]
    one = plan.compute(wanted, {grant.key: _live(grant, "t1")}, prune=False)
    two = plan.compute(wanted, {grant.key: _live(grant, "t2")}, prune=False)
    assert one.digest != two.digest
