"""OU and organization grants in the CLI's decision views (issue 15): `explain` names the grant
that decided and the account's OU path that matched, `pending` shows the deciding grant and path,
`doctor` says whether OU/organization grants decide at all (the deployment reads AWS
Organizations) and whether Organizations can be read. The organization is a StaticDirectory
given to the Registry the CLI builds, as runtime.build does with OU/organization grants on."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_runner import Cli, cli_fixture  # noqa: F401 - provides the `cli` fixture

from conftest import CONSUMER, OTHER, THIRD, grant
from vpce_approver import runtime
from vpce_approver.config import Settings
from vpce_approver.converge import Deps
from vpce_approver.membership import StaticDirectory
from vpce_approver.model import GrantStatus
from vpce_approver.registry import Registry
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.stack import LocalDeployment
from vpce_tools.stream_poller import registry_poller

ORG = "o-abcdefghij"
TOP = "ou-ab12-workload1"
CHILD = "ou-ab12-prod0001"
PATH = f"{ORG} / {TOP} / {CHILD}"  # CONSUMER's path, root side first


@pytest.fixture
def directory(monkeypatch: pytest.MonkeyPatch) -> StaticDirectory:
    """CONSUMER sits in workloads/prod, OTHER in workloads, THIRD is outside the organization.
    Every Deps built with OU/organization grants on reads it (the CLI's and the deployment's)."""
    org = StaticDirectory(ORG, {CONSUMER: (CHILD, TOP), OTHER: (TOP,)})
    build = runtime.build

    def with_directory(settings: Settings | None = None, **kwargs: Any) -> Deps:
        deps = build(settings, **kwargs)
        if settings is not None and settings.organization_grants:
            deps.registry = Registry(
                allow_wildcard_principal=settings.allow_wildcard_principal, directory=org
            )
        return deps

    monkeypatch.setattr(runtime, "build", with_directory)
    return org


@pytest.fixture
def on(monkeypatch: pytest.MonkeyPatch, directory: StaticDirectory) -> StaticDirectory:
    """The deployment (and so the CLI) reads the organization."""
    monkeypatch.setenv("ORGANIZATION_GRANTS", "true")
    return directory


def put(deployment: LocalDeployment, *grants: Any) -> None:
    registry = deployment.deps().registry
    for g in grants:
        registry.put(g, by="test", now=datetime.now(UTC))


def ou_grant(service_id: str, consumer: str, **kwargs: Any) -> Any:
    return grant(service_id, consumer=consumer, principals=(), **kwargs)


def explain(cli: Cli, vpce: str) -> dict[str, Any]:
    code, out, err = cli("explain", vpce, "-o", "json")
    assert code == 0, err
    data: dict[str, Any] = json.loads(out)
    return data


def test_explain_names_the_ou_grant_and_the_path_that_matched(
    cli: Cli, deployment: LocalDeployment, service: EndpointService, provider: Provider,
    on: StaticDirectory,
) -> None:  # fmt: skip
    put(
        deployment,
        ou_grant(service.service_id, CHILD, principal_role="WorkloadRole", owner="platform"),
        ou_grant("*", ORG, status=GrantStatus.SUSPENDED),
        ou_grant(service.service_id, "ou-zz99-elsewhere"),  # not on CONSUMER's path
    )
    mine = provider.consumer(CONSUMER).create_endpoint(service.service_name)
    data = explain(cli, mine)
    assert (data["decision"]["action"], data["decision"]["code"]) == ("accept", "allowed")
    assert data["decided_by"] == {
        "grant": f"{service.service_id}/{CHILD}",
        "scope": "ou",
        "via": PATH,
    }
    assert data["membership"] == {"state": "member", "path": PATH}
    assert [g["key"] for g in data["grants"]["organization"]] == [
        f"{service.service_id}/{CHILD}",
        f"*/{ORG}",
    ]
    assert data["grants"]["organization"][0]["principal_role"] == "WorkloadRole"
    assert (data["grants"]["service"], data["grants"]["wildcard"]) == (None, None)

    code, out, _ = cli("explain", mine)
    assert code == 0
    lines = out.splitlines()
    assert f"org path    {PATH}" in lines
    flat = " ".join(out.split())  # long lines wrap under their value
    assert f"decided by {service.service_id}/{CHILD} (OU grant) via {PATH} decision" in flat
    ou_line = f"OU grant    {service.service_id}/{CHILD}: allow"
    assert any(line.startswith(ou_line) for line in lines)
    assert any(line.startswith(f"org grant   */{ORG}: suspended") for line in lines)
    assert "ou-zz99-elsewhere" not in out
    assert max(len(line) for line in lines) <= 100


def test_explain_the_organization_grant_and_deny_at_any_level(
    cli: Cli, deployment: LocalDeployment, service: EndpointService, provider: Provider,
    on: StaticDirectory,
) -> None:  # fmt: skip
    put(deployment, ou_grant("*", ORG), grant(service.service_id))  # CONSUMER's own allow
    theirs = provider.consumer(OTHER).create_endpoint(service.service_name)
    data = explain(cli, theirs)
    assert data["decided_by"] == {
        "grant": f"*/{ORG}",
        "scope": "organization",
        "via": f"{ORG} / {TOP}",
    }
    flat = " ".join(cli("explain", theirs)[1].split())
    assert f"decided by */{ORG} (organization grant) via {ORG} / {TOP} decision" in flat

    # a deny on the parent OU wins over the account's own allow
    put(deployment, ou_grant(service.service_id, TOP, status=GrantStatus.DENY))
    mine = provider.consumer(CONSUMER).create_endpoint(service.service_name)
    data = explain(cli, mine)
    assert (data["decision"]["action"], data["decision"]["code"]) == ("reject", "denied")
    assert data["decided_by"] == {
        "grant": f"{service.service_id}/{TOP}",
        "scope": "ou",
        "via": PATH,
    }
    assert data["grants"]["service"]["key"] == f"{service.service_id}/{CONSUMER}"


def test_explain_an_account_outside_the_organization(
    cli: Cli, deployment: LocalDeployment, service: EndpointService, provider: Provider,
    on: StaticDirectory,
) -> None:  # fmt: skip
    put(deployment, ou_grant("*", ORG))
    stranger = provider.consumer(THIRD).create_endpoint(service.service_name)
    data = explain(cli, stranger)
    assert (data["decision"]["code"], data["decided_by"]) == ("no-grant", None)
    assert data["membership"] == {"state": "outside", "path": "outside the organization"}
    assert data["grants"]["organization"] == []
    assert "org path    outside the organization" in cli("explain", stranger)[1]


def test_explain_and_pending_when_membership_cannot_be_read(
    cli: Cli, deployment: LocalDeployment, service: EndpointService, provider: Provider,
    on: StaticDirectory,
) -> None:  # fmt: skip
    put(deployment, ou_grant(service.service_id, CHILD))
    on.unreadable = "AccessDeniedException: not the management account"
    mine = provider.consumer(CONSUMER).create_endpoint(service.service_name)
    data = explain(cli, mine)
    decision = data["decision"]
    assert (decision["action"], decision["code"]) == ("escalate", "membership-unknown")
    assert "AccessDeniedException" in data["decision"]["reason"]
    assert data["decided_by"] is None
    assert data["membership"]["state"] == "unknown"
    # the grant that may apply is shown (it cannot be placed), never as deciding
    assert [g["key"] for g in data["grants"]["organization"]] == [f"{service.service_id}/{CHILD}"]
    code, out, _ = cli("explain", mine)
    assert "org path    membership unknown (AccessDeniedException: not the management" in out
    assert "decided by" not in out

    code, out, _ = cli("pending", "-o", "json")
    assert code == 0
    [row] = json.loads(out)
    assert (row["code"], row["grant"], row["via"]) == ("membership-unknown", None, None)


def test_without_organization_grants_the_cli_reads_no_organization(
    cli: Cli, deployment: LocalDeployment, service: EndpointService, provider: Provider,
    directory: StaticDirectory,
) -> None:  # fmt: skip
    put(deployment, ou_grant(service.service_id, CHILD))
    mine = provider.consumer(CONSUMER).create_endpoint(service.service_name)
    data = explain(cli, mine)
    # OU/organization items are not even read: the no-grant default, as if they did not exist
    assert (data["decision"]["code"], data["membership"]) == ("no-grant", None)
    assert data["grants"]["organization"] == []
    assert "org path" not in cli("explain", mine)[1]
    assert directory.calls == 0


def test_pending_shows_the_deciding_grant_and_path(
    cli: Cli, deployment: LocalDeployment, service: EndpointService, provider: Provider,
    on: StaticDirectory,
) -> None:  # fmt: skip
    put(
        deployment,
        ou_grant(service.service_id, CHILD, max_endpoints=5),
        ou_grant("*", ORG, status=GrantStatus.SUSPENDED),
        grant(service.service_id, consumer=THIRD),
    )
    for account in (CONSUMER, OTHER, THIRD):
        provider.consumer(account).create_endpoint(service.service_name)
    code, out, err = cli("pending", "-o", "json")
    assert code == 0, err
    rows = {r["owner"]: r for r in json.loads(out)}
    svc = service.service_id
    assert {o: (r["action"], r["grant"], r["via"]) for o, r in rows.items()} == {
        CONSUMER: ("accept", f"{svc}/{CHILD}", PATH),
        OTHER: ("escalate", f"*/{ORG}", f"{ORG} / {TOP}"),
        THIRD: ("accept", f"{svc}/{THIRD}", None),
    }
    code, out, err = cli("pending")
    assert code == 0
    assert max(len(line) for line in out.splitlines()) <= 100
    flat = " ".join(out.split())
    assert f"GRANT {svc}/{CHILD} via {PATH}" in flat
    assert f"GRANT */{ORG} via {ORG} / {TOP}" in flat
    assert f"GRANT {svc}/{THIRD} WHY" in flat


def test_an_ou_grant_added_with_the_cli_onboards_and_is_audited(
    cli: Cli, deployment: LocalDeployment, service: EndpointService, provider: Provider,
    on: StaticDirectory,
) -> None:  # fmt: skip
    """End to end: `registry add SVC ou-…` -> the registry stream (a deployment reading the
    organization) accepts the waiting connection of a member account; the audit trail has the
    grant's change (its subject) and the accept with the path that matched (the account's)."""
    deps = deployment.deps(organization_grants=True)
    deps.registry.directory = on  # the deployment reads the same organization as the CLI
    stream = registry_poller(deployment, deps, start="LATEST")
    mine = provider.consumer(CONSUMER).create_endpoint(service.service_name)
    code, _, err = cli("registry", "add", service.service_id, TOP, "--by", "alice")
    assert code == 0, err
    stream.drain()
    assert [c["VpcEndpointState"] for c in provider.connections(service.service_id)] == [
        "available"
    ]
    code, out, err = cli("audit", "--subject", f"grant#{service.service_id}#{TOP}", "-o", "json")
    assert code == 0, err
    assert [(r["action"], r["actor"]) for r in json.loads(out)] == [
        ("grant-added", "registry:alice"),
        ("principals-added", "registry:alice"),
    ]
    code, out, _ = cli("audit", "--consumer", CONSUMER, "-o", "json")
    accepted = [r for r in json.loads(out) if r["subject"] == mine and r["action"] == "accept"]
    assert accepted
    assert f"(path {ORG} / {TOP} / {CHILD})" in accepted[0]["reason"]


def test_add_warns_about_an_ou_with_no_member(
    cli: Cli, service: EndpointService, on: StaticDirectory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A typo in an OU or organization ID is a warning (an empty OU may be meant for accounts
    yet to come): the grant is written."""
    svc = service.service_id
    code, _, err = cli("registry", "add", svc, TOP)
    assert (code, err) == (0, "")
    for consumer, what in (("ou-ab12-typo0001", "OU"), ("o-zzzzzzzzzz", "organization")):
        code, out, err = cli("registry", "add", svc, consumer)
        assert code == 0
        assert out.startswith(f"allow {svc}/{consumer} written")
        assert err == (
            f"warning: {consumer}: AWS Organizations lists no active account in this {what} (a"
            " typo, another organization, or an empty OU): the grant applies to nobody yet\n"
        )
    on.unreadable = "AccessDeniedException"
    code, _, err = cli("registry", "add", svc, CHILD)
    assert (code, err) == (0, "")  # cannot tell: nothing said

    monkeypatch.setenv("ORGANIZATION_GRANTS", "false")
    code, _, err = cli("registry", "add", "*", ORG)
    assert code == 0
    assert err == (
        f"warning: {ORG}: this deployment does not read AWS Organizations (OrganizationGrants"
        " off): OU/organization grants decide nothing until it does\n"
    )


