"""`vpce-approver local` as an operator meets it: a busy port, --help, the event lines, and
`doctor` on the sample service."""

from __future__ import annotations

import io
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from vpce_approver.model import Grant, GrantStatus
from vpce_tools import local
from vpce_tools.cli import main
from vpce_tools.emulator.testing import fake_credentials
from vpce_tools.emulator.world import Provider
from vpce_tools.local_events import EventLog

CONSUMER = "111111111111"


def wait_for(predicate: object, attempts: int = 300) -> bool:
    for _ in range(attempts):  # bounded: 300 x 50 ms
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def busy_port() -> Iterator[int]:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1)
    try:
        yield int(sock.getsockname()[1])
    finally:
        sock.close()


def run_cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | (env or {})
    return subprocess.run(
        [sys.executable, "-m", "vpce_tools.cli", *argv],
        capture_output=True,
        text=True,
        timeout=60,  # catches the old hang; not a speed check
        check=False,
        env=env,
    )


@pytest.mark.parametrize("flag", ["--port", "--slack-port"])
def test_a_busy_port_is_one_line_and_an_exit(busy_port: int, flag: str) -> None:
    other = "--slack-port" if flag == "--port" else "--port"
    result = run_cli("local", flag, str(busy_port), other, "0")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"vpce-approver: error: {'emulator' if flag == '--port' else 'Slack stand-in'} port"
        f" {busy_port} on 127.0.0.1 is in use: pick another ({flag} N, 0 = any free port)"
    ]


