"""Entry-point discovery: the real installed example plugin, and fakes for
the cases no one would install on purpose (broken, duplicate)."""

from __future__ import annotations

import importlib.metadata
import random

import pytest

from rpcnet import UnknownStrategyError, make_plugin_manager
from rpcnet.errors import PluginError
from rpcnet.registry import DuplicateStrategyError

# -- the real third-party example distribution --------------------------------


@pytest.fixture(scope="module")
def p2c_distribution():
    try:
        return importlib.metadata.distribution("rpcnet-p2c")
    except importlib.metadata.PackageNotFoundError:
        pytest.fail("examples/plugins/rpcnet-p2c is not installed; `make test` installs it into .venv")


def test_the_installed_example_plugin_is_discovered_through_its_entry_point(p2c_distribution):
    [ep] = [ep for ep in p2c_distribution.entry_points if ep.group == "rpcnet"]
    assert (ep.name, ep.value) == ("p2c", "rpcnet_p2c")

    host = make_plugin_manager()
    entry = host.registry.entry("load-balancer", "p2c")
    assert (entry.plugin, entry.distribution) == ("p2c", "rpcnet-p2c")
    info = {p.name: p for p in host.plugins()}["p2c"]
    assert (info.distribution, info.version) == ("rpcnet-p2c", p2c_distribution.version)
    assert info.strategies == {"load-balancer": ("p2c",)}
    assert info.hooks == ("rpcnet_register_load_balancers",)


def test_the_example_plugin_is_selectable_by_name_with_options(p2c_distribution):
    from rpcnet_p2c import PowerOfTwoChoices

    balancer = make_plugin_manager().create("load-balancer", "p2c", {"choices": 3}, rng=random.Random(1))
    assert type(balancer) is PowerOfTwoChoices
    assert balancer.options.choices == 3


@pytest.mark.parametrize("blocked", ["p2c", "rpcnet-p2c", "rpcnet_p2c"])
def test_the_example_plugin_is_blockable_by_plugin_or_distribution_name(p2c_distribution, blocked):
    host = make_plugin_manager(disabled=[blocked])
    assert "p2c" not in {p.name for p in host.plugins()}
    with pytest.raises(UnknownStrategyError, match="unknown load-balancer strategy 'p2c'"):
        host.create("load-balancer", "p2c")


def test_the_example_plugin_is_blockable_through_the_environment(p2c_distribution, monkeypatch):
    monkeypatch.setenv("RPCNET_DISABLED_PLUGINS", "p2c")
    with pytest.raises(UnknownStrategyError):
        make_plugin_manager().strategy("load-balancer", "p2c")


def test_disabling_autoload_skips_third_party_plugins_but_keeps_bundled_ones(p2c_distribution, monkeypatch):
    bundled = {ep.name for ep in importlib.metadata.distribution("rpcnet").entry_points if ep.group == "rpcnet"}
    assert bundled, "the rpcnet distribution declares its bundled plugins as entry points"

    monkeypatch.setenv("RPCNET_DISABLE_PLUGIN_AUTOLOAD", "1")
    names = {p.name for p in make_plugin_manager().plugins()}
    assert "p2c" not in names
    assert bundled <= names
    assert "builtin-serializers" in names

    monkeypatch.setenv("RPCNET_DISABLE_PLUGIN_AUTOLOAD", "0")
    assert "p2c" in {p.name for p in make_plugin_manager().plugins()}
    assert "p2c" not in {p.name for p in make_plugin_manager(autoload=False).plugins()}


def test_entry_points_false_loads_only_builtins_and_explicit_plugins():
    from rpcnet.plugins import BUILTIN_PLUGINS

    host = make_plugin_manager(entry_points=False)
    loaded = {p.name for p in host.plugins()} | {b.name for b in host.broken}
    assert loaded == {name for name, _ in BUILTIN_PLUGINS}
    assert {"builtin-serializers", "builtin-memory"} <= loaded


# -- fake distributions --------------------------------------------------------


def test_a_fake_distribution_is_loaded_with_its_name_and_version(fake_dist, only_entry_points, lb_module):
    only_entry_points(fake_dist("rpcnet-fancy", {"fancy": "rpcnet_fancy_mod"},
                                {"rpcnet_fancy_mod": lb_module("fancy")}, version="2.5"))
    host = make_plugin_manager()
    entry = host.registry.entry("load-balancer", "fancy")
    assert (entry.plugin, entry.distribution) == ("fancy", "rpcnet-fancy")
    assert {p.name: p.version for p in host.plugins()}["fancy"] == "2.5"