def test_import_and_plan_warn_once_about_ou_consumers(
    cli: Cli, service: EndpointService, on: StaticDirectory, tmp_path: Path
) -> None:
    source = tmp_path / "grants.yaml"
    rows = [
        {"service_id": service.service_id, "consumer": c}
        for c in (TOP, "ou-ab12-typo0001", CONSUMER)
    ]
    source.write_text(yaml.safe_dump(rows))
    for argv in (("registry", "plan", str(source)), ("registry", "import", str(source))):
        code, _, err = cli(*argv)
        assert code in (0, 2)
        assert err.count("warning:") == 1, err
        assert "warning: ou-ab12-typo0001: AWS Organizations lists no active account" in err
    assert cli("registry", "plan", str(source))[0] == 0  # imported: nothing to do


# ----------------------------------------------------------------------------- doctor


def checks(out: str) -> dict[str, tuple[str, str]]:
    data = json.loads(out)
    return {c["name"]: (c["verdict"], c["detail"]) for c in data["checks"]}


@pytest.fixture
def notified(monkeypatch: pytest.MonkeyPatch, deployment: LocalDeployment) -> None:
    monkeypatch.setenv("NOTIFICATION_TOPIC_ARN", deployment.topic_arn)


@pytest.mark.usefixtures("notified")
def test_doctor_warns_that_ou_grants_decide_nothing_when_off(
    cli: Cli, deployment: LocalDeployment, service: EndpointService, directory: StaticDirectory
) -> None:
    code, out, _ = cli("doctor", service.service_id, "-o", "json")
    assert "organization grants" not in checks(out)  # none, and off: nothing to say
    put(
        deployment,
        ou_grant(service.service_id, CHILD),
        ou_grant("*", ORG, status=GrantStatus.DENY),
    )
    code, out, _ = cli("doctor", service.service_id, "-o", "json")
    assert code == 1  # the deployment's other checks (target health) fail in the emulator
    verdict, detail = checks(out)["organization grants"]
    assert verdict == "warn"
    assert detail.startswith(
        f"2 OU/organization grant(s) ({service.service_id}/{CHILD}, */{ORG}) but this deployment"
        " does not read AWS Organizations (off: the default: ORGANIZATION_GRANTS unset, stack not"
        " readable): they are never read, so they accept nothing and an OU/organization"
        " deny does not reject"
    )
    assert "OrganizationGrants=true" in detail


