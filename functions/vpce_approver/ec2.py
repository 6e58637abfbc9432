"""The EC2 adapter: the only place that talks to the PrivateLink APIs.

Reads page through DescribeVpcEndpointConnections; writes batch many endpoint IDs per call and
report each `Unsuccessful` item. Throttling (`RequestLimitExceeded`) is retried by botocore's
standard retry mode with backoff; what still fails raises, so the invocation is retried.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .model import Connection

if TYPE_CHECKING:
    from mypy_boto3_ec2 import EC2Client

PAGE_SIZE = 1000


@dataclass(frozen=True, slots=True)
class Failure:
    vpc_endpoint_id: str
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class BatchResult:
    succeeded: tuple[str, ...]
    failed: tuple[Failure, ...]


def chunks(items: Sequence[str], size: int) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def to_connection(raw: dict[str, Any]) -> Connection:
    return Connection(
        service_id=raw["ServiceId"],
        vpc_endpoint_id=raw["VpcEndpointId"],
        owner=raw["VpcEndpointOwner"],
        state=raw["VpcEndpointState"],
        region=raw.get("VpcEndpointRegion"),
        created=raw.get("CreationTimestamp"),
    )


class Ec2:
    def __init__(self, client: EC2Client, *, ids_per_call: int = 1000) -> None:
        self.client = client
        self.ids_per_call = ids_per_call

    def connection_pages(
        self,
        service_id: str,
        *,
        states: Iterable[str] = (),
        owners: Iterable[str] = (),
        start_token: str | None = None,
    ) -> Iterator[tuple[list[Connection], str | None]]:
        """Yield (page, next_token) so a caller with a deadline can stop and resume."""
        filters: list[dict[str, Any]] = [{"Name": "service-id", "Values": [service_id]}]
        if states := list(states):
            filters.append({"Name": "vpc-endpoint-state", "Values": states})
        if owners := sorted(set(owners)):
            filters.append({"Name": "vpc-endpoint-owner", "Values": owners})
        token = start_token
        while True:
            kwargs: dict[str, Any] = {"Filters": filters, "MaxResults": PAGE_SIZE}
            if token:
                kwargs["NextToken"] = token
            response = self.client.describe_vpc_endpoint_connections(**kwargs)
            page = [to_connection(dict(raw)) for raw in response.get("VpcEndpointConnections", [])]
            # Another service's connection can never be decided under this service's grants.
            page = [c for c in page if c.service_id == service_id]
            token = response.get("NextToken") or None
            yield page, token
            if not token:
                return

    def connections(
        self, service_id: str, *, states: Iterable[str] = (), owners: Iterable[str] = ()
    ) -> list[Connection]:
        states, owners = list(states), list(owners)
        out: list[Connection] = []
        for page, _ in self.connection_pages(service_id, states=states, owners=owners):
            out.extend(page)
        return out

    def _mutate(self, operation: str, service_id: str, endpoint_ids: Sequence[str]) -> BatchResult:
        succeeded: list[str] = []
        failed: list[Failure] = []
        call = getattr(self.client, operation)
        for chunk in chunks(list(endpoint_ids), self.ids_per_call):
            response = call(ServiceId=service_id, VpcEndpointIds=list(chunk))
            bad = {
                item.get("ResourceId", ""): Failure(
                    item.get("ResourceId", ""),
                    item.get("Error", {}).get("Code", "Unknown"),
                    item.get("Error", {}).get("Message", ""),
                )
                for item in response.get("Unsuccessful", [])
            }
            failed.extend(bad.values())
            succeeded.extend(i for i in chunk if i not in bad)
        return BatchResult(tuple(succeeded), tuple(failed))

    def accept(self, service_id: str, endpoint_ids: Sequence[str]) -> BatchResult:
        return self._mutate("accept_vpc_endpoint_connections", service_id, endpoint_ids)

    def reject(self, service_id: str, endpoint_ids: Sequence[str]) -> BatchResult:
        return self._mutate("reject_vpc_endpoint_connections", service_id, endpoint_ids)

    def allowed_principals(self, service_id: str) -> set[str]:
        out: set[str] = set()
        kwargs: dict[str, Any] = {"ServiceId": service_id, "MaxResults": 1000}
        while True:
            response = self.client.describe_vpc_endpoint_service_permissions(**kwargs)
            out.update(
                p["Principal"] for p in response.get("AllowedPrincipals", []) if "Principal" in p
            )
            token = response.get("NextToken")
            if not token:
                return out
            kwargs["NextToken"] = token

    def modify_principals(
        self, service_id: str, *, add: Iterable[str] = (), remove: Iterable[str] = ()
    ) -> None:
        add, remove = sorted(set(add)), sorted(set(remove))
        if not add and not remove:
            return
        kwargs: dict[str, Any] = {"ServiceId": service_id}
        if add:
            kwargs["AddAllowedPrincipals"] = add
        if remove:
            kwargs["RemoveAllowedPrincipals"] = remove
        self.client.modify_vpc_endpoint_service_permissions(**kwargs)
