"""The gossip keyring: key validation, loading, and the rotation operations."""

from __future__ import annotations

import base64
import json
import stat

import pytest

from rpcnet.cluster.keyring import Keyring
from rpcnet.errors import ConfigError

K16 = bytes(range(16))
K24 = bytes(range(24))
K32 = bytes(range(32))
OTHER = bytes(range(100, 132))


def b64(key: bytes) -> str:
    return base64.b64encode(key).decode()


@pytest.mark.parametrize(
    "key, expected",
    [
        (K16, K16),
        (K24, K24),
        (K32, K32),
        (bytearray(K32), K32),
        (b64(K16), K16),
        (b64(K32), K32),
        (" " + b64(K32) + "\n", K32),  # pasted from a file or terminal
    ],
    ids=["16 bytes", "24 bytes", "32 bytes", "bytearray", "base64 16", "base64 32", "base64 with whitespace"],
)
def test_accepts_aes_key_sizes_as_bytes_or_base64(key, expected):
    assert Keyring([key]).primary_key == expected


@pytest.mark.parametrize(
    "key, message",
    [
        (b"", "0 bytes"),
        (bytes(15), "15 bytes"),
        (bytes(33), "33 bytes"),
        (b64(bytes(20)), "20 bytes"),
        ("not base64!", "not valid base64"),
        (12345, "bytes or a base64 string"),
    ],
    ids=["empty", "15 bytes", "33 bytes", "base64 of 20 bytes", "not base64", "int"],
)
def test_rejects_keys_aes_gcm_cannot_use(key, message):
    with pytest.raises(ConfigError, match=message):
        Keyring([key])


def test_an_empty_keyring_is_refused_and_points_at_generate_and_insecure():
    with pytest.raises(ConfigError, match=r"at least one key.*Keyring.generate\(\).*insecure=True"):
        Keyring([])


def test_a_single_key_instead_of_a_list_is_refused_clearly():
    with pytest.raises(ConfigError, match=r"Keyring\(\[key\]\)"):
        Keyring(b64(K32))  # type: ignore[arg-type]


def test_first_key_is_primary_and_duplicates_collapse():
    ring = Keyring([K32, K16, b64(K32), K16])
    assert ring.primary_key == K32
    assert ring.keys == (K32, K16)
    assert len(ring) == 2


def test_install_adds_a_decrypt_key_without_changing_the_primary():
    ring = Keyring([K32])
    ring.install(b64(K16))
    ring.install(K16)  # again: no-op
    assert ring.primary_key == K32
    assert ring.keys == (K32, K16)
    assert K16 in ring and b64(K16) in ring and OTHER not in ring


def test_use_makes_an_installed_key_primary_and_keeps_the_old_one():
    ring = Keyring([K32, K16, K24])
    ring.use(K24)
    assert ring.keys == (K24, K32, K16)
    ring.use(K24)  # already primary: no-op
    assert ring.keys == (K24, K32, K16)


def test_use_refuses_a_key_that_is_not_installed():
    ring = Keyring([K32])
    with pytest.raises(ConfigError, match="not installed; install it on every node first"):
        ring.use(OTHER)
    assert ring.keys == (K32,)


def test_remove_drops_a_secondary_key():
    ring = Keyring([K32, K16])
    ring.remove(K16)
    assert ring.keys == (K32,)
    ring.remove(K16)  # not installed any more: no-op
    assert ring.keys == (K32,)


def test_remove_refuses_the_primary():
    ring = Keyring([K32, K16])
    with pytest.raises(ConfigError, match="is the primary key; use another installed key first"):
        ring.remove(K32)
    assert ring.keys == (K32, K16)


def test_full_rotation_sequence():
    ring = Keyring([K32])
    ring.install(OTHER)
    ring.use(OTHER)
    ring.remove(K32)
    assert ring.keys == (OTHER,)


def test_from_config_takes_base64_strings_primary_first():
    ring = Keyring.from_config([b64(K16), b64(K32)])
    assert ring.keys == (K16, K32)
    assert ring.to_config() == [b64(K16), b64(K32)]


def test_from_file_reads_a_json_list_of_base64_keys(tmp_path):
    path = tmp_path / "keyring.json"
    path.write_text(json.dumps([b64(K32), b64(K16)]))
    assert Keyring.from_file(path).keys == (K32, K16)


def test_save_writes_what_from_file_reads_readable_by_owner_only(tmp_path):
    path = tmp_path / "keyring.json"
    ring = Keyring([K32, K24])
    ring.save(path)
    assert Keyring.from_file(path).keys == ring.keys
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(
    "content, message",
    [
        ("not json", "is neither a JSON list of base64 keys nor one base64 key per line: gossip key is not valid base64"),
        ("{not json", "is not JSON"),
        ('{"key": "abc"}', "must hold a JSON list of base64 strings"),
        ("[1, 2]", "must hold a JSON list of base64 strings"),
        ("[]", "at least one key"),
        (json.dumps([b64(bytes(20))]), "20 bytes"),
    ],
    ids=["not a key", "not json", "object", "numbers", "empty list", "bad key"],
)
def test_from_file_errors_name_the_file_and_the_expected_format(tmp_path, content, message):
    path = tmp_path / "keyring.json"
    path.write_text(content)
    with pytest.raises(ConfigError, match=message) as info:
        Keyring.from_file(path)
    assert str(path) in str(info.value)


def test_from_file_reads_one_key_per_line(tmp_path):
    first, second = Keyring.generate(), Keyring.generate()
    path = tmp_path / "gossip.key"
    path.write_text(f"# primary first\n{first}\n\n{second}\n")
    assert Keyring.from_file(path).to_config() == [first, second]


def test_from_file_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read gossip key file"):
        Keyring.from_file(tmp_path / "missing.json")


@pytest.mark.parametrize("size", [16, 24, 32])
def test_generate_returns_a_fresh_base64_key_of_the_asked_size(size):
    first, second = Keyring.generate(size), Keyring.generate(size)
    assert len(base64.b64decode(first)) == size
    assert first != second
    assert Keyring([first]).primary_key == base64.b64decode(first)


def test_generate_defaults_to_aes_256_and_refuses_other_sizes():
    assert len(base64.b64decode(Keyring.generate())) == 32
    with pytest.raises(ConfigError, match="16, 24 or 32"):
        Keyring.generate(20)


def test_repr_and_errors_never_show_key_material():
    ring = Keyring([K32])
    assert b64(K32)[:4] not in repr(ring)
    with pytest.raises(ConfigError) as info:
        ring.remove(K32)
    assert b64(K32)[:4] not in str(info.value)
