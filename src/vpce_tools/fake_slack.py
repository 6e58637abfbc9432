"""A local Slack stand-in for tests, `make demo` and `vpce-approver local`.

- The Web API methods vpce-approver calls (auth.test, chat.postMessage, chat.update,
  chat.postEphemeral, usergroups.users.list, conversations.history) under /api/, so slack_sdk's
  WebClient works against it with `base_url=<url>/api/`. Messages keep their `metadata`, and
  conversations.history pages them like Slack (newest first; oldest/latest/inclusive, limit,
  cursor; metadata only with include_all_metadata). Every call is recorded; failures can be
  switched on (429 with Retry-After, 500, a stalled response for timeouts, a call that takes
  effect but whose response is lost, invalid_auth, missing_scope).
- Interactivity: `click()` builds a block_actions payload for a posted message, signs it with the
  signing secret exactly as Slack does and POSTs it to `interactivity_url`.
- A small HTML page (GET /) that shows the channel's messages with working buttons; a click POSTs
  to /_ui/click, which sends the signed request as above. POST /slack/interactivity is answered
  by `local_handler` when one is set (the real Lambda handler, in-process: see slack_local.py).

Binds 127.0.0.1 only. Nothing here is deployed. /_ui/click signs on behalf of any user, so it is
guarded against other web pages open in the same browser (cross-site request forgery) and DNS
rebinding (ui_guard): it needs the per-start token only the page carries (a cross-origin page
cannot read it), a JSON body, no cross-origin Origin / Sec-Fetch-Site, and a loopback Host."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import html
import json
import re
import secrets
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.error import HTTPError
from urllib.parse import parse_qs, urlencode, urlparse

MODES = ("ratelimited", "server_error", "timeout", "response_lost", "invalid_auth", "missing_scope")
BOT_USER_ID = "U0BOT"
BOT_ID = "B0BOT"
HISTORY_DEFAULT_LIMIT = 100  # Slack's default page size...
HISTORY_MAX_LIMIT = 999  # ...and its maximum
LocalHandler = Callable[[Mapping[str, str], bytes], tuple[int, str]]


@dataclass(frozen=True)
class Call:
    method: str
    params: dict[str, Any]
    at: float  # time.monotonic()
    status: int  # HTTP status answered (0: stalled / timed out)
    error: str | None = None


@dataclass
class Message:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]]
    versions: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    metadata: dict[str, Any] | None = None
    user: str = BOT_USER_ID
    bot_id: str | None = BOT_ID

    def as_history(self, *, with_metadata: bool) -> dict[str, Any]:
        """The message as conversations.history returns it."""
        out: dict[str, Any] = {
            "type": "message",
            "ts": self.ts,
            "user": self.user,
            "text": self.text,
            "blocks": self.blocks,
        }
        if self.bot_id:
            out["bot_id"] = self.bot_id
        if with_metadata and self.metadata:
            out["metadata"] = self.metadata
        return out

    @property
    def buttons(self) -> list[dict[str, Any]]:
        return [
            element
            for block in self.blocks
            if block.get("type") == "actions"
            for element in block.get("elements", [])
            if element.get("type") == "button"
        ]

    def button_value(self) -> str | None:
        values = {b.get("value") for b in self.buttons}
        return next(iter(values)) if len(values) == 1 else None


@dataclass(frozen=True)
class Ephemeral:
    channel: str
    user: str
    text: str


@dataclass
class Failure:
    mode: str
    method: str | None  # None: any method
    remaining: int
    retry_after: int = 1
    delay: float = 1.0


def sign(secret: str, body: bytes, timestamp: int) -> str:
    base = b"v0:" + str(timestamp).encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def mrkdwn_to_text(text: str) -> str:
    """Slack mrkdwn -> plain text (mentions as @U…, entities decoded)."""
    text = re.sub(r"<@([A-Z0-9]+)>", r"@\1", text)
    text = re.sub(r"<[^|>]+\|([^>]+)>", r"\1", text)
    text = text.replace("*", "").replace("`", "")
    return html.unescape(text)


def render_text(blocks: list[dict[str, Any]]) -> str:
    """A message's blocks as plain text lines (what the demo prints)."""
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind == "header":
            lines.append(block["text"]["text"])
        elif kind == "section":
            if block.get("text"):
                lines.append(mrkdwn_to_text(block["text"]["text"]))
            for item in block.get("fields", []):
                lines.append(mrkdwn_to_text(item["text"]).replace("\n", ": ", 1))
        elif kind == "context":
            lines.extend(mrkdwn_to_text(e.get("text", "")) for e in block.get("elements", []))
        elif kind == "actions":
            labels = [f"[{e['text']['text']}]" for e in block.get("elements", []) if "text" in e]
            lines.append(" ".join(labels))
    return "\n".join(lines)


