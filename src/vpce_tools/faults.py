"""Fault injection for the reliability suite and the benchmark (docs/RELIABILITY.md).

Faults are injected at the botocore layer, so the code under test runs its real retry logic:

- `Injector(client).fail("AcceptVpcEndpointConnections", "RequestLimitExceeded", times=3)`
  answers the next 3 sends of that operation with an AWS error response (a `before-send` handler
  returning an HTTP response: botocore parses it, its retry handler decides, nothing reaches the
  emulator). Works for any protocol botocore speaks here (ec2/query XML, JSON).
- `Injector(client).drop_ids(...)` makes Accept/Reject leave chosen IDs untouched and report them
  in `Unsuccessful` (a partial response), `Injector(client).after(...)` runs a callback after a
  call (e.g. delete a connection between Describe and Accept).
- `model_client(RegistryItem)` is the botocore client pynamodb uses for a table.
- `no_sleep(clock)` makes botocore's retry backoff instant (advancing a FakeClock instead, so the
  emulator's throttle refills as if the time had passed).
- `kill_after(obj, "accept")` simulates a Lambda killed right after a call: `LambdaKilled` is a
  BaseException, so no `except Exception` in the handler can swallow it; `survive(process)` turns
  it into "the whole batch is retried" (what SQS does after a killed invocation).
- `check(...)` is the verdict every fault test asserts: no wrong accept, nothing lost.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs

from botocore.awsrequest import AWSResponse

from vpce_approver.model import Action, Connection, DefaultDecision, Grant
from vpce_approver.policy import decide

# ---------------------------------------------------------------------------- error responses

THROTTLING_STATUS = {
    "RequestLimitExceeded": 503,
    "Throttling": 400,
    "ThrottlingException": 400,
    "ProvisionedThroughputExceededException": 400,
    "RequestLimitExceededException": 400,
    "InternalServerError": 500,
    "InternalError": 500,
    "ServiceUnavailable": 503,
}


class _Raw:
    """The raw body botocore reads from an AWSResponse."""

    def __init__(self, body: bytes) -> None:
        self.body = body

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self.body


def error_response(
    protocol: str, url: str, code: str, message: str = "injected fault", status: int | None = None
) -> AWSResponse:
    """An HTTP error response as the service would send it, for botocore to parse."""
    status = status or THROTTLING_STATUS.get(code, 400)
    request_id = str(uuid.uuid4())
    if protocol in ("json", "rest-json", "smithy-rpc-v2-cbor"):
        body = json.dumps({"__type": f"com.amazonaws.fault#{code}", "message": message}).encode()
        headers: Any = {
            "Content-Type": "application/x-amz-json-1.0",
            "x-amzn-RequestId": request_id,
        }
    else:  # ec2 / query: XML
        body = (
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error>"
            f"</Errors><RequestID>{request_id}</RequestID></Response>"
        ).encode()
        headers = {"Content-Type": "text/xml"}
    return AWSResponse(url, status, headers, _Raw(body))


def json_response(url: str, payload: Mapping[str, Any]) -> AWSResponse:
    body = json.dumps(payload).encode()
    headers: Any = {"Content-Type": "application/x-amz-json-1.0", "x-amzn-RequestId": "injected"}
    return AWSResponse(url, 200, headers, _Raw(body))


# ---------------------------------------------------------------------------- the injector


def _moto_stubber(events: Any) -> Any:
    """moto's before-send handler if this client has it (clients made under mock_aws)."""
    try:
        from moto.core.models import botocore_stubber
    except ImportError:  # pragma: no cover - moto is a dev dependency
        return None
    emitter = getattr(events, "_emitter", events)
    handlers = getattr(emitter, "_handlers", None)
    if handlers is None:
        return None
    found = list(handlers.prefix_search("before-send.ec2.DescribeVpcs"))
    return botocore_stubber if botocore_stubber in found else None


_ids = itertools.count(1)


@dataclass
class Fault:
    """One registered fault. `times=None`: every matching call until removed."""

    operation: str
    code: str
    times: int | None = None
    when: Callable[[Any], bool] | None = None
    injected: int = 0
    seen: int = 0

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.injected >= self.times


