"""P7: a burst of Connects from many accounts spread over nested OUs, allowed by one OU grant
(issue 15, "Performance").

The organization is built in moto's Organizations the way an operator would (the provider's
account is the management account): CreateOrganization, 20 OUs three levels deep under one top
OU, 500 accounts (CreateAccount + MoveAccount, 25 per OU), one grant of the top OU on the
service. Then two bursts of one Connect per account go through the real notification path (the
event source of P1, with the deployment built with `organization_grants` on, so every
container's registry reads membership through the AWS Organizations adapter runtime.build()
wires): the first with cold containers, the second with the same containers, their cache warm.

Organizations calls are counted twice: by botocore's `before-call` (counting.py: every call the
process made) and by each container's directory (which container read). A container's first
read of the tree costs DescribeOrganization + ListRoots and, for the root and every OU, one page
of child OUs and one page of accounts per 20: bounded by the OUs (and pages of 20), not by the
accounts; a container whose cache is warm makes none."""

from __future__ import annotations

import math
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from vpce_approver.model import Grant, GrantStatus

from . import spread
from .counting import COUNTER
from .scenarios import EventSource, Result, burst, states, wait_available, world
from .spread import Spread, count, seconds

ORG_PAGE = 20
"""MaxResults of ListAccountsForParent / ListOrganizationalUnitsForParent: AWS's maximum."""
OUS = 20
ACCOUNTS = 500
TIMEOUT = 180.0  # seconds after the last Connect of a burst
ORG = "organizations:"  # the counters' service prefix


@dataclass(frozen=True)
class Tree:
    """The organization as built: OUs top first, each parent's child OUs and accounts."""

    organization: str
    root: str
    top: str
    ous: tuple[str, ...]
    levels: int
    children: dict[str, int]  # parent (root or OU) -> child OUs
    accounts: dict[str, tuple[str, ...]]  # parent -> its accounts (the root: the management one)
    seconds: float  # building it through the API

    @property
    def members(self) -> list[str]:
        """The accounts in the OUs (all under the top OU)."""
        return [a for ou in self.ous for a in self.accounts.get(ou, ())]

    def read_bound(self) -> int:
        """Organizations calls of one read of the whole tree: DescribeOrganization, ListRoots,
        then for the root and every OU its pages of child OUs and of accounts (ORG_PAGE each,
        at least one)."""
        return 2 + sum(
            max(1, math.ceil(self.children.get(p, 0) / ORG_PAGE))
            + max(1, math.ceil(len(self.accounts.get(p, ())) / ORG_PAGE))
            for p in (self.root, *self.ous)
        )