def test_a_plugin_whose_import_fails_is_reported_not_fatal(fake_dist, only_entry_points, lb_module):
    only_entry_points(
        fake_dist("rpcnet-broken", {"broken": "rpcnet_broken_mod"},
                  {"rpcnet_broken_mod": "import numpyy_not_installed\n"}, version="0.3"),
        fake_dist("rpcnet-fine", {"fine": "rpcnet_fine_mod"}, {"rpcnet_fine_mod": lb_module("fine")}),
    )
    host = make_plugin_manager()
    [broken] = host.broken
    assert (broken.name, broken.distribution, broken.version) == ("broken", "rpcnet-broken", "0.3")
    assert broken.error == "ModuleNotFoundError: No module named 'numpyy_not_installed'"
    assert host.registry.names("load-balancer") == ["fine"]

    with pytest.raises(UnknownStrategyError) as info:
        host.create("load-balancer", "gpu-aware")
    assert (
        "Plugin 'broken' (distribution rpcnet-broken 0.3) failed to load and may provide it: "
        "ModuleNotFoundError: No module named 'numpyy_not_installed'"
    ) in str(info.value)


def test_a_plugin_raising_at_import_is_isolated_too(fake_dist, only_entry_points):
    only_entry_points(fake_dist("rpcnet-angry", {"angry": "rpcnet_angry_mod"},
                                {"rpcnet_angry_mod": "raise RuntimeError('config file missing')\n"}))
    host = make_plugin_manager()
    assert [(b.name, b.error) for b in host.broken] == [("angry", "RuntimeError: config file missing")]


def test_an_entry_point_naming_a_missing_attribute_is_broken(fake_dist, only_entry_points):
    only_entry_points(fake_dist("rpcnet-typo", {"typo": "rpcnet_typo_mod:plugn"},
                                {"rpcnet_typo_mod": "plugin = object()\n"}))
    [broken] = make_plugin_manager().broken
    assert broken.name == "typo" and "plugn" in broken.error


def test_a_broken_plugin_can_be_blocked(fake_dist, only_entry_points):
    only_entry_points(fake_dist("rpcnet-broken", {"broken": "rpcnet_broken_mod"},
                                {"rpcnet_broken_mod": "import numpyy_not_installed\n"}))
    assert make_plugin_manager(disabled=["broken"]).broken == []


def test_duplicate_strategy_from_two_distributions_names_both(fake_dist, only_entry_points, lb_module):
    only_entry_points(
        fake_dist("rpcnet-one", {"one": "rpcnet_one_mod"}, {"rpcnet_one_mod": lb_module("shared", "One")}),
        fake_dist("rpcnet-two", {"two": "rpcnet_two_mod"}, {"rpcnet_two_mod": lb_module("shared", "Two")}),
    )
    with pytest.raises(DuplicateStrategyError) as info:
        make_plugin_manager()
    message = str(info.value)
    assert "load-balancer strategy 'shared' is registered twice" in message
    assert "plugin 'one' in rpcnet-one (rpcnet_one_mod.One)" in message
    assert "plugin 'two' in rpcnet-two (rpcnet_two_mod.Two)" in message
    # Blocking either one resolves it.
    assert make_plugin_manager(disabled=["rpcnet-two"]).registry.entry("load-balancer", "shared").plugin == "one"


def test_two_distributions_with_one_plugin_name_is_an_error_naming_both(fake_dist, only_entry_points, lb_module):
    only_entry_points(
        fake_dist("rpcnet-left", {"same": "rpcnet_left_mod"}, {"rpcnet_left_mod": lb_module("left")}),
        fake_dist("rpcnet-right", {"same": "rpcnet_right_mod"}, {"rpcnet_right_mod": lb_module("right")}),
    )
    with pytest.raises(PluginError, match="two distributions provide an rpcnet plugin named 'same': rpcnet-left and rpcnet-right"):
        make_plugin_manager()


def test_one_distribution_seen_twice_loads_once(fake_dist, only_entry_points, lb_module):
    dist = fake_dist("rpcnet-twice", {"twice": "rpcnet_twice_mod"}, {"rpcnet_twice_mod": lb_module("twice")})
    only_entry_points(dist, dist)
    assert make_plugin_manager().registry.names("load-balancer") == ["twice"]


def test_bundled_entry_points_load_without_autoload(fake_dist, only_entry_points, lb_module):
    only_entry_points(
        fake_dist("rpcnet", {"bundled": "rpcnet_bundled_mod"}, {"rpcnet_bundled_mod": lb_module("bundled")}),
        fake_dist("rpcnet-extra", {"extra": "rpcnet_extra_mod"}, {"rpcnet_extra_mod": lb_module("extra")}),
    )
    assert make_plugin_manager(autoload=False).registry.names("load-balancer") == ["bundled"]
    assert make_plugin_manager().registry.names("load-balancer") == ["bundled", "extra"]


def test_a_plugin_passed_explicitly_wins_over_its_entry_point(fake_dist, only_entry_points, lb_module):
    only_entry_points(fake_dist("rpcnet-dual", {"dual": "rpcnet_dual_mod"}, {"rpcnet_dual_mod": lb_module("dual")}))
    import rpcnet_dual_mod

    host = make_plugin_manager(plugins=[rpcnet_dual_mod])
    assert host.registry.entry("load-balancer", "dual").plugin == "rpcnet_dual_mod"
    assert [p.name for p in host.plugins() if "dual" in p.strategies.get("load-balancer", [])] == ["rpcnet_dual_mod"]
