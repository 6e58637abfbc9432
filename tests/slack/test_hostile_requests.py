"""Hostile and malformed requests on the public interactivity route, through the Lambda entry point
(slack_interactivity.handler, the environment as on AWS): always a 4xx, never an exception or a
5xx, nothing queued, no secret read. Each case below crashed the verifier (ValueError,
OverflowError, TypeError, UnicodeEncodeError) or was answered with the wrong status before
slack/inbound.py; the class is covered by tests/reliability/test_slack_http_fuzz.py."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from slack_fixtures import APPROVER, escalate, local_fixture, message  # noqa: F401

from vpce_approver.handlers import slack_interactivity
from vpce_approver.slack.inbound import MAX_BODY_BYTES
from vpce_tools.emulator.world import Consumer, EndpointService
from vpce_tools.fake_slack import sign
from vpce_tools.slack_local import LocalSlack, api_gateway_event, as_lambda

FORM = "application/x-www-form-urlencoded"


@dataclass
class Context:
    function_name: str = "slack"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:slack"
    aws_request_id: str = "req-hostile"


@dataclass
class Route:
    local: LocalSlack
    secret_reads: list[str]

    def call(self, event: dict[str, Any]) -> int:
        response = slack_interactivity.handler(event, Context())  # type: ignore[arg-type]
        return int(response["statusCode"])

    def queued(self) -> int:
        sqs = self.local.deployment.provider.client("sqs")
        url = self.local.deployment.settings.slack_work_queue_url
        return len(sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []))


@pytest.fixture
def route(local: LocalSlack) -> Iterator[Route]:
    with as_lambda(local):
        services = slack_interactivity.default_services()
        reads: list[str] = []
        services.secrets.provider.client.meta.events.register(
            "before-call.secrets-manager.GetSecretValue",
            lambda **kw: reads.append(kw["params"].get("SecretId", "")),
        )
        yield Route(local, reads)


def signed(secret: str, body: bytes, **headers: str) -> dict[str, str]:
    ts = int(time.time())
    return {
        "Content-Type": FORM,
        "X-Slack-Request-Timestamp": str(ts),
        "X-Slack-Signature": sign(secret, body, ts),
        **headers,
    }


BODY = b"payload=%7B%22type%22%3A%22block_actions%22%7D"
Mutation = Callable[[dict[str, Any]], None]


def header(name: str, value: str) -> Mutation:
    def mutate(event: dict[str, Any]) -> None:
        event["headers"][name.lower()] = value

    return mutate


def setitem(key: str, value: Any) -> Mutation:
    def mutate(event: dict[str, Any]) -> None:
        if value is KeyError:
            event.pop(key, None)
        else:
            event[key] = value

    return mutate


UNSIGNED: list[tuple[str, Mutation, int]] = [
    ("superscript-digit timestamp", header("X-Slack-Request-Timestamp", "¹⁷⁰⁰⁰⁰⁰⁰⁰⁰"), 401),
    (
        "arabic-indic digit timestamp",
        header("X-Slack-Request-Timestamp", "\u0661\u0667" + "\u0660" * 8),
        401,
    ),
    ("500-digit timestamp", header("X-Slack-Request-Timestamp", "9" * 500), 401),
    ("signed timestamp", header("X-Slack-Request-Timestamp", "+1700000000"), 401),
    ("fractional timestamp", header("X-Slack-Request-Timestamp", "1700000000.5"), 401),
    ("non-ASCII signature", header("X-Slack-Signature", "v0=é" + "0" * 63), 401),
    ("uppercase-hex signature", header("X-Slack-Signature", "v0=" + "A" * 64), 401),
    ("short signature", header("X-Slack-Signature", "v0=abc"), 401),
    ("another scheme", header("X-Slack-Signature", "v1=" + "0" * 64), 401),
    ("no headers at all", setitem("headers", {}), 401),
]


@pytest.mark.parametrize(("case", "mutate", "status"), UNSIGNED, ids=[c[0] for c in UNSIGNED])
def test_malformed_signature_headers_are_401_without_reading_a_secret(
    route: Route, case: str, mutate: Mutation, status: int
) -> None:
    event = api_gateway_event(signed("wrong-secret", BODY), BODY)
    mutate(event)
    assert route.call(event) == status
    assert route.queued() == 0
    assert route.secret_reads == []  # refused before any secret is needed


def body_cases(secret: str) -> list[tuple[str, dict[str, Any], int]]:
    """Requests signed with the real secret whose body or framing is wrong."""
    non_utf8 = b"payload=\xff\xfe\x00"
    huge = b"payload=" + b"a" * (MAX_BODY_BYTES + 1)
    cases: list[tuple[str, dict[str, Any], int]] = [
        ("non-UTF-8 body", api_gateway_event(signed(secret, non_utf8), non_utf8), 400),
        (
            "JSON content type",
            api_gateway_event(signed(secret, BODY, **{"Content-Type": "application/json"}), BODY),
            415,
        ),
        (
            "multipart content type",
            api_gateway_event(
                signed(secret, BODY, **{"Content-Type": "multipart/form-data; boundary=x"}), BODY
            ),
            415,
        ),
        (
            "form content type with charset",
            api_gateway_event(
                signed(secret, BODY, **{"Content-Type": FORM + "; charset=utf-8"}), BODY
            ),
            400,
        ),
        ("body over 64 KB", api_gateway_event(signed(secret, huge), huge), 413),
        (
            "body over 64 KB, not base64-encoded",
            api_gateway_event(signed(secret, huge), huge, base64_encode=False),
            413,
        ),
    ]
    for name, value in [("missing body", KeyError), ("null body", None), ("empty body", "")]:
        event = api_gateway_event(signed(secret, BODY), BODY)
        setitem("body", value)(event)
        cases.append((name, event, 400))
    event = api_gateway_event(signed(secret, BODY), BODY)
    event["body"] = "%%%not-base64%%%"
    cases.append(("non-base64 body", event, 400))
    event = api_gateway_event(signed(secret, BODY), BODY, base64_encode=False)
    event["body"] = "payload=\udcff"  # a lone surrogate: JSON can carry it, UTF-8 cannot
    cases.append(("unencodable text body", event, 400))
    event = api_gateway_event(signed(secret, BODY), BODY)
    event["body"] = base64.b64encode(b"x" * (4 * MAX_BODY_BYTES)).decode()
    cases.append(("huge base64 body (never decoded)", event, 413))
    return cases


CASE_NAMES = [c[0] for c in body_cases("x")]


@pytest.mark.parametrize("case", CASE_NAMES)
def test_malformed_bodies_and_framing_are_4xx_and_nothing_is_queued(
    route: Route, case: str
) -> None:
    [(_, event, status)] = [c for c in body_cases(route.local.fake.signing_secret) if c[0] == case]
    assert route.call(event) == status
    assert route.queued() == 0


def test_a_real_click_still_passes_through_the_entry_point(
    route: Route, service: EndpointService, consumer: Consumer
) -> None:
    vpce = escalate(route.local, service, consumer)
    payload = route.local.fake.click_payload(message(route.local, vpce), "approve", user=APPROVER)
    body, headers = route.local.fake.signed_request(payload)
    assert route.call(api_gateway_event(headers, body)) == 200
    assert route.call(api_gateway_event(headers, body, base64_encode=False)) == 200
    assert route.queued() == 2


def test_behind_the_waf_front_a_request_without_its_origin_header_is_403(
    local: LocalSlack, service: EndpointService, consumer: Consumer
) -> None:
    """SlackWebAclArn: CloudFront adds X-Origin-Verify; straight to execute-api it is missing."""
    from dataclasses import replace

    vpce = escalate(local, service, consumer)
    deps = local.services.deps
    deps.settings = replace(deps.settings, slack_origin_verify="stack-uuid-0123")
    payload = local.fake.click_payload(message(local, vpce), "approve", user=APPROVER)
    body, headers = local.fake.signed_request(payload)
    assert local.interact(headers, body)[0] == 403
    assert local.interact({**headers, "X-Origin-Verify": "guessed"}, body)[0] == 403
    assert local.interact({**headers, "X-Origin-Verify": "stack-uuid-0123"}, body)[0] == 200
