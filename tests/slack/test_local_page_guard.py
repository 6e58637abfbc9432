"""The local stand-in's click endpoint signs on behalf of any user: raw HTTP requests show that only
the page itself can use it (per-start token, same origin, JSON, loopback Host), so another web
page open in the same browser cannot approve by a cross-site POST, nor read the token."""

from __future__ import annotations

import http.client
import json
import re

import pytest
from slack_fixtures import APPROVER, escalate, local_fixture, message, state  # noqa: F401

from vpce_tools.emulator.world import Consumer, EndpointService, Provider
from vpce_tools.slack_local import LocalSlack


def raw(
    local: LocalSlack,
    method: str,
    path: str,
    headers: dict[str, str],
    body: bytes = b"",
    *,
    host: str | None = None,
) -> tuple[int, str]:
    """One request with exactly these headers (Host too: http.client's default is skipped)."""
    conn = http.client.HTTPConnection("127.0.0.1", local.fake.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", host or f"127.0.0.1:{local.fake.port}")
        for key, value in headers.items():
            conn.putheader(key, value)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        response = conn.getresponse()
        return response.status, response.read().decode()
    finally:
        conn.close()


def page_token(local: LocalSlack) -> str:
    status, page = raw(local, "GET", "/", {})
    assert status == 200
    found = re.search(r'<meta name="ui-token" content="([^"]+)">', page)
    assert found is not None
    return found.group(1)


def click_body(local: LocalSlack, vpce: str) -> bytes:
    msg = message(local, vpce)
    return json.dumps(
        {"channel": msg.channel, "ts": msg.ts, "action_id": "approve", "user": APPROVER}
    ).encode()


def same_origin(local: LocalSlack, token: str) -> dict[str, str]:
    """What the page's fetch() sends."""
    return {
        "Content-Type": "application/json",
        "Origin": f"http://127.0.0.1:{local.fake.port}",
        "Sec-Fetch-Site": "same-origin",
        "X-UI-Token": token,
    }


FORGERIES = [
    ("no token", {"X-UI-Token": None}),
    ("wrong token", {"X-UI-Token": "guessed"}),
    ("cross-origin Origin", {"Origin": "https://evil.example"}),
    ("null Origin (sandboxed frame)", {"Origin": "null"}),
    ("cross-site fetch", {"Sec-Fetch-Site": "cross-site"}),
    ("same-site fetch from another port", {"Sec-Fetch-Site": "same-site"}),
    ("simple form post", {"Content-Type": "application/x-www-form-urlencoded"}),
    ("text/plain (no preflight)", {"Content-Type": "text/plain"}),
]


@pytest.mark.parametrize(("case", "change"), FORGERIES, ids=[f[0] for f in FORGERIES])
def test_a_forged_click_is_refused_and_nothing_happens(
    local: LocalSlack,
    service: EndpointService,
    consumer: Consumer,
    provider: Provider,
    case: str,
    change: dict[str, str | None],
) -> None:
    vpce = escalate(local, service, consumer)
    headers = {**same_origin(local, page_token(local)), **change}
    sent = {k: v for k, v in headers.items() if v is not None}
    status, _ = raw(local, "POST", "/_ui/click", sent, click_body(local, vpce))
    assert status == 403
    assert state(provider, vpce) == "pendingAcceptance"
    assert local.fake.last_interaction is None  # nothing was signed


def test_dns_rebinding_can_neither_read_the_token_nor_click(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = escalate(local, service, consumer)
    rebound = f"evil.example:{local.fake.port}"
    status, page = raw(local, "GET", "/", {}, host=rebound)
    assert status == 403
    assert local.fake.ui_token not in page
    headers = {**same_origin(local, local.fake.ui_token), "Origin": f"http://{rebound}"}
    status, _ = raw(local, "POST", "/_ui/click", headers, click_body(local, vpce), host=rebound)
    assert status == 403
    assert state(provider, vpce) == "pendingAcceptance"


def test_the_page_itself_can_click_and_each_start_has_its_own_token(
    local: LocalSlack, service: EndpointService, consumer: Consumer, provider: Provider
) -> None:
    vpce = escalate(local, service, consumer)
    token = page_token(local)
    status, body = raw(
        local, "POST", "/_ui/click", same_origin(local, token), click_body(local, vpce)
    )
    assert status == 200
    assert json.loads(body)["status"] == 200
    assert state(provider, vpce) == "available"
    # localhost works as well as 127.0.0.1, and a client that sends no Origin (curl) with the
    # token is the page's own user
    other = escalate(local, service, provider.consumer("222222222222"))
    headers = {"Content-Type": "application/json", "X-UI-Token": token}
    host = f"localhost:{local.fake.port}"
    status, _ = raw(local, "POST", "/_ui/click", headers, click_body(local, other), host=host)
    assert status == 200
    assert state(provider, other) == "available"
    from vpce_tools.fake_slack import FakeSlack

    with FakeSlack() as another:
        assert another.ui_token != token
