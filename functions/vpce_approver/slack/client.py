"""The Slack Web API, as vpce-approver uses it: slack_sdk's WebClient with retries on 5xx, timeouts
and 429 (honouring Retry-After; chat.postMessage only on 429 and requests never sent, since a
repeated post is a second message), a bot token read from Secrets Manager through Powertools
Parameters (cached for minutes, refreshed on invalid_auth), and one error type for callers.

Secrets and tokens never reach a log or an error message."""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.client import RemoteDisconnected
from typing import TYPE_CHECKING, Any, cast
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.http_retry.builtin_interval_calculators import BackoffRetryIntervalCalculator
from slack_sdk.http_retry.handler import RetryHandler
from slack_sdk.http_retry.request import HttpRequest
from slack_sdk.http_retry.response import HttpResponse
from slack_sdk.http_retry.state import RetryState

from ..config import Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

log = logging.getLogger("vpce_approver.slack")

SECRET_MAX_AGE = 300  # seconds; Powertools' default cache is only 5 s
DEFAULT_API_URL = "https://slack.com/api/"


class SlackError(Exception):
    """A Slack call that failed after its retries. `code` is Slack's error code (invalid_auth,
    ratelimited, channel_not_found...) or http_<status> / timeout / connection."""

    def __init__(self, method: str, code: str) -> None:
        super().__init__(f"{method}: {code}")
        self.method = method
        self.code = code


class SlackConfigError(SlackError):
    """A missing or empty secret / setting: nothing can be sent until it is fixed."""


def ambiguous(code: str) -> bool:
    """A failure after the request may have reached Slack: the call may or may not have taken
    effect (a timeout, a dropped connection, a 5xx). A Slack error code, a 429 or `unreachable`
    (connection refused, DNS) means it did not."""
    return code in {"timeout", "connection"} or code.startswith("http_5")


def not_sent(exc: BaseException | None) -> bool:
    """Errors raised before any byte of the request left: retrying cannot duplicate anything."""
    reason = exc.reason if isinstance(exc, URLError) else None
    return isinstance(reason, (ConnectionRefusedError, socket.gaierror))


@dataclass(frozen=True)
class ClientConfig:
    timeout: float = 5.0  # seconds per attempt (connect + read)
    max_retries: int = 2  # per kind of failure (5xx, connection/timeout, 429)
    backoff: float = 0.5  # seconds, doubled per retry (with jitter) for 5xx and timeouts
    max_retry_after: float = 10.0  # a longer Retry-After is not waited for: we give up instead