class Injector:
    """Faults on one botocore client (or boto3 client). Use as a context manager, or call
    `remove()`: handlers are unregistered and the client behaves normally again."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.events = client.meta.events
        self.service = client.meta.service_model.service_id.hyphenize()
        self.protocol = client.meta.service_model.protocol
        self.faults: list[Fault] = []
        self._handlers: list[tuple[str, Callable[..., Any], str]] = []
        self._lock = threading.Lock()
        self._answers: list[tuple[str, Callable[[Any], AWSResponse | None]]] = []
        self._stubber: Any = None
        self._gated = False

    def __enter__(self) -> Injector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.remove()

    def _register(self, event: str, handler: Callable[..., Any], *, first: bool = True) -> None:
        unique = f"vpce-fault-{next(_ids)}"
        if first:
            self.events.register_first(event, handler, unique_id=unique)
        else:
            self.events.register(event, handler, unique_id=unique)
        self._handlers.append((event, handler, unique))

    def remove(self) -> None:
        for event, handler, unique in self._handlers:
            self.events.unregister(event, handler, unique_id=unique)
        self._handlers.clear()
        self._answers.clear()
        if self._gated:
            self.events.unregister("before-send", self._gate, unique_id=f"vpce-gate-{id(self)}")
            if self._stubber is not None:
                self.events.register("before-send", self._stubber)
            self._gated = False

    def _answer(self, operation: str, answer: Callable[[Any], AWSResponse | None]) -> None:
        """Answer sends of `operation` with answer(request) (None: send for real).

        botocore runs *every* before-send handler and keeps the first response, so under
        moto's mock_aws (itself a before-send handler) the request would still be executed:
        a "failed" write would be written. The gate replaces moto's handler on this client
        and calls it only when no fault answers. Against a real endpoint or the emulator
        server, a before-send response means the request is never sent at all."""
        self._answers.append((operation, answer))
        if self._gated:
            return
        self._stubber = _moto_stubber(self.events)
        if self._stubber is not None:
            self.events.unregister("before-send", self._stubber)
        self.events.register_first("before-send", self._gate, unique_id=f"vpce-gate-{id(self)}")
        self._gated = True

    def _gate(self, request: Any, event_name: str = "", **kwargs: Any) -> AWSResponse | None:
        operation = event_name.rsplit(".", 1)[-1]
        for wanted, answer in list(self._answers):
            if wanted == operation:
                response = answer(request)
                if response is not None:
                    return response
        if self._stubber is not None:
            result: AWSResponse | None = self._stubber(event_name, request, **kwargs)
            return result
        return None

    @property
    def injected(self) -> int:
        return sum(f.injected for f in self.faults)

    def fail(
        self,
        operation: str,
        code: str,
        *,
        times: int | None = None,
        message: str = "injected fault",
        status: int | None = None,
        when: Callable[[Any], bool] | None = None,
    ) -> Fault:
        """Answer `operation` with the error `code` (the next `times` sends, or all).
        `when(request)` can select sends (e.g. one table of a shared client)."""
        fault = Fault(operation, code, times, when)
        self.faults.append(fault)

        def answer(request: Any) -> AWSResponse | None:
            with self._lock:
                fault.seen += 1
                if fault.exhausted or (fault.when is not None and not fault.when(request)):
                    return None
                fault.injected += 1
            return error_response(self.protocol, request.url, code, message, status)

        self._answer(operation, answer)
        return fault

    def respond(
        self,
        operation: str,
        payload: Callable[[Any], Mapping[str, Any] | None],
        *,
        times: int | None = None,
    ) -> Fault:
        """Answer `operation` with a 200 JSON body built from the request (None: send it for
        real). For JSON protocols (DynamoDB): e.g. a BatchGetItem with every key unprocessed."""
        fault = Fault(operation, "200", times)
        self.faults.append(fault)

        def answer(request: Any) -> AWSResponse | None:
            with self._lock:
                fault.seen += 1
                if fault.exhausted:
                    return None
                body = payload(request)
                if body is None:
                    return None
                fault.injected += 1
            return json_response(request.url, body)

        self._answer(operation, answer)
        return fault

    def observe(self, operation: str = "*") -> Counter[str]:
        """Count the error codes `operation` answers with (every attempt, retries included)."""
        codes: Counter[str] = Counter()

        def received(parsed_response: Mapping[str, Any] | None = None, **_: Any) -> None:
            code = ((parsed_response or {}).get("Error") or {}).get("Code")
            if code:
                codes[str(code)] += 1

        self._register(f"response-received.{self.service}.{operation}", received, first=False)
        return codes

    def before(self, operation: str, callback: Callable[[], None], *, times: int = 1) -> Fault:
        """Run callback() right before the next `times` `operation` calls are sent: something
        that happens exactly between a caller's earlier reads and this call (a registry edit
        between converge's registry read and its Accept)."""
        fault = Fault(operation, "before", times)
        self.faults.append(fault)

        def before_call(**_: Any) -> None:
            with self._lock:
                if fault.exhausted:
                    return
                fault.injected += 1
            callback()

        self._register(f"before-call.{self.service}.{operation}", before_call, first=False)
        return fault

    def after(self, operation: str, callback: Callable[[Mapping[str, Any]], None]) -> None:
        """Run callback(parsed response) after each successful `operation` call."""

        def after_call(parsed: Mapping[str, Any], **_: Any) -> None:
            callback(parsed)

        self._register(f"after-call.{self.service}.{operation}", after_call, first=False)

    def drop_ids(
        self,
        operation: str,
        select: Callable[[str], bool],
        *,
        code: str = "InternalError",
        message: str = "injected: not processed",
        times: int | None = None,
    ) -> Fault:
        """Accept/Reject leave the selected endpoint IDs untouched and report them in
        `Unsuccessful` with `code`: a partial response. The other IDs go through for real."""
        fault = Fault(operation, code, times)
        self.faults.append(fault)
        dropped: list[str] = []

        def before_params(params: dict[str, Any], **_: Any) -> None:
            dropped.clear()
            if fault.exhausted:
                return
            ids = list(params.get("VpcEndpointIds", []))
            keep = [i for i in ids if not select(i)]
            dropped.extend(i for i in ids if select(i))
            if dropped:
                fault.injected += 1
                # An empty list is not a valid request: keep one ID that is certain to fail
                # (malformed) so the call still happens and reports Unsuccessful for it.
                params["VpcEndpointIds"] = keep or ["vpce-injected"]

        def after_call(parsed: dict[str, Any], **_: Any) -> None:
            items = [
                i for i in parsed.get("Unsuccessful", []) if i.get("ResourceId") != "vpce-injected"
            ]
            items += [
                {"ResourceId": i, "Error": {"Code": code, "Message": message}} for i in dropped
            ]
            parsed["Unsuccessful"] = items
            dropped.clear()

        self._register(f"before-parameter-build.{self.service}.{operation}", before_params)
        self._register(f"after-call.{self.service}.{operation}", after_call, first=False)
        return fault


