"""HTTP-level property-based fuzzing of the public Slack route: generated headers (names in any
case, timestamps of any digits and length, signatures of any shape, any content type), bodies
(bytes, text, forms, oversized) and API Gateway framing (base64 or not, broken base64, missing
or null body), sent through the Lambda entry point (slack_interactivity.handler, the environment
as on AWS). Some requests are validly signed with the real secret, so what lies behind the
verifier is fuzzed too.

Properties: never an exception, never a 5xx; a request not validly signed is refused (400, 401,
413 or 415) and queues nothing; a 200 queues exactly one job; forged floods re-read the secret at
most once a minute; whatever was queued, only an approver's click on the real escalation acted.

`make test` runs the fast profile; `make soak` the long one (same properties)."""

from __future__ import annotations

import base64
import json
import string
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability.conftest import Figures
from reliability.scenario import UNKNOWN
from vpce_approver.handlers import slack_interactivity
from vpce_approver.slack.inbound import (
    MAX_BODY_BYTES,
    SIGNATURE_RE,
    TIMESTAMP_RE,
    Inbound,
    Refused,
    screen,
)
from vpce_approver.tables import AuditItem
from vpce_tools import slack_local
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.fake_slack import sign
from vpce_tools.faults import check_deployment
from vpce_tools.slack_local import LocalSlack, api_gateway_event, as_lambda
from vpce_tools.stack import LocalDeployment

FAST = settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,
)
LONG = settings(FAST, max_examples=5000, derandomize=False)
PROFILES = [
    pytest.param(FAST, id="fast"),
    pytest.param(LONG, id="long", marks=pytest.mark.soak),
]
REFUSED = {400, 401, 413, 415}
FORM = "application/x-www-form-urlencoded"
# Characters str.isdigit() accepts that are not ASCII digits: superscripts, Arabic-Indic,
# fullwidth.
UNICODE_DIGITS = (
    "\u2070\u00b9\u00b2\u00b3\u2074\u2075\u2076\u2077\u2078\u2079"
    + "".join(chr(0x0660 + i) for i in range(10))
    + "".join(chr(0xFF10 + i) for i in range(10))
)


@dataclass
class Context:
    function_name: str = "slack-interactivity"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:slack"
    aws_request_id: str = "fuzz"


@dataclass(frozen=True)
class Request:
    sign_with: str  # real | wrong | none
    skew: int  # seconds from now (real/wrong signatures)
    timestamp: str | None  # a generated header value (sign_with == none)
    signature: str | None
    content_type: str | None
    body: bytes
    framing: str  # base64 | plain | not-base64 | missing | null | unencodable
    name_case: Callable[[str], str]
    extra: dict[str, str]


def bodies(click: bytes) -> st.SearchStrategy[bytes]:
    json_values = st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
        max_leaves=10,
    )
    return st.one_of(
        st.just(click),  # the real click (acts only when really signed)
        st.binary(max_size=600),
        st.text(max_size=300).map(lambda t: t.encode("utf-8")),
        json_values.map(lambda v: urlencode({"payload": json.dumps(v)}).encode()),
        st.integers(MAX_BODY_BYTES - 16, 3 * MAX_BODY_BYTES).map(lambda n: b"payload=" + b"a" * n),
        st.builds(lambda b: click + b, st.binary(min_size=1, max_size=20)),
    )


# Header text as a broken upstream could hand it over: lone surrogates (JSON can carry them),
# digits of every script, control characters.
odd_text = st.text(st.characters(categories=["Cs", "Nd", "No", "Cc", "Zs"]), max_size=40)


