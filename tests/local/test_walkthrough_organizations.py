"""The README's Organizations walkthrough, run as written: its shell blocks in two bash shells
(provider, consumer) with the real AWS CLI against `vpce-approver local`. A brand-new account in
a granted OU connects and is accepted with no registry edit for it; moved out, it is off the
allow-list and cannot connect again. Skipped when the AWS CLI is not installed."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from vpce_tools import local
from vpce_tools.emulator.testing import fake_credentials
from vpce_tools.local_events import EventLog

README = Path(__file__).parents[2] / "README.md"
SECTION = "### An OU grant onboards a brand-new account"
END = "__block_done__"


def section() -> str:
    text = README.read_text()
    return text[text.index(SECTION) :].split("\n## ", 1)[0]


def blocks(text: str) -> list[tuple[str, str]]:
    """(shell, code) of each ```sh block: the shell the prose last named before it."""
    out = []
    for m in re.finditer(r"```sh\n(.*?)```", text, re.DOTALL):
        before = text[: m.start()]
        shell = max(("provider", "consumer"), key=lambda s: before.rfind(f"**{s}**"))
        out.append((shell, m.group(1)))
    return out


class Shell:
    """A bash reading blocks from stdin, as a person pastes them; reports failing commands."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            ["bash", "--norc", "--noprofile"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
        )
        self.run("trap 'echo __failed__: $BASH_COMMAND' ERR")

    def run(self, code: str) -> str:
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self.proc.stdin.write(f"{code}\necho {END}\n")
        self.proc.stdin.flush()
        lines = []
        for line in self.proc.stdout:
            if line.strip() == END:
                return "".join(lines)
            lines.append(line)
        raise AssertionError("bash ended: " + "".join(lines))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def wait_for(predicate: Callable[[], object], attempts: int = 1200) -> bool:
    for _ in range(attempts):  # bounded (60 s): a hang guard, not a speed check; the AWS CLI
        # and the sweeps share 2 cores with the rest of a parallel run
        if predicate():
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def server() -> Iterator[tuple[local.LocalService, io.StringIO]]:
    out = io.StringIO()
    with fake_credentials():
        running = local.start(0, poll_interval=0.05, events=EventLog(out))
        try:
            yield running, out
        finally:
            running.stop()


def test_the_blocks_alternate_between_the_two_named_shells() -> None:
    assert [shell for shell, _ in blocks(section())] == ["provider", "consumer", "provider"]


@pytest.mark.skipif(shutil.which("aws") is None, reason="the AWS CLI is not installed")
def test_the_readme_organizations_walkthrough_works_as_written(
    server: tuple[local.LocalService, io.StringIO],
) -> None:
    running, out = server
    base = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    base |= {
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "AWS_ENDPOINT_URL": running.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "svc": running.service.service_id,  # what the walkthrough's first blocks set
    }
    (_, grant), (_, connect), (_, move_out) = blocks(section())
    provider, consumer = Shell(base), Shell(base)
    try:
        said = provider.run(grant)
        assert "__failed__" not in said, said
        acct = said.strip().splitlines()[-1]
        assert re.fullmatch(r"\d{12}", acct), said
        assert "123456789012" in said  # describe-organization: the provider is the management
        principal = f"arn:aws:iam::{acct}:root"
        assert wait_for(lambda: principal in out.getvalue()), out.getvalue()
        assert f"{acct} joined" in out.getvalue(), out.getvalue()

        code = re.sub(r"^acct=….*$", f"acct={acct}", connect, flags=re.MULTILINE)
        said = consumer.run(code)
        assert "__failed__" not in said, said
        vpce = re.search(r"vpce-[0-9a-f]+", said)
        assert vpce, said

        def decided() -> list[str]:
            return [
                x for x in out.getvalue().splitlines() if vpce.group(0) in x and "decision" in x
            ]

        assert wait_for(decided), out.getvalue()
        [decision] = decided()
        assert "accept [allowed]" in decision
        assert "allowed by grant vpce-svc-" in decision
        assert "(path o-" in decision

        moves = out.getvalue().count(f"{acct} moved")  # 1 if a sweep ran between create and move
        said = provider.run(move_out)
        assert "__failed__" not in said, said
        assert wait_for(lambda: out.getvalue().count(f"{acct} moved") > moves), out.getvalue()
        assert wait_for(lambda: _removed(out, principal)), out.getvalue()

        again = connect[connect.index("aws ec2 create-vpc-endpoint") :]
        said = consumer.run(again)
        assert "InvalidServiceName" in said, said
        state = consumer.run(
            f"aws ec2 describe-vpc-endpoints --vpc-endpoint-ids {vpce.group(0)}"
            " --query 'VpcEndpoints[0].State' --output text"
        )
        assert state.strip() == "available"
    finally:
        provider.close()
        consumer.close()


def _removed(out: io.StringIO, principal: str) -> bool:
    return any(
        "allow-list" in line and "removed" in line and principal in line
        for line in out.getvalue().splitlines()
    )