@pytest.mark.usefixtures("notified")
def test_doctor_reads_the_setting_from_the_stack(
    cli: Cli, deployment: LocalDeployment, service: EndpointService, provider: Provider,
    directory: StaticDirectory,
) -> None:  # fmt: skip
    """No ORGANIZATION_GRANTS in this shell: the deployed stack's OrganizationGrants parameter
    says whether the deployment reads Organizations."""
    put(deployment, ou_grant(service.service_id, CHILD))
    template = {
        "Parameters": {"OrganizationGrants": {"Type": "String", "Default": "false"}},
        "Resources": {"T": {"Type": "AWS::SNS::Topic"}},
    }
    provider.client("cloudformation").create_stack(
        StackName="vpce-approver",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "OrganizationGrants", "ParameterValue": "true"}],
    )
    _, out, _ = cli("doctor", service.service_id, "-o", "json")
    verdict, detail = checks(out)["organization grants"]
    assert (verdict, detail) == (
        "ok",
        "on (stack vpce-approver's OrganizationGrants parameter), Organizations readable;"
        f" 1 OU/organization grant(s): {service.service_id}/{CHILD}",
    )


@pytest.mark.usefixtures("notified")
def test_doctor_checks_organizations_can_be_read(
    cli: Cli, deployment: LocalDeployment, service: EndpointService, provider: Provider,
    on: StaticDirectory,
) -> None:  # fmt: skip
    code, out, _ = cli("doctor", service.service_id, "-o", "json")
    assert checks(out)["organization grants"] == (
        "ok",
        "on (ORGANIZATION_GRANTS in this shell), Organizations readable;"
        " 0 OU/organization grant(s)",
    )
    put(deployment, ou_grant(service.service_id, CHILD))
    mine = provider.consumer(CONSUMER).create_endpoint(service.service_name)
    code, out, _ = cli("doctor", mine, "-o", "json")
    got = checks(out)
    assert got["organization grants"][0] == "ok"
    assert got["organization grants"][1].endswith(f"; {CONSUMER} sits at {PATH}")
    assert got["decision"][0] == "ok"
    assert f"(path {PATH})" in got["decision"][1]

    on.unreadable = "TooManyRequestsException: rate exceeded"
    for target in (service.service_id, mine):
        code, out, _ = cli("doctor", target, "-o", "json")
        verdict, detail = checks(out)["organization grants"]
        assert (code, verdict) == (1, "fail")
        assert detail.startswith(
            "on (ORGANIZATION_GRANTS in this shell), but AWS Organizations cannot be read"
            " (TooManyRequestsException: rate exceeded): nothing is accepted on an"
            " OU/organization grant (membership-unknown escalations)"
        )
    # nothing depends on it when there is no OU/organization grant: a warning
    deployment.deps().registry.remove(service.service_id, CHILD)
    code, out, _ = cli("doctor", service.service_id, "-o", "json")
    assert checks(out)["organization grants"][0] == "warn"


