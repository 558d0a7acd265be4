"""The plugin host: builtins, explicit plugins, blocking, checks, errors."""

from __future__ import annotations

import logging
from typing import ClassVar

import attrs
import pluggy
import pytest

from rpcnet import UnknownStrategyError, hookimpl, make_plugin_manager
from rpcnet.builtins.serializers import JsonSerializer, MsgpackSerializer
from rpcnet.errors import ConfigError, PluginError
from rpcnet.registry import DuplicateStrategyError


def host(**kwargs):
    """A plugin host with no entry points: exactly the builtins plus what a test passes."""
    return make_plugin_manager(entry_points=False, **kwargs)


class Balancer:
    name: ClassVar[str] = "fake-balancer"

    def __init__(self, **kwargs):
        self.kwargs = kwargs


def registers(kind_hook: str, *names: str, cls: type = Balancer):
    """A plugin object whose ``kind_hook`` registers ``names``."""

    class Plugin:
        pass

    def impl(self, register):
        for name in names:
            register(name, cls)

    impl.__name__ = kind_hook
    setattr(Plugin, kind_hook, hookimpl(impl))
    return Plugin()


# -- builtins -------------------------------------------------------------


def test_builtin_serializers_register_through_the_serializer_hook():
    h = host()
    assert h.strategy("serializer", "msgpack") is MsgpackSerializer
    assert h.strategy("serializer", "json") is JsonSerializer
    info = {p.name: p for p in h.plugins()}["builtin-serializers"]
    assert info.strategies == {"serializer": ("json", "msgpack")}
    assert info.hooks == ("rpcnet_register_serializers",)
    assert info.distribution == "rpcnet"


def test_each_host_is_independent():
    first = host(plugins=[("mine", registers("rpcnet_register_load_balancers", "mine"))])
    second = host()
    assert first.registry.names("load-balancer") == ["mine"]
    assert second.registry.names("load-balancer") == []
    assert first.pm is not second.pm


# -- blocking -----------------------------------------------------------------


def test_a_builtin_is_blocked_by_name_argument():
    h = host(disabled=["builtin-serializers"])
    assert "builtin-serializers" not in {p.name for p in h.plugins()}
    with pytest.raises(UnknownStrategyError, match="No serializer strategy is installed"):
        h.strategy("serializer", "msgpack")


def test_plugins_are_blocked_through_the_environment(monkeypatch):
    monkeypatch.setenv("RPCNET_DISABLED_PLUGINS", " builtin-serializers , extra ")
    extra = registers("rpcnet_register_load_balancers", "extra-lb")
    h = host(plugins=[("extra", extra)])
    assert h.registry.names("serializer") == []
    assert h.registry.names("load-balancer") == []
    assert h.pm.is_blocked("extra")


def test_blocking_one_plugin_keeps_the_others():
    h = host(disabled=["a"], plugins=[
        ("a", registers("rpcnet_register_load_balancers", "from-a")),
        ("b", registers("rpcnet_register_load_balancers", "from-b")),
    ])
    assert h.registry.names("load-balancer") == ["from-b"]


# -- start-up checks ---------------------------------------------------------


def test_a_misspelled_hook_fails_at_start_up():
    class Typo:
        @hookimpl
        def rpcnet_register_loadbalancers(self, register):  # missing underscore
            register("x", Balancer)

    with pytest.raises(pluggy.PluginValidationError, match="rpcnet_register_loadbalancers"):
        host(plugins=[("typo", Typo())])


def test_a_hook_with_an_unknown_argument_is_rejected():
    class WrongArgs:
        @hookimpl
        def rpcnet_register_load_balancers(self, register, extra):
            pass

    with pytest.raises(pluggy.PluginValidationError, match="extra"):
        host(plugins=[("wrong-args", WrongArgs())])


def test_rpcnet_call_implemented_without_wrapper_is_rejected():
    class Plain:
        @hookimpl
        def rpcnet_call(self, call):
            return None

    with pytest.raises(PluginError, match=r"'plain' implements rpcnet_call without @hookimpl\(wrapper=True\)"):
        host(plugins=[("plain", Plain())])


def test_rpcnet_call_as_old_style_hookwrapper_is_rejected():
    class OldStyle:
        @hookimpl(hookwrapper=True)
        def rpcnet_call(self, call):
            yield

    with pytest.raises(PluginError, match="'old-style' implements rpcnet_call without"):
        host(plugins=[("old-style", OldStyle())])


def test_a_wrapper_on_a_registration_hook_is_rejected():
    class Wrapping:
        @hookimpl(wrapper=True)
        def rpcnet_register_serializers(self, register):
            return (yield)

    with pytest.raises(PluginError, match="'wrapping' implements rpcnet_register_serializers as a wrapper"):
        host(plugins=[("wrapping", Wrapping())])


