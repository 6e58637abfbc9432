"""`vpce-approver local`: a real HTTP emulator with the service working inside it."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from vpce_approver.model import Grant, GrantStatus
from vpce_tools import local
from vpce_tools.cli import parser
from vpce_tools.emulator.testing import fake_credentials
from vpce_tools.emulator.world import Provider


@pytest.fixture
def running() -> Iterator[local.LocalService]:
    with fake_credentials():
        service = local.start(0, poll_interval=0.05)
        try:
            yield service
        finally:
            service.stop()


def wait_for(predicate: object, attempts: int = 200) -> bool:
    for _ in range(attempts):  # bounded: 200 x 50 ms
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


def allowed(provider: Provider, service_id: str) -> set[str]:
    permissions = provider.client("ec2").describe_vpc_endpoint_service_permissions(
        ServiceId=service_id
    )
    return {p["Principal"] for p in permissions["AllowedPrincipals"]}


def test_the_sample_service_starts_with_an_empty_allow_list_and_a_grant_opens_it(
    running: local.LocalService,
) -> None:
    """The README's story: nobody may connect until the registry adds the consumer's principal;
    then its endpoint is accepted without anyone clicking."""
    from botocore.exceptions import ClientError

    provider = Provider(endpoint_url=running.url)
    service = running.service
    assert allowed(provider, service.service_id) == set()
    consumer = provider.consumer("111111111111")
    with pytest.raises(ClientError):
        consumer.create_endpoint(service.service_name)
    running.deployment.deps().registry.put(
        Grant(
            service.service_id,
            "111111111111",
            GrantStatus.ALLOW,
            principals=("arn:aws:iam::111111111111:root",),
        ),
        by="test",
        now=datetime.now(UTC),
    )
    assert wait_for(
        lambda: allowed(provider, service.service_id) == {"arn:aws:iam::111111111111:root"}
    ), "the registry stream should put the consumer's principal on the allow-list"
    vpce = consumer.create_endpoint(service.service_name)

    def available() -> bool:
        conns = provider.connections(service.service_id)
        return any(
            c["VpcEndpointId"] == vpce and c["VpcEndpointState"] == "available" for c in conns
        )

    assert wait_for(available), "the background poller should have accepted the connection"


def test_a_grant_added_later_accepts_the_waiting_connection(running: local.LocalService) -> None:
    """`vpce-approver local` runs the registry stream too, as the deployed stack does."""
    provider = Provider(endpoint_url=running.url)
    provider.allow(running.service.service_id, "arn:aws:iam::333333333333:root")  # by hand
    vpce = provider.consumer("333333333333").create_endpoint(running.service.service_name)

    def state() -> str | None:
        conns = provider.connections(running.service.service_id)
        return next((c["VpcEndpointState"] for c in conns if c["VpcEndpointId"] == vpce), None)

    assert wait_for(lambda: running.deployment.deps().escalations.get(vpce) is not None)
    assert state() == "pendingAcceptance"
    running.deployment.deps().registry.put(
        Grant(running.service.service_id, "333333333333", GrantStatus.ALLOW),
        by="test",
        now=datetime.now(UTC),
    )
    assert wait_for(lambda: state() == "available"), "the registry stream should accept it"


def test_escalations_show_up_on_the_local_slack_page(running: local.LocalService) -> None:
    import urllib.request

    provider = Provider(endpoint_url=running.url)
    provider.allow(running.service.service_id, "arn:aws:iam::222222222222:root")  # by hand
    vpce = provider.consumer("222222222222").create_endpoint(running.service.service_name)

    def on_page() -> bool:
        with urllib.request.urlopen(running.slack_url, timeout=5) as page:
            return vpce in page.read().decode()

    assert wait_for(on_page), "the escalation should be posted to the local Slack page"


def test_banner_suggests_commands_that_parse(running: local.LocalService) -> None:
    out = io.StringIO()
    local.banner(running, out)
    suggested = [
        line.split("try:", 1)[1].split()
        for line in out.getvalue().splitlines()
        if "try:  vpce-approver " in line
    ]
    assert suggested
    for argv in suggested:
        args = parser().parse_args(argv[1:])  # exits (SystemExit) on a bad suggestion
        assert args.command == argv[1]


def test_cli_local_prints_where_it_listens_and_stops_on_ctrl_c() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "vpce_tools.cli", "local", "--port", "0", "--slack-port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    output: list[str] = []
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith("vpce-approver local: emulator on http://127.0.0.1:")
        for line in proc.stdout:
            if "Ctrl-C stops." in line:
                break
        # Keep reading: a child whose output pipe fills up blocks on its next print (Ctrl-C's
        # "stopping" included) and would look like a process that ignores Ctrl-C.
        reader = threading.Thread(target=lambda: output.extend(proc.stdout or ()), daemon=True)
        reader.start()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, "".join(output)[-4000:]
        reader.join(timeout=5)
        assert "stopping" in "".join(output)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_cli_local_rejects_bad_port() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vpce_tools.cli", "local", "--port", "70000"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "--port 70000 is not a TCP port" in result.stderr
