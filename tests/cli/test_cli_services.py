"""`vpce-approver services | explain | pending | audit | doctor` in-process on the emulator."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cli_runner import Cli, cli_fixture  # noqa: F401 - provides the `cli` fixture

from conftest import CONSUMER, OTHER, THIRD, grant
from vpce_approver.model import GrantStatus
from vpce_approver.tables import RegistryItem
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.stack import LocalDeployment


def notifications(provider: Provider, service_id: str) -> list[dict[str, object]]:
    return list(
        provider.client("ec2").describe_vpc_endpoint_connection_notifications(
            Filters=[{"Name": "service-id", "Values": [service_id]}]
        )["ConnectionNotificationSet"]
    )


def tags(provider: Provider, service_id: str) -> dict[str, str]:
    config = provider.client("ec2").describe_vpc_endpoint_service_configurations(
        ServiceIds=[service_id]
    )["ServiceConfigurations"][0]
    return {t["Key"]: t["Value"] for t in config.get("Tags", [])}


def test_services_add_list_remove(
    cli: Cli, deployment: LocalDeployment, provider: Provider
) -> None:
    svc = provider.create_service()
    code, out, _ = cli(
        "services", "add", svc.service_id, "--name", "ledger", "--topic-arn",
        deployment.topic_arn, "--by", "alice",
    )  # fmt: skip
    assert code == 0, out
    assert tags(provider, svc.service_id) == {"vpce-approver:managed": "vpce-approver"}
    [notification] = notifications(provider, svc.service_id)
    assert notification["ConnectionNotificationArn"] == deployment.topic_arn
    assert set(notification["ConnectionEvents"]) == {"Accept", "Connect", "Delete", "Reject"}
    item = RegistryItem.get(svc.service_id, "#service")
    assert (item.name, item.notification_id, item.updated_by) == (
        "ledger",
        notification["ConnectionNotificationId"],
        "alice",
    )
    # enrolling again reuses the notification (the template's own service is pre-wired)
    code, out, _ = cli("services", "add", svc.service_id, "--topic-arn", deployment.topic_arn)
    assert code == 0
    assert "(already in place)" in out
    assert len(notifications(provider, svc.service_id)) == 1

    code, out, _ = cli("services", "list", "--format", "json")
    [listed] = json.loads(out)
    assert (listed["service_id"], listed["name"], listed["tagged"]) == (svc.service_id, None, True)
    assert listed["acceptance_required"] is True

    code, out, _ = cli("services", "remove", svc.service_id)
    assert code == 0
    assert notifications(provider, svc.service_id) == []
    assert tags(provider, svc.service_id) == {}
    assert not deployment.deps().registry.is_managed(svc.service_id)
    code, _, err = cli("services", "remove", svc.service_id)
    assert code == 2
    assert "is not managed" in err


def test_services_add_needs_a_topic_and_a_real_service(
    cli: Cli, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    svc = provider.create_service()
    monkeypatch.delenv("NOTIFICATION_TOPIC_ARN", raising=False)
    code, _, err = cli("services", "add", svc.service_id)
    assert code == 2
    assert "no notification topic: pass --topic-arn" in err
    assert "vpce-approver" in err  # names the stack it looked for
    code, _, err = cli("services", "add", "vpce-svc-00000000000000000", "--topic-arn", "x")
    assert code == 2
    assert "not found among the endpoint services of account 123456789012, region us-east-1" in err
    code, _, err = cli("services", "add", svc.service_id, "--topic-arn", "not-an-arn")
    assert code == 2
    assert "is not an SNS topic ARN" in err
    assert tags(provider, svc.service_id) == {}
    code, _, err = cli("services", "add", "svc-1", "--topic-arn", "x")
    assert (code, "is not a vpce-svc-… ID" in err) == (2, True)


def test_services_add_reads_the_topic_from_the_environment_or_the_stack(
    cli: Cli, deployment: LocalDeployment, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = provider.create_service(), provider.create_service()
    monkeypatch.setenv("NOTIFICATION_TOPIC_ARN", deployment.topic_arn)
    assert cli("services", "add", first.service_id)[0] == 0
    assert notifications(provider, first.service_id)[0]["ConnectionNotificationArn"] == (
        deployment.topic_arn
    )
    monkeypatch.delenv("NOTIFICATION_TOPIC_ARN")
    for kind in ("registry", "audit", "escalations"):  # another stack name, the same tables
        monkeypatch.setenv(f"{kind.upper()}_TABLE", f"vpce-approver-{kind}")
    cfn_template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {"NotificationTopicArn": {"Value": {"Ref": "Topic"}}},
    }
    cfn = provider.client("cloudformation")
    cfn.create_stack(StackName="other-stack", TemplateBody=json.dumps(cfn_template))
    topic = cfn.describe_stacks(StackName="other-stack")["Stacks"][0]["Outputs"][0]["OutputValue"]
    code, out, _ = cli("--stack", "other-stack", "services", "add", second.service_id)
    assert code == 0, out
    assert notifications(provider, second.service_id)[0]["ConnectionNotificationArn"] == topic
    assert tags(provider, second.service_id) == {"vpce-approver:managed": "other-stack"}
    # a service another stack manages is not taken over silently
    code, _, err = cli("services", "add", second.service_id, "--topic-arn", deployment.topic_arn)
    assert code == 2
    assert "managed by stack 'other-stack'" in err


def test_explain_pending_and_settled_connections(
    cli: Cli,
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    other: Consumer,
) -> None:
    registry = deployment.deps().registry
    now = datetime.now(UTC)
    registry.put(grant("*", owner="team-a", note="everything"), by="alice", now=now)
    registry.put(grant(service.service_id, status=GrantStatus.SUSPENDED), by="bob", now=now)
    waiting = consumer.create_endpoint(service.service_name)
    code, out, _ = cli("explain", waiting)
    assert code == 0
    assert f"connection  {waiting} on {service.service_id}" in out
    assert f"service grant{service.service_id}/{CONSUMER}: suspended" in out.replace(" ", "")  or \
        f"{service.service_id}/{CONSUMER}: suspended" in out  # fmt: skip
    assert f"*/{CONSUMER}: allow" in out
    assert "decision    escalate [suspended] now" in out
    assert "is suspended" in out

    code, out, _ = cli("explain", waiting, "--format", "json")
    data = json.loads(out)
    assert data["decision"]["code"] == "suspended"
    assert data["grants"]["wildcard"]["owner"] == "team-a"
    assert data["managed"] is True

    registry.put(grant(service.service_id), by="carol", now=now)
    deployment.poller().drain()  # accepted
    stranger = other.create_endpoint(service.service_name)
    deployment.poller().drain()  # escalated
    data = json.loads(cli("explain", waiting, "--format", "json")[1])
    assert data["connection"]["state"] == "available"
    assert data["decision"]["action"] == "accept"
    assert data["decision"]["applies"].startswith("if it were pending")
    data = json.loads(cli("explain", stranger, "--format", "json")[1])
    assert (data["decision"]["code"], data["escalation"]["state"]) == ("no-grant", "open")

    code, _, err = cli("explain", "vpce-0000000000000000a")
    assert (code, "no connection vpce-0000000000000000a" in err) == (2, True)
    code, _, err = cli("explain", "sg-123")
    assert (code, "is not a vpce-… endpoint ID" in err) == (2, True)


def test_pending_lists_waiting_connections_with_their_decision(
    cli: Cli,
    deployment: LocalDeployment,
    service: EndpointService,
    provider: Provider,
) -> None:
    registry = deployment.deps().registry
    now = datetime.now(UTC)
    registry.put(grant(service.service_id), by="a", now=now)
    registry.put(grant(service.service_id, consumer=OTHER, status=GrantStatus.DENY,
                       principals=()), by="a", now=now)  # fmt: skip
    ids = {a: provider.consumer(a).create_endpoint(service.service_name)
           for a in (CONSUMER, OTHER, THIRD)}  # fmt: skip
    code, out, err = cli("pending", "--format", "json")
    assert code == 0
    rows = {r["owner"]: r for r in json.loads(out)}
    assert {o: (r["action"], r["code"]) for o, r in rows.items()} == {
        CONSUMER: ("accept", "allowed"),
        OTHER: ("reject", "denied"),
        THIRD: ("escalate", "no-grant"),
    }
    assert rows[THIRD]["vpc_endpoint_id"] == ids[THIRD]
    code, out, err = cli("pending")
    assert "3 pending connection(s) on 1 managed service(s)" in err
    # 10 columns do not fit 100 characters: one block per connection, every field labelled
    lines = out.splitlines()
    assert [line.split()[0] for line in lines[1:10]] == [
        "ENDPOINT", "OWNER", "REGION", "AGE", "DECISION", "CODE", "ESCALATION", "GRANT", "WHY"
    ]  # fmt: skip
    assert rows[CONSUMER]["grant"] == f"{service.service_id}/{CONSUMER}"
    assert (rows[THIRD]["grant"], rows[THIRD]["via"]) == (None, None)
    deployment.poller().drain()
    code, out, _ = cli("pending", "--format", "json")
    assert [(r["owner"], r["escalation"]) for r in json.loads(out)] == [(THIRD, "open")]


def test_audit_trail_by_consumer_subject_and_since(
    cli: Cli, deployment: LocalDeployment, service: EndpointService, consumer: Consumer,
    other: Consumer,
) -> None:  # fmt: skip
    deployment.deps().registry.put(grant(service.service_id), by="a", now=datetime.now(UTC))
    mine = consumer.create_endpoint(service.service_name)
    theirs = other.create_endpoint(service.service_name)
    deployment.poller().drain()
    code, out, _ = cli("audit", "--consumer", CONSUMER, "--format", "json")
    rows = json.loads(out)
    assert [(r["subject"], r["action"]) for r in rows] == [(mine, "accept")]
    code, out, _ = cli("audit", "--subject", theirs, "--format", "json")
    assert [r["action"] for r in json.loads(out)] == ["escalate"]
    code, out, err = cli("audit", "--since", "1h")
    assert code == 0
    assert "2 entries" in err
    assert out.splitlines()[0].split() == ["AT", "ACTOR", "ACTION", "OUTCOME", "SUBJECT", "WHY"]
    code, out, _ = cli("audit", "--since", "2999-01-01T00:00:00Z", "--format", "json")
    assert json.loads(out) == []
    code, out, _ = cli("audit", "--limit", "1", "--format", "json")
    assert len(json.loads(out)) == 1
    for argv, message in (
        (("audit", "--since", "yesterday"), "not an ISO 8601 time"),
        (("audit", "--consumer", "abc"), "12-digit"),
        (("audit", "--consumer", CONSUMER, "--subject", mine), "not both"),
    ):
        code, _, err = cli(*argv)
        assert (code, message in err) == (2, True)


def checks(out: str) -> dict[str, tuple[str, str]]:
    data = json.loads(out)
    return {c["name"]: (c["verdict"], c["detail"]) for c in data["checks"]}


def test_doctor_service_and_connection(
    cli: Cli,
    deployment: LocalDeployment,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NOTIFICATION_TOPIC_ARN", deployment.topic_arn)
    elbv2 = provider.client("elbv2")
    code, out, _ = cli("doctor", service.service_id, "--format", "json")
    got = checks(out)
    assert got["service available"][0] == "ok"
    assert got["acceptance required"][0] == "ok"
    assert got["managed"][0] == "ok"
    assert got["connection notification"][0] == "ok"
    assert got["private DNS name"][0] == "ok"
    assert got["availability zones"] == (
        "ok",
        "published in us-east-1a, us-east-1b; consumer subnets must be in one of them (by AZ ID)",
    )
    assert got["NLB cross-zone"][0] == "warn"  # off by default on NLBs
    assert got["target health"][0] == "fail"  # no target group yet
    assert code == 1

    # fix the load balancer: cross-zone on, a target group with a healthy target
    elbv2.modify_load_balancer_attributes(
        LoadBalancerArn=service.load_balancer_arn,
        Attributes=[{"Key": "load_balancing.cross_zone.enabled", "Value": "true"}],
    )
    vpc_id = elbv2.describe_load_balancers(LoadBalancerArns=[service.load_balancer_arn])[
        "LoadBalancers"
    ][0]["VpcId"]
    group = elbv2.create_target_group(
        Name="tg", Protocol="TCP", Port=443, VpcId=vpc_id, TargetType="ip"
    )["TargetGroups"][0]["TargetGroupArn"]
    elbv2.create_listener(
        LoadBalancerArn=service.load_balancer_arn, Protocol="TCP", Port=443,
        DefaultActions=[{"Type": "forward", "TargetGroupArn": group}],
    )  # fmt: skip
    elbv2.register_targets(TargetGroupArn=group, Targets=[{"Id": "10.0.0.10", "Port": 443}])

    vpce = consumer.create_endpoint(service.service_name)
    code, out, _ = cli("doctor", vpce, "--format", "json")
    got = checks(out)
    assert got["NLB cross-zone"][0] == "ok"
    assert got["target health"][0] == "ok"
    assert got["target health"][1].endswith(": 1 healthy, 0 not healthy of 1")
    assert got["connection state"][0] == "warn"  # pendingAcceptance
    assert got["decision"][0] == "warn"  # no grant: escalate
    assert got["consumer allowed"][0] == "ok"  # the service allows *
    code, out, _ = cli("doctor", vpce)
    assert out.startswith(f"doctor: {vpce} on {service.service_id}")
    assert "VERDICT" in out
    assert "checks:" in out


def test_doctor_flags_an_unmanaged_service_without_notification(
    cli: Cli, provider: Provider, consumer: Consumer
) -> None:
    svc = provider.create_service(acceptance_required=False, allowed_principals=())
    code, out, _ = cli("doctor", svc.service_id, "--format", "json")
    got = checks(out)
    assert code == 1
    assert got["acceptance required"][0] == "warn"
    assert got["managed"][0] == "fail"
    assert f"services add {svc.service_id}" in got["managed"][1]
    assert got["connection notification"][0] == "fail"
    code, _, err = cli("doctor", "nonsense")
    assert (code, "is not a vpce-… endpoint ID" in err) == (2, True)
