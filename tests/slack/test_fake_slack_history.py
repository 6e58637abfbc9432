"""The fake Slack's conversations.history and message metadata, through slack_sdk's WebClient (what
the port's history search relies on)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from vpce_tools.fake_slack import FakeSlack

CHANNEL = "C0HISTORY"
METADATA = {"event_type": "vpce_escalation", "event_payload": {"vpc_endpoint_id": "vpce-1"}}


@pytest.fixture
def fake() -> Iterator[FakeSlack]:
    with FakeSlack() as slack:
        yield slack


@pytest.fixture
def client(fake: FakeSlack) -> WebClient:
    return WebClient(token=fake.token, base_url=fake.api_url, timeout=5)


def post(client: WebClient, n: int) -> list[str]:
    return [str(client.chat_postMessage(channel=CHANNEL, text=f"m{i}")["ts"]) for i in range(n)]


def test_history_is_newest_first_and_paged_with_a_cursor(client: WebClient) -> None:
    stamps = post(client, 5)
    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = client.conversations_history(channel=CHANNEL, limit=2, cursor=cursor)
        pages += 1
        seen += [m["ts"] for m in page["messages"]]
        cursor = page["response_metadata"]["next_cursor"] or None
        assert page["has_more"] is (cursor is not None)
        if cursor is None:
            break
    assert pages == 3
    assert seen == list(reversed(stamps))


def test_history_bounds_oldest_latest_inclusive(client: WebClient) -> None:
    a, b, c, d = post(client, 4)
    between = client.conversations_history(channel=CHANNEL, oldest=a, latest=d)
    assert [m["ts"] for m in between["messages"]] == [c, b]
    inclusive = client.conversations_history(channel=CHANNEL, oldest=a, latest=d, inclusive=True)
    assert [m["ts"] for m in inclusive["messages"]] == [d, c, b, a]
    assert client.conversations_history(channel="C0EMPTY")["messages"] == []


def test_metadata_is_stored_and_returned_only_when_asked(
    fake: FakeSlack, client: WebClient
) -> None:
    ts = client.chat_postMessage(channel=CHANNEL, text="x", metadata=METADATA)["ts"]
    assert fake.messages[(CHANNEL, ts)].metadata == METADATA
    [plain] = client.conversations_history(channel=CHANNEL)["messages"]
    assert "metadata" not in plain
    [full] = client.conversations_history(channel=CHANNEL, include_all_metadata=True)["messages"]
    assert full["metadata"] == METADATA
    assert (full["user"], full["bot_id"]) == ("U0BOT", "B0BOT")


def test_bad_metadata_and_cursor_are_refused(client: WebClient) -> None:
    with pytest.raises(SlackApiError) as bad_metadata:
        client.chat_postMessage(channel=CHANNEL, text="x", metadata={"event_type": "x"})
    assert bad_metadata.value.response["error"] == "invalid_metadata_format"
    with pytest.raises(SlackApiError) as bad_cursor:
        client.conversations_history(channel=CHANNEL, cursor="not-a-cursor")
    assert bad_cursor.value.response["error"] == "invalid_cursor"


def test_response_lost_takes_effect_but_the_client_times_out(
    fake: FakeSlack, client: WebClient
) -> None:
    fake.fail("response_lost", method="chat.postMessage", delay=0.6)
    quick = WebClient(token=fake.token, base_url=fake.api_url, timeout=0.2)  # type: ignore[arg-type]
    with pytest.raises(TimeoutError):
        quick.chat_postMessage(channel=CHANNEL, text="lost")
    assert [m.text for m in fake.channel_messages(CHANNEL)] == ["lost"]
    assert [c.error for c in fake.calls_to("chat.postMessage")] == ["response_lost"]


def test_missing_scope_mode(fake: FakeSlack, client: WebClient) -> None:
    fake.fail("missing_scope", method="conversations.history")
    with pytest.raises(SlackApiError) as exc:
        client.conversations_history(channel=CHANNEL)
    assert exc.value.response["error"] == "missing_scope"
    assert "channels:history" in exc.value.response["needed"]
