"""Every hook rpcnet calls, in one place.

Plugins implement these with ``@rpcnet.hookimpl``. Registration hooks are
collect-all: every plugin is called once, when a plugin manager is built
(:func:`rpcnet.plugins.make_plugin_manager`), and each calls ``register(name,
cls)`` for every strategy it provides. Names are kebab-case and unique per
kind across all plugins; a duplicate is an error that names both providers.

The kernel calls implementations through :class:`rpcnet.plugins.PluginHost`,
never through ``pm.hook``: registration hooks in the order plugins were
registered (builtins, explicit plugins, entry points), so ``tryfirst`` and
``trylast`` mean nothing there and are refused; ``rpcnet_cluster_event`` and
``rpcnet_call`` in pluggy's order, where those markers work as documented.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .calls import CallInfo
    from .events import ClusterEvent

PROJECT_NAME = "rpcnet"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

Register = Callable[[str, type], None]


@hookspec
def rpcnet_register_transports(register: Register) -> None:
    """Register transport strategies.

    Called once per plugin manager, at construction. Call ``register(name,
    cls)`` for each transport; ``cls`` implements
    :class:`rpcnet.transport.Transport`. Chosen by ``RpcConfig.transport``.
    Every plugin is called (collect-all); returns nothing.
    """


@hookspec
def rpcnet_register_serializers(register: Register) -> None:
    """Register serializer strategies.

    Called once per plugin manager, at construction. ``cls`` implements
    :class:`rpcnet.serializers.Serializer`. Chosen by ``RpcConfig.serializer``.
    Every plugin is called (collect-all); returns nothing.
    """


@hookspec
def rpcnet_register_membership(register: Register) -> None:
    """Register membership (dissemination) protocols.

    Called once per plugin manager, at construction. ``cls`` implements
    :class:`rpcnet.membership.Membership`. Chosen by
    ``ClusterConfig.membership``. Every plugin is called (collect-all);
    returns nothing.
    """


@hookspec
def rpcnet_register_failure_detectors(register: Register) -> None:
    """Register failure detectors.

    Called once per plugin manager, at construction. ``cls`` implements
    :class:`rpcnet.failure_detector.FailureDetector`. Chosen by
    ``ClusterConfig.failure_detector``. Every plugin is called
    (collect-all); returns nothing.
    """


@hookspec
def rpcnet_register_load_balancers(register: Register) -> None:
    """Register load-balancing strategies.

    Called once per plugin manager, at construction. ``cls`` implements
    :class:`rpcnet.balancing.LoadBalancer`. Chosen by
    ``WorkerRegistry(strategy=...)``. Every plugin is called (collect-all);
    returns nothing.
    """


@hookspec
def rpcnet_register_health_checks(register: Register) -> None:
    """Register health checks.

    Called once per plugin manager, at construction. ``cls`` implements
    :class:`rpcnet.health.HealthCheck`. Several may be enabled at once through
    ``ClusterConfig.health_checks``. Every plugin is called (collect-all);
    returns nothing.
    """


@hookspec
def rpcnet_cluster_event(event: ClusterEvent) -> None:
    """Observe a cluster event (joined, suspect, failed, recovered, left, ...).

    Called on every plugin, on the node's event loop, once per membership
    transition the local node observes, after subscribers were queued. Must
    not block; schedule slow work. Every plugin is called (collect-all), each
    on its own: one that raises is logged and the others still see the event.
    Returns nothing; return values are ignored.
    """


@hookspec
def rpcnet_call(call: CallInfo) -> Generator[None, None, None]:
    """Wrap every RPC call, on the client and the server, for metrics and tracing.

    Called once per call on each side, every wrapper (collect-all), outermost
    first. Implement it as ``@hookimpl(wrapper=True)``, a generator that yields once:
    code before ``yield`` runs when the call starts, code after it runs when
    the call has finished, however it finished (``call.status`` and
    ``call.duration`` are set then). Calls are asynchronous, so the kernel
    drives these generators itself across the call's lifetime rather than
    within one synchronous ``pm.hook`` call; an implementation that is not a
    wrapper is rejected when the plugin manager is built. An exception raised
    by a wrapper is logged and never fails the call. ``call.side`` is
    ``"client"`` or ``"server"``. Keep it cheap: it runs on the hot path.
    Returns a generator; the value it returns is ignored.
    """