def test_local_help_shows_the_defaults() -> None:
    result = run_cli("local", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    assert "--port PORT emulator port (0 = any free port) (default: 4566)" in text
    slack = "--slack-port SLACK_PORT Slack stand-in page port (0 = any free port) (default: 4567)"
    assert slack in text
    assert "(default: 60.0)" in text


@pytest.fixture
def watched() -> Iterator[tuple[local.LocalService, io.StringIO]]:
    out = io.StringIO()
    with fake_credentials():
        service = local.start(0, poll_interval=0.05, events=EventLog(out))
        try:
            yield service, out
        finally:
            service.stop()


def _click_approve(slack_url: str, vpce: str) -> None:
    state = json.loads(urllib.request.urlopen(f"{slack_url}/_ui/state", timeout=5).read())
    assert state  # the page's state endpoint answers
    page = urllib.request.urlopen(slack_url, timeout=5).read().decode()
    assert vpce in page
    ts = page.split('data-action="approve"')[0].rsplit('data-ts="', 1)[1].split('"', 1)[0]
    body = json.dumps(
        {"channel": "C0VPCEAPPROVALS", "ts": ts, "action_id": "approve", "user": "U0APPROVER"}
    ).encode()
    # The click endpoint serves its own page only: send the per-start token the page carries.
    token = page.split('<meta name="ui-token" content="', 1)[1].split('"', 1)[0]
    request = urllib.request.Request(
        f"{slack_url}/_ui/click", body, {"Content-Type": "application/json", "X-UI-Token": token}
    )
    assert json.loads(urllib.request.urlopen(request, timeout=30).read())["status"] == 200


def test_the_terminal_shows_one_line_per_event(
    watched: tuple[local.LocalService, io.StringIO],
) -> None:
    running, out = watched
    provider = Provider(endpoint_url=running.url)
    svc = running.service
    running.deployment.deps().registry.put(
        Grant(
            svc.service_id,
            CONSUMER,
            GrantStatus.ALLOW,
            principals=(f"arn:aws:iam::{CONSUMER}:root",),
            max_endpoints=1,
        ),
        by="alice",
        now=datetime.now(UTC),
    )
    consumer = provider.consumer(CONSUMER)

    def lines(kind: str) -> list[str]:
        return [line for line in out.getvalue().splitlines() if line[9:].startswith(kind)]

    assert wait_for(lambda: any(svc.service_id in x for x in lines("allow-list"))), out.getvalue()
    first = consumer.create_endpoint(svc.service_name)
    assert wait_for(lambda: any(first in x for x in lines("decision"))), out.getvalue()
    second = consumer.create_endpoint(svc.service_name)
    assert wait_for(lambda: any(second in line for line in lines("escalation"))), out.getvalue()
    _click_approve(running.slack_url, second)
    assert wait_for(lambda: lines("slack")), out.getvalue()
    running.sweep()

    added = f"added {svc.service_id}/{CONSUMER} by registry:alice"
    assert any(added in x for x in lines("registry"))
    assert any(f"arn:aws:iam::{CONSUMER}:root" in x for x in lines("allow-list"))
    assert any(f"Connect: {first} on {svc.service_id}" in x for x in lines("notified"))
    [accepted] = [x for x in lines("decision") if first in x]
    assert "accept [allowed] -> requested via " in accepted  # the notification or the stream
    assert f"account {CONSUMER} is allowed by grant {svc.service_id}/{CONSUMER}" in accepted
    # the call's answer is its own line, not a second decision
    assert any(f"{first} ({CONSUMER}): accept -> done" in x for x in lines("result"))
    [escalated] = [x for x in lines("decision") if second in x]
    assert "escalate [over-limit]" in escalated
    assert "grant" in escalated
    assert "allows 1" in escalated
    assert any(f"{second}: posted to Slack" in x for x in lines("escalation"))
    assert any(f"slack:U0APPROVER clicked: accept {second}" in x for x in lines("slack"))
    [sweep] = lines("sweep")  # the emulator is shared by the tests: count from this one on
    assert re.search(
        r" sweep       \d+ service\(s\), \d+ connection\(s\) read, \d+ pending: \d+ accepted,"
        r" \d+ rejected, \d+ escalated, \d+ drift",
        sweep,
    ), sweep
    for line in out.getvalue().splitlines():
        assert line[:8].count(":") == 2, line  # HH:MM:SS kind text
        assert line[8] == " ", line
        for python_repr in ("True", "None", "{"):
            assert python_repr not in line, line


def test_doctor_passes_on_the_sample_service(
    watched: tuple[local.LocalService, io.StringIO],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    running, _ = watched
    monkeypatch.delenv("COLUMNS", raising=False)
    code = main(["--endpoint-url", running.url, "doctor", running.service.service_id])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.splitlines()[-1] == "8 checks: 8 ok, 0 warn, 0 fail"
    for line in out.splitlines():
        assert len(line) <= 100, line


def test_banner_says_how_to_call_everything_one_way(
    watched: tuple[local.LocalService, io.StringIO],
) -> None:
    running, _ = watched
    out = io.StringIO()
    local.banner(running, out)
    text = out.getvalue()
    assert "AWS CLI v2.13+ or v1.29+" in text
    assert f"export AWS_ENDPOINT_URL={running.url} " in text
    assert "provider shell:" in text
    assert "consumer shell" in text
    assert "allow-list empty" in text
    calls = [line.split("vpce-approver ", 1)[0] for line in text.splitlines() if "try:" in line]
    assert calls
    assert set(calls) == {"  try:  "}
    assert ".venv/bin/" not in text


def test_a_cli_error_in_the_wrong_account_names_the_account_and_region(
    watched: tuple[local.LocalService, io.StringIO],
) -> None:
    """The consumer's shell by mistake: the error says where the CLI looked."""
    running, _ = watched
    creds = Provider(endpoint_url=running.url).consumer(CONSUMER).session.get_credentials()
    env = {
        "AWS_ENDPOINT_URL": running.url,
        "AWS_ACCESS_KEY_ID": creds.access_key,
        "AWS_SECRET_ACCESS_KEY": creds.secret_key,
        "AWS_SESSION_TOKEN": creds.token,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for argv in (
        ("pending",),
        ("doctor", running.service.service_id),
        ("explain", "vpce-0a1b2c3d4e5f60718"),
    ):
        result = run_cli(*argv, env=env)
        assert result.returncode == 2, result.stderr
        assert f"account {CONSUMER}, region us-east-1" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_the_readme_walkthrough_calls_the_cli_one_way_and_every_call_parses() -> None:
    from pathlib import Path

    from vpce_tools.cli import parser

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## Run it locally", 1)[1].split("\n## ", 1)[0]
    assert "AWS CLI" in section
    assert "v2.13+ or v1.29+" in section
    assert "**provider** shell" in section
    assert "**consumer** shell" in section
    assert ".venv/bin/vpce-approver" not in section
    code = "\n".join(block.split("```", 1)[0] for block in section.split("```sh\n")[1:])
    calls = [
        line.split("#", 1)[0].split()
        for line in code.splitlines()
        if line.lstrip().startswith("vpce-approver ")
    ]
    assert len(calls) >= 6
    for argv in calls:
        argv = [a.replace("$svc", "vpce-svc-0123456789abcdef0") for a in argv]
        argv = [a.replace("vpce-…", "vpce-0a1b2c3d4e5f60718") for a in argv]
        parser().parse_args(argv[1:])  # exits (SystemExit) on a call that does not parse
