"""A click re-checks the registry when it is acted on (issue 11 §2): a consumer with a live deny is
never accepted from Slack, and Approve & register never silently widens a restricted grant."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slack_fixtures import (  # noqa: F401 - local_fixture provides `local`
    APPROVER,
    escalate,
    escalation,
    local_fixture,
    message,
    state,
)

from conftest import CONSUMER, grant
from vpce_approver.model import Grant, GrantStatus
from vpce_approver.registry import Undecodable, scan_items
from vpce_approver.tables import AuditItem
from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.faults import Injector
from vpce_tools.slack_local import LocalSlack

SOON = datetime.now(UTC) + timedelta(days=3)


def put(local: LocalSlack, g: Grant) -> None:
    """A registry edit after the escalation was opened (its stream effect not yet run)."""
    local.deps().registry.put(g, by="test", now=datetime.now(UTC))


def raw_put(local: LocalSlack, service_id: str, **attrs: dict[str, Any]) -> None:
    item = {
        "service_id": {"S": service_id},
        "consumer": {"S": CONSUMER},
        "status": {"S": "allow"},
        **attrs,
    }
    local.deployment.provider.client("dynamodb").put_item(
        TableName=local.deployment.settings.registry_table, Item=item
    )


def click(local: LocalSlack, vpce: str, action: str) -> None:
    msg = message(local, vpce)
    status, _ = local.fake.click(msg.channel, msg.ts, action, user=APPROVER)
    assert status == 200


def refusals(vpce: str) -> list[tuple[str | None, str | None]]:
    return [(i.code, i.outcome) for i in AuditItem.query(vpce) if i.action == "slack-refused"]


def assert_nothing_done(local: LocalSlack, provider: Provider, vpce: str) -> None:
    assert state(provider, vpce) == "pendingAcceptance"
    assert escalation(vpce).state == "open"
    assert escalation(vpce).claimed_by is None  # released: another click can decide
    assert message(local, vpce).buttons
    assert not [i for i in AuditItem.query(vpce) if i.action == "accept"]


@pytest.mark.parametrize("action", ["approve", "approve_register"])
@pytest.mark.parametrize("where", ["service", "*", "*-next-to-a-malformed-service-item"])
def test_a_live_deny_is_never_accepted_from_slack(
    local: LocalSlack,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    action: str,
    where: str,
) -> None:
    vpce = escalate(local, service, consumer)
    if where == "*-next-to-a-malformed-service-item":
        raw_put(local, service.service_id, max_endpoints={"S": "lots"})
    target = service.service_id if where == "service" else "*"
    put(local, grant(target, status=GrantStatus.DENY, principals=()))
    click(local, vpce, action)
    assert_nothing_done(local, provider, vpce)
    [reply] = local.fake.ephemerals_for(APPROVER)
    assert f"is denied by grant {target}/{CONSUMER}" in reply
    assert "never accepted from Slack" in reply
    assert refusals(vpce) == [("denied", "refused:denied")]
    # Reject is never refused
    click(local, vpce, "reject")
    assert state(provider, vpce) == "rejected"


RESTRICTED: dict[str, tuple[Grant | None, str]] = {
    "suspended": (grant("SVC", status=GrantStatus.SUSPENDED), "is suspended"),
    "expiring": (grant("SVC", expires_at=SOON), "expires at"),
    "endpoint-limited": (grant("SVC", max_endpoints=1), "allows at most 1 endpoint(s)"),
    "region-restricted": (grant("SVC", regions=frozenset({"eu-west-1"})), "allows only eu-west-1"),
    "all-services suspended": (grant("*", status=GrantStatus.SUSPENDED), "is suspended"),
    "all-services limited": (grant("*", max_endpoints=3), "allows at most 3"),
    "malformed": (None, "is malformed (max_endpoints)"),
}


@pytest.mark.parametrize("case", list(RESTRICTED))
def test_approve_and_register_never_widens_a_restricted_grant(
    local: LocalSlack,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    case: str,
) -> None:
    vpce = escalate(local, service, consumer)
    template, words = RESTRICTED[case]
    if template is None:
        raw_put(local, service.service_id, max_endpoints={"S": "lots"})
    else:
        sid = service.service_id if template.service_id == "SVC" else "*"
        put(local, Grant(**{**_fields(template), "service_id": sid}))
    before = _items()
    click(local, vpce, "approve_register")
    assert_nothing_done(local, provider, vpce)
    [reply] = local.fake.ephemerals_for(APPROVER)
    assert reply.startswith("Approve & register refused")
    assert words in reply
    assert "Click Approve to let only this connection in" in reply
    assert refusals(vpce) == [("restricted-grant", "refused:restricted-grant")]
    assert _items() == before  # no grant written or changed

    # Approve alone is a human's decision for this one connection: it goes through.
    click(local, vpce, "approve")
    assert state(provider, vpce) == "available"
    assert escalation(vpce).outcome == "approved"


def test_approve_and_register_keeps_an_unrestricted_allow_grant(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = escalate(local, service, consumer)
    put(local, grant(service.service_id, owner="team-a", note="payments"))
    click(local, vpce, "approve_register")
    assert state(provider, vpce) == "available"
    written = local.deps().registry.get(service.service_id, CONSUMER)
    assert written is not None
    assert (written.owner, written.note, written.updated_by) == (
        "team-a",
        "payments",
        f"slack:{APPROVER}",
    )
    assert escalation(vpce).outcome == "approved-registered"


def _fields(g: Grant) -> dict[str, Any]:
    return {name: getattr(g, name) for name in Grant.__slots__}  # type: ignore[attr-defined]


def _items() -> list[str]:
    """Every stored item as DynamoDB holds it (malformed ones included)."""
    return sorted(
        str(i.raw if isinstance(i, Undecodable) else i.attribute_values) for i in scan_items()
    )


def test_a_deny_written_while_the_approval_is_acted_on_is_undone_at_once(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    """The deny is injected exactly between the worker's registry check and its Accept: the
    connection must not stay available; it is rejected at once and the approver is told."""
    vpce = escalate(local, service, consumer)
    deny = grant(service.service_id, status=GrantStatus.DENY, principals=())
    with Injector(local.deps().ec2.client) as faults:
        fault = faults.before("AcceptVpcEndpointConnections", lambda: put(local, deny))
        click(local, vpce, "approve")
    assert fault.injected == 1
    assert state(provider, vpce) == "rejected"
    assert escalation(vpce).outcome == "rejected"
    [reply] = local.fake.ephemerals_for(APPROVER)
    assert "denied in the registry meanwhile" in reply
    trail = [(i.action, i.code) for i in AuditItem.query(vpce)]
    assert ("accept", "human") in trail
    assert ("reject", "grant-changed") in trail
