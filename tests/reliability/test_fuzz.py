"""Property-based tests (hypothesis) over every input an attacker or a broken upstream controls:
SNS envelopes and bodies, Slack interactivity payloads, DynamoDB stream records, grant files
(CLI import). Properties: no unhandled exception, a clear error type, no action on garbage (on the
emulator: nothing accepted, no allow-list entry)."""

from __future__ import annotations

import json
import string
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability.conftest import Figures
from reliability.scenario import DENIED, UNKNOWN, grants, processor
from vpce_approver import validation as v
from vpce_approver.handlers import registry_stream
from vpce_approver.notifications import NotificationError, parse_record
from vpce_approver.slack.interactivity import BadRequest, parse_click
from vpce_approver.tables import AuditItem
from vpce_tools import slack_local
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.faults import check_deployment
from vpce_tools.grantfile import GrantFileError, load
from vpce_tools.slack_local import LocalSlack
from vpce_tools.stack import LocalDeployment

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
KEYS = [
    "serviceId", "ServiceId", "service_id", "vpcEndpointId", "VpcEndpointId", "endpointId",
    "eventType", "event", "EventName", "vpcEndpointState", "state", "Type", "Message",
]  # fmt: skip


# ---------------------------------------------------------------------------- SNS / SQS


def ids_strategy(pool: list[str]) -> st.SearchStrategy[str]:
    junk = st.from_regex(r"vpce-(svc-)?[0-9a-fA-F]{0,20}", fullmatch=True)
    return st.sampled_from(pool) | junk | st.text(max_size=30)


def bodies(pool: list[str]) -> st.SearchStrategy[str]:
    fields = st.dictionaries(
        st.sampled_from(KEYS) | st.text(max_size=10),
        ids_strategy(pool) | json_values,
        max_size=8,
    )
    shaped = fields.map(json.dumps)
    nested = st.builds(lambda f: json.dumps({"detail": f, "list": [f]}), fields)
    text = st.builds(lambda a, b: f"{a} {b}", ids_strategy(pool), st.text(max_size=40))
    return shaped | nested | text | st.text(max_size=200) | json_values.map(json.dumps)


def records(pool: list[str]) -> st.SearchStrategy[list[Any]]:
    def sqs(body: str, n: int) -> dict[str, Any]:
        return {"messageId": f"m{n}", "body": body}

    def envelope(message: Any, n: int) -> dict[str, Any]:
        return sqs(
            json.dumps({"Type": "Notification", "MessageId": f"s{n}", "Message": message}), n
        )

    def direct(message: Any, n: int) -> dict[str, Any]:
        return {"EventSource": "aws:sns", "Sns": {"MessageId": f"d{n}", "Message": message}}

    message = bodies(pool) | json_values
    one = st.one_of(
        st.builds(sqs, bodies(pool), st.integers(0, 10**6)),
        st.builds(envelope, message, st.integers(0, 10**6)),
        st.builds(direct, message, st.integers(0, 10**6)),
        json_values,
    )
    return st.lists(one, max_size=6)


@given(
    record=json_values | records(["vpce-svc-0123456789abcdef0"]).map(lambda r: r[0] if r else {})
)
@FUZZ
def test_parse_record_only_raises_notification_error(record: Any) -> None:
    if isinstance(record, list):
        record = record[0] if record else {}
    try:
        hint = parse_record(record)
    except NotificationError:
        return
    assert v.SERVICE_ID_RE.fullmatch(hint.service_id)
    assert hint.endpoint_id is None or v.ENDPOINT_ID_RE.fullmatch(hint.endpoint_id)


def test_fuzzed_notifications_never_raise_and_never_accept(
    deployment: LocalDeployment, provider: Provider, service: EndpointService, figures: Figures
) -> None:
    """Garbage that names the real service and real pending endpoints: converge may run (a hint
    is a hint), but only the registry decides. Nobody here has an allow grant: nothing may be
    accepted, whatever the input."""
    grants(deployment, service)  # an allow for ALLOWED (who has no connection) and a deny
    unknown = provider.consumer(UNKNOWN).create_endpoints(service.service_name, 2)
    denied = provider.consumer(DENIED).create_endpoints(service.service_name, 1)
    pool = [service.service_id, "vpce-svc-0000000000000000f", *unknown, *denied]
    process = processor(deployment.deps())
    seen: Counter[str] = Counter()

    @given(batch=records(pool))
    @FUZZ
    def run(batch: list[Any]) -> None:
        failed = process(batch)
        seen["batches"] += 1
        seen["records"] += len(batch)
        assert failed == []  # nothing failed: garbage is dropped, hints converge
        assert all(isinstance(i, str) for i in failed)

    run()
    verdict = check_deployment(provider, [service.service_id])
    verdict.assert_sound(once=False)
    assert verdict.accepted == 0
    figures.record(
        load=f"{seen['batches']} generated batches, {seen['records']} records",
        fault="hypothesis: SNS/SQS envelopes and bodies (any JSON, text, real and fake IDs)",
        result="no exception; garbage dropped; only registry decisions acted on",
        verdict=verdict,
    )


