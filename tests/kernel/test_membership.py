"""The membership seam: build_core, the datagram budget, the 0.1 method names, frozen members."""

from __future__ import annotations

import random
import warnings

import attrs
import pytest
from rpcnet_swim import SwimMembership

from rpcnet.membership import Member, MemberState, build_core
from rpcnet.plugins import make_plugin_manager


class Quiet(SwimMembership):
    """swim, declared as a core without datagrams (for the factory's sake only)."""

    name = "quiet"
    uses_datagrams = False


def host_with(*classes):
    class Plugin:
        from rpcnet import hookimpl

        @hookimpl
        def rpcnet_register_membership(self, register):
            for cls in classes:
                register(cls.name, cls)

    return make_plugin_manager(entry_points=False, plugins=[("test-membership", Plugin())])


def test_build_core_passes_the_budget_to_datagram_cores_only() -> None:
    host = make_plugin_manager()
    core = build_core(host, "swim", {"preset": "wan"}, node_id="a", address=("10.0.0.1", 1), datagram_budget=900,
                      failure_detector="phi-accrual", rng=random.Random(1))
    assert core.datagram_budget == 900 and core._budget == 900 and core.options.probe_interval == 5.0
    assert core.failure_detector is not None
    quiet = build_core(host_with(Quiet), "quiet", None, node_id="a", address=("10.0.0.1", 1), datagram_budget=900)
    assert quiet.datagram_budget is None


def test_the_budget_caps_packet_budget_and_never_raises_it() -> None:
    host = make_plugin_manager()
    low = build_core(host, "swim", {"packet_budget": 600}, node_id="a", address=("h", 1), datagram_budget=1371)
    assert low._budget == 600
    high = build_core(host, "swim", {}, node_id="a", address=("h", 1), datagram_budget=1371)
    assert high._budget == 1371


def test_a_core_written_for_0_1_still_runs_with_deprecation_warnings() -> None:
    with pytest.warns(DeprecationWarning, match="OldSwim.handle_sync_request is deprecated: rename it to handle_request"):

        class OldSwim(SwimMembership):
            name = "old-swim"

            def __init__(self, *, node_id, address, tags=None, options=None, failure_detector=None, rng=None):
                super().__init__(node_id=node_id, address=address, tags=tags, options=options,
                                 failure_detector=failure_detector, rng=rng)

            def handle_sync_request(self, source, data, now):
                self.asked = data
                return b"old"

    with pytest.warns(DeprecationWarning, match="does not accept datagram_budget"):
        core = build_core(host_with(OldSwim), "old-swim", None, node_id="a", address=("h", 1), datagram_budget=800)
    assert core.datagram_budget == 800
    assert core.handle_request(None, b"x", 0.0) == b"old" and core.asked == b"x"
    with pytest.warns(DeprecationWarning, match="call requests_to_send"):
        assert core.syncs_to_send() == []


def test_members_are_frozen_all_the_way_down() -> None:
    member = Member(id="a", address=("h", 1), tags={"role": "worker"})
    with pytest.raises(TypeError):
        member.tags["role"] = "director"  # type: ignore[index]
    changed = attrs.evolve(member, tags={**member.tags, "zone": "b"}, state=MemberState.SUSPECT)
    assert dict(changed.tags) == {"role": "worker", "zone": "b"} and dict(member.tags) == {"role": "worker"}
    assert Member(id="a", address=("h", 1), tags={"role": "worker"}) == member
    assert hash(Member(id="a", address=("h", 1), tags={"role": "x"})) == hash(Member(id="a", address=("h", 1), tags={"role": "y"}))


def test_membership_does_not_warn_for_cores_using_the_new_names() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        build_core(make_plugin_manager(), "swim", None, node_id="a", address=("h", 1), datagram_budget=1000)
