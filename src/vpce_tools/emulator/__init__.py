"""Offline PrivateLink emulator: moto 5 plus the endpoint-connection APIs moto lacks.

Importing this package calls :func:`install`, which patches moto's ``EC2Response`` (and wraps
``VPCBackend.create_vpc_endpoint`` / ``delete_vpc_endpoints``, so endpoints made by other paths,
e.g. CloudFormation, get their connection too) so that both ``moto.mock_aws`` and moto's server
mode (in the same process) serve:

* ``CreateVpcEndpoint`` to ``com.amazonaws.vpce.<region>.vpce-svc-…`` services of any account,
  honouring the service's allowed principals, creating the provider-side connection;
* ``DescribeVpcEndpointConnections``, ``AcceptVpcEndpointConnections``,
  ``RejectVpcEndpointConnections``, ``DeleteVpcEndpoints`` (connection → ``deleted``);
* connection notifications (create/describe/modify/delete) published to SNS;
* an optional throttle on Accept/Reject (see :mod:`vpce_tools.emulator.throttle`).
* a DynamoDB Query that reads the queried partition, not the whole table
  (:mod:`vpce_tools.emulator.dynamodb_index`);
* AWS Organizations: the checks moto lacks on ``CreateOrganizationalUnit``/``MoveAccount`` and
  account-lifecycle events to in-process listeners (:mod:`vpce_tools.emulator.organizations`).

See docs/EMULATOR.md.
"""

from __future__ import annotations

import threading

from . import throttle
from .connections import configure_acceptance, seed_connections
from .notifications import SUBJECT, add_listener, clear_listeners, remove_listener

__all__ = [
    "SUBJECT",
    "add_listener",
    "clear_listeners",
    "configure_acceptance",
    "install",
    "is_installed",
    "remove_listener",
    "seed_connections",
    "throttle",
]

_install_lock = threading.Lock()
_installed: list[bool] = []


def install() -> None:
    """Patch moto (idempotent). Also reads ``VPCE_EMULATOR_THROTTLE`` on first install."""
    with _install_lock:
        from .backend_hooks import patch_backend
        from .dynamodb_index import patch_dynamodb_query
        from .organizations import patch_organizations
        from .responses import patch_ec2_response

        patch_backend()
        patch_ec2_response()
        patch_dynamodb_query()  # a Query reads its partition, not the table
        patch_organizations()  # AWS's checks on placing an account; lifecycle events
        if not _installed:
            throttle.configure_from_env()
            _installed.append(True)


def is_installed() -> bool:
    return bool(_installed)


install()
