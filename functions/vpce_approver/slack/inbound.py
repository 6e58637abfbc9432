"""The raw interactivity request, screened before any secret is read or any signature computed.

The route is public: whatever reaches it is answered with a 4xx, never an exception (a 5xx is
alarm noise and, retried by nobody, only burns the route's throttle). slack_sdk's verifier takes
its inputs on trust (`int(timestamp)` on '¹²³' raises, a 500-digit timestamp overflows a float,
a non-ASCII signature makes hmac.compare_digest raise), so the headers are checked here against
what Slack really sends:

- X-Slack-Request-Timestamp: 1 to 12 ASCII digits (str.isdigit() also accepts superscript
  and Arabic-Indic digits);
- X-Slack-Signature: `v0=` and 64 lowercase hex digits (an HMAC-SHA256 hexdigest);
- Content-Type: application/x-www-form-urlencoded (Slack's interactivity payloads);
- a body, at most MAX_BODY_BYTES once decoded (checked on the encoded size first, so a huge
  body is never decoded), valid base64 when API Gateway says it encoded it, UTF-8 (the verifier
  decodes it, and raises on anything else).

Anything else is refused with the status of its kind: 401 (no usable signature), 415 (content
type), 413 (size), 400 (body).

With the optional WAF front (template.yaml SlackWebAclArn: CloudFront + AWS WAF, which cannot
attach to an HTTP API), CloudFront adds ORIGIN_HEADER with a per-stack value: requests without it
(straight to the execute-api URL, around the WAF) are refused first, with 403."""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_BODY_BYTES = 64 * 1024  # a block_actions payload of our message is ~4 KB
MAX_ENCODED_CHARS = (MAX_BODY_BYTES + 2) // 3 * 4  # the same bound on the base64 text
FORM = "application/x-www-form-urlencoded"
TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")  # [0-9], not \d: ASCII only
SIGNATURE_RE = re.compile(r"v0=[0-9a-f]{64}")
ORIGIN_HEADER = "x-origin-verify"


class Refused(Exception):
    """A request refused before its signature was verified."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Inbound:
    """A request whose inputs have the shape slack_sdk's verifier can take."""

    timestamp: str
    signature: str
    body: bytes  # the raw bytes Slack signed


def _headers(headers: Any) -> dict[str, str]:
    if not isinstance(headers, Mapping):
        return {}
    return {k.lower(): v for k, v in headers.items() if isinstance(k, str) and isinstance(v, str)}


def _content_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()


def screen(headers: Any, body: Any, is_base64: Any, *, origin_verify: str | None = None) -> Inbound:
    """The request's signed inputs, or Refused. `origin_verify`: the value the WAF front
    (CloudFront) adds as ORIGIN_HEADER; None when the route is not behind it."""
    lowered = _headers(headers)
    if origin_verify and not hmac.compare_digest(
        lowered.get(ORIGIN_HEADER, "").encode("utf-8", "replace"), origin_verify.encode()
    ):
        raise Refused(403, "use the published interactivity URL")
    timestamp = lowered.get("x-slack-request-timestamp", "").strip()
    signature = lowered.get("x-slack-signature", "").strip()
    if not TIMESTAMP_RE.fullmatch(timestamp) or not SIGNATURE_RE.fullmatch(signature):
        raise Refused(401, "invalid request signature")
    if _content_type(lowered.get("content-type")) != FORM:
        raise Refused(415, "expected application/x-www-form-urlencoded")
    if not isinstance(body, str) or not body:
        raise Refused(400, "no body")
    if len(body) > (MAX_ENCODED_CHARS if is_base64 else MAX_BODY_BYTES):
        raise Refused(413, "body too large")
    if is_base64:
        try:
            raw = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            raise Refused(400, "body is not valid base64") from None
    else:
        try:
            raw = body.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: no bytes Slack could have signed
            raise Refused(400, "body is not UTF-8") from None
    if len(raw) > MAX_BODY_BYTES:
        raise Refused(413, "body too large")
    try:
        raw.decode("utf-8")  # slack_sdk decodes it and raises; Slack's forms are UTF-8
    except UnicodeDecodeError:
        raise Refused(400, "body is not UTF-8") from None
    return Inbound(timestamp=timestamp, signature=signature, body=raw)
