"""`vpce-approver`: the command line. Each command group lives in vpce_tools.commands.<name> and
exposes `register(subparsers)`; the chosen command's `run(args)` returns the exit code.

Works against real AWS (standard credentials, profile and region) and against the emulator
(`--endpoint-url` or AWS_ENDPOINT_URL)."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys
from collections.abc import Iterator, Mapping, Sequence

# Command modules, in help order.
COMMANDS = (
    "registry",
    "services",
    "explain",
    "pending",
    "audit",
    "doctor",
    "sweep",
    "local",
    "demo",
    "invoke",
)


class UsageError(Exception):
    """A bad argument or input: printed as one clear line, exit code 2."""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as dist_version

    try:
        return dist_version("vpce-approver")
    except PackageNotFoundError:
        return "unknown (not installed)"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="vpce-approver",
        description="Decide who may connect to your PrivateLink endpoint services.",
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {version()}")
    top.add_argument(
        "--endpoint-url", help="AWS endpoint (the local emulator); or AWS_ENDPOINT_URL"
    )
    top.add_argument("--region", help="AWS region (default: AWS_REGION / your profile)")
    top.add_argument(
        "--stack",
        default=os.environ.get("VPCE_APPROVER_STACK", "vpce-approver"),
        help="deployment (stack) name; tables default to <stack>-registry etc.",
    )
    subs = top.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"vpce_tools.commands.{name}").register(subs)
    return top


@contextlib.contextmanager
def environ(values: Mapping[str, str]) -> Iterator[None]:
    """os.environ with `values` set for the block, restored after it: the global options reach
    boto3/pynamodb through the environment, and an in-process caller (tests, `invoke`) must not
    keep them."""
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
    except BrokenPipeError:  # `vpce-approver registry --help | head -1`
        return quiet_broken_pipe()
    values: dict[str, str] = {}
    if args.endpoint_url:
        values["AWS_ENDPOINT_URL"] = args.endpoint_url
    if args.region:
        values["AWS_REGION"] = values["AWS_DEFAULT_REGION"] = args.region
    with environ(values):
        try:
            return int(args.run(args) or 0)
        except UsageError as exc:
            print(f"vpce-approver: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            return 130
        except BrokenPipeError:
            return quiet_broken_pipe()


def quiet_broken_pipe() -> int:
    """The reader went away (`| head`): stop quietly, exit like a program killed by SIGPIPE, and
    keep the interpreter from printing an error while flushing stdout at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # an in-process caller's captured stdout
        pass
    return 141


if __name__ == "__main__":
    # Run the package module's main, so that commands raising vpce_tools.cli.UsageError are
    # caught by the same class (not a second copy of this module under the name __main__).
    from vpce_tools.cli import main as package_main

    sys.exit(package_main())
