"""Run the emulator as an HTTP server (moto's ThreadedMotoServer) in this process."""

from __future__ import annotations

from collections.abc import Callable

from . import install


def start(port: int = 0, host: str = "127.0.0.1") -> tuple[str, Callable[[], None]]:
    """Start moto's server on ``host:port`` (0 = any free port) with the emulator installed.

    Returns ``(url, stop)``. The server shares this process's moto backends, so
    :func:`vpce_tools.emulator.seed_connections` works against it. Point boto3 at ``url`` with
    ``endpoint_url=url`` and any fake credentials."""
    from moto.server import ThreadedMotoServer

    install()
    server = ThreadedMotoServer(ip_address=host, port=port, verbose=False)
    server.start()
    bound_host, bound_port = server.get_host_and_port()
    stopped = False

    def stop() -> None:
        nonlocal stopped
        if not stopped:
            stopped = True
            server.stop()

    return f"http://{bound_host}:{bound_port}", stop
