"""The extension changes nothing moto already does for the calls it does not take over.

moto's own VPC-endpoint behaviour (Gateway endpoints, Interface endpoints to AWS services,
describe/modify/delete, endpoint-service configuration) and its Organizations behaviour on valid
requests (organization, nested OUs, accounts created, moved, closed, removed) is recorded call by
call -- parsed result and raw body -- in a fresh process with plain moto and in one with the
emulator installed; the two recordings must be identical (see moto_scenario.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

SCENARIO = Path(__file__).with_name("moto_scenario.py")


def _record(mode: str) -> list[dict[str, Any]]:
    out = subprocess.run(
        [sys.executable, str(SCENARIO), mode],
        capture_output=True,
        text=True,
        check=True,
        timeout=240,
    )
    doc = json.loads(out.stdout)
    assert doc["mode"] == mode
    records: list[dict[str, Any]] = doc["records"]
    return records


def _states(record: dict[str, Any]) -> dict[str, str]:
    return {e["VpcEndpointId"]: e["State"] for e in record["result"]["VpcEndpoints"]}


def test_moto_endpoint_behaviour_is_identical_with_and_without_the_extension() -> None:
    plain = _record("plain")
    emulated = _record("emulator")
    assert [r["call"] for r in emulated] == [r["call"] for r in plain]
    for before, after in zip(plain, emulated, strict=True):
        assert after == before, before["call"]

    # the scenario really exercised moto: these facts hold in both recordings
    by_call: dict[str, list[dict[str, Any]]] = {}
    for r in plain:
        by_call.setdefault(r["call"], []).append(r)
    creates = by_call["CreateVpcEndpoint"]
    assert [r["result"]["VpcEndpoint"]["State"] for r in creates[:4]] == ["available"] * 4
    assert creates[0]["result"]["VpcEndpoint"]["VpcEndpointType"] == "Gateway"
    assert creates[4]["error"]["Code"] == "InvalidVpcID.NotFound"
    describes = by_call["DescribeVpcEndpoints"]
    assert len(_states(describes[0])) == 4
    assert describes[3]["error"]["Code"] == "InvalidVpcEndpointId.NotFound"
    assert by_call["ModifyVpcEndpoint"][0]["result"] == {"Return": True}
    assert '"Action": "s3:*"' in describes[4]["result"]["VpcEndpoints"][0]["PolicyDocument"]
    deletes = by_call["DeleteVpcEndpoints"]
    assert deletes[0]["result"] == {"Unsuccessful": []}
    assert deletes[1]["error"]["Code"] == "InvalidRoute.NotFound"
    assert deletes[2]["result"] == deletes[3]["result"] == {"Unsuccessful": []}
    assert set(_states(describes[-2]).values()) == {"deleted"}
    assert set(_states(describes[-1]).values()) == {"available"}
    first_organizations = [r["call"] for r in plain].index("DescribeOrganization")
    assert all(r["raw"] and r["raw"][1].startswith("<?xml") for r in plain[:first_organizations])
    assert all(r["raw"] and r["raw"][1].startswith("{") for r in plain[first_organizations:])

    # Organizations, moto's answers to valid requests
    not_in_use = by_call["DescribeOrganization"][0]["error"]["Code"]
    assert not_in_use == "AWSOrganizationsNotInUseException"
    move, move_up = by_call["MoveAccount"]
    assert "error" not in move
    assert "error" not in move_up
    account_parents, child_parents, top_parents = by_call["ListParents"]
    child = child_parents["kwargs"]["ChildId"]
    top = top_parents["kwargs"]["ChildId"]
    assert [p["Id"] for p in account_parents["result"]["Parents"]] == [child]
    assert [p["Id"] for p in child_parents["result"]["Parents"]] == [top]
    assert top_parents["result"]["Parents"][0]["Type"] == "ROOT"
    [closed] = by_call["ListAccountsForParent"][-1]["result"]["Accounts"]
    assert closed["Status"] == "SUSPENDED"
    assert by_call["DescribeAccount"][1]["error"]["Code"] == "AccountNotFoundException"
    assert len(by_call["ListAccounts"][0]["result"]["Accounts"]) == 2  # management + closed
