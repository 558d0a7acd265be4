"""A conformance suite any membership strategy runs by name.

Every check builds a small cluster of the strategy's cores on a
:class:`~rpcnet.testing.Simulator` (explicit virtual time, seeded, no sleeps),
through :func:`rpcnet.testing.membership_factory` and so through
:func:`rpcnet.membership.build_core`, exactly as a node selects the strategy
in configuration. A check raises ``AssertionError`` naming what went wrong.

What the checks cover (:data:`CHECKS`; each needs the capability of its name):

================== ==========================================================
``join``           nodes joining through one seed see each other alive, with
                   one ``joined`` event per peer
``leave``          a node that leaves is ``left`` everywhere, never ``failed``
``crash-detection`` a crashed node is ``failed`` everywhere within
                   ``detect_within``; no survivor is
``restart``        a crashed node that restarts (a fresh core) is alive again
                   everywhere and sees everyone alive
``tags``           a tag change reaches every node, with a raised incarnation
                   and a ``tags-updated`` event
``events``         through joins, a tag change, a crash, a restart and a
                   leave, every observer's events about every member follow
                   the transitions of :mod:`rpcnet.events`, at the time they
                   were delivered, and end in the state its view shows
``partition``      in a 2 | 2 partition each side sees the other failed and
                   its own side alive; after healing everyone is alive
``partition-events`` a node cut off from 3 others reports
                   ``partition-detected``, the majority does not; healing
                   reports ``partition-healed``
================== ==========================================================

A strategy that lacks a capability declares it by leaving it out of
``capabilities``: its check is reported skipped with that reason, never
passed. Use it from pytest by subclassing :class:`MembershipConformance`::

    class TestMyStrategy(MembershipConformance):
        target = MembershipUnderTest(strategy="my-strategy", detect_within=20.0)

or call :func:`run_membership_conformance` for a ``{check: outcome}`` report.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar

import attrs

from ..events import ClusterEvent, MemberEvent, PartitionDetected, PartitionHealed
from ..members import Member, MemberState
from ..plugins import PluginHost
from ..transport import Address
from . import membership_factory
from .simulator import Simulator

__all__ = [
    "CAPABILITIES",
    "CHECKS",
    "MembershipUnderTest",
    "MembershipConformance",
    "Unsupported",
    "run_membership_conformance",
    "run_check",
]

#: Every capability a strategy can declare; each names one check.
CAPABILITIES = frozenset(
    {"join", "leave", "crash-detection", "restart", "tags", "events", "partition", "partition-events"}
)

#: An options value, or a function of the whole cluster's ``(node_id, address)`` pairs returning one.
OptionsFor = Callable[[Sequence[tuple[str, Address]]], Any]


@attrs.frozen(kw_only=True)
class MembershipUnderTest:
    """A membership strategy as the suite runs it, with its declared bounds.

    Times are seconds of virtual time. ``options`` is the strategy's option
    table (or ``Options`` instance), or a function of the cluster's
    ``(node_id, address)`` pairs returning one (a static member list needs
    the addresses). ``host`` is the plugin host that provides the strategy
    (default: the installed plugins).
    """

    strategy: str
    options: Mapping[str, Any] | OptionsFor | Any = None
    failure_detector: str | None = "phi-accrual"
    detector_options: Mapping[str, Any] | None = None
    host: PluginHost | None = attrs.field(default=None, eq=False)
    capabilities: frozenset[str] = attrs.field(default=CAPABILITIES, converter=frozenset)
    #: Nodes joining through a seed see everyone alive within this.
    join_within: float = 10.0
    #: A crashed (or cut-off) node is failed everywhere within this.
    detect_within: float = 30.0
    #: A restart, a tag change or a healed partition reaches everyone within this.
    converge_within: float = 60.0
    seed: int = 1

    def __attrs_post_init__(self) -> None:
        unknown = sorted(self.capabilities - CAPABILITIES)
        if unknown:
            raise ValueError(f"unknown capabilities {unknown}; known: {sorted(CAPABILITIES)}")


class Unsupported(Exception):
    """The strategy declares it lacks the capability a check needs."""


class _Cluster:
    def __init__(self, target: MembershipUnderTest, size: int = 4, *, seed_offset: int = 0) -> None:
        self.target = target
        self.sim = Simulator(seed=target.seed + seed_offset)
        self.ids = [f"n{i}" for i in range(size)]
        self.addresses = {node_id: (f"10.0.0.{i + 1}", 7946) for i, node_id in enumerate(self.ids)}
        options = target.options
        if callable(options) and not isinstance(options, type):
            options = options([(i, self.addresses[i]) for i in self.ids])
        self.factory = membership_factory(
            target.strategy,
            options=options,
            failure_detector=target.failure_detector,
            detector_options=target.detector_options,
            host=target.host,
        )
        #: (time, observer, event); event None marks the observer's restart (a new core, a new view).
        self.events: list[tuple[float, str, ClusterEvent | None]] = []
        self.sim.on_event(lambda now, observer, event: self.events.append((now, observer, event)))

    def form(self) -> None:
        """Start every node; all but the first join through the first; wait for convergence."""
        first, *rest = self.ids
        self.sim.add_node(first, self.factory, address=self.addresses[first])
        for node_id in rest:
            self.sim.add_node(node_id, self.factory, address=self.addresses[node_id])
            self.sim.join(node_id, [first])
        self.wait(lambda: self.all_alive(self.ids, self.ids), self.target.join_within, "every node sees every node alive")

    def restart(self, node_id: str, seeds: Sequence[str]) -> None:
        self.events.append((self.sim.now, node_id, None))
        self.sim.restart(node_id, seeds=seeds)

    def state(self, observer: str, member: str) -> MemberState | None:
        m = self.sim.view(observer).get(member)
        return m.state if m is not None else None

    def member(self, observer: str, member: str) -> Member | None:
        return self.sim.view(observer).get(member)

    def all_alive(self, observers: Sequence[str], members: Sequence[str]) -> bool:
        return all(self.state(o, m) is MemberState.ALIVE for o in observers for m in members)

    def views(self, observers: Sequence[str] | None = None) -> str:
        lines = []
        for o in observers or self.sim.up_nodes():
            view = self.sim.view(o)
            lines.append(f"  {o}: " + ", ".join(f"{m.id}={m.state.value}" for m in view.values()))
        return "\n".join(lines)

    def wait(self, predicate: Callable[[], bool], within: float, what: str) -> None:
        started = self.sim.now
        if not self.sim.run_until_true(predicate, timeout=within, step=0.05):
            raise AssertionError(
                f"{self.target.strategy}: not within {within:g} s of virtual time (from t={started:.2f}): {what}\n"
                f"views at t={self.sim.now:.2f}:\n{self.views()}"
            )

    def member_events(self, observer: str, member: str, kind: str | None = None, since: float = 0.0) -> list[MemberEvent]:
        return [
            e for at, o, e in self.events
            if o == observer and isinstance(e, MemberEvent) and e.member.id == member
            and (kind is None or e.kind == kind) and at >= since
        ]


def _require(target: MembershipUnderTest, capability: str) -> None:
    if capability not in target.capabilities:
        raise Unsupported(f"{target.strategy!r} declares no {capability!r} capability")


def check_join(target: MembershipUnderTest) -> None:
    _require(target, "join")
    c = _Cluster(target)
    c.form()
    for observer in c.ids:
        for member in c.ids:
            if member == observer:
                continue
            joined = c.member_events(observer, member, "joined")
            assert len(joined) == 1, f"{observer} reported {len(joined)} joined events about {member}, expected 1"


def check_leave(target: MembershipUnderTest) -> None:
    _require(target, "leave")
    c = _Cluster(target, seed_offset=1)
    c.form()
    leaver, others = c.ids[-1], c.ids[:-1]
    c.sim.call(leaver, lambda core, now: core.leave(now))
    c.wait(lambda: c.sim.core(leaver).leave_done(), target.join_within, f"{leaver} finishes announcing its leave")
    c.sim.crash(leaver)  # a node that left stops
    c.wait(lambda: all(c.state(o, leaver) is MemberState.LEFT for o in others), target.converge_within,
           f"every node sees {leaver} left")
    c.sim.run_for(2 * target.detect_within)  # long enough to have failed it, had it been a crash
    for observer in others:
        assert c.state(observer, leaver) in (MemberState.LEFT, None), (
            f"{observer} sees {leaver} {c.state(observer, leaver)}, expected left"
        )
        assert c.member_events(observer, leaver, "failed") == [], f"{observer} reported a node that left as failed"
        assert len(c.member_events(observer, leaver, "left")) == 1, f"{observer} reported no (or several) left events"


def _crash_and_detect(c: _Cluster, victim: str) -> list[str]:
    survivors = [i for i in c.ids if i != victim]
    c.sim.crash(victim)
    c.wait(lambda: all(c.state(o, victim) is MemberState.FAILED for o in survivors), c.target.detect_within,
           f"every survivor sees {victim} failed")
    for observer in survivors:
        assert c.member_events(observer, victim, "failed"), f"{observer} sees {victim} failed but reported no failed event"
        wrongly = [m for m in survivors if m != observer and c.state(observer, m) is not MemberState.ALIVE]
        assert not wrongly, f"{observer} does not see survivors {wrongly} alive"
    return survivors


def check_crash_detection(target: MembershipUnderTest) -> None:
    _require(target, "crash-detection")
    c = _Cluster(target, seed_offset=2)
    c.form()
    _crash_and_detect(c, c.ids[2])


def check_restart(target: MembershipUnderTest) -> None:
    _require(target, "restart")
    _require(target, "crash-detection")
    c = _Cluster(target, seed_offset=3)
    c.form()
    victim = c.ids[2]
    survivors = _crash_and_detect(c, victim)
    restarted_at = c.sim.now
    c.restart(victim, seeds=[c.ids[0]])
    c.wait(lambda: c.all_alive(c.ids, c.ids), target.converge_within, f"the restarted {victim} is alive everywhere")
    for observer in survivors:
        back = [e for e in c.member_events(observer, victim, since=restarted_at) if e.kind in ("joined", "recovered")]
        assert back, f"{observer} sees {victim} alive again but reported neither joined nor recovered"


def check_tags(target: MembershipUnderTest) -> None:
    _require(target, "tags")
    c = _Cluster(target, seed_offset=4)
    c.form()
    changer = c.ids[1]
    before = c.sim.core(changer).local_member
    changed_at = c.sim.now
    c.sim.call(changer, lambda core, now: core.set_tags({**core.local_member.tags, "zone": "b"}, now))
    others = [i for i in c.ids if i != changer]

    def everywhere() -> bool:
        return all((m := c.member(o, changer)) is not None and m.tags.get("zone") == "b" for o in others)

    c.wait(everywhere, target.converge_within, f"every node sees {changer}'s new tag zone=b")
    for observer in others:
        seen = c.member(observer, changer)
        assert seen is not None and seen.incarnation > before.incarnation, (
            f"{observer} sees {changer} at incarnation {seen and seen.incarnation}; a tag change raises it"
        )
        updates = c.member_events(observer, changer, "tags-updated", since=changed_at)
        assert updates and updates[-1].member.tags.get("zone") == "b", f"{observer} reported no tags-updated with zone=b"


#: kind -> (states a member may be in before it, state after it).
_TRANSITIONS: dict[str, tuple[frozenset[MemberState | None], MemberState]] = {
    "joined": (frozenset({None, MemberState.LEFT, MemberState.FAILED}), MemberState.ALIVE),
    "suspect": (frozenset({MemberState.ALIVE, MemberState.FAILED}), MemberState.SUSPECT),
    "failed": (frozenset({MemberState.ALIVE, MemberState.SUSPECT}), MemberState.FAILED),
    "recovered": (frozenset({MemberState.SUSPECT, MemberState.FAILED}), MemberState.ALIVE),
    "left": (frozenset({MemberState.ALIVE, MemberState.SUSPECT, MemberState.FAILED}), MemberState.LEFT),
    "tags-updated": (frozenset({MemberState.ALIVE}), MemberState.ALIVE),
}


def check_events(target: MembershipUnderTest) -> None:
    _require(target, "events")
    c = _Cluster(target, seed_offset=5)
    c.form()
    if "tags" in target.capabilities:
        c.sim.call(c.ids[1], lambda core, now: core.set_tags({**core.local_member.tags, "zone": "b"}, now))
        c.sim.run_for(target.converge_within / 4)
    if "crash-detection" in target.capabilities:
        _crash_and_detect(c, c.ids[2])
        if "restart" in target.capabilities:
            c.restart(c.ids[2], seeds=[c.ids[0]])
            c.wait(lambda: c.all_alive(c.ids, c.ids), target.converge_within, "the restarted node is alive everywhere")
    if "leave" in target.capabilities:
        c.sim.call(c.ids[3], lambda core, now: core.leave(now))
        c.wait(lambda: c.sim.core(c.ids[3]).leave_done(), target.join_within, "the leave is announced")
        c.sim.run_for(target.converge_within / 4)
    last_at: dict[str, float] = {}
    state: dict[tuple[str, str], MemberState | None] = {}
    for at, observer, event in c.events:
        if event is None:  # a restart: the observer starts over with an empty view
            state = {k: v for k, v in state.items() if k[0] != observer}
            continue
        assert event.at == at, f"{observer}: {event.describe()} carries at={event.at}, delivered at {at}"
        assert at >= last_at.get(observer, 0.0), f"{observer}: events out of time order at {event.describe()}"
        last_at[observer] = at
        if not isinstance(event, MemberEvent):
            continue
        key = (observer, event.member.id)
        allowed, after = _TRANSITIONS[event.kind]
        previous = state.get(key)
        assert previous in allowed, (
            f"{observer}: {event.describe()} from state {previous and previous.value}; "
            f"{event.kind} follows only {sorted(s.value if s else 'unknown' for s in allowed)}"
        )
        assert event.member.state is after, f"{observer}: {event.describe()} carries state {event.member.state.value}"
        state[key] = after
    for (observer, member), final in state.items():
        if observer not in c.sim.up_nodes():
            continue
        shown = c.state(observer, member)
        assert shown in (final, None), f"{observer} shows {member} {shown}, but its last event said {final.value}"


def check_partition(target: MembershipUnderTest) -> None:
    _require(target, "partition")
    c = _Cluster(target, seed_offset=6)
    c.form()
    left_side, right_side = c.ids[:2], c.ids[2:]
    c.sim.partition(left_side, right_side)

    def split() -> bool:
        return all(
            c.state(o, m) is MemberState.FAILED
            for side, other in ((left_side, right_side), (right_side, left_side)) for o in side for m in other
        ) and c.all_alive(left_side, left_side) and c.all_alive(right_side, right_side)

    c.wait(split, target.detect_within, "each side sees the other failed and its own side alive")
    c.sim.heal()
    c.wait(lambda: c.all_alive(c.ids, c.ids), target.converge_within, "after healing, everyone is alive everywhere")


def check_partition_events(target: MembershipUnderTest) -> None:
    _require(target, "partition-events")
    c = _Cluster(target, seed_offset=7)
    c.form()
    alone, majority = c.ids[3], c.ids[:3]
    cut_at = c.sim.now
    c.sim.partition(majority, [alone])

    def detected() -> bool:
        return any(o == alone and isinstance(e, PartitionDetected) for at, o, e in c.events if at >= cut_at)

    c.wait(detected, target.detect_within, f"the isolated {alone} reports partition-detected")
    wrongly = sorted({o for at, o, e in c.events if at >= cut_at and o in majority and isinstance(e, PartitionDetected)})
    assert not wrongly, f"the majority side {wrongly} reported partition-detected"
    healed_from = c.sim.now
    c.sim.heal()

    def healed() -> bool:
        return any(o == alone and isinstance(e, PartitionHealed) for at, o, e in c.events if at >= healed_from)

    c.wait(healed, target.converge_within, f"{alone} reports partition-healed")


#: check name (also the capability it needs) -> check.
CHECKS: dict[str, Callable[[MembershipUnderTest], None]] = {
    "join": check_join,
    "leave": check_leave,
    "crash-detection": check_crash_detection,
    "restart": check_restart,
    "tags": check_tags,
    "events": check_events,
    "partition": check_partition,
    "partition-events": check_partition_events,
}


def run_check(target: MembershipUnderTest, name: str) -> str:
    """Run one check: ``"passed"``, or ``"skipped: <reason>"``; raises AssertionError on failure."""
    try:
        CHECKS[name](target)
    except Unsupported as exc:
        return f"skipped: {exc}"
    return "passed"


def run_membership_conformance(
    strategy: str | MembershipUnderTest, *, plugins: PluginHost | None = None, **settings: Any
) -> dict[str, str]:
    """Run every check on ``strategy`` (a name, with ``settings`` as in
    :class:`MembershipUnderTest`, or a ready target); ``{check: outcome}``."""
    target = strategy if isinstance(strategy, MembershipUnderTest) else MembershipUnderTest(
        strategy=strategy, host=plugins, **settings
    )
    return {name: run_check(target, name) for name in CHECKS}


class MembershipConformance:
    """pytest base class: one ``test_<check>`` per check, for ``target``.

    Subclass it in a module pytest collects (name the class ``Test...``) and
    set ``target``. A capability the target does not declare is a skip that
    names it.
    """

    target: ClassVar[MembershipUnderTest]

    def _run(self, name: str) -> None:
        outcome = run_check(self.target, name)
        if outcome != "passed":
            import pytest

            pytest.skip(outcome.removeprefix("skipped: "))

    def test_join(self) -> None:
        self._run("join")

    def test_leave(self) -> None:
        self._run("leave")

    def test_crash_detection(self) -> None:
        self._run("crash-detection")

    def test_restart(self) -> None:
        self._run("restart")

    def test_tags(self) -> None:
        self._run("tags")

    def test_events(self) -> None:
        self._run("events")

    def test_partition(self) -> None:
        self._run("partition")

    def test_partition_events(self) -> None:
        self._run("partition-events")
