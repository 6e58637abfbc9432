"""`vpce-approver local`: the emulator + vpce-approver as a local server."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vpce_tools.cli import UsageError

DEFAULT_PORT = 4566
DEFAULT_SLACK_PORT = 4567
DEFAULT_SWEEP_EVERY = 60.0
DEFAULT_MEMBERSHIP_MAX_AGE = 5  # vpce_tools.local.MEMBERSHIP_MAX_AGE (not imported: heavy)


def register(subs: Any) -> None:
    p: argparse.ArgumentParser = subs.add_parser(
        "local",
        help="run the emulator and the service on 127.0.0.1 (Ctrl-C stops)",
        description="The emulator as an HTTP server on 127.0.0.1 with a vpce-approver deployment"
        " inside it (tables, notification topic and queue, an enrolled sample service with an"
        " empty allow-list, the registry stream, a scheduled sweep and a Slack stand-in page)."
        " OU/organization grants are on: the provider account is the management account of an"
        " organization made at start (--no-organization: of the one `aws organizations"
        " create-organization` makes against the emulator), an account-lifecycle call"
        " (create-account, move-account, close-account,"
        " remove-account-from-organization) starts a sweep at once, and a membership read is"
        " trusted only --membership-max-age seconds (deployed default: 300), so a new or moved"
        " account shows at once. Prints one line per event. Ctrl-C stops.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="emulator port (0 = any free port)"
    )
    p.add_argument(
        "--slack-port",
        type=int,
        default=DEFAULT_SLACK_PORT,
        help="Slack stand-in page port (0 = any free port)",
    )
    p.add_argument(
        "--sweep-every",
        type=float,
        default=DEFAULT_SWEEP_EVERY,
        metavar="SECONDS",
        help="run the sweep this often (0 = never)",
    )
    p.add_argument(
        "--membership-max-age",
        type=int,
        default=DEFAULT_MEMBERSHIP_MAX_AGE,
        metavar="SECONDS",
        help="trust a read of an account's place in the organization this long"
        " (MEMBERSHIP_MAX_AGE, 0..3600; short here for a snappy walkthrough)",
    )
    p.add_argument(
        "--no-organization",
        dest="organization",
        action="store_false",
        help="make no organization at start: `aws organizations create-organization` does;"
        " until then no account can be placed, so OU grants and Slack approvals fail closed"
        " (membership-unknown)",
    )
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    for flag, port in (("--port", args.port), ("--slack-port", args.slack_port)):
        if not 0 <= port <= 65535:
            raise UsageError(f"{flag} {port} is not a TCP port (0..65535)")
    if args.port and args.port == args.slack_port:
        raise UsageError("--port and --slack-port must differ")
    if args.sweep_every < 0:
        raise UsageError("--sweep-every must be 0 (never) or a number of seconds")
    if not 0 <= args.membership_max_age <= 3600:
        raise UsageError("--membership-max-age must be 0..3600 seconds")
    from vpce_tools.ports import PortInUse, ensure_free

    try:
        # Before the heavy imports: a busy port is one line and an exit within a second.
        ensure_free(args.port, "emulator")
        ensure_free(args.slack_port, "Slack stand-in")
        from vpce_tools.local import serve

        return serve(
            args.port,
            sys.stdout,
            slack_port=args.slack_port,
            sweep_every=args.sweep_every,
            membership_max_age=args.membership_max_age,
            organization=args.organization,
        )
    except PortInUse as exc:
        raise UsageError(str(exc)) from None