def build_tree(client: Any, ous: int = OUS, accounts: int = ACCOUNTS) -> Tree:
    """CreateOrganization, then `ous` OUs three levels deep (one top OU, a quarter of the rest
    below it, the others below those) and `accounts` accounts spread round-robin over every OU
    (CreateAccount, then MoveAccount from the root)."""
    if ous < 3:
        raise ValueError("three levels need at least 3 OUs")
    start = time.perf_counter()
    organization = client.create_organization(FeatureSet="ALL")["Organization"]["Id"]
    root = client.list_roots()["Roots"][0]["Id"]
    children: Counter[str] = Counter()

    def ou(name: str, parent: str) -> str:
        children[parent] += 1
        made = client.create_organizational_unit(ParentId=parent, Name=name)
        return str(made["OrganizationalUnit"]["Id"])

    top = ou("workloads", root)
    middle = [ou(f"team{i}", top) for i in range(max(1, (ous - 1) // 4))]
    leaves = [ou(f"env{i}", middle[i % len(middle)]) for i in range(ous - 1 - len(middle))]
    tree_ous = (top, *middle, *leaves)
    placed: dict[str, list[str]] = {o: [] for o in tree_ous}
    for i in range(accounts):
        made = client.create_account(AccountName=f"bench{i}", Email=f"bench{i}@example.com")
        account = str(made["CreateAccountStatus"]["AccountId"])
        target = tree_ous[i % len(tree_ous)]
        client.move_account(AccountId=account, SourceParentId=root, DestinationParentId=target)
        placed[target].append(account)
    at_root = [a["Id"] for a in client.list_accounts_for_parent(ParentId=root)["Accounts"]]
    return Tree(
        organization=str(organization),
        root=str(root),
        top=top,
        ous=tree_ous,
        levels=3,
        children=dict(children),
        accounts={root: tuple(at_root), **{o: tuple(a) for o, a in placed.items()}},
        seconds=time.perf_counter() - start,
    )


@dataclass
class Burst:
    """One burst of Connects, one per account."""

    org_calls: dict[str, int]  # Organizations operation -> calls (botocore's count)
    cold_reads: int  # containers that read the tree for the first time during this burst
    cold_calls: int  # Organizations calls of those containers (their own count)
    warm_calls: int  # Organizations calls of containers whose cache was already warm
    accept_calls: int
    until_all: float | None  # seconds from the first Connect until all available; None: never
    not_available: int
    issued: float  # seconds to issue the Connects and their notifications
    settled: float  # seconds from the first Connect until the queue was empty
    waited: float = 0.0  # seconds the containers' pacers waited for an Accept token
    invocations: int = 0  # handler invocations, follow-up Accept notifications included
    dynamodb: dict[str, int] = field(default_factory=dict)  # "Op table" -> calls

    @property
    def org_total(self) -> int:
        return sum(self.org_calls.values())


@dataclass
class OrgRun:
    tree: Tree
    bursts: list[Burst]
    lost: int  # DLQ depth at the end
    containers: int
    invocations: int


def _directories(source: EventSource) -> list[Any]:
    found = [c.deps.registry.directory for c in source.containers]
    if any(d is None or not hasattr(d, "calls") for d in found):
        raise RuntimeError(
            "P7 needs the AWS Organizations adapter: with organization_grants on, runtime.build() "
            "gives the registry organization.directory(settings)"
        )
    return found


def _burst(
    provider: Any, service_id: str, source: EventSource, owners: Sequence[str], timeout: float
) -> Burst:
    directories = _directories(source)
    before = [int(d.calls) for d in directories]
    paced = sum(c.pacer.waited for c in source.containers)
    invoked = source.invocations
    with COUNTER.counting():
        start = time.monotonic()
        ids = burst(provider, service_id, owners, len(owners))
        issued = time.monotonic() - start
        done_at = wait_available(provider, service_id, ids, start, issued + timeout)
        source.settle()  # the Accept notifications the accepts caused are handled too
        settled = time.monotonic() - start
        calls = dict(COUNTER.calls)
        targets = dict(COUNTER.targets)
    cold_reads = cold_calls = warm_calls = 0
    for directory, was in zip(directories, before, strict=True):
        made = int(directory.calls) - was
        if was == 0 and made > 0:
            cold_reads += 1
            cold_calls += made
        else:
            warm_calls += made
    final = states(provider, service_id)
    return Burst(
        waited=sum(c.pacer.waited for c in source.containers) - paced,
        invocations=source.invocations - invoked,
        org_calls={k.removeprefix(ORG): v for k, v in calls.items() if k.startswith(ORG)},
        cold_reads=cold_reads,
        cold_calls=cold_calls,
        warm_calls=warm_calls,
        accept_calls=calls.get("ec2:AcceptVpcEndpointConnections", 0),
        until_all=done_at,
        not_available=sum(1 for i in ids if final.get(i) != "available"),
        issued=issued,
        settled=settled,
        dynamodb={k.removeprefix("dynamodb:"): v for k, v in targets.items()},
    )


def run_p7(
    ous: int = OUS,
    accounts: int = ACCOUNTS,
    *,
    seed: int = 7,
    concurrency: int | None = None,
    timeout: float = TIMEOUT,
) -> OrgRun:
    """One run: a fresh emulated AWS, the organization, the OU grant, then a cold and a warm
    burst through the same event source (template.yaml's settings unless `concurrency`)."""
    with world(organization_grants=True) as (provider, deployment, service):
        tree = build_tree(provider.client("organizations"), ous, accounts)
        deployment.deps().registry.put(
            Grant(service.service_id, tree.top, GrantStatus.ALLOW, note="benchmark: P7"),
            by="bench",
            now=datetime.now(UTC),
        )
        owners = tree.members
        random.Random(seed).shuffle(owners)  # a chunk of the burst spans several OUs
        source = EventSource(deployment, concurrency=concurrency)
        _directories(source)
        source.start()
        try:
            bursts = [
                _burst(provider, service.service_id, source, owners, timeout) for _ in range(2)
            ]
        finally:
            source.close()
        return OrgRun(
            tree, bursts, deployment.dlq_depth(), len(source.containers), source.invocations
        )


def met(run: OrgRun) -> bool:
    """Organizations calls bounded by the OUs (a tree read per container, at most), none from a
    warm cache; <= 10 Accept calls and every connection available in each burst; 0 lost."""
    bound = run.tree.read_bound()
    return run.lost == 0 and all(
        b.org_total <= b.cold_reads * bound
        and b.cold_calls <= b.cold_reads * bound
        and b.warm_calls == 0
        and b.accept_calls <= 10
        and b.not_available == 0
        and b.until_all is not None
        for b in run.bursts
    )


def _until(values: Sequence[float | None]) -> str:
    done = [v for v in values if v is not None]
    if len(done) < len(values):
        return f"not all available within {TIMEOUT:.0f} s in {len(values) - len(done)} run(s)"
    return Spread.of(done).show(seconds, " s")


def p7_org_burst(ous: int = OUS, accounts: int = ACCOUNTS) -> Result:
    runs = [run_p7(ous, accounts, seed=7 + i) for i in range(spread.RUNS)]
    tree = runs[0].tree
    bound = tree.read_bound()

    def of(i: int, value: Any) -> Spread:
        return Spread.of([value(r.bursts[i]) for r in runs])

    cold, warm = (of(i, lambda b: b.org_total) for i in (0, 1))
    reads = of(0, lambda b: b.cold_reads)
    accepts = [of(i, lambda b: b.accept_calls) for i in (0, 1)]
    times = [_until([r.bursts[i].until_all for r in runs]) for i in (0, 1)]
    lost = Spread.of([r.lost + sum(b.not_available for b in r.bursts) for r in runs])
    last = runs[-1]
    kinds = [
        ", ".join(f"{k} {v}" for k, v in sorted(b.org_calls.items())) or "none" for b in last.bursts
    ]
    pages = ", ".join(
        f"{sum(1 for o in tree.ous if len(tree.accounts.get(o, ())) == n)} OU(s) with {n}"
        for n in sorted({len(tree.accounts.get(o, ())) for o in tree.ous})
    )
    dynamo = ", ".join(f"{k} {v}" for k, v in sorted(last.bursts[1].dynamodb.items()))
    return Result(
        "P7",
        f"burst of {accounts} Connects from {accounts} accounts in {ous} OUs "
        f"({tree.levels} levels) under one OU grant",
        f"Organizations calls: cold {cold.show(count)} ({reads.show(count)} container tree "
        f"read(s) of <= {bound}), warm {warm.show(count)}; Accept calls "
        f"{accepts[0].show(count)} / {accepts[1].show(count)}; all available in {times[0]} / "
        f"{times[1]}; {lost.show(count)} lost",
        f"Organizations: <= {bound} per container's first read (bounded by the {ous} OUs), "
        "0 warm; <= 10 Accept calls, 0 lost",
        all(met(r) for r in runs),
        [
            "| per burst (median, min-max) | cold containers | warm containers |",
            "|---|---|---|",
            f"| Organizations calls | {cold.show(count)} | {warm.show(count)} |",
            f"| containers that read the tree | {reads.show(count)} | "
            f"{of(1, lambda b: b.cold_reads).show(count)} |",
            f"| Accept calls | {accepts[0].show(count)} | {accepts[1].show(count)} |",
            f"| time until all available | {times[0]} | {times[1]} |",
            f"| not available at the end | {of(0, lambda b: b.not_available).show(count)} | "
            f"{of(1, lambda b: b.not_available).show(count)} |",
            "",
            f"- The organization (moto's Organizations; the provider's account is the management "
            f"account): {ous} OUs {tree.levels} levels deep under the root (1 top OU, "
            f"{tree.children.get(tree.top, 0)} below it, {ous - 1 - tree.children.get(tree.top, 0)}"
            f" below those), {accounts} accounts spread over them ({pages}); one grant: the top "
            "OU, allow, on the service. Built through the API (CreateAccount + MoveAccount per "
            f"account) in {Spread.of([r.tree.seconds for r in runs]).show(seconds, ' s')} "
            "(set-up, not measured).",
            f"- Two bursts of one Connect per account (shuffled, {spread.RUNS} run(s)), as in P1 "
            "(10 connections at a time, their Connect notifications through the emulator's SNS -> "
            "SQS -> the event source of template.yaml), the deployment built with "
            "`organization_grants` on: each container's registry reads membership through the "
            "AWS Organizations adapter. The first burst meets cold containers, the second the "
            f"same {last.containers} containers with their cache warm (MEMBERSHIP_MAX_AGE "
            "300 s).",
            f"- One read of this tree: DescribeOrganization + ListRoots, then for the root and "
            f"each of the {ous} OUs its pages of child OUs and of accounts ({ORG_PAGE} per page): "
            f"<= {bound} calls, which grows with the OUs and with pages of {ORG_PAGE} accounts, "
            f"not with each account (placing each account on its own would take at least one "
            f"ListParents per account: {accounts}). Last run's calls, cold burst: {kinds[0]}; "
            f"warm burst: {kinds[1]}.",
            "- Counted by botocore `before-call` on every session; a container's own "
            "directory count tells which container read (cold) and which answered from its "
            "cache (warm).",
            f"- Registry and audit calls of the last warm burst (DynamoDB, by table): {dynamo}.",
            *(
                f"- Run {i + 1}: "
                + "; ".join(
                    f"{name} burst issued in {b.issued:.1f} s, all available "
                    f"{'never' if b.until_all is None else f'at {b.until_all:.1f} s'}, "
                    f"{b.accept_calls} Accept calls, {b.invocations} handler invocations "
                    f"(follow-up Accept notifications included) done at {b.settled:.1f} s, "
                    f"paced {b.waited:.1f} s"
                    for name, b in zip(("cold", "warm"), r.bursts, strict=True)
                )
                + f"; DLQ depth at the end {r.lost}."
                for i, r in enumerate(runs)
            ),
            "- A burst issued over many seconds (a loaded machine: creating the connections and "
            "publishing their notifications competes with the handlers for the CPU) arrives as "
            "a stream, and a stream is accepted in more, smaller Accept calls (P1's note).",
        ],
        {
            "cold_org_calls": cold.median,
            "warm_org_calls": warm.median,
            "read_bound": bound,
            "accept_calls": [a.median for a in accepts],
            "seconds": [[b.until_all for b in r.bursts] for r in runs],
            "setup_seconds": [r.tree.seconds for r in runs],
        },
    )
