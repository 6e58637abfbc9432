"""Defensive parsing of connection notifications.

AWS publishes no schema for the notification body, so nothing here trusts a key name or its case:
any key whose lowercased name looks like a service / endpoint / event / state field is read, and
values are checked by shape (vpce-svc-…, vpce-…). A notification is only a hint: converge reads the
truth from DescribeVpcEndpointConnections. Records may arrive from SNS directly or via SQS (with or
without raw message delivery)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

SERVICE_RE = re.compile(r"vpce-svc-[0-9a-f]{8,17}")
ENDPOINT_RE = re.compile(r"(?<![\w-])vpce-(?!svc-)(?!con-)(?!nfn-)[0-9a-f]{8,17}(?![\w-])")
EVENTS = {"connect": "Connect", "accept": "Accept", "reject": "Reject", "delete": "Delete"}
MAX_BODY = 256 * 1024


class NotificationError(ValueError):
    """A record that names nothing we can act on."""


@dataclass(frozen=True, slots=True)
class Hint:
    """'Look at service S (and endpoint E)'. event is Connect/Accept/Reject/Delete or None."""

    service_id: str
    endpoint_id: str | None
    event: str | None
    state: str | None
    message_id: str | None = None


def _walk(value: Any, depth: int = 0) -> Iterator[tuple[str, Any]]:
    """(lowercased key, value) pairs of nested dicts/lists, bounded in depth."""
    if depth > 6:
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield str(key).lower().replace("_", "").replace("-", ""), item
            yield from _walk(item, depth + 1)
    elif isinstance(value, list):
        for item in value[:100]:
            yield from _walk(item, depth + 1)


def _first(
    pairs: list[tuple[str, Any]], names: tuple[str, ...], pattern: re.Pattern[str]
) -> str | None:
    for key, value in pairs:
        if key in names and isinstance(value, str) and pattern.fullmatch(value.strip()):
            return value.strip()
    return None


def parse_body(body: str, message_id: str | None = None) -> Hint:
    if len(body) > MAX_BODY:
        raise NotificationError(f"message of {len(body)} bytes is too large to be a notification")
    try:
        data: Any = json.loads(body)
    except ValueError:
        data = None
    if isinstance(data, Mapping | list):
        pairs = list(_walk(data))
        service = _first(
            pairs, ("serviceid", "endpointserviceid", "vpcendpointserviceid"), SERVICE_RE
        )
        endpoint = _first(pairs, ("vpcendpointid", "endpointid"), ENDPOINT_RE)
        event_raw = next(
            (
                v
                for k, v in pairs
                if k in ("eventtype", "event", "eventname", "connectionevent")
                and isinstance(v, str)
            ),
            None,
        )
        state = next(
            (
                v
                for k, v in pairs
                if k in ("vpcendpointstate", "state", "endpointstate") and isinstance(v, str)
            ),
            None,
        )
        if (
            service is None
        ):  # maybe only in a service name or ARN: com.amazonaws.vpce.<r>.vpce-svc-…
            match = SERVICE_RE.search(json.dumps(data))
            service = match.group(0) if match else None
    else:  # not JSON: a plain-text body; look for the IDs anywhere
        service_match = SERVICE_RE.search(body)
        endpoint_match = ENDPOINT_RE.search(body)
        service = service_match.group(0) if service_match else None
        endpoint = endpoint_match.group(0) if endpoint_match else None
        event_raw = next((w for w in re.findall(r"[A-Za-z]+", body) if w.lower() in EVENTS), None)
        state = None
    if service is None:
        raise NotificationError("the message names no endpoint service (vpce-svc-…)")
    event = EVENTS.get(event_raw.strip().lower()) if isinstance(event_raw, str) else None
    return Hint(
        service, endpoint, event, state.strip() if isinstance(state, str) else None, message_id
    )


def sns_message(record: Mapping[str, Any]) -> tuple[str, str | None]:
    """(message body, SNS message id) from an SNS->Lambda record or an SQS record carrying an SNS
    envelope (or, with raw message delivery, the body itself)."""
    if not isinstance(record, Mapping):
        raise NotificationError("record is not an object")
    sns = record.get("Sns")
    if isinstance(sns, Mapping):
        message = sns.get("Message")
        if not isinstance(message, str):
            raise NotificationError("SNS record has no Message string")
        return message, sns.get("MessageId") if isinstance(sns.get("MessageId"), str) else None
    body = record.get("body")
    if isinstance(body, str):
        try:
            envelope = json.loads(body)
        except ValueError:
            return body, record.get("messageId")
        if isinstance(envelope, Mapping) and envelope.get("Type") == "Notification":
            message = envelope.get("Message")
            if not isinstance(message, str):
                raise NotificationError("SNS envelope has no Message string")
            message_id = envelope.get("MessageId")
            return message, message_id if isinstance(message_id, str) else None
        return body, record.get("messageId")
    raise NotificationError("record is neither an SNS nor an SQS record")


def parse_record(record: Mapping[str, Any]) -> Hint:
    body, message_id = sns_message(record)
    return parse_body(body, message_id)
