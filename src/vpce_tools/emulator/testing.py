"""Plain helpers for tests (no pytest plugin): fake credentials and an emulated AWS context."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from . import install, organizations
from .notifications import clear_listeners

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    # Every new account/region would otherwise load thousands of default AMIs (~0.1 s each);
    # PrivateLink does not need them.
    "MOTO_EC2_LOAD_DEFAULT_AMIS": "false",
}


@contextmanager
def fake_credentials() -> Iterator[None]:
    """Set fake AWS credentials and region (and skip moto's default AMIs) for the block."""
    saved = {k: os.environ.get(k) for k in FAKE_ENV}
    os.environ.update(FAKE_ENV)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@contextmanager
def emulated_aws() -> Iterator[None]:
    """``mock_aws()`` with the emulator installed and fake credentials; listeners cleared on
    exit. moto resets all backends (and so all emulator state) when the block starts/ends."""
    from moto import mock_aws

    install()
    with fake_credentials(), mock_aws():
        try:
            yield
        finally:
            clear_listeners()
            organizations.clear_listeners()


@contextmanager
def emulator_server(port: int = 0) -> Iterator[str]:
    """Start the emulator server for the block; yields its URL."""
    from .server import start

    with fake_credentials():
        url, stop = start(port)
        try:
            yield url
        finally:
            stop()