def requests(click: bytes) -> st.SearchStrategy[Request]:
    """Three families: generated signature headers on a real click (the verifier's inputs),
    generated bodies and framing under real or wrong signatures (what lies behind it), and
    everything generated at once."""
    timestamps = st.one_of(
        st.integers(10**300, 10**600).map(str),  # hundreds of digits: a float overflows
        st.integers(0, 10**12).map(str),
        st.text(alphabet=UNICODE_DIGITS + string.digits, min_size=1, max_size=30),
        st.floats(allow_nan=True).map(str),
        st.text(max_size=30),
        odd_text,
        st.none(),
    )
    signatures = st.one_of(
        st.text(alphabet="0123456789abcdef", min_size=64, max_size=64).map(lambda h: "v0=" + h),
        st.text(alphabet="0123456789abcdefABCDEF", max_size=70).map(lambda h: "v0=" + h),
        st.text(min_size=64, max_size=64).map(lambda h: "v0=" + h),  # non-ASCII, right length
        st.text(max_size=80),
        odd_text,
        st.binary(max_size=40).map(lambda b: b.decode("latin-1")),
        st.none(),
    )
    content_types = st.one_of(  # Slack's own, mostly: the paths behind the type check matter
        st.just(FORM),
        st.sampled_from([FORM + "; charset=utf-8", FORM.upper()]),
        st.sampled_from(["application/json", "text/plain", "multipart/form-data", ""]),
        st.none(),
        st.text(max_size=40),
        odd_text,
    )
    framings = st.sampled_from(["base64", "plain", "not-base64", "missing", "null", "unencodable"])
    cases = st.sampled_from([str.lower, str.upper, str.title, lambda s: s])
    extra = st.dictionaries(
        st.text(max_size=20) | odd_text, st.text(max_size=40) | odd_text, max_size=3
    )
    skews = st.sampled_from([0, -5, 30, -299, -301, 301, 10**6])
    headers_family = st.builds(
        Request,
        sign_with=st.just("none"),
        skew=st.just(0),
        timestamp=timestamps,
        signature=signatures,
        content_type=st.just(FORM),
        body=st.just(click),
        framing=st.sampled_from(["base64", "plain"]),
        name_case=cases,
        extra=extra,
    )
    bodies_family = st.builds(
        Request,
        sign_with=st.sampled_from(["real", "wrong"]),
        skew=skews,
        timestamp=st.none(),
        signature=st.none(),
        content_type=content_types,
        body=bodies(click),
        framing=framings,
        name_case=cases,
        extra=extra,
    )
    anything = st.builds(
        Request,
        sign_with=st.sampled_from(["real", "wrong", "none"]),
        skew=skews,
        timestamp=timestamps,
        signature=signatures,
        content_type=content_types,
        body=bodies(click),
        framing=framings,
        name_case=cases,
        extra=extra,
    )
    return st.one_of(headers_family, bodies_family, anything)


def event_for(request: Request, secret: str) -> dict[str, Any]:
    headers: dict[str, str] = dict(request.extra)
    if request.sign_with == "none":
        timestamp, signature = request.timestamp, request.signature
    else:
        ts = int(time.time()) + request.skew
        key = secret if request.sign_with == "real" else "not-the-secret"
        timestamp, signature = str(ts), sign(key, request.body, ts)
    for name, value in [
        ("X-Slack-Request-Timestamp", timestamp),
        ("X-Slack-Signature", signature),
        ("Content-Type", request.content_type),
    ]:
        if value is not None:
            headers[request.name_case(name)] = value
    event = api_gateway_event({}, b"")
    event["headers"] = headers  # API Gateway lower-cases names; the handler must not rely on it
    if request.framing == "base64":
        event["body"], event["isBase64Encoded"] = base64.b64encode(request.body).decode(), True
    elif request.framing == "plain":
        event["body"] = request.body.decode("utf-8", errors="replace")
        event["isBase64Encoded"] = False
    elif request.framing == "not-base64":
        event["body"], event["isBase64Encoded"] = "%" + request.body.hex(), True
    elif request.framing == "missing":
        event.pop("body")
    elif request.framing == "null":
        event["body"] = None
    else:  # a lone surrogate: JSON can carry it, no byte string can
        event["body"], event["isBase64Encoded"] = "payload=\udcff", False
    return event


@pytest.fixture
def local(deployment: LocalDeployment) -> Iterator[LocalSlack]:
    slack = slack_local.start(deployment)
    try:
        yield slack
    finally:
        slack.stop()


