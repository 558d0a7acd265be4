"""``static`` passes rpcnet's membership conformance suite, on the simulator, declaring what it lacks."""

from __future__ import annotations

from rpcnet.testing.membership_conformance import CAPABILITIES, MembershipConformance, MembershipUnderTest
from rpcnet.transport import format_address


def member_list(nodes):
    return {"members": [{"id": node_id, "address": format_address(address)} for node_id, address in nodes]}


class TestStaticConformance(MembershipConformance):
    # No partition policy, so no partition events. A crash costs fail_after (3)
    # failed requests, each up to ping_interval (1 s) + the simulator's
    # request timeout (2 s): at most 9 s.
    target = MembershipUnderTest(
        strategy="static",
        options=member_list,
        failure_detector=None,
        capabilities=CAPABILITIES - {"partition-events"},
        join_within=5.0,
        detect_within=12.0,
        converge_within=10.0,
    )
