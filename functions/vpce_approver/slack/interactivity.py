"""Slack interactivity requests: verify, authorise, enqueue. Nothing here touches EC2 or the tables,
so the answer (HTTP 200) goes back well within Slack's 3 seconds; the worker does the rest.

0. The raw request is screened (inbound.py): headers of the shape Slack sends, a form body of at
   most 64 KB, valid base64 when API Gateway encoded it. Anything else: a 4xx, never an error.
1. The signature (HMAC-SHA256 of `v0:<timestamp>:<raw body>` with the signing secret) is checked
   with slack_sdk's SignatureVerifier over the raw bytes (base64-decoded when API Gateway encoded
   them), with a 5-minute window; a failure re-reads a just-rotated secret once (rate-limited,
   secret_refresh.py). Anything else: 401, nothing queued.
2. The payload must be a block_actions click on one of our buttons.
3. The clicker's workspace and approver status are checked (approvers.py). A refusal is queued
   too, so the worker audits it and tells the clicker (ephemeral message).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs

from slack_sdk.signature import Clock, SignatureVerifier

from ..audit import stamp
from .approvers import Approvers
from .inbound import Inbound, Refused, screen
from .messages import ACTIONS

log = logging.getLogger("vpce_approver.slack")

JOB_VERSION = 1
WINDOW_SECONDS = 60 * 5  # slack_sdk's replay window
MAX_VALUE_CHARS = 64


class BadRequest(ValueError):
    """A signed request we cannot act on (not a click on our buttons)."""


@dataclass(frozen=True)
class Job:
    """One click, as the worker receives it through the queue."""

    job_id: str
    action: str  # approve | approve_register | reject
    value: str  # the button value: an endpoint ID, checked against the escalation record
    user: str
    team: str | None
    channel: str | None
    message_ts: str | None
    received_at: str
    refusal: str | None = None  # a Refusal code: audit and tell the user, act on nothing
    refusal_message: str | None = None
    v: int = JOB_VERSION

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, body: str) -> Job:
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise BadRequest(f"job is not JSON: {exc.msg}") from None
        if not isinstance(data, dict) or data.get("v") != JOB_VERSION:
            raise BadRequest("job has an unknown format")
        try:
            job = cls(**{k: data[k] for k in data if k in cls.__dataclass_fields__})
        except TypeError as exc:
            raise BadRequest(f"job is incomplete: {exc}") from None
        for name in ("job_id", "action", "value", "user", "received_at"):
            if not isinstance(getattr(job, name), str) or not getattr(job, name):
                raise BadRequest(f"job field {name} is missing")
        if job.action not in ACTIONS:
            raise BadRequest(f"job action {job.action!r} is unknown")
        return job


@dataclass(frozen=True)
class Reply:
    status: int
    body: str = ""
    signed: bool = False  # the signature was verified (else: an unauthenticated request)


class _Clock(Clock):
    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def now(self) -> float:
        return self._now()


def signature_ok(secret: str, request: Inbound, now: Callable[[], float]) -> bool:
    """slack_sdk's verifier, on inputs inbound.screen() has shaped (ASCII digits, hex)."""
    verifier = SignatureVerifier(secret, clock=_Clock(now))
    return verifier.is_valid(
        body=request.body, timestamp=request.timestamp, signature=request.signature
    )


def fresh(request: Inbound, now: Callable[[], float]) -> bool:
    """Inside the 5-minute window (only such a request may trigger a secret re-read)."""
    return abs(now() - int(request.timestamp)) <= WINDOW_SECONDS


def _str(data: Mapping[str, Any], *path: str) -> str | None:
    node: Any = data
    for key in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(key)
    return node if isinstance(node, str) and node else None


def parse_click(body: bytes, received_at: datetime) -> Job:
    """The block_actions payload -> a Job (without any authorisation decision yet)."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=True)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest("body is not a form") from None
    raw = form.get("payload")
    if not raw or len(raw) != 1:
        raise BadRequest("form has no single payload field")
    try:
        payload = json.loads(raw[0])
    except json.JSONDecodeError:
        raise BadRequest("payload is not JSON") from None
    if not isinstance(payload, dict) or payload.get("type") != "block_actions":
        raise BadRequest("payload is not a block_actions click")
    actions = payload.get("actions")
    if not isinstance(actions, list) or len(actions) != 1 or not isinstance(actions[0], dict):
        raise BadRequest("payload must carry exactly one action")
    action = _str(actions[0], "action_id")
    value = _str(actions[0], "value")
    user = _str(payload, "user", "id")
    if action not in ACTIONS:
        raise BadRequest(f"unknown action {action!r}")
    if not value or len(value) > MAX_VALUE_CHARS or not user:
        raise BadRequest("action has no usable value or user")
    return Job(
        job_id=uuid.uuid4().hex,
        action=action,
        value=value,
        user=user,
        team=_str(payload, "team", "id") or _str(payload, "user", "team_id"),
        channel=_str(payload, "channel", "id") or _str(payload, "container", "channel_id"),
        message_ts=_str(payload, "container", "message_ts") or _str(payload, "message", "ts"),
        received_at=stamp(received_at),
    )


class Interactivity:
    def __init__(
        self,
        *,
        signing_secret: Callable[[], str],
        approvers: Approvers,
        enqueue: Callable[[Job], None],
        now: Callable[[], float] = time.time,
        reread_secret: Callable[[], str | None] | None = None,
        origin_verify: str | None = None,
    ) -> None:
        self.signing_secret = signing_secret
        self.approvers = approvers
        self.enqueue = enqueue
        self.now = now
        self.reread_secret = reread_secret
        self.origin_verify = origin_verify

    def verified(self, request: Inbound) -> bool:
        """The signature, with the cached secret, then (a fresh request that failed: the secret
        may have just been rotated) once with the secret read again, when the rate limit allows
        (secret_refresh)."""
        secret = self.signing_secret()
        if signature_ok(secret, request, self.now):
            return True
        if self.reread_secret is None or not fresh(request, self.now):
            return False
        again = self.reread_secret()
        if again is None or again == secret:
            return False
        log.warning("slack signature verified only with the re-read signing secret (rotated)")
        return signature_ok(again, request, self.now)

    def handle(self, headers: Mapping[str, str], body: str | None, is_base64: bool) -> Reply:
        try:
            request = screen(headers, body, is_base64, origin_verify=self.origin_verify)
        except Refused as exc:
            log.warning("slack request refused: %s", exc.reason)
            return Reply(exc.status, exc.reason)
        if not self.verified(request):
            log.warning("slack request refused: bad or stale signature")
            return Reply(401, "invalid request signature")
        try:
            job = parse_click(request.body, datetime.fromtimestamp(self.now(), UTC))
        except BadRequest as exc:
            log.warning("signed slack request ignored: %s", exc)
            return Reply(400, "unsupported interaction", signed=True)
        refusal = self.approvers.check(job.user, job.team)
        if refusal is not None:
            log.warning(
                "slack click refused",
                extra={"user": job.user, "team": job.team, "refusal": refusal.code},
            )
            job = Job(
                **{
                    **asdict(job),
                    "refusal": refusal.code,
                    "refusal_message": refusal.message,
                }
            )
        self.enqueue(job)
        return Reply(200, signed=True)


class SqsQueue:
    """The work queue (SLACK_WORK_QUEUE_URL)."""

    def __init__(self, client: Any, url: str) -> None:
        self.client = client
        self.url = url

    def send(self, job: Job) -> None:
        self.client.send_message(QueueUrl=self.url, MessageBody=job.to_json())
