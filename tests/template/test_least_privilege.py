"""Least privilege for DynamoDB: each function's role grants exactly the DynamoDB actions, on
exactly the tables and indexes, that its code calls — no more (every grant is exercised) and no
less (every call is allowed).

test_function_permissions.py checks "no less" for the events/ payloads. Those payloads do not reach
every path a grant exists for, so each function here runs its payloads *and* the scenarios below in
one emulated world, recording every AWS call (boto3's and pynamodb's clients), and then checks both
directions: every recorded call is allowed, and every DynamoDB (action, table/index ARN) the role
grants was called at least once. A grant no scenario needs fails the test: remove it, or add the
scenario that shows which code path needs it.

The scenarios: a new consumer escalated and posted to Slack (PutItem, the Slack port's
GetItem/UpdateItem, the service's name from the registry), an escalation settled elsewhere
(follow()), a burst of more than BATCH_GET_MAX consumers (the `*` partition is read with one Query),
Approve & register (a grant written by the Slack worker), a `*` grant (every managed service, from
the registry's by_consumer index), a grant removed (its consumer escalated), an enrollment (the
allow-list synced from the grant partitions: Query of the table), and the sweep's
cursor (resumed and cleared, saved when cut off).

Scan, table administration and `dynamodb:*` are never granted: no function scans (only the
operator's CLI does: `registry list`, `audit --since`, with the operator's credentials).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from conftest import THIRD, grant
from vpce_approver import registry as registry_module
from vpce_approver.handlers import slack_interactivity, slack_worker
from vpce_approver.sweep import Cursor, CursorItem, CursorStore
from vpce_approver.sweep.lease import LeaseItem
from vpce_approver.tables import SERVICE_MARKER, EscalationItem
from vpce_tools import policies
from vpce_tools import template as cfn_template
from vpce_tools.commands import invoke

from .conftest import (
    ENDPOINT_ESCALATED,
    EVENTS,
    SERVICE,
    SLACK_TEST_SIGNING_SECRET,
    CallRecorder,
    World,
)
from .test_function_permissions import context_for, succeeded

FUNCTIONS = invoke.function_ids(cfn_template.load())
TABLE_PREFIX = f"arn:aws:dynamodb:{policies.REGION}:{policies.ACCOUNT}:table/"
# Called by Lambda's event source mapping on the stream, not by the code.
STREAM_ACTIONS = {
    "dynamodb:DescribeStream",
    "dynamodb:GetRecords",
    "dynamodb:GetShardIterator",
    "dynamodb:ListStreams",
}
# Never granted to a function (the code has no use for them): table administration, Scan, PartiQL.
FORBIDDEN = (
    "dynamodb:CreateTable",
    "dynamodb:DeleteTable",
    "dynamodb:UpdateTable",
    "dynamodb:UpdateTimeToLive",
    "dynamodb:UpdateContinuousBackups",
    "dynamodb:RestoreTableToPointInTime",
    "dynamodb:ExportTableToPointInTime",
    "dynamodb:DeleteBackup",
    "dynamodb:Scan",
    "dynamodb:PartiQLSelect",
    "dynamodb:PartiQLInsert",
    "dynamodb:PartiQLUpdate",
    "dynamodb:PartiQLDelete",
)
# Functions whose code scans a table (table logical ID): none. Add one only with the code path.
SCANNERS: dict[str, set[str]] = {}
NEW_CONSUMER = "444444444444"
BURST = ("555555555555", "666666666666")

Scenario = Callable[[World, pytest.MonkeyPatch], Any]  # arranges the world, returns the event


# ---------------------------------------------------------------------- static checks
def _table_arns(transformed: dict[str, Any]) -> dict[str, list[str]]:
    """{table logical ID: [table ARN, each index ARN]}."""
    res = policies.resolver(transformed)
    out = {}
    for logical_id, resource in transformed["Resources"].items():
        if resource.get("Type") != "AWS::DynamoDB::Table":
            continue
        arn = str(res.get_att(logical_id, "Arn"))
        indexes = resource["Properties"].get("GlobalSecondaryIndexes") or []
        out[logical_id] = [arn, *(f"{arn}/index/{i['IndexName']}" for i in indexes)]
    return out


@pytest.mark.parametrize("function", FUNCTIONS)
def test_no_function_may_scan_or_administer_a_table(
    transformed: dict[str, Any],
    function_policies: dict[str, policies.FunctionPolicy],
    function: str,
) -> None:
    policy = function_policies[function]
    granted = [
        f"{action} on {arn}: {decision.reason}"
        for table, arns in _table_arns(transformed).items()
        for arn in [*arns, "*"]
        for action in FORBIDDEN
        if not (action == "dynamodb:Scan" and table in SCANNERS.get(function, set()))
        if (decision := policy.decide(action, arn, {})).allowed
    ]
    assert not granted, f"{function} may:\n" + "\n".join(granted)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_dynamodb_actions_are_named_one_by_one(
    function_policies: dict[str, policies.FunctionPolicy], function: str
) -> None:
    """No `dynamodb:*`, `dynamodb:Batch*`, NotAction, or a DynamoDB action on any resource."""
    offenders = [
        f"{s.source}: {s.actions or s.not_actions} on {s.resources or s.not_resources}"
        for s in function_policies[function].statements
        if s.effect == "Allow"
        and (
            s.not_actions
            or any(a.lower().startswith("dynamodb:") and ("*" in a or "?" in a) for a in s.actions)
            or (
                any(a.lower().startswith("dynamodb:") for a in s.actions)
                and not s.source.startswith("managed:")
                and ("*" in s.resources or s.not_resources)
            )
        )
    ]
    assert not offenders, f"{function}:\n" + "\n".join(offenders)


# ---------------------------------------------------------------------- scenarios
def _sqs_notification(world: World, event_type: str, endpoints: dict[str, str]) -> Any:
    """An SQS batch of connection notifications ({endpoint ID: owner}), shaped like
    events/NotificationFunction/sqs-<event>.json."""
    template = world.event(EVENTS / "NotificationFunction" / f"sqs-{event_type.lower()}.json")
    [record] = template["Records"]
    records = []
    for n, (endpoint_id, owner) in enumerate(endpoints.items()):
        envelope = json.loads(record["body"])
        message = json.loads(envelope["Message"])
        message.update(vpcEndpointId=endpoint_id, vpcEndpointOwner=owner)
        envelope["Message"] = json.dumps(message)
        records.append(
            {**record, "messageId": f"{record['messageId']}-{n}", "body": json.dumps(envelope)}
        )
    return {"Records": records}


def _service_id(world: World) -> str:
    return world.ids[SERVICE]


def _new_endpoint(world: World, account: str) -> str:
    service = world.provider.client("ec2").describe_vpc_endpoint_service_configurations(
        ServiceIds=[_service_id(world)]
    )["ServiceConfigurations"][0]
    return world.provider.consumer(account).create_endpoint(service["ServiceName"])


def _accept_in_console(world: World, endpoint_id: str) -> None:
    """The provider accepts a connection outside vpce-approver (console, CLI)."""
    world.provider.client("ec2").accept_vpc_endpoint_connections(
        ServiceId=_service_id(world), VpcEndpointIds=[endpoint_id]
    )


def new_consumer_is_escalated_and_posted(world: World, _: pytest.MonkeyPatch) -> Any:
    endpoint = _new_endpoint(world, NEW_CONSUMER)
    return _sqs_notification(world, "Connect", {endpoint: NEW_CONSUMER})


def escalation_settled_elsewhere(world: World, _: pytest.MonkeyPatch) -> Any:
    escalated = world.ids[ENDPOINT_ESCALATED]
    _accept_in_console(world, escalated)
    return _sqs_notification(world, "Accept", {escalated: THIRD})


def burst_beyond_one_batch_get(world: World, monkeypatch: pytest.MonkeyPatch) -> Any:
    # More consumers than one BatchGetItem takes: the `*` grants come from one Query of the `*`
    # partition. The limit is lowered so that two consumers are such a burst.
    monkeypatch.setattr(registry_module, "BATCH_GET_MAX", 1)
    endpoints = {_new_endpoint(world, account): account for account in BURST}
    return _sqs_notification(world, "Connect", endpoints)


def _post_escalation(world: World) -> EscalationItem:
    """Run the sweep (it posts unposted escalations to Slack) and return the posted record."""
    _invoke(world, "SweepFunction", world.event(EVENTS / "SweepFunction" / "scheduled.json"))
    world.deployment.deps()  # binds the models to the world's tables
    item = EscalationItem.get(world.ids[ENDPOINT_ESCALATED], consistent_read=True)
    assert item.slack_ts, "the sweep did not post the escalation"
    assert item.slack_channel
    return item


def approve_and_register(world: World, _: pytest.MonkeyPatch) -> Any:
    item = _post_escalation(world)
    event = world.event(EVENTS / "SlackWorkerFunction" / "sqs-slack-approve.json")
    [record] = event["Records"]
    job = json.loads(record["body"])
    job.update(
        action="approve_register",
        channel=item.slack_channel,
        message_ts=item.slack_ts,
        job_id="0" * 32,
    )
    record["body"] = json.dumps(job)
    return event


def wildcard_grant(world: World, _: pytest.MonkeyPatch) -> Any:
    event = world.event(EVENTS / "RegistryStreamFunction" / "stream-insert-grant.json")
    [record] = event["Records"]
    for image in ("Keys", "NewImage"):
        record["dynamodb"][image]["service_id"] = {"S": "*"}
    return event


def grant_removed_consumer_escalated(world: World, _: pytest.MonkeyPatch) -> Any:
    """The allow grant of a consumer whose connection is pending is deleted before the stream
    record is applied: the connection is escalated (a new escalation record)."""
    _new_endpoint(world, NEW_CONSUMER)
    event = world.event(EVENTS / "RegistryStreamFunction" / "stream-ttl-remove.json")
    [record] = event["Records"]
    record.pop("userIdentity", None)  # removed by a person, not by TTL
    for image in ("Keys", "OldImage"):
        record["dynamodb"][image]["consumer"] = {"S": NEW_CONSUMER}
    return event


def service_enrolled(world: World, _: pytest.MonkeyPatch) -> Any:
    """`services add` writes the enrollment item: the service's whole allow-list is synced from
    its grant partition and the `*` partition (two Queries of the registry table)."""
    event = world.event(EVENTS / "RegistryStreamFunction" / "stream-insert-grant.json")
    [record] = event["Records"]
    record["dynamodb"]["Keys"]["consumer"] = {"S": SERVICE_MARKER}
    record["dynamodb"]["NewImage"] = {
        **record["dynamodb"]["Keys"],
        "status": {"S": "managed"},
        "name": {"S": "payments-api"},
    }
    return event


def grant_for_the_escalated_consumer(world: World, _: pytest.MonkeyPatch) -> Any:
    """A grant for the escalated consumer: its connection is accepted, the escalation settled."""
    world.deployment.deps().registry.put(
        grant(_service_id(world), THIRD), by="test", now=datetime.now(UTC)
    )
    event = world.event(EVENTS / "RegistryStreamFunction" / "stream-insert-grant.json")
    [record] = event["Records"]
    for image in ("Keys", "NewImage"):
        record["dynamodb"][image]["consumer"] = {"S": THIRD}
    record["dynamodb"]["NewImage"]["principals"] = {"L": [{"S": f"arn:aws:iam::{THIRD}:root"}]}
    return event


def sweep_resumes_and_clears_its_cursor(world: World, monkeypatch: pytest.MonkeyPatch) -> Any:
    world.deployment.deps()
    CursorStore().save(Cursor(_service_id(world)), datetime.now(UTC))
    _new_endpoint(world, NEW_CONSUMER)  # escalated by this sweep
    _accept_in_console(world, world.ids[ENDPOINT_ESCALATED])  # settled by this sweep
    monkeypatch.setattr(registry_module, "BATCH_GET_MAX", 1)  # see burst_beyond_one_batch_get
    return world.event(EVENTS / "SweepFunction" / "scheduled.json")


SCENARIOS: dict[str, list[Scenario]] = {
    "NotificationFunction": [
        new_consumer_is_escalated_and_posted,
        escalation_settled_elsewhere,
        burst_beyond_one_batch_get,
    ],
    "RegistryStreamFunction": [
        wildcard_grant,
        grant_removed_consumer_escalated,
        grant_for_the_escalated_consumer,
        service_enrolled,
    ],
    "SlackWorkerFunction": [approve_and_register],
    "SweepFunction": [sweep_resumes_and_clears_its_cursor],
}


# ---------------------------------------------------------------------- running
def _invoke(world: World, function: str, event: Any, *, timeout: float | None = None) -> Any:
    spec = invoke.function_spec(function, parameters=world.parameters)
    if timeout is not None:
        spec = dataclasses.replace(spec, timeout=timeout)
    if invoke.is_slack_request(event):
        event = invoke.sign_slack_request(event, SLACK_TEST_SIGNING_SECRET)
    invoke.ensure_queues(spec, world.provider.client("sqs"), "https://sqs.us-east-1.amazonaws.com")
    # invoke.reset_containers() forgets the table models' clients and default_deps, but not the
    # sweep cursor's client (cached before the recorder was installed, its calls would go unseen)
    # nor the Slack handlers' cached services (bound to an earlier test's fake Slack).
    CursorItem._connection = None
    LeaseItem._connection = None
    slack_worker.default_services.cache_clear()
    slack_interactivity.default_services.cache_clear()
    return invoke.invoke(spec, event, overrides=world.env)


def _exercise(
    world: World,
    recorder: CallRecorder,
    monkeypatch: pytest.MonkeyPatch,
    function: str,
) -> list[policies.Call]:
    """Every payload of events/<function>/ and every scenario, in turn; the calls they made."""
    Arrange = Callable[[pytest.MonkeyPatch], Any]
    runs: list[tuple[str, Arrange, float | None]] = [
        (path.name, lambda _, p=path: world.event(p), None)
        for path in sorted((EVENTS / function).glob("*.json"))
    ]
    runs += [
        (s.__name__, lambda patch, s=s: s(world, patch), None) for s in SCENARIOS.get(function, [])
    ]
    if function == "SweepFunction":
        # A run cut off by its deadline saves the cursor (timeout below the sweep's margin).
        scheduled = EVENTS / "SweepFunction" / "scheduled.json"
        runs.append(("cut-off sweep saves its cursor", lambda _: world.event(scheduled), 30.0))
    calls: list[policies.Call] = []
    for name, arrange, timeout in runs:
        with monkeypatch.context() as patch:  # a scenario's patches last for its run only
            event = arrange(patch)
            recorder.calls.clear()
            result = _invoke(world, function, event, timeout=timeout)
        assert succeeded(result), f"{function} did not handle {name}: {result}"
        calls += recorder.calls
    return policies.unique(calls)


def _granted(policy: policies.FunctionPolicy) -> set[tuple[str, str]]:
    return {
        (action, resource)
        for s in policy.statements
        if s.effect == "Allow" and not s.source.startswith("managed:")
        for action in s.actions
        if action.lower().startswith("dynamodb:") and action not in STREAM_ACTIONS
        for resource in s.resources
    }


@pytest.mark.parametrize("function", FUNCTIONS)
def test_role_grants_exactly_the_dynamodb_calls_the_code_makes(
    world: World,
    recorder: CallRecorder,
    monkeypatch: pytest.MonkeyPatch,
    transformed: dict[str, Any],
    function: str,
) -> None:
    calls = _exercise(world, recorder, monkeypatch, function)
    policy = policies.function_policies(transformed, **world.parameters)[function]
    refused = [
        f"{call.action} on {resource}: {decision.reason}"
        for call in calls
        if call.action not in policies.NO_PERMISSION
        for resource in call.resources
        if not (
            decision := policy.decide(call.action, resource, context_for(world, resource))
        ).allowed
    ]
    assert not refused, f"{function} lacks permissions:\n" + "\n".join(refused)
    made = {
        (c.action.lower(), r)
        for c in calls
        for r in c.resources
        if c.action.startswith("dynamodb:")
    }
    unused = sorted(
        f"{action} on {resource.removeprefix(TABLE_PREFIX)}"
        for action, resource in _granted(policy)
        if not any(a == action.lower() and policies.wildcard_match(resource, r) for a, r in made)
    )
    assert not unused, (
        f"{function} is granted DynamoDB access no path of its code used "
        f"(remove it, or add the scenario that needs it):\n" + "\n".join(unused)
    )


def test_the_scenarios_reach_the_paths_they_are_named_for(
    world: World, recorder: CallRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not vacuous: Approve & register writes the grant, the sweep clears its cursor."""
    event = approve_and_register(world, monkeypatch)
    recorder.calls.clear()
    assert succeeded(_invoke(world, "SlackWorkerFunction", event))
    registry_table = f"{TABLE_PREFIX}vpce-approver-registry"
    assert ("dynamodb:PutItem", (registry_table,)) in {
        (c.action, c.resources) for c in recorder.calls
    }
    got = world.deployment.deps().registry.get(_service_id(world), THIRD)
    assert got is not None
    assert got.status.value == "allow"
    event = sweep_resumes_and_clears_its_cursor(world, monkeypatch)
    assert CursorStore().load() is not None
    assert succeeded(_invoke(world, "SweepFunction", event))
    world.deployment.deps()
    assert CursorStore().load() is None