def request_json(request: Any) -> dict[str, Any]:
    body = request.body
    if isinstance(body, bytes):
        body = body.decode()
    data = json.loads(body or "{}")
    return data if isinstance(data, dict) else {}


def request_params(request: Any) -> dict[str, list[str]]:
    """The form parameters of an ec2/query request."""
    body = request.body
    if isinstance(body, bytes):
        body = body.decode()
    return parse_qs(body or "")


def table_is(name: str) -> Callable[[Any], bool]:
    """A `when` for DynamoDB faults on one table (a pynamodb client serves one model, but a
    BatchGetItem/BatchWriteItem names its tables in the body)."""

    def match(request: Any) -> bool:
        data = request_json(request)
        names = {data.get("TableName")} | set(data.get("RequestItems", {}))
        return name in names

    return match


def all_unprocessed(request: Any) -> dict[str, Any]:
    """A BatchGetItem answer that returns nothing and leaves every key unprocessed (what
    DynamoDB does under throttling)."""
    items = request_json(request).get("RequestItems", {})
    return {"Responses": {t: [] for t in items}, "UnprocessedKeys": items}


def model_client(model: Any) -> Any:
    """The botocore client pynamodb uses for a model (after tables.bind)."""
    return model._get_connection().connection.client


# ---------------------------------------------------------------------------- time


