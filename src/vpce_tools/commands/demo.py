"""`vpce-approver demo`: the main job end to end on the local emulator."""

from __future__ import annotations

import argparse
from typing import Any


def register(subs: Any) -> None:
    p: argparse.ArgumentParser = subs.add_parser(
        "demo", help="run the whole service on the local emulator and narrate what it decides"
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from vpce_tools import demo

    return demo.run()
