"""Right after an Accept, the registry is read again (issue 11 §3).

converge() decides on the registry as it read it; the Accept call comes later (an audit write, and
throttling retries, in between). A grant suspended, denied or removed in that window would leave
the connection available on the old grant, and nothing would notice: the registry stream's
converge finds it no longer pending, and revocation is opt-in. So converge reads the accepted
consumers' items again (one consistent read, strongly consistent like the first) after the Accept:
a connection the registry no longer accepts is rejected at once. Deny and suspend are explicit;
this is not the opt-in revocation of connections that were rightly accepted *before* an edit.

An edit that lands after this read came after the Accept: the connection was accepted on a live
grant, and what happens to it is the registry stream's revocation rule. So no window is left.
The cost is one BatchGetItem per converge that accepted something (none on other paths)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

from .model import Action, Connection, Decision, DefaultDecision, Reason
from .policy import decide
from .registry import Lookup


def revoked_after_accept(
    accepted: Sequence[Connection], found: Lookup, now: datetime, default: DefaultDecision
) -> list[tuple[Connection, Decision]]:
    """Pure: the accepted connections the registry, as read after the Accept, does not accept
    (counts aside: the limit lease guards those), each with the reject decision that undoes it."""
    out = []
    for conn in accepted:
        now_decision = decide(
            replace(conn, state="pendingAcceptance"),
            found.entries(conn.owner),
            0,
            now,
            default,
            found.membership(conn.owner),
        )
        if now_decision.action is Action.ACCEPT:
            continue
        out.append(
            (
                conn,
                Decision(
                    Action.REJECT,
                    Reason.GRANT_CHANGED,
                    "the registry changed between the decision and the Accept: it now says"
                    f" {now_decision.action.value} ({now_decision.reason}); rejected at once",
                    now_decision.grant,
                ),
            )
        )
    return out