class FakeSlack:
    def __init__(
        self,
        *,
        token: str | None = None,
        signing_secret: str | None = None,
        team_id: str = "T0LOCAL",
        groups: Mapping[str, list[str]] | None = None,
        ui_users: tuple[str, ...] = ("U0APPROVER", "U0VISITOR"),
        interactivity_url: str | None = None,
        local_handler: LocalHandler | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        # Random per instance unless given: nothing guessable, even locally.
        self.token = token or f"xoxb-local-{secrets.token_hex(12)}"
        self.signing_secret = signing_secret or secrets.token_hex(16)
        self.team_id = team_id
        self.groups = {k: list(v) for k, v in (groups or {}).items()}
        self.ui_users = ui_users
        self.interactivity_url = interactivity_url
        self.local_handler = local_handler
        self.calls: list[Call] = []
        self.messages: dict[tuple[str, str], Message] = {}
        self.ephemerals: list[Ephemeral] = []
        self.failures: list[Failure] = []
        self.last_interaction: tuple[bytes, dict[str, str]] | None = None
        self.ui_token = secrets.token_urlsafe(24)  # per start: the page carries it, nothing else
        self.version = 0
        self._lock = threading.RLock()
        self._seq = 0
        self._server = ThreadingHTTPServer((host, port), _handler_for(self))
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def api_url(self) -> str:
        return f"{self.url}/api/"

    def start(self) -> FakeSlack:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="fake-slack", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread = None

    def __enter__(self) -> FakeSlack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ failure switches
    def fail(
        self,
        mode: str,
        *,
        method: str | None = None,
        times: int = 1,
        retry_after: int = 1,
        delay: float = 1.0,
    ) -> None:
        """The next `times` calls (of `method`, or any) fail with `mode`: ratelimited (429 +
        Retry-After), server_error (500), timeout (the answer stalls `delay` seconds and the call
        does nothing), response_lost (the call takes effect, then its answer stalls `delay`
        seconds: a client with a shorter timeout never sees it), invalid_auth, missing_scope."""
        if mode not in MODES:
            raise ValueError(f"unknown failure mode {mode!r}: expected one of {', '.join(MODES)}")
        with self._lock:
            self.failures.append(Failure(mode, method, times, retry_after, delay))

    def clear_failures(self) -> None:
        with self._lock:
            self.failures.clear()

    # ------------------------------------------------------------------ inspection
    def calls_to(self, method: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def channel_messages(self, channel: str | None = None) -> list[Message]:
        with self._lock:
            return [m for m in self.messages.values() if channel is None or m.channel == channel]

    def message_for(self, value: str) -> Message | None:
        """The message whose buttons (or text) name `value` (an endpoint ID)."""
        with self._lock:
            found = [m for m in self.messages.values() if value in m.text]
            return found[-1] if found else None

    def add_message(
        self,
        channel: str,
        text: str,
        *,
        metadata: dict[str, Any] | None = None,
        user: str = "U0SOMEONE",
        bot_id: str | None = None,
    ) -> Message:
        """A message someone else (a person, another app) posts in the channel."""
        with self._lock:
            message = Message(
                channel, self._next_ts(), text, [], [], metadata=metadata, user=user, bot_id=bot_id
            )
            self.messages[(channel, message.ts)] = message
            self.version += 1
            return message

    def ephemerals_for(self, user: str) -> list[str]:
        with self._lock:
            return [e.text for e in self.ephemerals if e.user == user]

    # ------------------------------------------------------------------ interactivity
    def click_payload(
        self,
        message: Message,
        action_id: str,
        *,
        user: str,
        value: str | None = None,
        team: str | None = None,
    ) -> dict[str, Any]:
        button = next((b for b in message.buttons if b.get("action_id") == action_id), None)
        if value is None:
            if button is None:
                raise ValueError(f"message {message.ts} has no {action_id!r} button")
            value = str(button.get("value"))
        team = team or self.team_id
        now = f"{time.time():.6f}"
        return {
            "type": "block_actions",
            "team": {"id": team, "domain": "local"},
            "user": {"id": user, "username": user.lower(), "team_id": team},
            "api_app_id": "A0LOCAL",
            "container": {
                "type": "message",
                "message_ts": message.ts,
                "channel_id": message.channel,
                "is_ephemeral": False,
            },
            "trigger_id": f"{int(time.time())}.local",
            "channel": {"id": message.channel, "name": "vpce-approvals"},
            "message": {"ts": message.ts, "text": message.text, "blocks": message.blocks},
            "response_url": f"{self.url}/_response/{message.ts}",
            "actions": [
                {
                    "type": "button",
                    "action_id": action_id,
                    "block_id": "vpce_decision",
                    "value": value,
                    "action_ts": now,
                }
            ],
        }

    def signed_request(
        self, payload: Mapping[str, Any], *, timestamp: int | None = None
    ) -> tuple[bytes, dict[str, str]]:
        body = urlencode({"payload": json.dumps(payload)}).encode()
        ts = int(time.time()) if timestamp is None else timestamp
        headers = {
            "Content-Type": "application/x-www-form-urlencoded",
            "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": sign(self.signing_secret, body, ts),
        }
        return body, headers

    def deliver(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, str]:
        """POST an interactivity request to interactivity_url (what Slack does on a click)."""
        if not self.interactivity_url:
            raise RuntimeError("FakeSlack.interactivity_url is not set")
        with self._lock:
            self.last_interaction = (body, dict(headers))
        request = urllib.request.Request(  # noqa: S310 - a local http URL we configured
            self.interactivity_url, data=body, headers=dict(headers), method="POST"
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return int(response.status), response.read().decode()
        except HTTPError as exc:
            return int(exc.code), exc.read().decode()

    def click(
        self,
        channel: str,
        ts: str,
        action_id: str,
        *,
        user: str,
        value: str | None = None,
        team: str | None = None,
    ) -> tuple[int, str]:
        with self._lock:
            message = self.messages.get((channel, ts))
        if message is None:
            raise ValueError(f"no message {channel}/{ts}")
        payload = self.click_payload(message, action_id, user=user, value=value, team=team)
        body, headers = self.signed_request(payload)
        return self.deliver(body, headers)

    # ------------------------------------------------------------------ the Web API
    def _next_ts(self) -> str:
        self._seq += 1
        return f"{int(time.time())}.{self._seq:06d}"

    def _failure_for(self, method: str) -> Failure | None:
        for failure in self.failures:
            if failure.remaining > 0 and failure.method in (None, method):
                failure.remaining -= 1
                return failure
        return None

    def api(
        self, method: str, params: dict[str, Any], token: str | None
    ) -> tuple[int, dict[str, str], str]:
        """One Web API call -> (status, headers, body)."""
        params = {k: v for k, v in params.items() if k != "token"}
        with self._lock:
            failure = self._failure_for(method)
        if failure is not None and failure.mode != "response_lost":
            return self._fail(method, params, failure)
        if token != self.token:
            return self._answer(method, params, {"ok": False, "error": "invalid_auth"})
        handler = getattr(self, "_m_" + method.replace(".", "_"), None)
        if handler is None:
            return self._answer(method, params, {"ok": False, "error": "unknown_method"})
        with self._lock:
            result: dict[str, Any] = handler(params)
            if result.get("ok") and method in {"chat.postMessage", "chat.update"}:
                self.version += 1
        if failure is not None:  # response_lost: done, but the answer comes too late
            with self._lock:
                self.calls.append(Call(method, params, time.monotonic(), 200, failure.mode))
            time.sleep(failure.delay)
            return 200, {"Content-Type": "application/json"}, json.dumps(result)
        return self._answer(method, params, result)

    def _answer(
        self, method: str, params: dict[str, Any], result: dict[str, Any]
    ) -> tuple[int, dict[str, str], str]:
        with self._lock:
            self.calls.append(Call(method, params, time.monotonic(), 200, result.get("error")))
        return 200, {"Content-Type": "application/json"}, json.dumps(result)

    def _fail(
        self, method: str, params: dict[str, Any], failure: Failure
    ) -> tuple[int, dict[str, str], str]:
        status = {
            "ratelimited": 429,
            "server_error": 500,
            "timeout": 0,
            "invalid_auth": 200,
            "missing_scope": 200,
        }
        with self._lock:
            self.calls.append(
                Call(method, params, time.monotonic(), status[failure.mode], failure.mode)
            )
        if failure.mode == "ratelimited":
            headers = {"Content-Type": "application/json", "Retry-After": str(failure.retry_after)}
            return 429, headers, json.dumps({"ok": False, "error": "ratelimited"})
        if failure.mode == "server_error":
            return 500, {"Content-Type": "text/plain"}, "Internal Server Error"
        if failure.mode == "timeout":
            time.sleep(failure.delay)
            return 200, {"Content-Type": "application/json"}, json.dumps({"ok": False})
        if failure.mode == "missing_scope":
            needed = "channels:history,groups:history" if method.startswith("conv") else "unknown"
            body = {
                "ok": False,
                "error": "missing_scope",
                "needed": needed,
                "provided": "chat:write",
            }
            return 200, {"Content-Type": "application/json"}, json.dumps(body)
        return (
            200,
            {"Content-Type": "application/json"},
            json.dumps({"ok": False, "error": "invalid_auth"}),
        )

    @staticmethod
    def _blocks(params: Mapping[str, Any]) -> list[dict[str, Any]]:
        blocks = params.get("blocks") or []
        if isinstance(blocks, str):
            blocks = json.loads(blocks)
        return list(blocks)

    def _m_auth_test(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "team_id": self.team_id, "user_id": BOT_USER_ID, "bot_id": BOT_ID}

    def _m_chat_postMessage(self, params: dict[str, Any]) -> dict[str, Any]:
        channel = str(params.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        if channel.startswith("#"):
            channel = "C" + hashlib.sha256(channel.encode()).hexdigest()[:10].upper()
        metadata = params.get("metadata")
        if isinstance(metadata, str):
            metadata = json.loads(metadata) if metadata else None
        if metadata is not None and (
            not isinstance(metadata, dict)
            or not isinstance(metadata.get("event_type"), str)
            or not isinstance(metadata.get("event_payload"), dict)
        ):
            return {"ok": False, "error": "invalid_metadata_format"}
        ts = self._next_ts()
        text, blocks = str(params.get("text") or ""), self._blocks(params)
        self.messages[(channel, ts)] = Message(
            channel, ts, text, blocks, [(text, blocks)], metadata=metadata
        )
        return {"ok": True, "channel": channel, "ts": ts, "message": {"text": text}}

    def _m_conversations_history(self, params: dict[str, Any]) -> dict[str, Any]:
        """Newest first, `oldest` < ts < `latest` (bounds included with `inclusive`), `limit`
        per page (default 100, at most 999), `cursor` from response_metadata.next_cursor."""
        channel = str(params.get("channel") or "")
        if not channel:
            return {"ok": False, "error": "channel_not_found"}
        try:
            oldest = float(params.get("oldest") or 0)
            latest = float(params["latest"]) if params.get("latest") else float("inf")
            limit = int(params.get("limit") or HISTORY_DEFAULT_LIMIT)
            after = float(_decode_cursor(str(params["cursor"]))) if params.get("cursor") else None
        except (TypeError, ValueError):  # binascii.Error is a ValueError
            return {
                "ok": False,
                "error": "invalid_cursor" if params.get("cursor") else "invalid_arguments",
            }
        if limit < 1:
            return {"ok": False, "error": "invalid_limit"}
        limit = min(limit, HISTORY_MAX_LIMIT)
        inclusive = _truthy(params.get("inclusive"))
        with_metadata = _truthy(params.get("include_all_metadata"))

        def within(ts: float) -> bool:
            if inclusive:
                return oldest <= ts <= latest
            return oldest < ts < latest

        found = sorted(
            (m for m in self.messages.values() if m.channel == channel and within(float(m.ts))),
            key=lambda m: float(m.ts),
            reverse=True,
        )
        if after is not None:
            found = [m for m in found if float(m.ts) < after]
        page, more = found[:limit], len(found) > limit
        result: dict[str, Any] = {
            "ok": True,
            "messages": [m.as_history(with_metadata=with_metadata) for m in page],
            "has_more": more,
            "pin_count": 0,
            "response_metadata": {"next_cursor": _encode_cursor(page[-1].ts) if more else ""},
        }
        return result

    def _m_chat_update(self, params: dict[str, Any]) -> dict[str, Any]:
        message = self.messages.get((str(params.get("channel")), str(params.get("ts"))))
        if message is None:
            return {"ok": False, "error": "message_not_found"}
        message.text = str(params.get("text") or message.text)
        message.blocks = self._blocks(params)
        message.versions.append((message.text, message.blocks))
        return {"ok": True, "channel": message.channel, "ts": message.ts}

    def _m_chat_postEphemeral(self, params: dict[str, Any]) -> dict[str, Any]:
        channel, user = str(params.get("channel") or ""), str(params.get("user") or "")
        if not channel or not user:
            return {"ok": False, "error": "invalid_arguments"}
        self.ephemerals.append(Ephemeral(channel, user, str(params.get("text") or "")))
        self.version += 1
        return {"ok": True, "message_ts": self._next_ts()}

    def _m_usergroups_users_list(self, params: dict[str, Any]) -> dict[str, Any]:
        group = str(params.get("usergroup") or "")
        if group not in self.groups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.groups[group])}

    # ------------------------------------------------------------------ the local page
    def page(self, user: str) -> str:
        with self._lock:
            messages = sorted(self.messages.values(), key=lambda m: m.ts, reverse=True)
            notes = [e.text for e in self.ephemerals if e.user == user][-5:]
            version = self.version
        options = "".join(
            f'<option value="{html.escape(u)}"{" selected" if u == user else ""}>'
            f"{html.escape(u)}</option>"
            for u in self.ui_users
        )
        cards = "".join(_card(m) for m in messages) or "<p>No escalations posted yet.</p>"
        replies = "".join(
            f'<li class="ephemeral">{html.escape(mrkdwn_to_text(n))}</li>' for n in notes
        )
        return PAGE.format(
            token=html.escape(self.ui_token),
            options=options,
            cards=cards,
            replies=f'<ul id="ephemerals">{replies}</ul>' if replies else "",
            version=version,
        )


def _truthy(value: Any) -> bool:
    return str(value).lower() in {"1", "true"}


def _encode_cursor(ts: str) -> str:
    return base64.urlsafe_b64encode(f"next_ts:{ts}".encode()).decode()


def _decode_cursor(cursor: str) -> str:
    decoded = base64.urlsafe_b64decode(cursor.encode()).decode()
    if not decoded.startswith("next_ts:"):
        raise ValueError("invalid cursor")
    return decoded.removeprefix("next_ts:")


def _card(message: Message) -> str:
    parts = []
    for block in message.blocks:
        kind = block.get("type")
        if kind == "header":
            parts.append(f"<h2>{html.escape(block['text']['text'])}</h2>")
        elif kind == "section":
            if block.get("text"):
                parts.append(f"<p>{_mrkdwn_html(block['text']['text'])}</p>")
            if block.get("fields"):
                fields = "".join(
                    f"<div>{_mrkdwn_html(f['text'])}</div>" for f in block.get("fields", [])
                )
                parts.append(f'<div class="fields">{fields}</div>')
        elif kind == "context":
            text = " ".join(_mrkdwn_html(e.get("text", "")) for e in block.get("elements", []))
            parts.append(f'<p class="outcome">{text}</p>')
        elif kind == "actions":
            buttons = "".join(_button(message, e) for e in block.get("elements", []))
            parts.append(f'<div class="actions">{buttons}</div>')
    return (
        f'<article class="message" data-ts="{html.escape(message.ts)}" '
        f'data-text="{html.escape(message.text)}">{"".join(parts)}</article>'
    )


def _button(message: Message, element: Mapping[str, Any]) -> str:
    confirm = element.get("confirm")
    question = ""
    if confirm:
        question = f"{confirm['title']['text']}\n\n{mrkdwn_to_text(confirm['text']['text'])}"
    return (
        f'<button class="slack-button {html.escape(str(element.get("style", "")))}" '
        f'data-channel="{html.escape(message.channel)}" data-ts="{html.escape(message.ts)}" '
        f'data-action="{html.escape(str(element.get("action_id")))}" '
        f'data-confirm="{html.escape(question)}">{html.escape(element["text"]["text"])}</button>'
    )


def _mrkdwn_html(text: str) -> str:
    escaped = html.escape(mrkdwn_to_text(text).replace("&amp;", "&"))
    return escaped.replace("\n", "<br>")


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>vpce-approver: local Slack</title>
<meta name="ui-token" content="{token}">
<style>
body {{ font-family: sans-serif; max-width: 60rem; margin: 2rem auto; color: #1d1c1d; }}
.message {{ border: 1px solid #ddd; border-radius: 8px; padding: 1rem; margin: 1rem 0; }}
.fields {{ display: grid; grid-template-columns: 1fr 1fr; gap: .5rem; }}
.outcome {{ color: #555; }}
.slack-button {{ margin-right: .5rem; padding: .4rem .9rem; border-radius: 4px;
  border: 1px solid #bbb; background: #fff; cursor: pointer; }}
.slack-button.primary {{ background: #007a5a; color: #fff; }}
.slack-button.danger {{ background: #e01e5a; color: #fff; }}
.ephemeral {{ color: #555; font-style: italic; }}
</style></head>
<body data-version="{version}">
<h1>#vpce-approvals <small>(local Slack stand-in)</small></h1>
<label>Click as <select id="user">{options}</select></label>
{replies}
<main id="messages">{cards}</main>
<script>
const user = document.getElementById("user");
const token = document.querySelector('meta[name="ui-token"]').content;
user.addEventListener("change", () => {{ location.search = "?user=" + user.value; }});
for (const button of document.querySelectorAll(".slack-button")) {{
  button.addEventListener("click", async () => {{
    const question = button.dataset.confirm;
    if (question && !window.confirm(question)) return;
    for (const b of document.querySelectorAll(".slack-button")) b.disabled = true;
    await fetch("/_ui/click", {{
      method: "POST",
      headers: {{ "Content-Type": "application/json", "X-UI-Token": token }},
      body: JSON.stringify({{ channel: button.dataset.channel, ts: button.dataset.ts,
                              action_id: button.dataset.action, user: user.value }}),
    }});
    location.search = "?user=" + user.value;
  }});
}}
setInterval(async () => {{
  const state = await (await fetch("/_ui/state")).json();
  if (String(state.version) !== document.body.dataset.version) location.reload();
}}, 2000);
</script>
</body></html>
"""


LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


class Headers(Protocol):
    def get(self, name: str, /) -> Any: ...


def ui_guard(fake: FakeSlack, headers: Headers, *, post: bool) -> str | None:
    """Why a request to the page (GET /) or its click endpoint (POST /_ui/click) is refused, or
    None. Host must name this server by a loopback name (DNS rebinding: another site's name
    resolving to 127.0.0.1 would be same-origin with it). A click must also come from the page
    itself: the per-start token it carries (X-UI-Token), a JSON body (a cross-site form cannot
    send one without a CORS preflight, which is never granted), and, when the browser says where
    it comes from, the same origin (Origin, Sec-Fetch-Site)."""
    port = fake.port
    allowed = {f"{name}:{port}" for name in LOOPBACK_NAMES}
    host = (headers.get("Host") or "").strip().lower()
    if host not in allowed:
        return "unknown Host: open the URL vpce-approver printed"
    if not post:
        return None
    origin = headers.get("Origin")
    if origin is not None and origin.strip().lower() != f"http://{host}":
        return "cross-origin request refused"
    site = headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() != "same-origin":
        return "cross-site request refused"
    content_type = (headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    if content_type != "application/json":
        return "expected application/json"
    token = headers.get("X-UI-Token") or ""
    if not hmac.compare_digest(token.encode(), fake.ui_token.encode()):
        return "missing or wrong page token: reload the page"
    return None


def _handler_for(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "FakeSlack/1"

        def log_message(self, format: str, *args: Any) -> None:
            return None  # quiet

        def _send(self, status: int, headers: Mapping[str, str], body: str) -> None:
            data = body.encode()
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                self.wfile.write(data)  # the client may have given up (timeout mode)

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path.startswith("/api/"):  # slack_sdk sends some methods as GET
                self._api(url.path.removeprefix("/api/"), url.query, b"")
            elif url.path == "/":
                refused = ui_guard(fake, self.headers, post=False)
                if refused:
                    self._send(403, {"Content-Type": "text/plain"}, refused)
                    return
                query = parse_qs(url.query)
                user = (query.get("user") or [fake.ui_users[0]])[0]
                self._send(200, {"Content-Type": "text/html; charset=utf-8"}, fake.page(user))
            elif url.path == "/_ui/state":
                body = json.dumps({"version": fake.version})
                self._send(200, {"Content-Type": "application/json"}, body)
            else:
                self._send(404, {"Content-Type": "text/plain"}, "not found")

        def do_POST(self) -> None:
            url = urlparse(self.path)
            body = self._body()
            if url.path.startswith("/api/"):
                self._api(url.path.removeprefix("/api/"), url.query, body)
            elif url.path == "/_ui/click":
                self._click(body)
            elif url.path == "/slack/interactivity" and fake.local_handler is not None:
                status, text = fake.local_handler(dict(self.headers.items()), body)
                self._send(status, {"Content-Type": "text/plain"}, text)
            else:
                self._send(404, {"Content-Type": "text/plain"}, "not found")

        def _api(self, method: str, query: str, body: bytes) -> None:
            params: dict[str, Any] = {k: v[0] for k, v in parse_qs(query).items()}
            content_type = self.headers.get("Content-Type", "")
            if body and "json" in content_type:
                params.update(json.loads(body))
            elif body:
                params.update({k: v[0] for k, v in parse_qs(body.decode()).items()})
            auth = self.headers.get("Authorization", "")
            token = auth.removeprefix("Bearer ").strip() if auth else params.get("token")
            status, headers, text = fake.api(method, params, token)
            self._send(status, headers, text)

        def _click(self, body: bytes) -> None:
            refused = ui_guard(fake, self.headers, post=True)
            if refused:
                self._send(403, {"Content-Type": "text/plain"}, refused)
                return
            try:
                data = json.loads(body)
                status, text = fake.click(
                    str(data["channel"]),
                    str(data["ts"]),
                    str(data["action_id"]),
                    user=str(data["user"]),
                )
            except (ValueError, KeyError) as exc:
                self._send(400, {"Content-Type": "text/plain"}, str(exc))
                return
            self._send(
                200,
                {"Content-Type": "application/json"},
                json.dumps({"status": status, "body": text}),
            )

    return Handler
