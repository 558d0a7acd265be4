"""The conformance suite fails strategies that break what it checks, and skips only what is declared missing."""

from __future__ import annotations

import attrs
import pytest
from rpcnet_swim import SwimMembership

from rpcnet import hookimpl
from rpcnet.membership import MemberState
from rpcnet.plugins import make_plugin_manager
from rpcnet.testing.membership_conformance import CHECKS, MembershipUnderTest, run_check, run_membership_conformance


class Immortal(SwimMembership):
    """Never shows anybody failed."""

    name = "immortal"

    def members(self):
        return [attrs.evolve(m, state=MemberState.ALIVE) if m.state is MemberState.FAILED else m for m in super().members()]


class Stutter(SwimMembership):
    """Delivers every event twice."""

    name = "stutter"

    def events_to_deliver(self):
        return [e for event in super().events_to_deliver() for e in (event, event)]


class TagsStayHome(SwimMembership):
    """Ignores tag changes."""

    name = "tags-stay-home"

    def set_tags(self, tags, now):
        return


def target(strategy: str, **changes) -> MembershipUnderTest:
    class Plugin:
        @hookimpl
        def rpcnet_register_membership(self, register):
            for cls in (Immortal, Stutter, TagsStayHome):
                register(cls.name, cls)

    host = make_plugin_manager(plugins=[("broken-membership", Plugin())])
    return MembershipUnderTest(strategy=strategy, host=host, detect_within=20.0, converge_within=20.0, **changes)


def test_a_strategy_that_never_fails_anybody_fails_crash_detection() -> None:
    with pytest.raises(AssertionError, match="every survivor sees n2 failed"):
        run_check(target("immortal"), "crash-detection")
    assert run_check(target("immortal"), "join") == "passed"


def test_duplicate_events_fail_join_and_events() -> None:
    with pytest.raises(AssertionError, match="2 joined events"):
        run_check(target("stutter"), "join")
    with pytest.raises(AssertionError, match="joined follows only"):
        run_check(target("stutter"), "events")


def test_tags_that_do_not_travel_fail_tags() -> None:
    with pytest.raises(AssertionError, match="new tag zone=b"):
        run_check(target("tags-stay-home"), "tags")


def test_an_undeclared_capability_is_skipped_with_its_name_never_passed() -> None:
    report = run_membership_conformance(target("swim", capabilities={"join", "tags"}))
    assert report["join"] == report["tags"] == "passed"
    assert report["partition"] == "skipped: 'swim' declares no 'partition' capability"
    assert set(report) == set(CHECKS)


def test_unknown_capabilities_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown capabilities"):
        MembershipUnderTest(strategy="swim", capabilities={"telepathy"})