@pytest.mark.usefixtures("notified")
def test_doctor_allow_list_counts_ou_members(
    cli: Cli, deployment: LocalDeployment, service: EndpointService, on: StaticDirectory
) -> None:
    put(deployment, ou_grant(service.service_id, TOP, principal_role="App"))
    _, out, _ = cli("doctor", service.service_id, "-o", "json")
    verdict, detail = checks(out)["allowed principals"]
    roles = [f"arn:aws:iam::{a}:role/App" for a in sorted((CONSUMER, OTHER))]
    assert (verdict, detail.split(" (the next")[0]) == (
        "warn",
        f"missing 2 a live grant needs: {', '.join(roles)}",
    )
    assert "; 2 member account(s) of granted OUs/organization counted" in detail

    on.unreadable = "AccessDeniedException"
    _, out, _ = cli("doctor", service.service_id, "-o", "json")
    verdict, detail = checks(out)["allowed principals"]
    assert verdict == "warn"
    assert (
        f"incomplete: the member accounts of {TOP} could not be read (nothing is removed until"
        " it can be read)"
    ) in detail


def test_decision_settings_follow_the_shell_then_the_stack(
    monkeypatch: pytest.MonkeyPatch, deployment: LocalDeployment
) -> None:
    from vpce_tools.commands import _support

    base = Settings.from_env(stack="vpce-approver")
    parameters = {"OrganizationGrants": "true", "OrganizationsRoleArn": "arn:aws:iam::1:role/r"}
    monkeypatch.delenv("ORGANIZATION_GRANTS", raising=False)
    assert _support.organization_setting(base, "s", parameters) == (
        True,
        "stack s's OrganizationGrants parameter",
    )
    assert _support.organization_setting(base, "s", {}) == (
        False,
        "the default: ORGANIZATION_GRANTS unset, stack not readable",
    )
    monkeypatch.setenv("ORGANIZATION_GRANTS", "false")
    on = dataclasses.replace(base, organization_grants=False)
    assert _support.organization_setting(on, "s", parameters) == (
        False,
        "ORGANIZATION_GRANTS in this shell",
    )


