"""No secret or token ever reaches a log line: the Slack bot token, the signing secret and every
value stored in Secrets Manager are searched for in everything logged (caplog: our loggers at
DEBUG, libraries at INFO), in the JSON lines of Powertools' logger, and in stdout/stderr, across
the flows that handle them, failures included."""

from __future__ import annotations

import base64
import io
import logging
import time
from collections.abc import Iterator

import pytest

from reliability.conftest import Figures
from reliability.scenario import UNKNOWN
from vpce_approver.slack.client import ClientConfig
from vpce_approver.sweep import sweep
from vpce_tools import slack_local
from vpce_tools.emulator.world import EndpointService, Provider
from vpce_tools.fake_slack import sign
from vpce_tools.slack_local import LocalSlack
from vpce_tools.stack import LocalDeployment

FAST = ClientConfig(timeout=0.3, max_retries=1, backoff=0.01, max_retry_after=1)


@pytest.fixture
def local(deployment: LocalDeployment) -> Iterator[LocalSlack]:
    slack = slack_local.start(deployment, config=FAST)
    try:
        yield slack
    finally:
        slack.stop()


def stored_secrets(provider: Provider) -> list[str]:
    client = provider.client("secretsmanager")
    values = []
    for entry in client.list_secrets()["SecretList"]:
        value = client.get_secret_value(SecretId=entry["ARN"])["SecretString"]
        values.append(value)
    return values


def exercise(local: LocalSlack, provider: Provider, service: EndpointService) -> int:
    """Every path that reads or uses a secret, including the failing ones. Returns the number
    of steps run."""
    fake, deps = local.fake, local.deps()
    consumer = provider.consumer(UNKNOWN)
    steps = 0
    # 1. escalation posted (bot token read from Secrets Manager, sent to Slack)
    first = consumer.create_endpoint(service.service_name)
    local.deployment.poller(deps).drain()
    steps += 1
    # 2. the token is revoked: invalid_auth, re-read, still refused; then 5xx, then a timeout
    for mode in ("invalid_auth", "server_error", "timeout"):
        fake.fail(mode, method="chat.postMessage", times=10, delay=0.5)
        consumer.create_endpoint(service.service_name)
        local.deployment.poller(deps).drain()
        fake.clear_failures()
        steps += 1
    sweep(deps)  # posts the unposted
    steps += 1
    # 3. interactivity: a forged signature, a stale one, a valid approve, a replay
    message = fake.message_for(first)
    assert message is not None
    payload = fake.click_payload(message, "approve", user=slack_local.LOCAL_APPROVER)
    body, headers = fake.signed_request(payload)
    forged = dict(headers, **{"X-Slack-Signature": sign("guess", body, int(time.time()))})
    stale_body, stale = fake.signed_request(payload, timestamp=int(time.time()) - 900)
    for h, b in ((forged, body), (stale, stale_body), (headers, body), (headers, body)):
        local.interact(h, b)
        steps += 1
    # 4. Slack failing while the outcome is shown (chat.update), 429 included
    fake.fail("ratelimited", method="chat.update", times=10, retry_after=30)
    sweep(deps)
    fake.clear_failures()
    steps += 1
    return steps


def leaks(secrets: set[str], texts: dict[str, str]) -> list[tuple[str, str]]:
    """(where, first 4 characters) of every secret found, also base64-encoded or as a prefix."""
    needles = set(secrets)
    for secret in secrets:  # also encoded, and a long prefix (truncated or partial leaks)
        needles.add(base64.b64encode(secret.encode()).decode())
        needles.add(secret[:12])
    return [(where, n[:4] + "…") for where, text in texts.items() for n in needles if n in text]


@pytest.fixture
def powertools_json() -> Iterator[io.StringIO]:
    """What Powertools' JSON logger writes (its handler holds the stdout of import time, which
    pytest's capture cannot see): the same formatter, into a buffer, for the test."""
    from vpce_approver.observability import logger

    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(logger.registered_formatter)
    logger.addHandler(handler)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)


def captured(
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    powertools_json: io.StringIO,
) -> dict[str, str]:
    out, err = capfd.readouterr()
    records = "\n".join(f"{r.getMessage()} {r.__dict__} {r.exc_text or ''}" for r in caplog.records)
    return {
        "caplog": records,
        "powertools-json": powertools_json.getvalue(),
        "stdout": out,
        "stderr": err,
    }


def test_the_scan_finds_a_planted_secret(
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    powertools_json: io.StringIO,
) -> None:
    """The scan itself can fail: a token logged through either logger is found."""
    from vpce_approver.observability import logger

    caplog.set_level(logging.INFO)
    token = "xoxb-planted-0123456789-abcdefghij"
    logging.getLogger("vpce_approver.test").warning("oops %s", token)
    logger.info("oops", extra={"token": base64.b64encode(token.encode()).decode()})
    found = leaks({token}, captured(caplog, capfd, powertools_json))
    assert {where for where, _ in found} == {"caplog", "powertools-json"}


def test_no_secret_or_token_in_any_log(
    local: LocalSlack,
    provider: Provider,
    service: EndpointService,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
    powertools_json: io.StringIO,
    figures: Figures,
) -> None:
    caplog.set_level(logging.INFO)
    for name in ("vpce_approver", "vpce-approver", "vpce_tools"):
        caplog.set_level(logging.DEBUG, logger=name)
    steps = exercise(local, provider, service)
    secrets = {local.fake.token, local.fake.signing_secret, *stored_secrets(provider)}
    assert local.fake.token in secrets
    assert all(len(s) >= 16 for s in secrets)  # long enough that a match is no accident
    texts = captured(caplog, capfd, powertools_json)
    assert texts["powertools-json"]  # the handlers' JSON lines were seen
    assert len(caplog.records) > 10  # the flows really logged (warnings on every failure)
    found = leaks(secrets, texts)
    assert found == []
    lines = sum(len(t.splitlines()) for t in texts.values())
    figures.record(
        load=f"{steps} flows: posts, revoked token, 5xx, timeout, 429, forged/stale/valid/"
        "replayed clicks, sweeps",
        fault="secrets and tokens searched in all logs (caplog, Powertools JSON, stdout/stderr)",
        result=f"{len(secrets)} secrets (+ base64, prefixes) in {lines} log lines: 0 found",
        lost=0,
        wrong_accepts=0,
        leaks=len(found),
    )
