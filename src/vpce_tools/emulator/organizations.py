"""AWS Organizations in the emulator: moto's organizations backend, plus three things it lacks.

1. The checks AWS makes on the calls that place an account, where moto answers a wrong request
   as if it were right (or with a 500):

   * ``CreateOrganizationalUnit`` without an organization: ``AWSOrganizationsNotInUseException``
     (moto: an AttributeError, HTTP 500); under a parent that does not exist:
     ``ParentNotFoundException`` (moto: creates an OU no root leads to, whose ``ListParents``
     then names a parent that does not exist);
   * ``MoveAccount``: ``AWSOrganizationsNotInUseException`` without an organization,
     ``AccountNotFoundException``, ``SourceParentNotFoundException`` when the source parent does
     not exist or is not the account's parent (moto moves it from wherever it is),
     ``DestinationParentNotFoundException`` (moto: ``ParentNotFoundException``) and
     ``DuplicateAccountException`` when the account is already there (moto: a silent no-op);
   * ``ListParents``: ``ChildNotFoundException`` for an account or OU that is not in the
     organization (moto: ``AccountNotFoundException`` / ``OrganizationalUnitNotFoundException``),
     which is how AWS answers for an account outside it;
   * all three from a member account: ``AccessDeniedException`` (only the management account
     may; a delegated administrator may read, which moto answers from its own, empty backend),
     and ``AWSOrganizationsNotInUseException`` from an account in no organization.

   A valid request reaches moto's own method unchanged, and every other call is moto's.

2. Account-lifecycle events. After a ``CreateAccount`` (moto: ``SUCCEEDED`` at once),
   ``MoveAccount``, ``CloseAccount`` or ``RemoveAccountFromOrganization`` succeeds, each
   listener (:func:`add_listener`) gets the event AWS delivers to the management account's
   default EventBridge bus in us-east-1 (CloudTrail's ``AWS API Call via CloudTrail`` /
   ``AWS Service Event via CloudTrail`` with ``source: aws.organizations``; ``CreateAccountResult``
   carries the new account's ID). `vpce-approver local` starts a sweep on one, as the deployed
   stack's optional ``OrganizationEvents`` rule does.

3. moto keeps the member-to-management-account map across resets, so after ``mock_aws`` ends
   (or ``/moto-api/reset``) a former member's ``DescribeOrganization`` raised AttributeError; a
   reset of the management account's backend now forgets its members too.

See docs/EMULATOR.md ("Organizations").
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from moto.organizations.exceptions import (
    AccountNotFoundException,
    AWSOrganizationsNotInUseException,
    OrganizationsClientError,
)
from moto.organizations.models import OrganizationsBackend, organizations_backends

log = logging.getLogger(__name__)

EVENT_SOURCE = "aws.organizations"
EVENT_REGION = "us-east-1"  # Organizations is global; its events reach us-east-1's bus
API_CALL = "AWS API Call via CloudTrail"
SERVICE_EVENT = "AWS Service Event via CloudTrail"
LIFECYCLE = ("CreateAccountResult", "MoveAccount", "CloseAccount", "RemoveAccountFromOrganization")

Event = dict[str, Any]
Listener = Callable[[Event], None]

_lock = threading.Lock()
_listeners: list[Listener] = []


def add_listener(listener: Listener) -> None:
    """Call ``listener(event)`` after each account-lifecycle call succeeds (any thread)."""
    with _lock:
        if listener not in _listeners:
            _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    with _lock:
        if listener in _listeners:
            _listeners.remove(listener)


def clear_listeners() -> None:
    with _lock:
        _listeners.clear()


def _publish(event: Event) -> None:
    with _lock:
        listeners = list(_listeners)
    for listener in listeners:
        try:
            listener(event)
        except Exception:  # a listener's failure never fails the caller's AWS call
            log.exception("organizations event listener failed")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def event(
    management_account: str,
    name: str,
    *,
    request: dict[str, Any] | None = None,
    service_details: dict[str, Any] | None = None,
) -> Event:
    """The EventBridge event CloudTrail delivers for ``name`` (an API call, or with
    ``service_details`` a service event such as ``CreateAccountResult``)."""
    at = _now()
    detail: dict[str, Any] = {
        "eventVersion": "1.08",
        "eventTime": at,
        "eventSource": "organizations.amazonaws.com",
        "eventName": name,
        "awsRegion": EVENT_REGION,
        "eventID": str(uuid.uuid4()),
        "recipientAccountId": management_account,
        "managementEvent": True,
        "eventCategory": "Management",
    }
    if service_details is not None:
        detail["eventType"] = "AwsServiceEvent"
        detail["serviceEventDetails"] = service_details
    else:
        detail["eventType"] = "AwsApiCall"
        detail["requestParameters"] = request or {}
        detail["responseElements"] = None
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": API_CALL if service_details is None else SERVICE_EVENT,
        "source": EVENT_SOURCE,
        "account": management_account,
        "time": at,
        "region": EVENT_REGION,
        "resources": [],
        "detail": detail,
    }


def _error(code: str, message: str) -> OrganizationsClientError:
    return OrganizationsClientError(code, message)


def _require_management(backend: OrganizationsBackend, *, read: bool = False) -> bool:
    """True when the management account calls. A member account is denied (AWS:
    AccessDeniedException), except a delegated administrator reading (False: moto's own answer,
    which reads the member's own, empty backend: delegated reads are not emulated); an account
    in no organization is told so."""
    if backend.org is not None:
        return True
    member = organizations_backends.master_accounts.get(backend.account_id)
    if member is None:
        raise AWSOrganizationsNotInUseException
    management = organizations_backends[member[0]][member[1]]
    if read and any(a.account.id == backend.account_id for a in management.admins):
        return False
    raise _error("AccessDeniedException", "You don't have permissions to access this resource.")


def _container(backend: OrganizationsBackend, parent_id: Any) -> Any:
    """The root or OU with this ID, or None."""
    return next((ou for ou in backend.ou if ou.id == parent_id), None)


_ORIGINALS: dict[str, Callable[..., Any]] = {}


def _create_organizational_unit(self: OrganizationsBackend, **kwargs: Any) -> Any:
    _require_management(self)
    if _container(self, kwargs.get("ParentId")) is None:
        raise _error(
            "ParentNotFoundException",
            "We can't find a root or OU with the ParentId that you specified.",
        )
    return _ORIGINALS["create_organizational_unit"](self, **kwargs)


def _move_account(self: OrganizationsBackend, **kwargs: Any) -> Any:
    _require_management(self)
    account = next((a for a in self.accounts if a.id == kwargs.get("AccountId")), None)
    if account is None:
        raise AccountNotFoundException
    source, destination = kwargs.get("SourceParentId"), kwargs.get("DestinationParentId")
    if _container(self, source) is None or account.parent_id != source:
        raise _error(
            "SourceParentNotFoundException",
            "We can't find a source root or OU with the ParentId that you specified.",
        )
    if _container(self, destination) is None:
        raise _error(
            "DestinationParentNotFoundException",
            "We can't find the destination container (a root or OU) with the ParentId that you"
            " specified.",
        )
    if destination == source:
        raise _error(
            "DuplicateAccountException",
            "That account is already present in the specified destination.",
        )
    result = _ORIGINALS["move_account"](self, **kwargs)
    _publish(
        event(
            self.account_id,
            "MoveAccount",
            request={
                "accountId": account.id,
                "sourceParentId": source,
                "destinationParentId": destination,
            },
        )
    )
    return result


def _list_parents(self: OrganizationsBackend, **kwargs: Any) -> Any:
    if not _require_management(self, read=True):
        return _ORIGINALS["list_parents"](self, **kwargs)
    child = kwargs.get("ChildId")
    known = any(a.id == child for a in self.accounts) or any(ou.id == child for ou in self.ou)
    if not known:
        raise _error(
            "ChildNotFoundException",
            "We can't find an organizational unit (OU) or AWS account with the ChildId that you"
            " specified.",
        )
    return _ORIGINALS["list_parents"](self, **kwargs)


def _create_account(self: OrganizationsBackend, **kwargs: Any) -> Any:
    result = _ORIGINALS["create_account"](self, **kwargs)
    status = dict(result["CreateAccountStatus"])
    details = {
        "createAccountStatus": {
            "id": status["Id"],
            "state": status["State"],
            "accountName": "****",  # CloudTrail masks it
            "accountId": status["AccountId"],
            "requestedTimestamp": _now(),
            "completedTimestamp": _now(),
        }
    }
    _publish(event(self.account_id, "CreateAccountResult", service_details=details))
    return result


def _account_call(name: str) -> Callable[..., Any]:
    api = "".join(part.title() for part in name.split("_"))

    def hook(self: OrganizationsBackend, **kwargs: Any) -> Any:
        result = _ORIGINALS[name](self, **kwargs)
        _publish(event(self.account_id, api, request={"accountId": kwargs.get("AccountId")}))
        return result

    hook.__name__ = name
    return hook


def _reset(self: OrganizationsBackend) -> None:
    _ORIGINALS["reset"](self)
    members = organizations_backends.master_accounts
    for member, (management, _partition) in list(members.items()):
        if management == self.account_id:
            members.pop(member, None)


_HOOKS: dict[str, Callable[..., Any]] = {
    "create_organizational_unit": _create_organizational_unit,
    "move_account": _move_account,
    "list_parents": _list_parents,
    "create_account": _create_account,
    "close_account": _account_call("close_account"),
    "remove_account_from_organization": _account_call("remove_account_from_organization"),
    "reset": _reset,
}


def patch_organizations() -> None:
    """Idempotently wrap the backend methods above (mock_aws and server mode alike)."""
    for name, hook in _HOOKS.items():
        if OrganizationsBackend.__dict__.get(name) is hook:
            continue
        if name not in _ORIGINALS:
            _ORIGINALS[name] = getattr(OrganizationsBackend, name)
        setattr(OrganizationsBackend, name, hook)
