"""The AWS Organizations adapter of the Directory port (membership.py): where accounts sit.

Reads (docs/ORGANIZATIONS.md, "Reading Organizations (role, cache, throttling, fail closed)"):
- A cold (or expired) cache first seeds from the sweep's record (organization_epoch.py): one
  consistent GetItem of the head and, when the head says the tree was verified against
  Organizations at most `max_age` ago (`verified_at`, stamped by every recording refresh), one
  GetItem per chunk of the recorded {account: OU path}; no Organizations call. That snapshot
  expires at verified_at + max_age, carries the head's epoch (confirm() works unchanged), and
  is not "fresh": accounts it does not hold are looked up one by one as below. No record, a
  stale or future stamp, missing/corrupt chunks, a digest mismatch or paths that are not one
  tree: the tree is read from Organizations instead (never trusted, never wider).
- Otherwise a snapshot of the whole tree, whose cost is bounded by the number of OUs, not accounts:
  DescribeOrganization, ListRoots, then for the root and every OU ListOrganizationalUnitsForParent
  and ListAccountsForParent (20 per page). Only ACTIVE accounts are members; SUSPENDED,
  PENDING_CLOSURE, CLOSED... are OUTSIDE.
- An account the snapshot does not hold (an external partner, an account created since): one
  ListParents chain (ListParents up to a parent the snapshot knows, DescribeAccount for its
  state), cached; ChildNotFoundException (moto: AccountNotFoundException) => OUTSIDE. At most
  `lookup_limit` of those per call: more unknown accounts than that cost one fresh tree read
  instead, after which an account not in the tree is OUTSIDE.
- Every answer is used for at most `max_age` seconds (MEMBERSHIP_MAX_AGE: the stated staleness
  bound) after Organizations was read (for a seeded snapshot: after the sweep's read that
  stamped it, not after the seed), and never once `confirm()` saw that the deployment
  recorded a newer tree (organization_epoch.py).
- Through the role ORGANIZATIONS_ROLE_ARN when set (STS AssumeRole, session name
  'vpce-approver', refreshed before expiry), else the deployment's own credentials; botocore's
  adaptive retry mode (client-side rate limiting once throttled, then backoff).
- Fail closed: after retries, any error (throttled, access denied, Organizations not in use, the
  endpoint unreachable, a malformed answer) makes memberships() answer UNKNOWN with the reason,
  members() None and refresh() an error; nothing raises. A failed tree read is not retried for
  `error_backoff` seconds (the answers meanwhile are UNKNOWN), so a throttled Organizations is
  not hammered by every invocation.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import botocore.credentials
import botocore.session
from botocore.config import Config
from botocore.credentials import (
    AssumeRoleCredentialFetcher,
    CredentialProvider,
    CredentialResolver,
    DeferredRefreshableCredentials,
)
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from .config import Settings
from .converge import MetricSink
from .membership import MembershipChange
from .model import Membership, MemberState, Scope, scope_of
from .organization_epoch import EpochStore, Head, digest
from .validation import ACCOUNT_RE, ORGANIZATION_RE, OU_RE, ROOT_RE, partition_of

log = logging.getLogger("vpce_approver.organization")

# Organizations is a global service, served from one region per partition.
ORGANIZATIONS_REGION = {
    "aws": "us-east-1",
    "aws-cn": "cn-northwest-1",
    "aws-us-gov": "us-gov-west-1",
}
# Adaptive: once throttled, the client rate-limits itself as well as backing off. 3 retries (4
# attempts, about 7 s of backoff at most) keep a throttled read well inside a function's timeout;
# what still fails is UNKNOWN (fail closed) and retried by the next read.
ORGANIZATIONS_CONFIG = Config(
    retries={"mode": "adaptive", "max_attempts": 3}, connect_timeout=5, read_timeout=10
)
STS_CONFIG = Config(retries={"mode": "standard", "max_attempts": 3}, connect_timeout=5)
SESSION_NAME = "vpce-approver"
PAGE = 20  # ListAccountsForParent / ListOrganizationalUnitsForParent MaxResults (the maximum)
MAX_DEPTH = 10  # OU levels (AWS allows 5 below the root); deeper is a malformed answer
MAX_PARENTS = 5000  # root + OUs read in one snapshot (AWS's default quota is 1,000 OUs)
LOOKUP_LIMIT = 10  # single-account lookups per memberships() call before a tree read instead
LOOKUP_CACHE = 10_000  # cached single-account answers (oldest dropped first)
CLOCK_SKEW = 5.0  # seconds a record's verified_at may be ahead of this clock (else not trusted)
ERROR_BACKOFF = 10.0  # seconds a failed tree read is not retried by memberships()/members()
THROTTLED = frozenset({"TooManyRequestsException", "Throttling", "ThrottlingException"})
NOT_FOUND = frozenset({"ChildNotFoundException", "AccountNotFoundException"})
DENIED = frozenset({"AccessDeniedException", "AccessDenied", "AccessDeniedForDependencyException"})


def organizations_region(region: str | None) -> str:
    """Where Organizations is called for a deployment in `region` (its partition's region)."""
    return ORGANIZATIONS_REGION[partition_of(region)]


class ReadError(Exception):
    """Organizations could not be read: `kind` (one log line per kind), `reason` (for humans:
    the UNKNOWN membership's error, the escalation's reason)."""

    def __init__(self, kind: str, reason: str) -> None:
        super().__init__(reason)
        self.kind = kind
        self.reason = reason


def _message(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Message") or "")[:200]


def classify(exc: Exception) -> ReadError:
    """What an error from Organizations (or STS, assuming the role) means, without credentials
    (error codes and AWS's messages only)."""
    if isinstance(exc, ReadError):
        return exc
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code") or "Unknown")
        operation = getattr(exc, "operation_name", "") or "a call"
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in THROTTLED or status == 429:
            return ReadError(
                "throttled",
                f"AWS Organizations is throttling ({code} on {operation}, after retries)",
            )
        if code in DENIED or status == 403:
            return ReadError(
                "access-denied",
                f"access to AWS Organizations denied ({code} on {operation}: {_message(exc)})",
            )
        if code == "AWSOrganizationsNotInUseException":
            return ReadError(
                "not-in-use",
                "AWS Organizations is not in use in the account read (not the management or a"
                " delegated-administrator account: set OrganizationsRoleArn)",
            )
        return ReadError("service", f"AWS Organizations error ({code} on {operation})")
    if isinstance(exc, NoCredentialsError):
        return ReadError("credentials", "no AWS credentials to read AWS Organizations with")
    if isinstance(exc, BotoCoreError):
        return ReadError(
            "endpoint", f"AWS Organizations unreachable ({type(exc).__name__}: {str(exc)[:200]})"
        )
    return ReadError(
        "malformed", f"unexpected answer from AWS Organizations ({type(exc).__name__}: {exc})"
    )


# --- the client -------------------------------------------------------------------------------


class _AssumedRole(CredentialProvider):
    """Credentials of `role_arn`, assumed with the deployment's own credentials and refreshed by
    botocore before they expire (DeferredRefreshableCredentials: 15 minutes ahead)."""

    METHOD = "assume-role"
    CANONICAL_NAME = None

    def __init__(self, role_arn: str, sts_creator: Callable[..., Any], source: Any) -> None:
        super().__init__()
        self.role_arn, self.sts_creator, self.source = role_arn, sts_creator, source

    def load(self) -> DeferredRefreshableCredentials:
        if self.source is None:

            def missing() -> dict[str, Any]:
                raise NoCredentialsError()

            return DeferredRefreshableCredentials(refresh_using=missing, method=self.METHOD)
        fetcher = AssumeRoleCredentialFetcher(
            self.sts_creator,
            self.source,
            self.role_arn,
            extra_args={"RoleSessionName": SESSION_NAME},
        )
        return DeferredRefreshableCredentials(
            refresh_using=fetcher.fetch_credentials, method=self.METHOD, time_fetcher=_now
        )


def _now() -> datetime:
    """botocore's clock for credential expiry, looked up at each call (so the fetcher's cache
    and the refresh agree, and a test can move both)."""
    return botocore.credentials._local_now()  # type: ignore[attr-defined,no-any-return]


def _session() -> botocore.session.Session:
    from .runtime import _loader  # runtime imports this module: resolved at call time

    session = botocore.session.Session()
    session.register_component("data_loader", _loader())
    return session


def organizations_client(settings: Settings) -> Any:
    """A botocore Organizations client (like runtime.ec2_client: no boto3), in the partition's
    Organizations region, through ORGANIZATIONS_ROLE_ARN when set."""
    kwargs: dict[str, Any] = {
        "region_name": organizations_region(settings.region),
        "config": ORGANIZATIONS_CONFIG,
    }
    if settings.endpoint_url:
        kwargs["endpoint_url"] = settings.endpoint_url
    session = _session()
    if settings.organizations_role_arn:
        base = _session()
        sts_kwargs: dict[str, Any] = {"region_name": settings.region, "config": STS_CONFIG}
        if settings.endpoint_url:
            sts_kwargs["endpoint_url"] = settings.endpoint_url

        def sts(service: str, **given: Any) -> Any:
            return base.create_client(service, **sts_kwargs, **given)

        provider = _AssumedRole(settings.organizations_role_arn, sts, base.get_credentials())
        session.register_component("credential_provider", CredentialResolver([provider]))
    return session.create_client("organizations", **kwargs)


# --- the snapshot -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The organization's tree as read at `loaded_at` (the directory's clock)."""

    organization: str
    root: str
    paths: Mapping[str, tuple[str, ...]]  # active accounts -> OU path, nearest first
    inactive: frozenset[str]  # accounts in the tree that are not ACTIVE
    ous: Mapping[str, tuple[str, ...]]  # OU -> its own path (itself first)
    loaded_at: float
    digest: str
    epoch: int | None = None  # the recorded epoch read just before the tree (None: unknown)
    read_at: datetime | None = None  # wall clock when Organizations was read (seeded: verified_at)


def _id(value: object, pattern: Any, what: str) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise ReadError("malformed", f"AWS Organizations returned a malformed {what}: {value!r}")
    return value


class OrganizationsDirectory:
    """The Directory port over AWS Organizations (see the module docstring and membership.py).

    `client`: a botocore Organizations client (organizations_client). `max_age`: seconds an
    answer may be used. `clock`: seconds, monotonic (tests pass a fake). `epochs`: the recorded
    epoch (None: no record, confirm() always True; refresh() records nothing). `calls` counts the
    Organizations operations made (retries not included)."""

    def __init__(
        self,
        client: Any,
        *,
        max_age: float = 300,
        epochs: EpochStore | None = None,
        metrics: MetricSink | None = None,
        clock: Callable[[], float] = time.monotonic,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
        lookup_limit: int = LOOKUP_LIMIT,
        error_backoff: float = ERROR_BACKOFF,
    ) -> None:
        self.client = client
        self.max_age = max_age
        self.epochs = epochs
        self.metrics = metrics
        self.clock, self.now = clock, now
        self.lookup_limit = lookup_limit
        self.error_backoff = error_backoff
        self.calls = 0
        self._snapshot: Snapshot | None = None
        self._lookups: OrderedDict[str, tuple[Membership, float]] = OrderedDict()
        self._failure: tuple[ReadError, float] | None = None
        self._logged: str | None = None  # the failure kind last logged

    # -- the port ----------------------------------------------------------------------------

    def memberships(self, accounts: Iterable[str]) -> dict[str, Membership]:
        wanted = list(dict.fromkeys(accounts))
        out: dict[str, Membership] = {}
        valid = []
        for account in wanted:
            if isinstance(account, str) and ACCOUNT_RE.fullmatch(account):
                valid.append(account)
            else:
                out[account] = Membership.unknown(account, "not a 12-digit AWS account ID")
        if not valid:
            return out
        snapshot, fresh = self._current()
        if isinstance(snapshot, ReadError):
            out.update({a: Membership.unknown(a, snapshot.reason) for a in valid})
            return out
        missing = []
        for account in valid:
            known = self._known(snapshot, account)
            if known is None:
                missing.append(account)
            else:
                out[account] = known
        if missing and not fresh and len(missing) > self.lookup_limit:
            # More strangers than single lookups are worth: one tree read, bounded by OUs.
            reloaded = self._load_or_fail(self._epoch_before())
            if isinstance(reloaded, ReadError):
                out.update({a: Membership.unknown(a, reloaded.reason) for a in missing})
                return out
            snapshot, fresh = reloaded, True
            still = []
            for account in missing:
                known = self._known(snapshot, account)
                if known is None:
                    still.append(account)
                else:
                    out[account] = known
            missing = still
        if fresh:
            # The tree was read just now: an account not in it is not in the organization.
            for account in missing:
                out[account] = self._remember(Membership.outside(account, snapshot.organization))
            return out
        for index, account in enumerate(missing):
            try:
                out[account] = self._remember(self._lookup(snapshot, account))
            except Exception as exc:  # never raise: fail closed
                error = self._failed(exc)
                out.update({a: Membership.unknown(a, error.reason) for a in missing[index:]})
                break
        return out

    def confirm(self) -> bool:
        if self._snapshot is None and not self._lookups:
            return True  # nothing handed out that could be stale
        if self.epochs is None:
            return True
        try:
            head = self.epochs.head()
        except Exception as exc:  # cannot tell: drop the cache (fail closed)
            log.warning("reading the membership epoch failed (%s): cache dropped", _name(exc))
            self._drop()
            return False
        if head is None:
            return True
        snapshot = self._snapshot
        if snapshot is not None and head.valid and head.digest == snapshot.digest:
            if snapshot.epoch is None or snapshot.epoch < head.epoch:
                self._snapshot = _with_epoch(snapshot, head.epoch)
            return True
        if (
            snapshot is not None
            and head.valid
            and snapshot.epoch is not None
            and head.epoch <= snapshot.epoch
        ):
            return True
        self._drop()
        return False

    def members(self, scope: str) -> frozenset[str] | None:
        snapshot, _ = self._current()
        if isinstance(snapshot, ReadError):
            return None
        if scope_of(scope) is Scope.ORGANIZATION:
            return frozenset(snapshot.paths) if scope == snapshot.organization else frozenset()
        return frozenset(a for a, path in snapshot.paths.items() if scope in path)

    def refresh(self, *, record: bool = True) -> MembershipChange:
        previous = self._snapshot
        try:
            snapshot = self._load(epoch=None)
        except Exception as exc:  # never raise: fail closed
            error = self._failed(exc)
            known = previous.epoch if previous is not None and previous.epoch else 0
            return MembershipChange(error=error.reason, epoch=known)
        self._install(snapshot)
        if self.epochs is None:
            return MembershipChange()
        try:
            return self._record(previous, snapshot, record)
        except Exception as exc:  # the tree is cached; the record failed
            log.warning("recording the membership epoch failed (%s)", _name(exc))
            return MembershipChange(
                error=f"recording the membership epoch failed ({_name(exc)})",
                epoch=snapshot.epoch or 0,
            )

    # -- the cache ---------------------------------------------------------------------------

    def _current(self) -> tuple[Snapshot | ReadError, bool]:
        """The snapshot to answer from (read now if missing or older than max_age), and whether
        it was read by this call; or why it cannot be read."""
        snapshot = self._snapshot
        if snapshot is not None and self.clock() - snapshot.loaded_at < self.max_age:
            return snapshot, False
        seeded, epoch = self._seed()
        if seeded is not None:
            # Not read by this call: accounts it does not hold are looked up, not OUTSIDE.
            return seeded, False
        if self._failure is not None and self.clock() - self._failure[1] < self.error_backoff:
            return self._failure[0], False
        loaded = self._load_or_fail(epoch)
        return loaded, not isinstance(loaded, ReadError)

    def _load_or_fail(self, epoch: int | None) -> Snapshot | ReadError:
        """Read the tree; `epoch`: the recorded epoch read just before (_epoch_before)."""
        try:
            snapshot = self._load(epoch=epoch)
        except Exception as exc:  # never raise: fail closed
            self._drop()
            return self._failed(exc)
        self._install(snapshot)
        return snapshot

    def _seed(self) -> tuple[Snapshot | None, int | None]:
        """A cold (or expired) cache seeds from the recorded map when the sweep verified it
        against Organizations at most max_age ago: one consistent GetItem of the head, one per
        chunk, no Organizations call. The snapshot expires at verified_at + max_age, so the
        stated bound is measured from when Organizations was read, not from now. Otherwise
        (no record, too old, never verified, unreadable or inconsistent) (None, the head's
        epoch as _epoch_before() reads it) for the tree read that follows."""
        if self.epochs is None:
            return None, None
        try:
            head = self.epochs.head()
        except Exception as exc:  # unknown epoch: read the tree, confirm() compares digests
            log.warning("reading the membership epoch failed (%s)", _name(exc))
            return None, None
        if head is None:
            return None, 0
        if not head.valid:
            return None, None
        if (
            self.max_age <= 0  # no cache at all: every decision reads Organizations
            or head.verified_at is None
            or head.root is None
            or not self._young(head.verified_at)
        ):
            return None, head.epoch
        try:
            loaded = self.epochs.load(head, batched=False)
        except Exception as exc:
            log.warning("reading the recorded membership map failed (%s)", _name(exc))
            return None, head.epoch
        ous = _ous(loaded[1]) if loaded is not None else None
        if loaded is None or ous is None:
            log.warning("the recorded membership map is unreadable: Organizations is read")
            return None, head.epoch
        age = self._age(head.verified_at)  # again: the chunk reads took time
        if not self._young(head.verified_at):
            return None, head.epoch
        organization, paths = loaded
        snapshot = Snapshot(
            organization=organization,
            root=head.root,
            paths=paths,
            inactive=frozenset(),  # not recorded: an inactive account is looked up (OUTSIDE)
            ous=ous,
            loaded_at=self.clock() - age,  # expires at verified_at + max_age
            digest=digest(organization, paths),  # == head.digest (load() checked it)
            epoch=head.epoch,
            read_at=head.verified_at,
        )
        self._snapshot = snapshot
        self._lookups.clear()  # an older record may have answered them: look them up again
        return snapshot, head.epoch

    def _age(self, instant: datetime) -> float:
        return (self.now() - instant).total_seconds()

    def _young(self, verified_at: datetime) -> bool:
        """Whether a record verified at `verified_at` may still be used: at most max_age old,
        and not from the future (beyond CLOCK_SKEW: a bad item, never trusted)."""
        age = self._age(verified_at)
        return -CLOCK_SKEW <= age <= self.max_age

    def _install(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._lookups.clear()  # answers older than the tree; the tree answers them again
        self._failure = None
        if self._logged is not None:
            log.info("AWS Organizations is readable again")
            self._logged = None

    def _drop(self) -> None:
        self._snapshot = None
        self._lookups.clear()

    def _known(self, snapshot: Snapshot, account: str) -> Membership | None:
        path = snapshot.paths.get(account)
        if path is not None:
            return Membership(account, MemberState.MEMBER, snapshot.organization, path)
        if account in snapshot.inactive:
            return Membership.outside(account, snapshot.organization)
        cached = self._lookups.get(account)
        if cached is not None and self.clock() - cached[1] < self.max_age:
            return cached[0]
        return None

    def _remember(self, membership: Membership) -> Membership:
        self._lookups[membership.account] = (membership, self.clock())
        self._lookups.move_to_end(membership.account)
        while len(self._lookups) > LOOKUP_CACHE:
            self._lookups.popitem(last=False)
        return membership

    def _failed(self, exc: Exception) -> ReadError:
        error = classify(exc)
        self._failure = (error, self.clock())
        if self.metrics is not None:
            self.metrics.add_metric("OrganizationsReadFailures", "Count", 1)
        if error.kind != self._logged:  # one line per failure kind, not per account or call
            log.warning("AWS Organizations unreadable: %s", error.reason)
            self._logged = error.kind
        return error

    # -- Organizations -----------------------------------------------------------------------

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        self.calls += 1
        result: dict[str, Any] = getattr(self.client, operation)(**params)
        return result

    def _pages(self, operation: str, key: str, **params: Any) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            page = self._call(
                operation, **params, MaxResults=PAGE, **({"NextToken": token} if token else {})
            )
            got = page.get(key, [])
            if not isinstance(got, list):
                raise ReadError("malformed", f"AWS Organizations {operation}: {key} is not a list")
            items.extend(got)
            token = page.get("NextToken")
            if not token:
                return items

    def _load(self, *, epoch: int | None) -> Snapshot:
        """Read the whole tree: 2 + 2 x (OUs + 1) calls, plus a call per further page of 20.
        `epoch`: the recorded epoch read before (None: unknown)."""
        read_at = self.now()
        organization = _id(
            self._call("describe_organization").get("Organization", {}).get("Id"),
            ORGANIZATION_RE,
            "organization ID",
        )
        roots = self._call("list_roots").get("Roots", [])
        if not isinstance(roots, list) or len(roots) != 1:
            raise ReadError("malformed", "AWS Organizations did not return exactly one root")
        root = _id(roots[0].get("Id"), ROOT_RE, "root ID")
        paths: dict[str, tuple[str, ...]] = {}
        inactive: set[str] = set()
        ous: dict[str, tuple[str, ...]] = {}
        queue: deque[tuple[str, tuple[str, ...]]] = deque([(root, ())])
        while queue:
            parent, path = queue.popleft()
            if len(ous) + 1 > MAX_PARENTS:
                raise ReadError("malformed", f"more than {MAX_PARENTS} OUs: not read")
            for ou in self._pages(
                "list_organizational_units_for_parent", "OrganizationalUnits", ParentId=parent
            ):
                child = _id(ou.get("Id"), OU_RE, "OU ID")
                if child in ous or len(path) >= MAX_DEPTH:
                    raise ReadError("malformed", f"the OU tree loops or is too deep at {child}")
                ous[child] = (child, *path)
                queue.append((child, ous[child]))
            for account in self._pages("list_accounts_for_parent", "Accounts", ParentId=parent):
                account_id = _id(account.get("Id"), ACCOUNT_RE, "account ID")
                # State replaces Status (retired by AWS on 2026-09-09); either must say ACTIVE.
                state = account.get("State") or account.get("Status")
                if state == "ACTIVE":
                    paths[account_id] = path
                    inactive.discard(account_id)
                else:
                    inactive.add(account_id)
                    paths.pop(account_id, None)
        return Snapshot(
            organization=organization,
            root=root,
            paths=paths,
            inactive=frozenset(inactive),
            ous=ous,
            loaded_at=self.clock(),
            digest=digest(organization, paths),
            epoch=epoch,
            read_at=read_at,
        )

    def _epoch_before(self) -> int | None:
        """The recorded epoch, read before the tree: a record made during the read is newer
        than the snapshot, so confirm() drops it (conservative)."""
        if self.epochs is None:
            return None
        try:
            head = self.epochs.head()
        except Exception as exc:  # unknown epoch: confirm() compares digests
            log.warning("reading the membership epoch failed (%s)", _name(exc))
            return None
        if head is None:
            return 0
        return head.epoch if head.valid else None

    def _lookup(self, snapshot: Snapshot, account: str) -> Membership:
        """One account the snapshot does not hold: its ListParents chain up to an OU the
        snapshot knows (or the root), then DescribeAccount for its state."""
        try:
            parents = self._call("list_parents", ChildId=account).get("Parents", [])
        except ClientError as exc:
            # AWS answers ChildNotFoundException for an account outside the organization (moto
            # AccountNotFoundException): either way, no OU or organization grant applies.
            if exc.response.get("Error", {}).get("Code") in NOT_FOUND:
                return Membership.outside(account, snapshot.organization)
            raise
        path: list[str] = []
        for _ in range(MAX_DEPTH + 1):
            if not isinstance(parents, list) or len(parents) != 1:
                raise ReadError("malformed", f"ListParents of {account}: not exactly one parent")
            parent = parents[0].get("Id")
            if parents[0].get("Type") == "ROOT":
                if parent != snapshot.root:
                    # Another organization's root: the snapshot is not of this organization.
                    raise ReadError("malformed", f"{account} is under an unknown root {parent}")
                break
            parent = _id(parent, OU_RE, "OU ID")
            if parent in snapshot.ous:
                path.extend(snapshot.ous[parent])
                break
            path.append(parent)
            parents = self._call("list_parents", ChildId=parent).get("Parents", [])
        else:
            raise ReadError("malformed", f"the OU path of {account} is too deep")
        try:
            described = self._call("describe_account", AccountId=account).get("Account", {})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in NOT_FOUND:
                return Membership.outside(account, snapshot.organization)  # removed meanwhile
            raise
        state = described.get("State") or described.get("Status")
        if state != "ACTIVE":
            return Membership.outside(account, snapshot.organization)
        return Membership(account, MemberState.MEMBER, snapshot.organization, tuple(path))

    # -- the epoch ---------------------------------------------------------------------------

    def _record(
        self, previous: Snapshot | None, snapshot: Snapshot, record: bool
    ) -> MembershipChange:
        assert self.epochs is not None
        for _ in range(3):
            head = self.epochs.head()
            if head is not None and head.valid and head.digest == snapshot.digest:
                self._set_epoch(snapshot, head.epoch)
                if record and snapshot.read_at is not None and not self._verify(head, snapshot):
                    continue  # recorded under us: compare with the new record
                return MembershipChange(epoch=head.epoch)
            before = self._recorded_map(head, previous)
            if head is not None and before is None:
                again = self.epochs.head()
                if again != head:
                    continue  # recorded under us while we read its chunks: compare again
                log.warning("the recorded membership map is unreadable: compared with nothing")
            # The first record is the baseline: nothing changed against it.
            joined, left, moved = (
                _diff(before if before is not None else {}, snapshot.paths)
                if head is not None
                else ((), (), ())
            )
            if not record:
                return MembershipChange(
                    joined, left, moved, epoch=head.epoch if head is not None else 0
                )
            epoch = self.epochs.record(
                head,
                snapshot.organization,
                snapshot.paths,
                self.now(),
                root=snapshot.root,
                verified_at=snapshot.read_at,
            )
            if epoch is None:
                continue  # another refresher recorded first: compare with its record
            self._set_epoch(snapshot, epoch)
            log.info(
                "membership epoch %d recorded: %d joined, %d left, %d moved",
                epoch,
                len(joined),
                len(left),
                len(moved),
            )
            return MembershipChange(joined, left, moved, epoch=epoch)
        return MembershipChange(
            error="recording the membership epoch failed: concurrent refreshes kept winning",
            epoch=snapshot.epoch or 0,
        )

    def _verify(self, head: Head, snapshot: Snapshot) -> bool:
        """Stamp `head` as verified by `snapshot`'s read; False when another refresher recorded
        an epoch since `head` was read. A failed stamp is only logged: the record stays right,
        cold containers read Organizations until a later stamp (no widening, no error)."""
        assert self.epochs is not None
        assert snapshot.read_at is not None
        try:
            return self.epochs.verify(head, snapshot.read_at, snapshot.root)
        except Exception as exc:
            log.warning("stamping the membership epoch as verified failed (%s)", _name(exc))
            return True

    def _recorded_map(
        self, head: Head | None, previous: Snapshot | None
    ) -> Mapping[str, tuple[str, ...]] | None:
        if head is None or not head.valid or self.epochs is None:
            return None
        if previous is not None and previous.digest == head.digest:
            return previous.paths  # this container's cache is the recorded tree: no chunk read
        loaded = self.epochs.load(head)
        return loaded[1] if loaded is not None else None

    def _set_epoch(self, snapshot: Snapshot, epoch: int) -> None:
        if self._snapshot is snapshot:
            self._snapshot = _with_epoch(snapshot, epoch)


def _ous(paths: Mapping[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]] | None:
    """Every OU on a recorded path -> its own path (itself first), None when the paths do not
    form one tree (an OU twice on a path, under two parents, or too deep): never trusted."""
    ous: dict[str, tuple[str, ...]] = {}
    for path in paths.values():
        if len(path) > MAX_DEPTH or len(set(path)) != len(path):
            return None
        for index, ou in enumerate(path):
            if ous.setdefault(ou, path[index:]) != path[index:]:
                return None
    return ous


def _with_epoch(snapshot: Snapshot, epoch: int) -> Snapshot:
    return replace(snapshot, epoch=epoch)


def _diff(
    before: Mapping[str, tuple[str, ...]], after: Mapping[str, tuple[str, ...]]
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """(joined, left, moved) accounts, sorted."""
    return (
        tuple(sorted(set(after) - set(before))),
        tuple(sorted(set(before) - set(after))),
        tuple(sorted(a for a in set(after) & set(before) if after[a] != before[a])),
    )


def _name(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code") or type(exc).__name__)
    return type(exc).__name__


def directory(settings: Settings, *, metrics: MetricSink | None = None) -> OrganizationsDirectory:
    """The deployment's directory (runtime.build(), when settings.organization_grants): one per
    Lambda container, so its cache lives across invocations. The epoch record is in the
    escalations table (bound by runtime.bind_tables)."""
    return OrganizationsDirectory(
        organizations_client(settings),
        max_age=settings.membership_max_age,
        epochs=EpochStore(),
        metrics=metrics,
    )