# ----------------------------------------------------------------------------- the real adapter


@pytest.mark.usefixtures("notified")
def test_the_cli_reads_moto_organizations_through_the_deployments_adapter(
    cli: Cli, deployment: LocalDeployment, service: EndpointService, provider: Provider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """No StaticDirectory: ORGANIZATION_GRANTS=true and runtime.build's Organizations adapter
    reads the emulator's Organizations (the provider is the management account)."""
    monkeypatch.setenv("ORGANIZATION_GRANTS", "true")
    svc = service.service_id
    code, out, err = cli("doctor", svc, "-o", "json")
    verdict, detail = checks(out)["organization grants"]
    assert verdict == "warn"  # no organization yet, and no OU grant depends on it
    assert "AWS Organizations cannot be read" in detail

    api = provider.client("organizations")
    org = api.create_organization(FeatureSet="ALL")["Organization"]["Id"]
    root = api.list_roots()["Roots"][0]["Id"]
    workloads = api.create_organizational_unit(ParentId=root, Name="workloads")
    top = workloads["OrganizationalUnit"]["Id"]
    prod = api.create_organizational_unit(ParentId=top, Name="prod")["OrganizationalUnit"]["Id"]
    created = api.create_account(AccountName="payments-prod", Email="p@example.test")
    account = created["CreateAccountStatus"]["AccountId"]
    api.move_account(AccountId=account, SourceParentId=root, DestinationParentId=prod)

    code, _, err = cli("registry", "add", svc, prod, "--principal-role", "WorkloadRole")
    assert (code, err) == (0, "")  # the OU has a member: no warning
    mine = provider.consumer(account).create_endpoint(service.service_name)
    data = explain(cli, mine)
    path = f"{org} / {top} / {prod}"
    assert data["decided_by"] == {"grant": f"{svc}/{prod}", "scope": "ou", "via": path}
    assert data["membership"] == {"state": "member", "path": path}
    code, out, _ = cli("doctor", mine, "-o", "json")
    verdict, detail = checks(out)["organization grants"]
    assert verdict == "ok"
    assert detail.endswith(f"; {account} sits at {path}")


def test_the_stack_parameters_the_cli_reads_are_the_templates() -> None:
    from vpce_tools import template
    from vpce_tools.commands import _support

    parameters = template.load()["Parameters"]
    for name in (_support.ORGANIZATION_GRANTS_PARAMETER, _support.ORGANIZATIONS_ROLE_PARAMETER):
        assert name in parameters, name
    assert parameters[_support.ORGANIZATION_GRANTS_PARAMETER]["AllowedValues"] == ["true", "false"]