class RetryAfterHandler(RateLimitErrorRetryHandler):
    """429: wait exactly what Retry-After says, unless that is longer than `max_wait` (a Lambda
    must not sleep through its timeout): then give up and let the caller retry later."""

    def __init__(
        self,
        max_retry_count: int,
        max_wait: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(max_retry_count=max_retry_count)
        self.max_wait = max_wait
        self.sleep = sleep

    @staticmethod
    def retry_after(response: HttpResponse | None) -> float | None:
        if response is None:
            return None
        for key, values in response.headers.items():
            if key.lower() == "retry-after" and values:
                try:
                    return max(float(values[0]), 0.0)
                except ValueError:
                    return None
        return None

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        if response is None or response.status_code != 429:
            return False
        wait = self.retry_after(response)
        return wait is None or wait <= self.max_wait

    def prepare_for_next_attempt(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> None:
        wait = self.retry_after(response)
        state.next_attempt_requested = True
        self.sleep(1.0 if wait is None else wait)
        state.increment_current_attempt()


class NotSentRetryHandler(ConnectionErrorRetryHandler):
    """Connection errors that prove the request was never sent (see `not_sent`)."""

    def _can_retry(
        self,
        *,
        state: RetryState,
        request: HttpRequest,
        response: HttpResponse | None = None,
        error: Exception | None = None,
    ) -> bool:
        return not_sent(error)


def post_retry_handlers(config: ClientConfig) -> list[RetryHandler]:
    """For chat.postMessage, which has no idempotency key: retry only what cannot have posted
    (429, a request never sent). A timeout or 5xx is left to the caller, which looks for the
    message in the channel history before posting again (SlackPort)."""
    interval = BackoffRetryIntervalCalculator(backoff_factor=config.backoff)
    return [
        NotSentRetryHandler(max_retry_count=config.max_retries, interval_calculator=interval),
        RetryAfterHandler(max_retry_count=config.max_retries, max_wait=config.max_retry_after),
    ]


def retry_handlers(config: ClientConfig) -> list[RetryHandler]:
    interval = BackoffRetryIntervalCalculator(backoff_factor=config.backoff)
    return [
        ConnectionErrorRetryHandler(
            max_retry_count=config.max_retries,
            interval_calculator=interval,
            # TimeoutError: a read timeout surfaces as socket.timeout, not URLError.
            error_types=[URLError, ConnectionResetError, RemoteDisconnected, TimeoutError],
        ),
        ServerErrorRetryHandler(max_retry_count=config.max_retries, interval_calculator=interval),
        RetryAfterHandler(max_retry_count=config.max_retries, max_wait=config.max_retry_after),
    ]


class SecretSource:
    """Secrets Manager values through Powertools Parameters, cached for SECRET_MAX_AGE."""

    def __init__(self, settings: Settings, provider: SecretsProvider | None = None) -> None:
        self.settings = settings
        self._provider = provider

    @property
    def provider(self) -> SecretsProvider:
        if self._provider is None:
            import boto3
            from aws_lambda_powertools.utilities.parameters import SecretsProvider

            kwargs: dict[str, Any] = {"region_name": self.settings.region}
            if self.settings.endpoint_url:
                kwargs["endpoint_url"] = self.settings.endpoint_url
            self._provider = SecretsProvider(boto3_client=boto3.client("secretsmanager", **kwargs))
        return self._provider

    def get(self, name: str | None, *, what: str, force: bool = False) -> str:
        if not name:
            raise SlackConfigError("secrets", f"{what} secret is not configured")
        try:
            value = self.provider.get(name, max_age=SECRET_MAX_AGE, force_fetch=force)
        except Exception as exc:  # GetParameterError wraps every SDK error
            log.error("cannot read the %s secret %s: %s", what, name, type(exc).__name__)
            raise SlackConfigError("secrets", f"cannot read the {what} secret") from exc
        if isinstance(value, bytes):
            value = value.decode("utf-8")
        if not isinstance(value, str) or not value.strip():
            raise SlackConfigError("secrets", f"the {what} secret is empty")
        return value.strip()

    def bot_token(self, *, force: bool = False) -> str:
        return self.get(self.settings.slack_bot_token_secret, what="bot token", force=force)

    def signing_secret(self, force: bool = False) -> str:
        """`force`: read Secrets Manager again (secret_refresh: at most once a minute)."""
        return self.get(
            self.settings.slack_signing_secret_secret, what="signing secret", force=force
        )


@dataclass(frozen=True)
class Posted:
    channel: str  # the channel ID Slack answered with (a name in settings becomes an ID)
    ts: str


@dataclass(frozen=True)
class BotIdentity:
    user_id: str
    bot_id: str

    def wrote(self, message: Any) -> bool:
        """True when a conversations.history message was posted by this bot."""
        if not isinstance(message, dict):
            return False
        if message.get("bot_id"):
            return bool(self.bot_id) and message.get("bot_id") == self.bot_id
        return bool(self.user_id) and message.get("user") == self.user_id


@dataclass(frozen=True)
class HistoryPage:
    messages: list[dict[str, Any]]
    next_cursor: str | None


class SlackApi:
    """The Web API methods we call. Every failure (after retries) is a SlackError."""

    def __init__(
        self,
        token: Callable[..., str],
        *,
        base_url: str | None = None,
        config: ClientConfig | None = None,
    ) -> None:
        self._token = token
        self.base_url = base_url or DEFAULT_API_URL
        self.config = config or ClientConfig()
        self._clients: dict[bool, WebClient] = {}
        self._client_token: str | None = None
        self._identity: BotIdentity | None = None

    @classmethod
    def from_settings(
        cls, settings: Settings, secrets: SecretSource, config: ClientConfig | None = None
    ) -> SlackApi:
        return cls(secrets.bot_token, base_url=settings.slack_api_url, config=config)

    def client(self, *, refresh: bool = False, posting: bool = False) -> WebClient:
        """The WebClient for the current token; `posting`: the one whose retries cannot
        duplicate a message (post_retry_handlers)."""
        token = self._token(force=True) if refresh else self._token()
        if token != self._client_token:
            self._clients.clear()
            self._identity = None
            self._client_token = token
        if posting not in self._clients:
            handlers = post_retry_handlers if posting else retry_handlers
            self._clients[posting] = WebClient(
                token=token,
                base_url=self.base_url,
                timeout=cast(int, self.config.timeout),  # urllib takes float seconds
                retry_handlers=handlers(self.config),
            )
        return self._clients[posting]

    def _call(self, method: str, call: Callable[[WebClient], Any], *, posting: bool = False) -> Any:
        for attempt in (1, 2):
            try:
                return call(self.client(refresh=attempt == 2, posting=posting))
            except SlackApiError as exc:
                status = exc.response.status_code
                data = exc.response.data
                code = data.get("error") if isinstance(data, dict) else None
                code = str(code) if code and status == 200 else f"http_{status}"
                if status == 429:
                    code = "ratelimited"
                if code in {"invalid_auth", "token_revoked", "token_expired"} and attempt == 1:
                    # The secret may have been rotated: read it again, once.
                    log.warning("slack %s answered %s: re-reading the bot token", method, code)
                    continue
                raise SlackError(method, code) from exc
            except (TimeoutError, URLError, OSError) as exc:
                if not_sent(exc):
                    raise SlackError(method, "unreachable") from exc
                timed_out = isinstance(exc, TimeoutError) or "timed out" in str(exc)
                raise SlackError(method, "timeout" if timed_out else "connection") from exc
        raise SlackError(method, "invalid_auth")  # pragma: no cover - loop always returns/raises

    def post_message(
        self,
        channel: str,
        text: str,
        blocks: Sequence[Any],
        *,
        metadata: dict[str, Any] | None = None,
    ) -> Posted:
        """chat.postMessage. Not retried on timeouts or 5xx (see post_retry_handlers): a
        SlackError whose code is `ambiguous` may hide a message that was posted."""
        response = self._call(
            "chat.postMessage",
            lambda c: c.chat_postMessage(
                channel=channel, text=text, blocks=blocks, unfurl_links=False, metadata=metadata
            ),
            posting=True,
        )
        return Posted(channel=str(response.get("channel") or channel), ts=str(response["ts"]))

    def bot_identity(self) -> BotIdentity:
        """Who we post as (auth.test), cached until the token changes."""
        if self._identity is None:
            response = self._call("auth.test", lambda c: c.auth_test())
            self._identity = BotIdentity(
                user_id=str(response.get("user_id") or ""), bot_id=str(response.get("bot_id") or "")
            )
        return self._identity

    def history(
        self, channel: str, *, oldest: str, limit: int, cursor: str | None = None
    ) -> HistoryPage:
        """One page of conversations.history (newest first) with message metadata. Needs
        channels:history (groups:history for a private channel)."""
        response = self._call(
            "conversations.history",
            lambda c: c.conversations_history(
                channel=channel,
                oldest=oldest,
                limit=limit,
                cursor=cursor,
                include_all_metadata=True,
            ),
        )
        messages = [m for m in response.get("messages") or () if isinstance(m, dict)]
        meta = response.get("response_metadata") or {}
        next_cursor = meta.get("next_cursor") if isinstance(meta, dict) else None
        more = bool(response.get("has_more")) and bool(next_cursor)
        return HistoryPage(messages=messages, next_cursor=str(next_cursor) if more else None)

    def update_message(self, channel: str, ts: str, text: str, blocks: Sequence[Any]) -> None:
        self._call(
            "chat.update",
            lambda c: c.chat_update(channel=channel, ts=ts, text=text, blocks=blocks),
        )

    def post_ephemeral(self, channel: str, user: str, text: str) -> None:
        self._call(
            "chat.postEphemeral",
            lambda c: c.chat_postEphemeral(channel=channel, user=user, text=text),
        )

    def group_members(self, group_id: str) -> frozenset[str]:
        response = self._call(
            "usergroups.users.list", lambda c: c.usergroups_users_list(usergroup=group_id)
        )
        return frozenset(str(u) for u in response.get("users") or ())
