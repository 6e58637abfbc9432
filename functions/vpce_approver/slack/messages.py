"""Block Kit for escalation messages (pure: an escalation record in, blocks out).

The open message shows the service (name and ID), the consumer account (and any registry owner or
note), the endpoint, the consumer region, how long it has been pending and why it was not
auto-approved, with Approve / Approve & register / Reject buttons. Once settled the buttons are
replaced by the outcome. Button values carry only the endpoint ID: the worker looks the escalation
up and never trusts anything else from the click."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)

from ..tables import EscalationItem

ACTIONS_BLOCK_ID = "vpce_decision"
APPROVE = "approve"
APPROVE_REGISTER = "approve_register"
REJECT = "reject"
ACTIONS = (APPROVE, APPROVE_REGISTER, REJECT)
OPEN_HEADER = "PrivateLink connection needs a decision"
# Message metadata (chat.postMessage `metadata`): how a message we posted is found again in the
# channel's history when its ts was never stored (a crash or a lost response after the post).
EVENT_TYPE = "vpce_escalation"
SETTLED_HEADER = "PrivateLink connection settled"

OUTCOME_LINES = {
    "approved": ":white_check_mark: *Approved* by {who} at {at}",
    "approved-registered": (
        ":white_check_mark: *Approved and registered* by {who} at {at}: future endpoints of this "
        "account are auto-approved"
    ),
    "rejected": ":no_entry: *Rejected* by {who} at {at}",
    "accepted-by-grant": (
        ":white_check_mark: *Accepted by a registry grant* added meanwhile (seen {at} by {who})"
    ),
    "accepted-elsewhere": ":information_source: *Accepted elsewhere* (seen {at} by {who})",
    "rejected-elsewhere": ":information_source: *Rejected elsewhere* (seen {at} by {who})",
    "withdrawn": ":information_source: *Withdrawn*: the endpoint was deleted (seen {at} by {who})",
    "failed": ":warning: *Connection failed* (seen {at} by {who})",
    "expired": ":information_source: *Connection expired* (seen {at} by {who})",
}


@dataclass(frozen=True)
class Message:
    text: str  # the notification / fallback text
    blocks: list[dict[str, Any]]


def escalation_metadata(vpc_endpoint_id: str) -> dict[str, Any]:
    return {"event_type": EVENT_TYPE, "event_payload": {"vpc_endpoint_id": vpc_endpoint_id}}


def names_endpoint(message: Any, vpc_endpoint_id: str) -> bool:
    """True when a conversations.history message carries our metadata for this endpoint."""
    if not isinstance(message, dict):
        return False
    metadata = message.get("metadata")
    if not isinstance(metadata, dict) or metadata.get("event_type") != EVENT_TYPE:
        return False
    payload = metadata.get("event_payload")
    return isinstance(payload, dict) and payload.get("vpc_endpoint_id") == vpc_endpoint_id


def escape(text: str) -> str:
    """mrkdwn control characters (https://api.slack.com/reference/surfaces/formatting#escaping)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def parse_stamp(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def human_time(value: str | None) -> str:
    parsed = parse_stamp(value)
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC") if parsed else "an unknown time"


def duration(seconds: float) -> str:
    minutes = max(int(seconds // 60), 0)
    if minutes < 1:
        return "less than a minute"
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    parts = [f"{days} d" if days else "", f"{hours} h" if hours else "", f"{mins} min"]
    if days:
        parts[2] = ""
    return " ".join(p for p in parts if p)


def actor(decided_by: str | None) -> str:
    """`slack:U123` -> a user mention; anything else (notification, sweep...) as plain text."""
    if decided_by and decided_by.startswith("slack:"):
        return f"<@{escape(decided_by.removeprefix('slack:'))}>"
    return escape(decided_by or "vpce-approver")


def outcome_line(item: EscalationItem) -> str:
    template = OUTCOME_LINES.get(item.outcome or "", ":information_source: *{outcome}* at {at}")
    return template.format(
        who=actor(item.decided_by),
        at=human_time(item.updated_at),
        outcome=escape(item.outcome or "settled"),
    )


def _fields(item: EscalationItem, service_name: str | None, now: datetime) -> list[str]:
    since = parse_stamp(item.connection_created_at) or parse_stamp(item.created_at) or now
    name = f"{escape(service_name)} " if service_name else ""
    fields = [
        f"*Service*\n{name}`{escape(item.service_id)}`",
        f"*Consumer account*\n`{escape(item.consumer)}`",
        f"*Endpoint*\n`{escape(item.vpc_endpoint_id)}`",
        f"*Consumer region*\n{escape(item.region or 'unknown')}",
        f"*Pending for*\n{duration((now - since).total_seconds())}",
    ]
    registry = [
        f"owner {escape(item.grant_owner)}" if item.grant_owner else "",
        f"note: {escape(item.grant_note)}" if item.grant_note else "",
    ]
    if any(registry):
        fields.append("*Registry*\n" + "; ".join(r for r in registry if r))
    return fields


def _buttons(item: EscalationItem, service_name: str | None) -> ActionsBlock:
    value = item.vpc_endpoint_id
    label = escape(service_name or item.service_id)
    return ActionsBlock(
        block_id=ACTIONS_BLOCK_ID,
        elements=[
            ButtonElement(text="Approve", action_id=APPROVE, value=value, style="primary"),
            ButtonElement(
                text="Approve & register",
                action_id=APPROVE_REGISTER,
                value=value,
                confirm=ConfirmObject(
                    title="Approve and register?",
                    text=(
                        f"Accept `{escape(item.vpc_endpoint_id)}` and write an *allow* grant for "
                        f"account `{escape(item.consumer)}` on {label}: its future endpoints "
                        "will be accepted without asking (no expiry, limit or region filter)."
                    ),
                    confirm="Approve & register",
                    deny="Cancel",
                ),
            ),
            ButtonElement(
                text="Reject",
                action_id=REJECT,
                value=value,
                style="danger",
                confirm=ConfirmObject(
                    title="Reject this connection?",
                    text=(
                        f"Reject `{escape(item.vpc_endpoint_id)}` from account "
                        f"`{escape(item.consumer)}`. The consumer must create a new endpoint "
                        "to ask again."
                    ),
                    confirm="Reject",
                    deny="Cancel",
                    style="danger",
                ),
            ),
        ],
    )


# Codes whose reason needs a word on what it means for the approver (the reason says which grant).
CODE_NOTES = {
    "membership-unknown": (
        "Where this account sits in AWS Organizations could not be read, so no OU or"
        " organization grant may accept it (fail closed). Approve lets this one connection in;"
        " later connections are decided again once Organizations can be read."
    ),
}


def why_text(item: EscalationItem) -> str:
    """Why the connection was not auto-approved: the policy's reason, which names the grant
    that decided and, for an OU/organization grant, the account's path that matched
    ('grant svc/ou-… (path o-… / ou-…)'), and a note for the codes that need one."""
    text = f"*Why not auto-approved* ({escape(item.code)})\n{escape(item.reason)}"
    note = CODE_NOTES.get(item.code)
    return f"{text}\n_{escape(note)}_" if note else text


def _blocks(
    item: EscalationItem, service_name: str | None, now: datetime, last: Block, *, header: str
) -> list[dict[str, Any]]:
    blocks: list[Block] = [
        HeaderBlock(text=header),
        SectionBlock(fields=[MarkdownTextObject(text=f) for f in _fields(item, service_name, now)]),
        SectionBlock(text=MarkdownTextObject(text=why_text(item))),
        last,
    ]
    return [b.to_dict() for b in blocks]


def _summary(item: EscalationItem, service_name: str | None) -> str:
    service = service_name or item.service_id
    return f"Connection {item.vpc_endpoint_id} from account {item.consumer} to {service}"


def open_message(item: EscalationItem, service_name: str | None, now: datetime) -> Message:
    text = f"{_summary(item, service_name)} needs a decision ({item.code})"
    blocks = _blocks(item, service_name, now, _buttons(item, service_name), header=OPEN_HEADER)
    return Message(text, blocks)


def settled_message(item: EscalationItem, service_name: str | None, now: datetime) -> Message:
    line = outcome_line(item)
    text = f"{_summary(item, service_name)}: {item.outcome or 'settled'}"
    outcome = ContextBlock(elements=[MarkdownTextObject(text=line)])
    blocks = _blocks(item, service_name, now, outcome, header=SETTLED_HEADER)
    # "Pending for" makes no sense once settled: say when it was escalated instead.
    blocks[1]["fields"][4]["text"] = f"*Escalated*\n{human_time(item.created_at)}"
    return Message(text, blocks)


def message_for(item: EscalationItem, service_name: str | None, now: datetime) -> Message:
    if item.state == "open":
        return open_message(item, service_name, now)
    return settled_message(item, service_name, now)
