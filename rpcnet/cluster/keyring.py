"""The gossip keyring: the AES-GCM keys a node seals and opens gossip with.

A keyring is an ordered set of keys. The first is the *primary*: every
outgoing packet is sealed with it. Incoming packets are tried against every
installed key, primary first, so a cluster can rotate its key with no
downtime::

    every node: ring.install(new)    # can now open packets sealed with new
    every node: ring.use(new)        # now seals with new; old still opens
    every node: ring.remove(old)     # old packets are refused from here on

Keys are 16, 24 or 32 bytes (AES-128, -192, -256). Configuration and key
files carry them as base64 strings, the form ``Keyring.generate()`` returns.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import ConfigError

__all__ = ["KEY_SIZES", "Keyring"]

#: Accepted key lengths in bytes: AES-128, AES-192 and AES-256.
KEY_SIZES = (16, 24, 32)

KeyLike = bytes | bytearray | memoryview | str


def _decode_key(key: KeyLike) -> bytes:
    if isinstance(key, str):
        try:
            raw = base64.b64decode(key.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(
                "gossip key is not valid base64; expected the base64 form of a 16, 24 or 32 byte key, "
                "such as one made by `rpcnet keygen`"
            ) from None
    elif isinstance(key, bytes | bytearray | memoryview):
        raw = bytes(key)
    else:
        raise ConfigError(f"gossip key must be bytes or a base64 string, not {type(key).__name__}")
    if len(raw) not in KEY_SIZES:
        raise ConfigError(
            f"gossip key is {len(raw)} bytes; AES-GCM needs 16, 24 or 32 bytes "
            "(AES-128/192/256). Make one with `rpcnet keygen`."
        )
    return raw


def _fingerprint(key: bytes) -> str:
    """A short name for a key in messages that reveals nothing of the key itself."""
    return "sha256:" + hashlib.sha256(key).hexdigest()[:8]


class Keyring:
    """An ordered set of AES-GCM keys; the first is the primary.

    ``Keyring(keys)`` takes at least one key (bytes or base64 string); the
    first becomes the primary. Duplicates are ignored. Changes take effect
    for the next packet sealed or opened by anything holding this keyring.
    """

    __slots__ = ("_keys",)

    def __init__(self, keys: Iterable[KeyLike]) -> None:
        if isinstance(keys, str | bytes | bytearray | memoryview):
            raise ConfigError("Keyring takes a list of keys, not a single key; write Keyring([key])")
        decoded: list[bytes] = []
        for key in keys:
            raw = _decode_key(key)
            if raw not in decoded:
                decoded.append(raw)
        if not decoded:
            raise ConfigError(
                "a keyring needs at least one key; make one with Keyring.generate(), "
                "or run gossip unencrypted only by setting insecure=True"
            )
        self._keys = decoded

    # -- loading --------------------------------------------------------

    @classmethod
    def from_config(cls, keys: Iterable[str]) -> Keyring:
        """Build from a config list of base64 strings, primary first."""
        return cls(keys)

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> Keyring:
        """Load a key file: a JSON list of base64 strings, primary first.

        This is the file :meth:`save` writes (and ``rpcnet keygen --out``),
        and the keyring file format Serf and Consul use. A file that is not
        a JSON list may hold one base64 key per line instead, primary first
        (blank lines and ``#`` comments are skipped).
        """
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read gossip key file {path}: {exc.strerror or exc}") from exc
        if not text.lstrip().startswith(("[", "{", '"')):
            lines = [line.strip() for line in text.splitlines()]
            try:
                return cls([line for line in lines if line and not line.startswith("#")])
            except ConfigError as exc:
                raise ConfigError(
                    f"gossip key file {path} is neither a JSON list of base64 keys nor one base64 key per line: {exc}"
                ) from None
        try:
            keys = json.loads(text)
        except ValueError as exc:
            raise ConfigError(
                f"gossip key file {path} is not JSON ({exc}); expected a list of base64 keys, "
                'such as ["<key>", "<key>"]'
            ) from None
        if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
            raise ConfigError(
                f"gossip key file {path} must hold a JSON list of base64 strings, primary first; "
                f"found {type(keys).__name__}"
            )
        try:
            return cls(keys)
        except ConfigError as exc:
            raise ConfigError(f"gossip key file {path}: {exc}") from None

    def to_config(self) -> list[str]:
        """The keys as base64 strings, primary first (what :meth:`from_config` takes)."""
        return [base64.b64encode(key).decode("ascii") for key in self._keys]

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the keys to ``path`` as :meth:`from_file` reads them, readable by the owner only."""
        path = Path(path)
        data = json.dumps(self.to_config(), indent=2) + "\n"
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(data)
        os.replace(tmp, path)

    @staticmethod
    def generate(size: int = 32) -> str:
        """A new random key of ``size`` bytes, as base64 ready for a config or key file."""
        if size not in KEY_SIZES:
            raise ConfigError(f"key size {size} is not one of 16, 24 or 32 bytes")
        return base64.b64encode(os.urandom(size)).decode("ascii")

    # -- rotation -------------------------------------------------------

    @property
    def primary_key(self) -> bytes:
        """The key every outgoing packet is sealed with."""
        return self._keys[0]

    @property
    def keys(self) -> tuple[bytes, ...]:
        """Every installed key, primary first: the order packets are tried in."""
        return tuple(self._keys)

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str | bytes | bytearray | memoryview):
            return False
        try:
            return _decode_key(key) in self._keys
        except ConfigError:
            return False

    def __len__(self) -> int:
        return len(self._keys)

    def install(self, key: KeyLike) -> None:
        """Add a key for opening packets; it does not become primary. Installing twice is a no-op."""
        raw = _decode_key(key)
        if raw not in self._keys:
            self._keys.append(raw)

    def use(self, key: KeyLike) -> None:
        """Make an installed key the primary, so new packets are sealed with it."""
        raw = _decode_key(key)
        if raw not in self._keys:
            raise ConfigError(
                f"cannot use gossip key {_fingerprint(raw)}: it is not installed; "
                "install it on every node first, then use it"
            )
        self._keys.remove(raw)
        self._keys.insert(0, raw)

    def remove(self, key: KeyLike) -> None:
        """Stop accepting packets sealed with a key. Removing a key not installed is a no-op.

        The primary cannot be removed: :meth:`use` another key first.
        """
        raw = _decode_key(key)
        if raw == self._keys[0]:
            raise ConfigError(
                f"cannot remove gossip key {_fingerprint(raw)}: it is the primary key; "
                "use another installed key first, then remove this one"
            )
        if raw in self._keys:
            self._keys.remove(raw)

    def __repr__(self) -> str:
        # Never print key material.
        return f"<Keyring {len(self._keys)} key(s), primary {_fingerprint(self._keys[0])}>"
