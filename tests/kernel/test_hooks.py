"""One test per hook spec, named ``test_hook_<hook name>``.

``test_hookspecs.py`` checks that every spec in ``rpcnet/hookspecs.py`` has a
test here (the datasette convention), so a new hook cannot land untested.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs

from rpcnet import hookimpl, make_plugin_manager
from rpcnet.balancing import LoadBalancer, WorkerView
from rpcnet.serializers import Serializer
from rpcnet.transport import Transport


def host(*plugins: tuple[str, object]):
    return make_plugin_manager(entry_points=False, plugins=plugins)


@attrs.frozen(kw_only=True)
class PeriodOptions:
    period: float = 1.0


def check_registration(kind: str, hook: str, strategy: type, name: str) -> Any:
    """A plugin implementing ``hook`` makes ``name`` selectable as ``kind``,
    is listed with it, and the instance gets validated options."""

    class Plugin:
        pass

    def impl(self, register):
        register(name, strategy)

    impl.__name__ = hook
    setattr(Plugin, hook, hookimpl(impl))
    h = host(("test-plugin", Plugin()))
    assert h.strategy(kind, name) is strategy
    info = {p.name: p for p in h.plugins()}["test-plugin"]
    assert info.strategies == {kind: (name,)}
    assert info.hooks == (hook,)
    return h


def test_hook_rpcnet_register_transports():
    class LoopbackTransport(Transport):
        name: ClassVar[str] = "loopback"
        Options: ClassVar[type] = PeriodOptions

        async def listen(self, address, on_stream, *, tls=None):
            raise NotImplementedError

        async def connect(self, address, *, tls=None, server_name=None):
            raise NotImplementedError

    h = check_registration("transport", "rpcnet_register_transports", LoopbackTransport, "loopback")
    assert h.create("transport", "loopback", {"period": 2}).options == PeriodOptions(period=2)


def test_hook_rpcnet_register_serializers():
    class ReprSerializer(Serializer):
        name: ClassVar[str] = "repr"

        def dumps(self, value):
            return repr(value).encode()

        def loads(self, data):
            return eval(bytes(data).decode(), {})  # test-only toy

    h = check_registration("serializer", "rpcnet_register_serializers", ReprSerializer, "repr")
    serializer = h.create("serializer", "repr", {"max_size": 64})
    assert serializer.max_size == 64
    assert serializer.loads(serializer.dumps({"a": (1, 2)})) == {"a": (1, 2)}
    # The builtins are still there next to it.
    assert h.registry.names("serializer") == ["json", "msgpack", "repr"]


def test_hook_rpcnet_register_membership():
    class StaticMembership:
        name: ClassVar[str] = "static"
        Options: ClassVar[type] = PeriodOptions

        def __init__(self, options, seeds=()):
            self.options, self.seeds = options, seeds

    h = check_registration("membership", "rpcnet_register_membership", StaticMembership, "static")
    membership = h.create("membership", "static", {"period": 0.5}, seeds=("a",))
    assert (membership.options.period, membership.seeds) == (0.5, ("a",))


def test_hook_rpcnet_register_failure_detectors():
    class FixedTimeout:
        name: ClassVar[str] = "fixed-timeout"
        Options: ClassVar[type] = PeriodOptions

        def __init__(self, options):
            self.options = options

    h = check_registration("failure-detector", "rpcnet_register_failure_detectors", FixedTimeout, "fixed-timeout")
    assert h.create("failure-detector", "fixed-timeout").options == PeriodOptions()


def test_hook_rpcnet_register_load_balancers():
    class First(LoadBalancer):
        name: ClassVar[str] = "first"

        def select(self, workers: Sequence[WorkerView]) -> WorkerView:
            return workers[0]

    h = check_registration("load-balancer", "rpcnet_register_load_balancers", First, "first")
    balancer = h.create("load-balancer", "first", rng=random.Random(0))
    workers = [WorkerView(node_id=n, address=("127.0.0.1", 1)) for n in "ab"]
    assert balancer.select(workers).node_id == "a"


def test_hook_rpcnet_register_health_checks():
    class AlwaysHealthy:
        name: ClassVar[str] = "always"

        def check(self) -> bool:
            return True

    h = check_registration("health-check", "rpcnet_register_health_checks", AlwaysHealthy, "always")
    assert h.create("health-check", "always").check() is True


def test_hook_rpcnet_cluster_event(caplog):
    seen = []

    class Raises:
        @hookimpl
        def rpcnet_cluster_event(self, event):
            raise RuntimeError("observer bug")

    class Records:
        @hookimpl
        def rpcnet_cluster_event(self, event):
            seen.append(event)

    class NoArguments:
        @hookimpl
        def rpcnet_cluster_event(self):
            seen.append("ping")

    # pluggy calls the last registered first: "raises" runs before "records".
    h = host(("records", Records()), ("no-arguments", NoArguments()), ("raises", Raises()))
    event = {"type": "joined", "node": "n1"}
    with caplog.at_level(logging.ERROR, logger="rpcnet.plugins"):
        h.notify_cluster_event(event)
    assert seen == ["ping", event]
    assert "plugin 'raises' failed in rpcnet_cluster_event" in caplog.text
    assert "observer bug" in caplog.text


def test_hook_rpcnet_call():
    log = []

    class Outer:
        @hookimpl(wrapper=True, tryfirst=True)
        def rpcnet_call(self, call):
            log.append(("outer-start", call["method"]))
            yield
            log.append(("outer-end", call["status"]))

    class Inner:
        @hookimpl(wrapper=True)
        def rpcnet_call(self, call):
            log.append(("inner-start", call["method"]))
            yield
            log.append(("inner-end", call["status"]))

    class Counter:
        @hookimpl(wrapper=True, trylast=True)
        def rpcnet_call(self):  # may omit the argument, as with any pluggy hook
            log.append(("count",))
            yield

    h = host(("outer", Outer()), ("inner", Inner()), ("counter", Counter()))
    assert len(h.call_wrappers) == 3
    call = {"method": "/echo.Echo/Say", "status": None}
    # Drive them the way the engine does: start outermost first, finish innermost first.
    started = [wrapper(call=call) for wrapper in h.call_wrappers]
    for generator in started:
        next(generator)
    call["status"] = "OK"
    for generator in reversed(started):
        assert next(generator, "done") == "done"
    assert log == [
        ("outer-start", "/echo.Echo/Say"),
        ("inner-start", "/echo.Echo/Say"),
        ("count",),
        ("inner-end", "OK"),
        ("outer-end", "OK"),
    ]
    assert host().call_wrappers == []
