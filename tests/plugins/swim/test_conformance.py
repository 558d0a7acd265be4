"""The swim strategy passes the membership conformance suite (rpcnet.testing.membership_conformance)."""

from __future__ import annotations

from rpcnet.testing.membership_conformance import MembershipConformance, MembershipUnderTest


class TestSwimConformance(MembershipConformance):
    # LAN defaults; 4 nodes detect a crash in about 5 s, a healed partition
    # reconnects within two reconnect intervals (10 s each).
    target = MembershipUnderTest(strategy="swim", detect_within=20.0, converge_within=40.0)