class _TimeProxy:
    """A `time` module whose sleep() does not sleep (it advances `clock` and counts)."""

    def __init__(self, real: ModuleType, clock: Any | None) -> None:
        self._real = real
        self._clock = clock
        self.slept = 0.0
        self.sleeps = 0

    def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.sleeps += 1
        if self._clock is not None:
            self._clock.advance(seconds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


@contextmanager
def no_sleep(clock: Any | None = None, *modules: ModuleType) -> Iterator[_TimeProxy]:
    """Retry backoff without waiting: botocore's retry sleeps (and pynamodb's, and any extra
    modules' `time.sleep`) advance `clock` (a throttle.FakeClock) instead of sleeping."""
    import time as real_time

    import botocore.endpoint
    import pynamodb.models

    proxy = _TimeProxy(real_time, clock)
    targets = [botocore.endpoint, pynamodb.models, *modules]
    saved = [(m, m.time) for m in targets]
    for module in targets:
        module.time = proxy  # type: ignore[attr-defined]
    try:
        yield proxy
    finally:
        for module, original in saved:
            module.time = original  # type: ignore[attr-defined]


# ---------------------------------------------------------------------------- killing Lambda


class LambdaKilled(BaseException):
    """The invocation died here (timeout, OOM, SIGKILL). BaseException: no handler's
    `except Exception` can catch it, exactly like a real kill."""


@contextmanager
def kill_after(
    target: Any, method: str, *, times: int = 1, before: bool = False
) -> Iterator[list[int]]:
    """Replace target.method: call it, then die (`before=True`: die without calling). The
    first `times` calls die; later ones pass. Yields a one-item list with the kill count."""
    original = getattr(target, method)
    kills = [0]

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if kills[0] >= times:
            return original(*args, **kwargs)
        kills[0] += 1
        if before:
            raise LambdaKilled(f"killed before {method}")
        original(*args, **kwargs)
        raise LambdaKilled(f"killed after {method}")

    setattr(target, method, wrapper)
    try:
        yield kills
    finally:
        setattr(target, method, original)


def survive(
    process: Callable[[Sequence[Mapping[str, Any]]], list[str]],
) -> Callable[[Sequence[Mapping[str, Any]]], list[str]]:
    """A killed invocation deletes nothing: every record of its batch comes back."""

    def run(records: Sequence[Mapping[str, Any]]) -> list[str]:
        try:
            return process(records)
        except LambdaKilled:
            return [str(r.get("messageId")) for r in records]

    return run


# ---------------------------------------------------------------------------- the verdict

ACCEPTED_STATES = {"pending", "available"}
GONE_STATES = {"deleted", "deleting", "failed", "expired"}


@dataclass
class Verdict:
    """Final states against the registry. `lost` and `wrong_accepts` must be 0."""

    connections: int = 0
    accepted: int = 0
    rejected: int = 0
    escalated: int = 0  # pendingAcceptance with an open escalation (waiting for a human)
    withdrawn: int = 0
    wrong_accepts: list[str] = field(default_factory=list)  # accepted without a live allow
    wrong_rejects: list[str] = field(default_factory=list)  # rejected without a live deny
    stuck: list[str] = field(default_factory=list)  # pendingAcceptance, decidable, no escalation
    unaudited: list[str] = field(default_factory=list)  # settled or escalated, no audit record
    duplicate_decisions: list[str] = field(default_factory=list)  # >1 accept/reject/escalate
    states: Counter[str] = field(default_factory=Counter)

    @property
    def lost(self) -> int:
        return len(self.stuck) + len(self.wrong_rejects) + len(self.unaudited)

    def as_dict(self) -> dict[str, Any]:
        return {
            "connections": self.connections,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "escalated": self.escalated,
            "withdrawn": self.withdrawn,
            "lost": self.lost,
            "wrong_accepts": len(self.wrong_accepts),
            "wrong_rejects": len(self.wrong_rejects),
            "stuck": len(self.stuck),
            "unaudited": len(self.unaudited),
            "duplicate_decisions": len(self.duplicate_decisions),
        }

    def assert_sound(self, *, once: bool = True) -> None:
        """No wrong accept, nothing lost (and, with `once`, one decision per connection)."""
        assert self.wrong_accepts == [], f"accepted without a live allow: {self.wrong_accepts}"
        assert self.wrong_rejects == [], f"rejected without a live deny: {self.wrong_rejects}"
        assert self.stuck == [], f"pending with no decision and no escalation: {self.stuck}"
        assert self.unaudited == [], f"settled without an audit record: {self.unaudited}"
        if once:
            assert self.duplicate_decisions == [], f"decided twice: {self.duplicate_decisions}"


DECIDING_ACTIONS = {"accept", "reject", "escalate"}
# Audit codes of a reject that takes access away (not a policy decision on a pending connection).
REVOCATION_CODES = {"revoked", "grant-changed"}


def check(
    connections: Iterable[Mapping[str, Any]],
    grants: Mapping[str, Sequence[Grant]],
    audit: Mapping[str, Sequence[tuple[str, str | None]]],
    open_escalations: Iterable[str],
    *,
    approved_by_human: Iterable[str] = (),
    rejected_by_human: Iterable[str] = (),
    revoked: Iterable[str] = (),
    default: DefaultDecision = DefaultDecision.ESCALATE,
    now: datetime | None = None,
) -> Verdict:
    """Judge final connection states (raw DescribeVpcEndpointConnections items).

    `grants`: the consumer's live registry grants (by account); `audit`: (action, outcome) per
    endpoint; `open_escalations`: endpoint IDs with an open escalation. A connection counts as
    rightly accepted only when the policy accepts its owner now, or a human approved it.
    `revoked`: endpoints rejected because their grant was taken away (revocation, or an edit
    between the decision and the Accept): rightly rejected when the policy no longer accepts."""
    now = now or datetime.now(UTC)
    humans_ok, humans_no = set(approved_by_human), set(rejected_by_human)
    taken_away = set(revoked)
    open_ids = set(open_escalations)
    verdict = Verdict()
    connections = list(connections)
    # max_endpoints: a pending connection is judged against all live ones of its owner, a live
    # one against those listed (created) before it, so an over-admission is a wrong accept.
    live_total: Counter[tuple[str, str]] = Counter(
        (str(r["ServiceId"]), str(r["VpcEndpointOwner"]))
        for r in connections
        if str(r["VpcEndpointState"]).lower() in ACCEPTED_STATES
        and str(r["VpcEndpointId"]) not in humans_ok
    )
    live_before: Counter[tuple[str, str]] = Counter()
    for raw in connections:
        vpce, state = str(raw["VpcEndpointId"]), str(raw["VpcEndpointState"])
        owner_key = (str(raw["ServiceId"]), str(raw["VpcEndpointOwner"]))
        is_live = state.lower() in ACCEPTED_STATES and vpce not in humans_ok
        count = live_before[owner_key] if is_live else live_total[owner_key]
        if is_live:
            live_before[owner_key] += 1
        conn = Connection(
            service_id=str(raw["ServiceId"]),
            vpc_endpoint_id=vpce,
            owner=str(raw["VpcEndpointOwner"]),
            state="pendingAcceptance",
            region=raw.get("VpcEndpointRegion"),
        )
        verdict.connections += 1
        verdict.states[state] += 1
        expected = decide(conn, grants.get(conn.owner, ()), count, now, default).action
        trail = audit.get(vpce, ())
        decided = [a for a, outcome in trail if a in DECIDING_ACTIONS and outcome != "failed"]
        if len([a for a in decided if a == "escalate"]) > 1 or (
            len([a for a in decided if a in ("accept", "reject")]) > 1
            and vpce not in humans_ok
            and vpce not in taken_away  # accepted, then its grant taken away: two decisions
        ):
            verdict.duplicate_decisions.append(vpce)
        lowered = state.lower()
        if lowered in ACCEPTED_STATES:
            verdict.accepted += 1
            if expected is not Action.ACCEPT and vpce not in humans_ok:
                verdict.wrong_accepts.append(vpce)
            if not any(a == "accept" for a, _ in trail) and vpce not in humans_ok:
                verdict.unaudited.append(vpce)
        elif lowered == "rejected":
            verdict.rejected += 1
            rightly_revoked = vpce in taken_away and expected is not Action.ACCEPT
            if expected is not Action.REJECT and vpce not in humans_no and not rightly_revoked:
                verdict.wrong_rejects.append(vpce)
            if not any(a == "reject" for a, _ in trail) and vpce not in humans_no:
                verdict.unaudited.append(vpce)
        elif lowered == "pendingacceptance":
            if vpce in open_ids and expected is Action.ESCALATE:
                verdict.escalated += 1
                if not any(a == "escalate" for a, _ in trail):
                    verdict.unaudited.append(vpce)
            elif expected is not Action.NONE:
                verdict.stuck.append(vpce)
        elif lowered in GONE_STATES:
            verdict.withdrawn += 1
    return verdict


def check_deployment(
    provider: Any,
    service_ids: Iterable[str],
    *,
    approved_by_human: Iterable[str] = (),
    rejected_by_human: Iterable[str] = (),
    default: DefaultDecision = DefaultDecision.ESCALATE,
    allow_wildcard_principal: bool = False,
) -> Verdict:
    """`check()` on a LocalDeployment's live state: the provider's connections, the registry
    (grants that are valid now), the audit table and the open escalations. Run it after every
    fault has been removed."""
    from vpce_approver.registry import Registry
    from vpce_approver.tables import AuditItem, EscalationItem

    services = set(service_ids)
    connections = [c for c in provider.connections() if c["ServiceId"] in services]
    owners = {str(c["VpcEndpointOwner"]) for c in connections}
    registry = Registry(allow_wildcard_principal=allow_wildcard_principal)
    grants: dict[str, list[Grant]] = defaultdict(list)
    for service_id in services:
        _, found, _ = registry.lookup([service_id], owners)
        for grant in found.values():
            grants[grant.consumer].append(grant)
    audit: dict[str, list[tuple[str, str | None]]] = defaultdict(list)
    revoked: set[str] = set()
    for item in AuditItem.scan():
        outcome = item.outcome or ""
        audit[str(item.subject)].append(
            (str(item.action), "failed" if outcome.startswith("failed") else outcome)
        )
        if item.action == "reject" and item.code in REVOCATION_CODES:
            revoked.add(str(item.subject))
    open_ids = [
        str(i.vpc_endpoint_id) for i in EscalationItem.scan() if getattr(i, "state", "") == "open"
    ]
    return check(
        connections,
        grants,
        audit,
        open_ids,
        approved_by_human=approved_by_human,
        rejected_by_human=rejected_by_human,
        revoked=revoked,
        default=default,
    )


# ---------------------------------------------------------------------------- notifications


def redeliver(
    sqs: Any,
    queue_url: str,
    rng: random.Random,
    *,
    duplicates: float = 0.0,
    total: int | None = None,
) -> tuple[int, int]:
    """Take every message off the queue and send the bodies back with duplicates, shuffled (as
    SNS/SQS may deliver them). `total`: deliveries in all (the rest are random duplicates), else
    `duplicates` is the fraction added. Returns (unique messages, deliveries)."""
    bodies: list[str] = []
    while True:
        got = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get("Messages", [])
        if not got:
            break
        bodies.extend(m["Body"] for m in got)
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)
            ],
        )
    if not bodies:
        return 0, 0
    extra = (total - len(bodies)) if total is not None else round(len(bodies) * duplicates)
    deliveries = bodies + [rng.choice(bodies) for _ in range(max(extra, 0))]
    rng.shuffle(deliveries)
    for start in range(0, len(deliveries), 10):
        sqs.send_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "MessageBody": body}
                for i, body in enumerate(deliveries[start : start + 10])
            ],
        )
    return len(bodies), len(deliveries)


