"""`vpce-approver local [--port N]`: the emulator + vpce-approver as a local server."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vpce_tools.cli import UsageError


def register(subs: Any) -> None:
    p: argparse.ArgumentParser = subs.add_parser(
        "local", help="run the emulator and the service on 127.0.0.1 (Ctrl-C stops)"
    )
    p.add_argument("--port", type=int, default=4566, help="port to listen on (0 = any free port)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port} is not a TCP port (0..65535)")
    from vpce_tools.local import serve

    return serve(args.port, sys.stdout)
