"""A connection accepted by a registry grant added while its escalation was open is reported as
accepted by a grant (escalation, Slack message, audit, explain), not as "accepted elsewhere"; one
accepted in the console still is "accepted elsewhere"."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from slack_fixtures import (  # noqa: F401 - local_fixture provides `local`
    escalate,
    escalation,
    local_fixture,
    message,
    state,
)

from approvals import approve_in_slack
from conftest import grant
from vpce_approver.tables import AuditItem
from vpce_tools.cli import main
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.fake_slack import render_text
from vpce_tools.slack_local import LocalSlack
from vpce_tools.stack import LocalDeployment
from vpce_tools.stream_poller import registry_poller


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    """The real CLI, in-process, against the emulated deployment."""
    capsys.readouterr()
    code = main(list(argv))
    return code, capsys.readouterr().out


def closed(vpce: str) -> list[tuple[str, str | None]]:
    return [
        (str(i.actor), i.outcome) for i in AuditItem.query(vpce) if i.action == "escalation-closed"
    ]


def test_grant_added_while_escalated_is_reported_as_accepted_by_the_grant(
    local: LocalSlack,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    capsys: pytest.CaptureFixture[str],
) -> None:
    deps = local.deps()
    stream = registry_poller(local.deployment, deps, start="LATEST")
    vpce = escalate(local, service, consumer)
    assert escalation(vpce).state == "open"
    deps.registry.put(grant(service.service_id), by="alice", now=datetime.now(UTC))
    stream.drain()  # the registry stream: converge accepts, then follow() closes the escalation
    assert state(provider, vpce) == "available"
    item = escalation(vpce)
    assert (item.state, item.outcome) == ("settled", "accepted-by-grant")
    assert closed(vpce) == [("registry", "accepted-by-grant")]
    text = render_text(message(local, vpce).blocks)
    assert "Accepted by a registry grant" in text
    assert "Accepted elsewhere" not in text
    local.deployment.poller(deps).drain()  # the Accept notification: nothing more to close
    assert closed(vpce) == [("registry", "accepted-by-grant")]
    code, out = cli(capsys, "explain", vpce, "-o", "json")
    assert (code, json.loads(out)["escalation"]["outcome"]) == (0, "accepted-by-grant")
    code, out = cli(capsys, "audit", "--subject", vpce, "-o", "json")
    rows = [(r["action"], r.get("outcome")) for r in json.loads(out)]
    assert rows[-2:] == [("accept", "done"), ("escalation-closed", "accepted-by-grant")]


def test_a_connection_accepted_in_the_console_is_accepted_elsewhere(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = escalate(local, service, consumer)
    provider.client("ec2").accept_vpc_endpoint_connections(
        ServiceId=service.service_id, VpcEndpointIds=[vpce]
    )
    local.deployment.poller(local.deps()).drain()
    assert escalation(vpce).outcome == "accepted-elsewhere"
    assert "Accepted elsewhere" in render_text(message(local, vpce).blocks)


def test_a_person_s_accept_in_slack_is_not_a_grant_s(
    deployment: LocalDeployment, service: EndpointService, consumer: Consumer
) -> None:
    vpce = consumer.create_endpoint(service.service_name)
    deployment.poller().drain()
    assert approve_in_slack(deployment, vpce, datetime.now(UTC)) == "approved"
    deps = deployment.deps()
    assert deps.audit.accepted_by_grant(vpce) is None  # the accept on record is slack:<user>'s
    assert deps.audit.label("accepted-elsewhere", vpce) == "accepted-elsewhere"