@pytest.mark.parametrize("profile", PROFILES)
def test_fuzzed_http_requests_are_refused_or_acted_on_correctly_never_an_error(
    local: LocalSlack,
    provider: Provider,
    service: EndpointService,
    figures: Figures,
    profile: settings,
) -> None:
    target = provider.consumer(UNKNOWN).create_endpoint(service.service_name)
    local.deployment.poller(local.deps()).drain()
    message = local.fake.message_for(target)
    assert message is not None
    payload = local.fake.click_payload(message, "approve", user=slack_local.LOCAL_APPROVER)
    click, _ = local.fake.signed_request(payload)
    secret = local.fake.signing_secret
    statuses: Counter[int] = Counter()
    kinds: Counter[str] = Counter()
    started = time.monotonic()

    with as_lambda(local):
        services = slack_interactivity.default_services()
        assert services.queue is not None
        sent: list[str] = []
        services.queue.client.meta.events.register(
            "before-call.sqs.SendMessage", lambda **kw: sent.append(kw["model"].name)
        )

        @given(request=requests(click))
        @settings(profile)
        def run(request: Request) -> None:
            before = len(sent)
            response = slack_interactivity.handler(event_for(request, secret), Context())  # type: ignore[arg-type]
            status = int(response["statusCode"])
            statuses[status] += 1
            kinds[request.sign_with] += 1
            assert status < 500, response
            if status == 200:
                assert request.sign_with == "real"
                assert len(sent) == before + 1
            else:
                assert len(sent) == before
            if request.sign_with != "real":
                assert status in REFUSED, (status, request)

        run()
        rereads = services.signing_reread.rereads
        minutes = (time.monotonic() - started) / 60

    assert rereads <= 1 + int(minutes) + 1  # at most one forced read a minute
    local.worker_queue.drain()  # whatever was queued, the worker decides on
    acted = [i for i in AuditItem.scan() if i.action in {"accept", "reject"}]
    for item in acted:
        assert item.actor == f"slack:{slack_local.LOCAL_APPROVER}"
        assert item.subject == target
    approved = [str(i.subject) for i in acted]
    verdict = check_deployment(
        provider, [service.service_id], approved_by_human=approved, rejected_by_human=approved
    )
    verdict.assert_sound(once=False)
    figures.record(
        load=f"{sum(statuses.values())} generated HTTP requests through the Lambda entry point "
        f"({kinds['real']} signed with the real secret, {kinds['wrong']} with another, "
        f"{kinds['none']} with generated headers)",
        fault="hypothesis: header names/values (unicode digits, 600-digit timestamps, any "
        "signature, content type), bodies (bytes, forms, >64 KB), base64/plain/broken framing",
        result="HTTP "
        + ", ".join(f"{k}: {n}" for k, n in sorted(statuses.items()))
        + f"; no exception, no 5xx; {len(sent)} queued, all signed; {rereads} secret re-read(s)",
        verdict=verdict,
    )


HEADER_VALUES = st.one_of(
    odd_text, odd_text, st.text(max_size=80), st.just(FORM), st.just("expected-origin")
)
SCREENED = ["x-slack-request-timestamp", "x-slack-signature", "content-type", "x-origin-verify"]


@given(
    headers=st.one_of(
        st.fixed_dictionaries(dict.fromkeys(SCREENED, HEADER_VALUES)),  # every screened header
        st.builds(
            lambda known, other: {**other, **known},
            st.fixed_dictionaries({}, optional=dict.fromkeys(SCREENED, HEADER_VALUES)),
            st.dictionaries(odd_text | st.text(max_size=20), HEADER_VALUES, max_size=3),
        ),
        st.none(),
        st.lists(st.text(max_size=5), max_size=2),
    ),
    body=st.none() | odd_text | st.text(max_size=200) | st.binary(max_size=50),
    is_base64=st.booleans() | st.none() | st.text(max_size=3),
    origin=st.none() | st.just("expected-origin"),
)
@FAST
def test_screening_only_ever_refuses_with_a_4xx(
    headers: Any, body: Any, is_base64: Any, origin: str | None
) -> None:
    """The screening step alone, on inputs of any type (a future event shape, a test double):
    an Inbound or a Refused with a 4xx, nothing else."""
    outcome: Inbound | Refused
    try:
        outcome = screen(headers, body, is_base64, origin_verify=origin)
    except Refused as exc:
        outcome = exc
    if isinstance(outcome, Refused):
        assert 400 <= outcome.status < 500
        return
    request = outcome
    assert TIMESTAMP_RE.fullmatch(request.timestamp)
    assert SIGNATURE_RE.fullmatch(request.signature)
    assert len(request.body) <= MAX_BODY_BYTES
    request.body.decode("utf-8")
