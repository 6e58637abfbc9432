"""The notification parser: tolerant of shape and case, strict about IDs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vpce_approver.notifications import NotificationError, parse_body, parse_record

SVC = "vpce-svc-0123456789abcdef0"
EP = "vpce-0a1b2c3d4e5f60718"

EMULATOR_BODY = {
    "subject": "Endpoint Connection State Change",
    "eventType": "Connect",
    "serviceId": SVC,
    "vpcEndpointId": EP,
    "vpcEndpointOwner": "111111111111",
    "vpcEndpointState": "pendingAcceptance",
}


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (EMULATOR_BODY, (SVC, EP, "Connect", "pendingAcceptance")),
        # PascalCase keys, snake_case keys, nested under "events"/"detail"
        ({"ServiceId": SVC, "VpcEndpointId": EP, "EventType": "ACCEPT"}, (SVC, EP, "Accept", None)),
        ({"service_id": SVC, "vpc_endpoint_id": EP, "event": "reject"}, (SVC, EP, "Reject", None)),
        (
            {
                "events": [
                    {
                        "endpointServiceId": SVC,
                        "vpcEndpointId": EP,
                        "eventType": "Delete",
                        "state": "deleted",
                    }
                ]
            },
            (SVC, EP, "Delete", "deleted"),
        ),
        ({"detail": {"serviceId": SVC}}, (SVC, None, None, None)),  # no endpoint: whole service
        # the service only appears inside a service name
        (
            {"serviceName": f"com.amazonaws.vpce.us-east-1.{SVC}", "vpcEndpointId": EP},
            (SVC, EP, None, None),
        ),
        (
            {"serviceId": SVC, "vpcEndpointId": "not-an-id", "eventType": "Sideways"},
            (SVC, None, None, None),
        ),
    ],
)
def test_parse_json_shapes(body: object, expected: tuple[object, ...]) -> None:
    hint = parse_body(json.dumps(body))
    assert (hint.service_id, hint.endpoint_id, hint.event, hint.state) == expected


def test_plain_text_body() -> None:
    hint = parse_body(f"Connect: endpoint {EP} requests {SVC}")
    assert (hint.service_id, hint.endpoint_id, hint.event) == (SVC, EP, "Connect")


@pytest.mark.parametrize(
    "body",
    [
        "",
        "null",
        "[]",
        "{}",
        json.dumps({"serviceId": "vpce-svc-XYZ"}),
        "x" * (300 * 1024),
        json.dumps({"vpcEndpointId": EP}),
    ],
)
def test_bodies_naming_no_service_are_refused(body: str) -> None:
    with pytest.raises(NotificationError):
        parse_body(body)


def test_sqs_with_sns_envelope_and_raw_and_direct_sns() -> None:
    message = json.dumps(EMULATOR_BODY)
    envelope = {
        "Type": "Notification",
        "MessageId": "m-1",
        "TopicArn": "arn:aws:sns:us-east-1:1:t",
        "Message": message,
    }
    via_sqs = parse_record({"messageId": "q-1", "body": json.dumps(envelope)})
    raw = parse_record({"messageId": "q-2", "body": message})
    direct = parse_record(
        {"EventSource": "aws:sns", "Sns": {"MessageId": "m-3", "Message": message}}
    )
    assert via_sqs.message_id == "m-1"
    assert raw.message_id == "q-2"
    assert direct.message_id == "m-3"
    assert via_sqs.endpoint_id == raw.endpoint_id == direct.endpoint_id == EP


@pytest.mark.parametrize(
    "record",
    [{}, {"Sns": {"Message": 5}}, {"body": 7}, {"body": json.dumps({"Type": "Notification"})}, []],
)
def test_malformed_records(record: object) -> None:
    with pytest.raises(NotificationError):
        parse_record(record)  # type: ignore[arg-type]


EVENTS = sorted(
    (Path(__file__).resolve().parents[2] / "events" / "NotificationFunction").glob("*.json")
)


@pytest.mark.parametrize("path", EVENTS, ids=[p.name for p in EVENTS])
def test_every_sample_event_parses_to_a_hint(path: Path) -> None:
    event = json.loads(path.read_text())
    hints = [parse_record(r) for r in event["Records"]]
    assert hints
    for hint in hints:
        assert hint.service_id.startswith("vpce-svc-")
        assert hint.endpoint_id is not None
        assert hint.endpoint_id.startswith("vpce-")
        assert hint.event in {"Connect", "Accept", "Reject", "Delete"}
    expected = path.stem.split("-")[-1].capitalize()
    assert {h.event for h in hints} == {expected}


def test_sample_events_exist() -> None:
    assert {p.stem.split("-")[-1] for p in EVENTS} >= {"connect", "accept", "reject", "delete"}
