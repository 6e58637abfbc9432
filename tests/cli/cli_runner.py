"""Run the CLI in-process and capture what it prints (shared by the CLI tests).

Import `cli_fixture` into a test module to get the `cli` fixture."""

from __future__ import annotations

import pytest

from vpce_tools.cli import main
from vpce_tools.stack import LocalDeployment


class Cli:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = main(list(argv))
        out, err = self.capsys.readouterr()
        return code, out, err


@pytest.fixture(name="cli")
def cli_fixture(
    deployment: LocalDeployment,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Cli:
    monkeypatch.delenv("COLUMNS", raising=False)  # tables: 100 characters, as in a pipe
    return Cli(capsys)