@dataclass
class RecordingPort:
    """An EscalationPort that counts what it was asked to do per endpoint (and can fail)."""

    opened_ids: Counter[str] = field(default_factory=Counter)
    settled_ids: Counter[str] = field(default_factory=Counter)
    refreshed_ids: Counter[str] = field(default_factory=Counter)

    def opened(self, escalation: Any) -> None:
        self.opened_ids[str(escalation.vpc_endpoint_id)] += 1

    def settled(self, escalation: Any) -> None:
        self.settled_ids[str(escalation.vpc_endpoint_id)] += 1

    def refresh(self, escalation: Any) -> None:
        self.refreshed_ids[str(escalation.vpc_endpoint_id)] += 1


def with_settings(deps: Any, **overrides: Any) -> Any:
    """A copy of Deps with some settings changed."""
    return replace(deps, settings=replace(deps.settings, **overrides))


# ---------------------------------------------------------------------------- an in-memory queue


@dataclass
class Delivery:
    message_id: str  # SQS's: distinct for every delivery, duplicates included
    body: str  # the SNS envelope (its MessageId is the same for a duplicate)
    receives: int = 0


@dataclass
class MemoryQueue:
    """SNS -> SQS -> Lambda event source semantics, in memory (moto's SQS receive is quadratic in
    the queue length, too slow for thousands of messages): the emulator's notifications for
    `topic_arn` are enveloped as SNS does and queued; `poll_once` hands a batch to the handler,
    drops what succeeded, requeues the failed records at the back (visible again after the
    visibility timeout), and moves a record that failed `max_receive_count` times to `dlq`."""

    topic_arn: str
    max_receive_count: int = 3
    ready: list[Delivery] = field(default_factory=list)
    dlq: list[Delivery] = field(default_factory=list)
    invocations: int = 0
    handled: int = 0
    _seq: Iterator[int] = field(default_factory=itertools.count)

    def envelope(self, message: str) -> str:
        return json.dumps(
            {
                "Type": "Notification",
                "MessageId": str(uuid.uuid4()),
                "TopicArn": self.topic_arn,
                "Subject": "Endpoint Connection State Change",
                "Message": message,
                "Timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "SignatureVersion": "1",
            }
        )

    def publish(self, topic_arn: str, message: str) -> None:
        """The emulator listener: queue what SNS would deliver to the subscribed queue."""
        if topic_arn == self.topic_arn:
            self.ready.append(Delivery(f"m-{next(self._seq)}", self.envelope(message)))

    @contextmanager
    def listening(self) -> Iterator[MemoryQueue]:
        from vpce_tools.emulator import add_listener, remove_listener

        add_listener(self.publish)
        try:
            yield self
        finally:
            remove_listener(self.publish)

    def duplicate(self, rng: random.Random, *, total: int) -> tuple[int, int]:
        """Add random duplicates up to `total` deliveries and shuffle. Returns (unique, total)."""
        unique = len(self.ready)
        for _ in range(max(total - unique, 0)):
            self.ready.append(
                Delivery(f"m-{next(self._seq)}", rng.choice(self.ready[:unique]).body)
            )
        rng.shuffle(self.ready)
        return unique, len(self.ready)

    def poll_once(
        self,
        process: Callable[[Sequence[Mapping[str, Any]]], list[str]],
        batch_size: int = 10,
    ) -> int:
        batch, self.ready = self.ready[:batch_size], self.ready[batch_size:]
        if not batch:
            return 0
        for delivery in batch:
            delivery.receives += 1
        records = [
            {
                "messageId": d.message_id,
                "body": d.body,
                "attributes": {"ApproximateReceiveCount": str(d.receives)},
                "eventSource": "aws:sqs",
            }
            for d in batch
        ]
        self.invocations += 1
        self.handled += len(batch)
        failed = set(process(records))
        for delivery in batch:
            if delivery.message_id not in failed:
                continue
            if delivery.receives >= self.max_receive_count:
                self.dlq.append(delivery)
            else:
                self.ready.append(delivery)
        return len(batch)

    def drain(
        self,
        process: Callable[[Sequence[Mapping[str, Any]]], list[str]],
        batch_size: int = 10,
        max_invocations: int = 100_000,
    ) -> int:
        total = 0
        for _ in range(max_invocations):
            handled = self.poll_once(process, batch_size)
            if not handled:
                break
            total += handled
        return total