# ---------------------------------------------------------------------------- Slack


@given(body=st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
@FUZZ
def test_parse_click_only_raises_bad_request(body: bytes) -> None:
    try:
        job = parse_click(body, datetime.now(UTC))
    except BadRequest:
        return
    assert job.action in {"approve", "approve_register", "reject"}


def payloads(values: list[str]) -> st.SearchStrategy[Any]:
    action = st.fixed_dictionaries(
        {
            "type": st.sampled_from(["button", "static_select"]) | st.text(max_size=8),
            "action_id": st.sampled_from(["approve", "approve_register", "reject"])
            | st.text(max_size=10),
            "value": st.sampled_from(values) | st.text(max_size=70),
        }
    )
    click = st.fixed_dictionaries(
        {
            "type": st.sampled_from(["block_actions", "view_submission"]) | st.text(max_size=8),
            "team": st.fixed_dictionaries({"id": st.sampled_from(["T0LOCAL", "T0OTHER"])}),
            "user": st.fixed_dictionaries(
                {"id": st.sampled_from([slack_local.LOCAL_APPROVER, "U0NOBODY"])}
            ),
            "actions": st.lists(action, max_size=3),
        },
        optional={"container": json_values, "channel": json_values, "message": json_values},
    )
    return click | json_values


@pytest.fixture
def local(deployment: LocalDeployment) -> Iterator[LocalSlack]:
    slack = slack_local.start(deployment)
    try:
        yield slack
    finally:
        slack.stop()


def test_fuzzed_signed_slack_payloads_never_act_wrongly(
    local: LocalSlack, provider: Provider, service: EndpointService, figures: Figures
) -> None:
    """Validly signed (the worst case: a compromised secret or Slack itself misbehaving) but
    generated payloads: 200 or 400, never 5xx; only an approver's well-formed click on a real
    open escalation may act, and then only on that connection."""
    target = provider.consumer(UNKNOWN).create_endpoint(service.service_name)
    local.deployment.poller(local.deps()).drain()
    statuses: Counter[int] = Counter()

    message = local.fake.message_for(target)
    assert message is not None
    real = local.fake.click_payload(message, "approve", user=slack_local.LOCAL_APPROVER)

    def mutate(user: str, team: str, action: str, value: str, drop: str | None) -> Any:
        payload = json.loads(json.dumps(real))
        payload["user"]["id"], payload["team"]["id"] = user, team
        payload["actions"][0].update(action_id=action, value=value)
        if drop:
            payload.pop(drop, None)
        return payload

    near_valid = st.builds(
        mutate,
        st.sampled_from([slack_local.LOCAL_APPROVER, slack_local.LOCAL_VISITOR, "U0X"]),
        st.sampled_from([slack_local.LOCAL_TEAM, "T0OTHER", ""]),
        st.sampled_from(["approve", "reject", "approve_register", "delete", ""]),
        st.sampled_from([target, "vpce-0123456789abcdef0", "", "x" * 80]) | st.text(max_size=20),
        st.none() | st.sampled_from(["container", "channel", "message", "actions", "user"]),
    )

    @given(payload=near_valid | payloads([target, "vpce-0123456789abcdef0", "x"]))
    @settings(FUZZ, max_examples=60)
    def run(payload: Any) -> None:
        body, headers = local.fake.signed_request(payload)
        status, _ = local.interact(headers, body)
        statuses[status] += 1
        assert status in {200, 400}

    run()
    acted = [
        i for i in AuditItem.scan() if i.action in {"accept", "reject"} and i.trigger == "slack"
    ]
    approved = [str(i.subject) for i in acted]
    for item in acted:  # anything done was an approver's act on the real escalation
        assert item.actor == f"slack:{slack_local.LOCAL_APPROVER}"
        assert item.subject == target
    verdict = check_deployment(
        provider,
        [service.service_id],
        approved_by_human=approved,
        rejected_by_human=approved,
    )
    verdict.assert_sound(once=False)
    figures.record(
        load=f"{sum(statuses.values())} generated, validly signed interactivity requests",
        fault="hypothesis: Slack payloads (types, teams, users, actions, values)",
        result="HTTP "
        + ", ".join(f"{k}: {n}" for k, n in sorted(statuses.items()))
        + "; no 5xx; nothing done but by an approver on the real escalation",
        verdict=verdict,
    )


# ---------------------------------------------------------------------------- registry stream


def attribute() -> st.SearchStrategy[Any]:
    scalar = st.one_of(
        st.builds(lambda s: {"S": s}, st.text(max_size=30)),
        st.builds(lambda n: {"N": str(n)}, st.integers(-10, 10**12)),
        st.builds(lambda b: {"BOOL": b}, st.booleans()),
        st.just({"NULL": True}),
    )
    return scalar | st.builds(lambda xs: {"L": xs}, st.lists(scalar, max_size=3))


def stream_records(service_id: str) -> st.SearchStrategy[dict[str, Any]]:
    key_part = st.sampled_from([service_id, "*", "vpce-svc-zz"]) | st.text(max_size=15)
    consumer = st.sampled_from(["111111111111", "#service", "1111"]) | st.text(
        alphabet=string.digits, max_size=13
    )
    image_fields = st.dictionaries(
        st.sampled_from(
            ["status", "principals", "expires_at", "max_endpoints", "regions", "revoke", "owner"]
        ),
        attribute()
        | st.just({"S": "allow"})
        | st.just({"L": [{"S": "arn:aws:iam::111111111111:root"}, {"S": "*"}]}),
        max_size=6,
    )

    def build(event: str, svc: str, cons: str, old: Any, new: Any, n: int) -> dict[str, Any]:
        keys = {"service_id": {"S": svc}, "consumer": {"S": cons}}
        dynamodb: dict[str, Any] = {
            "Keys": keys,
            "SequenceNumber": str(n),
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "ApproximateCreationDateTime": 1_700_000_000,
        }
        if old is not None:
            dynamodb["OldImage"] = {**keys, **old}
        if new is not None:
            dynamodb["NewImage"] = {**keys, **new}
        return {
            "eventID": f"e{n}",
            "eventName": event,
            "eventSource": "aws:dynamodb",
            "dynamodb": dynamodb,
        }

    return st.builds(
        build,
        st.sampled_from(["INSERT", "MODIFY", "REMOVE"]),
        key_part,
        consumer,
        st.none() | image_fields,
        st.none() | image_fields,
        st.integers(1, 10**9),
    ) | json_values.map(lambda j: {"dynamodb": j, "eventName": "INSERT"})


def test_fuzzed_stream_records_never_become_allow_list_entries(
    deployment: LocalDeployment, provider: Provider, figures: Figures
) -> None:
    """Stream records are hints like notifications: whatever an image says, the allow-list is
    synced from the registry as it is (empty here) and nothing is accepted."""
    closed = provider.create_service(allowed_principals=())
    deployment.enroll(closed, name="fuzz")
    deps = deployment.deps()
    outcomes: Counter[str] = Counter()

    @given(batch=st.lists(stream_records(closed.service_id), min_size=1, max_size=4))
    @settings(FUZZ, max_examples=80)
    def run(batch: list[dict[str, Any]]) -> None:
        try:
            registry_stream.process({"Records": batch}, deps)
            outcomes["handled"] += 1
        except BatchProcessingError:  # every record failed: Lambda retries, then the DLQ
            outcomes["retried"] += 1

    run()
    allowed = provider.client("ec2").describe_vpc_endpoint_service_permissions(
        ServiceId=closed.service_id
    )["AllowedPrincipals"]
    assert allowed == []
    verdict = check_deployment(provider, [closed.service_id])
    verdict.assert_sound()
    figures.record(
        load=f"{sum(outcomes.values())} generated stream batches",
        fault="hypothesis: DynamoDB stream records (keys, images, types, shapes)",
        result=f"{outcomes['handled']} handled, {outcomes['retried']} failed whole (retried"
        " -> DLQ); allow-list still empty, nothing accepted",
        verdict=verdict,
    )


# ---------------------------------------------------------------------------- grant files


rows = st.dictionaries(
    st.sampled_from(
        [
            *("service_id", "consumer", "status", "principals", "expires_at"),
            *("max_endpoints", "regions", "revoke", "owner", "note", "bogus"),
        ]
    ),
    st.sampled_from(["vpce-svc-0123456789abcdef0", "*", "111111111111", "allow", "deny"])
    | st.sampled_from(["arn:aws:iam::111111111111:root", "2099-01-01", "3", "true", "us-east-1"])
    | st.text(max_size=25),
    max_size=8,
)


@given(
    data=st.lists(rows, max_size=4),
    raw=st.text(max_size=200),
    fmt=st.sampled_from(["yaml", "csv"]),
    wildcard=st.booleans(),
)
@FUZZ
def test_grant_file_input_is_validated_or_refused(
    data: list[dict[str, str]], raw: str, fmt: str, wildcard: bool
) -> None:
    now = datetime.now(UTC)
    if fmt == "yaml":
        text = json.dumps(data) if data else raw  # JSON is YAML
    else:
        columns = sorted({k for row in data for k in row})
        lines = [",".join(columns)] + [
            ",".join(json.dumps(row.get(c, "")) for c in columns) for row in data
        ]
        text = "\n".join(lines) if data else raw
    try:
        grants_ok, errors = load(text, fmt, now=now, allow_wildcard_principal=wildcard)
    except GrantFileError as exc:
        message = str(exc)  # a clear error: it says what is wrong
        assert message, "GrantFileError without a message"
        return
    for _, grant in grants_ok:
        assert v.ACCOUNT_RE.fullmatch(grant.consumer)
        assert grant.service_id == "*" or v.SERVICE_ID_RE.fullmatch(grant.service_id)
        for principal in grant.principals:
            if principal == "*":
                assert wildcard
            else:
                assert v.principal_account(principal) == grant.consumer
    assert all(e.message for e in errors)
