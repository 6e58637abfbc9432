"""Is a TCP port on 127.0.0.1 free? Checked before `vpce-approver local` imports or starts
anything, so a busy port is one line and an exit within a second, not a server that never
comes up."""

from __future__ import annotations

import errno
import socket

HOST = "127.0.0.1"


class PortInUse(Exception):
    """The port asked for is taken: one clear line, not a server that never comes up."""


def ensure_free(port: int, what: str, host: str = HOST) -> None:
    """Bind the port once and let it go: moto's threaded server waits forever for a server that
    failed to bind in its thread, so a busy port must be caught before it starts."""
    if port == 0:
        return
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as werkzeug binds
        probe.bind((host, port))
    except OSError as exc:
        why = "is in use" if exc.errno == errno.EADDRINUSE else f"cannot be used ({exc.strerror})"
        raise PortInUse(
            f"{what} port {port} on {host} {why}: pick another"
            f" ({'--port' if what == 'emulator' else '--slack-port'} N, 0 = any free port)"
        ) from None
    finally:
        probe.close()