def test_two_plugins_under_one_name_is_an_error():
    with pytest.raises(PluginError, match="a plugin named 'builtin-serializers' is already registered"):
        host(plugins=[("builtin-serializers", registers("rpcnet_register_load_balancers", "x"))])


# -- duplicate and unknown names -----------------------------------------------


def test_duplicate_strategy_names_name_both_providers():
    rival = registers("rpcnet_register_serializers", "msgpack", cls=JsonSerializer)
    with pytest.raises(DuplicateStrategyError) as info:
        host(plugins=[("rival-msgpack", rival)])
    message = str(info.value)
    assert "serializer strategy 'msgpack' is registered twice" in message
    assert "plugin 'builtin-serializers' in rpcnet" in message
    assert "rpcnet.builtins.serializers.MsgpackSerializer" in message
    assert "plugin 'rival-msgpack'" in message
    assert "RPCNET_DISABLED_PLUGINS" in message
    assert isinstance(info.value, PluginError)


def test_the_same_name_in_different_kinds_is_fine():
    h = host(plugins=[("both", registers("rpcnet_register_health_checks", "msgpack"))])
    assert h.strategy("health-check", "msgpack") is Balancer
    assert h.strategy("serializer", "msgpack") is MsgpackSerializer


def test_unknown_name_is_a_keyerror_listing_the_choices():
    h = host()
    with pytest.raises(KeyError) as info:
        h.strategy("serializer", "msgpak")
    error = info.value
    assert isinstance(error, UnknownStrategyError)
    assert error.kind == "serializer" and error.name == "msgpak"
    assert error.available == ["json", "msgpack"]
    message = str(error)
    assert message.startswith("unknown serializer strategy 'msgpak'.")
    assert "Did you mean 'msgpack'?" in message
    assert "'json' (from plugin 'builtin-serializers' in rpcnet)" in message
    assert "'msgpack' (from plugin 'builtin-serializers' in rpcnet)" in message


def test_unknown_kind_lists_the_kinds():
    with pytest.raises(KeyError, match="kinds are transport, serializer, membership"):
        host().strategy("serialiser", "msgpack")


@pytest.mark.parametrize("bad", ["", "Has Caps", "snake_case", " padded", "with space"])
def test_strategy_names_must_be_kebab_case(bad):
    with pytest.raises(PluginError, match="kebab-case"):
        host(plugins=[("bad", registers("rpcnet_register_load_balancers", bad))])


def test_registering_something_that_is_not_a_class_is_an_error():
    class NotAClass:
        @hookimpl
        def rpcnet_register_load_balancers(self, register):
            register("instance", Balancer())

    with pytest.raises(PluginError, match="'not-a-class' registered load-balancer 'instance' with .* not a class"):
        host(plugins=[("not-a-class", NotAClass())])


# -- broken plugins ------------------------------------------------------------


class Flaky:
    """Registers a transport, then one balancer, then fails the way a missing
    dependency does."""

    @hookimpl
    def rpcnet_register_transports(self, register):
        register("flaky-transport", Balancer)

    @hookimpl
    def rpcnet_register_load_balancers(self, register):
        register("flaky-first", Balancer)
        raise ImportError("No module named 'numpyy'")

    @hookimpl
    def rpcnet_register_health_checks(self, register):
        register("flaky-health", Balancer)


def test_a_plugin_failing_to_register_is_isolated_and_rolled_back(caplog):
    with caplog.at_level(logging.WARNING, logger="rpcnet.plugins"):
        h = host(plugins=[("flaky", Flaky()), ("fine", registers("rpcnet_register_load_balancers", "fine"))])
    assert [b.name for b in h.broken] == ["flaky"]
    assert h.broken[0].error == "ImportError: No module named 'numpyy'"
    assert "failed to load" in caplog.text and "numpyy" in caplog.text
    # Nothing of the broken plugin survives, not even what it registered before failing.
    assert h.registry.names("load-balancer") == ["fine"]
    assert "flaky-transport" not in h.registry.names("transport")  # an earlier kind
    assert "flaky-health" not in h.registry.names("health-check")  # a later kind: never asked
    assert "flaky" not in {p.name for p in h.plugins()}
    # The rest of the process works.
    assert h.create("serializer", "msgpack").loads(h.create("serializer", "msgpack").dumps([1])) == [1]


def test_asking_for_a_broken_plugins_strategy_names_the_plugin_and_its_error():
    h = host(plugins=[("flaky", Flaky())])
    with pytest.raises(UnknownStrategyError) as info:
        h.create("load-balancer", "flaky-first")
    message = str(info.value)
    assert "unknown load-balancer strategy 'flaky-first'" in message
    assert "Plugin 'flaky' failed to load and may provide it: ImportError: No module named 'numpyy'" in message
    assert info.value.broken == tuple(h.broken)


