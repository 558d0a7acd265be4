"""Configs: frozen attrs values from a mapping, TOML, RPCNET_* variables, layered."""

from __future__ import annotations

import warnings

import attrs
import pytest

from rpcnet import RpcConfig, TlsConfig, load_config, make_plugin_manager
from rpcnet.errors import ConfigError


def test_defaults():
    config = RpcConfig()
    assert (config.transport, config.serializer) == ("quic", "msgpack")
    assert config.max_message_size == 4 * 1024 * 1024
    assert config.options == {} and config.tls is None and config.disabled_plugins == ()


def test_configs_are_frozen_and_evolve():
    config = RpcConfig()
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.transport = "memory"
    changed = config.evolve(transport="memory")
    assert (config.transport, changed.transport) == ("quic", "memory")


def test_from_mapping_with_nested_tables_and_kebab_keys():
    config = RpcConfig.from_mapping({
        "transport": "memory",
        "max-message-size": "1024",
        "tls": {"ca_file": "ca.pem", "require_client_cert": "yes"},
        "options": {"phi-accrual": {"threshold": 10}},
        "disabled_plugins": "a, b",
    })
    assert config.transport == "memory"
    assert config.max_message_size == 1024
    assert config.tls == TlsConfig(ca_file="ca.pem", require_client_cert=True)
    assert config.options == {"phi-accrual": {"threshold": 10}}
    assert config.disabled_plugins == ("a", "b")


def test_an_unknown_setting_is_named_with_a_suggestion():
    with pytest.raises(ConfigError, match="unknown setting 'transprt' for RpcConfig \\(did you mean 'transport'\\?\\); valid settings: "):
        RpcConfig.from_mapping({"transprt": "quic"})


def test_an_unknown_tls_setting_says_where():
    with pytest.raises(ConfigError, match="unknown setting 'ca' in tls for TlsConfig"):
        RpcConfig.from_mapping({"tls": {"ca": "x"}})


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("max_message_size", 0, "max_message_size must be > 0, got 0"),
        ("shutdown_grace", -1, "shutdown_grace must be >= 0, got -1.0"),
        ("default_timeout", 0, "default_timeout must be > 0"),
        ("options", [1], "options must be a table of strategy name -> table, got list"),
        ("tls", "ca.pem", "tls must be a TlsConfig or a table, got str"),
    ],
)
def test_invalid_values_are_config_errors(setting, value, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        RpcConfig.from_mapping({setting: value})


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)


# -- TOML ---------------------------------------------------------------------------


RPC_TOML = """
[rpc]
transport = "memory"
max-message-size = 65536
disabled_plugins = ["p2c"]

[rpc.tls]
ca_file = "certs/ca.pem"
cert_file = "certs/node.pem"

[rpc.options.phi-accrual]
threshold = 10

[rpc.options.msgpack]
max_size = 2048

[cluster]
ignored = "belongs to another config class"
"""


def test_from_toml_reads_the_rpc_table(tmp_path):
    path = tmp_path / "rpcnet.toml"
    path.write_text(RPC_TOML)
    config = RpcConfig.from_toml(path)
    assert config.transport == "memory"
    assert config.max_message_size == 65536
    assert config.disabled_plugins == ("p2c",)
    assert config.tls == TlsConfig(ca_file="certs/ca.pem", cert_file="certs/node.pem")
    assert config.options["phi-accrual"]["threshold"] == 10


def test_from_toml_reads_the_root_when_there_is_no_rpc_table(tmp_path):
    path = tmp_path / "plain.toml"
    path.write_text('serializer = "json"\n')
    assert RpcConfig.from_toml(path).serializer == "json"