def test_each_broken_plugin_is_its_own_sentence():
    from rpcnet.registry import BrokenPlugin

    broken = (BrokenPlugin(name="a", distribution=None, version=None, error="ImportError: No module named 'x'"),
              BrokenPlugin(name="b", distribution="rpcnet-b", version="1.0", error="RuntimeError: bad config."))
    message = str(UnknownStrategyError("load-balancer", "gpu", {}, broken))
    assert message == (
        "unknown load-balancer strategy 'gpu'. No load-balancer strategy is installed. "
        "Plugin 'a' failed to load and may provide it: ImportError: No module named 'x'. "
        "Plugin 'b' (distribution rpcnet-b 1.0) failed to load and may provide it: RuntimeError: bad config."
    )


# -- order ---------------------------------------------------------------------


def recorder(calls, label, **marker):
    class Plugin:
        @hookimpl(**marker)
        def rpcnet_register_load_balancers(self, register):
            calls.append(label)
            register(label, Balancer)

    return Plugin()


def test_registration_hooks_run_in_plugin_registration_order():
    calls = []
    h = host(plugins=[(label, recorder(calls, label)) for label in ("first", "second", "third")])
    assert calls == ["first", "second", "third"]
    assert [e.plugin for e in h.registry.entries("load-balancer")] == ["first", "second", "third"]


@pytest.mark.parametrize("marker", ["tryfirst", "trylast"])
def test_an_ordering_marker_on_a_registration_hook_is_refused(marker):
    # Registration order decides, so tryfirst/trylast would silently mean nothing.
    with pytest.raises(PluginError, match="plugin 'ordered' marks rpcnet_register_load_balancers tryfirst/trylast"):
        host(plugins=[("ordered", recorder([], "ordered", **{marker: True}))])


def test_the_earlier_registered_provider_is_named_first_in_a_duplicate_error():
    with pytest.raises(DuplicateStrategyError, match="by plugin 'early' .* and by plugin 'late'"):
        host(plugins=[
            ("early", registers("rpcnet_register_load_balancers", "same")),
            ("late", registers("rpcnet_register_load_balancers", "same")),
        ])


# -- options -------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class DetectorOptions:
    threshold: float = attrs.field(default=8.0, converter=float)
    acceptable_pause: float = 0.0

    @threshold.validator
    def _check(self, attribute, value):
        if value <= 0:
            raise ValueError(f"threshold must be > 0, got {value}")


class Detector:
    name: ClassVar[str] = "phi-accrual"
    Options: ClassVar[type] = DetectorOptions

    def __init__(self, options: DetectorOptions, clock=None):
        self.options = options
        self.clock = clock


@pytest.fixture
def detector_host():
    return host(plugins=[("detector", registers("rpcnet_register_failure_detectors", "phi-accrual", cls=Detector))])


def test_create_builds_the_options_and_passes_keyword_arguments(detector_host):
    clock = object()
    detector = detector_host.create("failure-detector", "phi-accrual", {"threshold": 10}, clock=clock)
    assert detector.options == DetectorOptions(threshold=10.0)
    assert detector.clock is clock
    assert detector_host.create("failure-detector", "phi-accrual").options == DetectorOptions()


def test_options_accept_kebab_case_names(detector_host):
    detector = detector_host.create("failure-detector", "phi-accrual", {"acceptable-pause": 3})
    assert detector.options.acceptable_pause == 3


def test_a_misspelled_option_is_a_config_error_with_a_suggestion(detector_host):
    with pytest.raises(ConfigError) as info:
        detector_host.create("failure-detector", "phi-accrual", {"treshold": 10})
    assert str(info.value) == (
        "unknown option 'treshold' (did you mean 'threshold'?) for failure-detector strategy "
        "'phi-accrual'; valid options: acceptable_pause, threshold"
    )


def test_an_invalid_option_value_is_a_config_error(detector_host):
    with pytest.raises(ConfigError, match="invalid options for failure-detector strategy 'phi-accrual': threshold must be > 0"):
        detector_host.create("failure-detector", "phi-accrual", {"threshold": -1})


def test_options_for_a_strategy_without_options_are_refused():
    h = host(plugins=[("lb", registers("rpcnet_register_load_balancers", "plain"))])
    with pytest.raises(ConfigError, match="load-balancer strategy 'plain' takes no options, got \\['weight'\\]"):
        h.create("load-balancer", "plain", {"weight": 2})
    assert h.create("load-balancer", "plain", seed=1).kwargs == {"seed": 1}


def test_options_must_be_a_table(detector_host):
    with pytest.raises(ConfigError, match="must be a table/dict, got list"):
        detector_host.create("failure-detector", "phi-accrual", [("threshold", 1)])