def test_toml_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="config file '.*missing.toml' does not exist"):
        RpcConfig.from_toml(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("transport = \n")
    with pytest.raises(ConfigError, match="config file '.*bad.toml' is not valid TOML"):
        RpcConfig.from_toml(bad)
    typo = tmp_path / "typo.toml"
    typo.write_text('[rpc]\nserialiser = "json"\n')
    with pytest.raises(ConfigError, match="unknown setting 'serialiser' in .*typo.toml for RpcConfig \\(did you mean 'serializer'\\?\\)"):
        RpcConfig.from_toml(typo)


# -- environment ----------------------------------------------------------------------


def test_from_env_reads_fields_tables_and_strategy_options():
    config = RpcConfig.from_env({
        "RPCNET_RPC__TRANSPORT": "memory",
        "RPCNET_RPC__MAX_MESSAGE_SIZE": "1024",
        "RPCNET_RPC__TLS__CA_FILE": "/etc/rpcnet/ca.pem",
        "RPCNET_RPC__TLS__REQUIRE_CLIENT_CERT": "true",
        "RPCNET_RPC__OPTIONS__PHI_ACCRUAL__THRESHOLD": "10",
        "RPCNET_RPC__OPTIONS__PHI_ACCRUAL__ACCEPTABLE_PAUSE": "2.5",
        "RPCNET_DISABLED_PLUGINS": "p2c,other",
        # Not RpcConfig settings: read by the plugin manager or other configs.
        "RPCNET_DISABLE_PLUGIN_AUTOLOAD": "1",
        "RPCNET_GOSSIP_INTERVAL": "0.2",
        "OTHER_TRANSPORT": "ignored",
    })
    assert config.transport == "memory"
    assert config.max_message_size == 1024
    assert config.tls == TlsConfig(ca_file="/etc/rpcnet/ca.pem", require_client_cert=True)
    assert config.options["phi-accrual"]["threshold"] == 10
    assert config.options == {"phi-accrual": {"threshold": 10, "acceptable_pause": 2.5}}
    assert config.disabled_plugins == ("p2c", "other")


def test_from_env_reads_os_environ_by_default(monkeypatch):
    monkeypatch.setenv("RPCNET_RPC__SERIALIZER", "json")
    assert RpcConfig.from_env().serializer == "json"


def test_a_whole_options_table_as_json():
    config = RpcConfig.from_env({"RPCNET_RPC__OPTIONS__MSGPACK": '{"max_size": 99}'})
    assert config.options == {"msgpack": {"max_size": 99}}


def test_a_bad_environment_value_says_where():
    with pytest.raises(ConfigError, match="max_message_size must be > 0"):
        RpcConfig.from_env({"RPCNET_RPC__MAX_MESSAGE_SIZE": "-5"})
    with pytest.raises(ConfigError, match="RPCNET_RPC__TLS is set both as a value and as a table"):
        RpcConfig.from_env({"RPCNET_RPC__TLS": "x", "RPCNET_RPC__TLS__CA_FILE": "y"})


# -- layering -------------------------------------------------------------------------


def test_load_config_layers_defaults_file_environment_overrides(tmp_path):
    path = tmp_path / "rpcnet.toml"
    path.write_text(RPC_TOML)
    config = load_config(
        RpcConfig,
        path,
        environ={
            "RPCNET_RPC__MAX_MESSAGE_SIZE": "2048",
            "RPCNET_RPC__TLS__KEY_FILE": "env/node.key",
            "RPCNET_RPC__OPTIONS__PHI_ACCRUAL__ACCEPTABLE_PAUSE": "3",
        },
        serializer="json",
        max_message_size=4096,
    )
    assert config.transport == "memory"  # file
    assert config.serializer == "json"  # override over default
    assert config.max_message_size == 4096  # override over environment over file
    # Tables merge key by key instead of replacing each other.
    assert config.tls == TlsConfig(ca_file="certs/ca.pem", cert_file="certs/node.pem", key_file="env/node.key")
    assert config.options == {"phi-accrual": {"threshold": 10, "acceptable_pause": 3}, "msgpack": {"max_size": 2048}}
    assert config.max_message_size == 4096 and config.shutdown_grace == 10.0  # default kept


def test_load_config_without_a_file_uses_the_environment(monkeypatch):
    monkeypatch.setenv("RPCNET_RPC__TRANSPORT", "memory")
    assert load_config(RpcConfig).transport == "memory"
    assert load_config(RpcConfig, environ={}).transport == "quic"


def test_load_config_accepts_config_objects_as_overrides(tmp_path):
    path = tmp_path / "rpcnet.toml"
    path.write_text(RPC_TOML)
    tls = TlsConfig(ca_file="override.pem")
    assert load_config(RpcConfig, path, environ={}, tls=tls).tls == tls


def test_load_config_reports_a_bad_file_as_the_files_error(tmp_path):
    path = tmp_path / "rpcnet.toml"
    path.write_text("[rpc]\nmax_message_size = 0\n")
    with pytest.raises(ConfigError, match="max_message_size must be > 0"):
        load_config(RpcConfig, path, environ={})


# -- options from config reach the strategy ---------------------------------------------


def test_strategy_options_from_the_environment_reach_the_strategy():
    config = RpcConfig.from_env({"RPCNET_RPC__SERIALIZER": "json", "RPCNET_RPC__OPTIONS__JSON__MAX_SIZE": "16"})
    host = make_plugin_manager(entry_points=False, disabled=config.disabled_plugins)
    serializer = host.create("serializer", config.serializer, config.options.get(config.serializer))
    assert serializer.max_size == 16


def test_a_misspelled_option_in_a_config_file_is_a_clear_error(tmp_path):
    path = tmp_path / "rpcnet.toml"
    path.write_text("[rpc.options.msgpack]\nmax_sise = 10\n")
    config = RpcConfig.from_toml(path)
    host = make_plugin_manager(entry_points=False)
    with pytest.raises(ConfigError, match="unknown option 'max_sise' \\(did you mean 'max_size'\\?\\) for serializer strategy 'msgpack'"):
        host.create("serializer", "msgpack", config.options["msgpack"])


def test_string_settings_keep_numeric_looking_environment_values_as_text():
    config = RpcConfig.from_env({"RPCNET_RPC__TLS__SERVER_NAME": "123", "RPCNET_RPC__TLS__CA_FILE": "2024"})
    assert config.tls.server_name == "123"
    assert config.tls.ca_file == "2024"


def test_a_string_setting_refuses_a_table():
    with pytest.raises(ConfigError, match="expected a string, got dict"):
        RpcConfig.from_mapping({"transport": {"name": "quic"}})


def test_options_for_a_strategy_nobody_provides_are_a_clear_error():
    host = make_plugin_manager(entry_points=False)
    host.check_options({"msgpack": {"max_size": 1}, "json": {}})
    with pytest.raises(ConfigError) as info:
        host.check_options({"msgpak": {"max_size": 1}})
    message = str(info.value)
    assert message.startswith("options are set for 'msgpak' (did you mean 'msgpack'?), which no installed strategy is called.")
    assert "Installed strategies: " in message and "json" in message


def test_a_frozen_config_is_immutable_all_the_way_down():
    config = RpcConfig(options={"quic": {"idle_timeout": 5}})
    with pytest.raises(TypeError):
        config.options["quic"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        config.options["quic"]["idle_timeout"] = 1  # type: ignore[index]
    # Variants are made by evolving, and the original is untouched.
    changed = config.evolve(options={"quic": {"idle_timeout": 1}})
    assert changed.options["quic"]["idle_timeout"] == 1
    assert config.options["quic"]["idle_timeout"] == 5
    assert config == RpcConfig(options={"quic": {"idle_timeout": 5}})


def test_variables_without_the_table_still_work_with_a_deprecation_warning():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        config = RpcConfig.from_env({"RPCNET_TRANSPORT": "memory", "RPCNET_SERIALIZER": "json", "RPCNET_RPC__SERIALIZER": "msgpack"})
    assert sorted(str(w.message) for w in caught if w.category is DeprecationWarning) == [
        "environment variable RPCNET_SERIALIZER is deprecated (removed in 0.3): use RPCNET_RPC__SERIALIZER",
        "environment variable RPCNET_TRANSPORT is deprecated (removed in 0.3): use RPCNET_RPC__TRANSPORT",
    ]
    assert config.transport == "memory"
    assert config.serializer == "msgpack", "the table's name wins over the old one"


def test_a_misspelled_variable_under_the_table_is_an_error_naming_the_nearest():
    with pytest.raises(ConfigError, match="environment variable RPCNET_RPC__TRANSPRT: \\[rpc\\] has no setting 'transprt' \\(did you mean RPCNET_RPC__TRANSPORT\\?\\)"):
        RpcConfig.from_env({"RPCNET_RPC__TRANSPRT": "memory"})


def test_a_file_of_other_tables_gives_this_config_nothing(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text('[cluster]\nlabel = "x"\n')
    assert RpcConfig.from_toml(path) == RpcConfig()
