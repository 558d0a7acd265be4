"""Settings of a cluster node."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, ClassVar

import attrs

from ..config import ConfigBase, TlsConfig, optional, positive, to_bool, to_names, to_options, to_tls
from ..errors import ConfigError
from ..health import HEALTH_TAG
from ..members import freeze_tags
from ..transport import Address, parse_address

__all__ = ["ClusterConfig", "PRESETS", "RPC_ADDRESS_TAG", "HEALTH_TAG", "freeze"]

#: Deprecated (until 0.3): the SWIM presets, now ``SwimOptions.preset``.
PRESETS = ("lan", "wan", "local")
#: Deprecated ClusterConfig fields (until 0.3) -> the ``swim`` option they set.
SWIM_ALIASES = {"preset": "preset", "partition_policy": "partition_policy"}
#: Tag that carries a member's RPC address ("host:port").
RPC_ADDRESS_TAG = "rpcnet.rpc"


def _to_address(value: Any) -> Address:
    try:
        return parse_address(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(str(exc)) from None


def freeze(value: Any) -> Any:
    """Read-only all the way down: mappings become ``MappingProxyType``, lists tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, (list, tuple)):
        return tuple(freeze(v) for v in value)
    if isinstance(value, (set, frozenset)):
        return frozenset(freeze(v) for v in value)
    return value


def _to_frozen_options(value: Any) -> Mapping[str, Mapping[str, Any]]:
    return freeze(to_options(value))


def _to_tags(value: Any) -> Mapping[str, str]:
    if isinstance(value, str):
        tags = {}
        for part in value.split(","):
            if not part.strip():
                continue
            key, sep, tag_value = part.partition("=")
            if not sep or not key.strip():
                raise ConfigError(f"tags must look like 'key=value,key2=value2', got {value!r}")
            tags[key.strip()] = tag_value.strip()
        return freeze_tags(tags)
    return freeze_tags(dict(value))


@attrs.frozen(kw_only=True)
class ClusterConfig(ConfigBase):
    """How a node joins and runs the cluster.

    Gossip (small, frequent) travels as encrypted UDP datagrams on
    ``gossip_bind``; full-state syncs travel as RPC calls over the node's own
    (mutual-TLS) RPC server. ``seeds`` are RPC addresses of members to join
    through.
    """

    toml_table: ClassVar[str] = "cluster"

    #: Unique id of this node; defaults to "<rpc host>:<rpc port>".
    node_id: str | None = None
    #: Where the gossip UDP socket binds (port 0: any free port).
    gossip_bind: Address = attrs.field(default=("127.0.0.1", 0), converter=_to_address)
    #: Address peers send gossip to, when it differs from the bound one (NAT, 0.0.0.0).
    gossip_advertise: Address | None = attrs.field(default=None, converter=optional(_to_address))
    #: RPC address peers use for syncs; defaults to the server's bound address.
    rpc_advertise: Address | None = attrs.field(default=None, converter=optional(_to_address))
    #: Tags this node advertises (key = value, or "k=v,k2=v2"); read-only, change with ``config.evolve(tags={...})``.
    tags: Mapping[str, str] = attrs.field(factory=dict, converter=_to_tags, hash=False)
    #: RPC addresses ("host:port") of existing members.
    seeds: tuple[str, ...] = attrs.field(default=(), converter=to_names)
    #: Membership strategy (swim, or a plugin's); its options in [cluster.options.<name>].
    membership: str = "swim"
    #: Failure-detector strategy the membership uses; its options in [cluster.options.<name>].
    failure_detector: str = "phi-accrual"
    #: Deprecated until 0.3: set ``options["swim"]["preset"]`` (``[cluster.options.swim] preset``).
    preset: str | None = None
    #: Deprecated until 0.3: set ``options["swim"]["partition_policy"]``.
    partition_policy: str | None = None
    #: Per-strategy options, e.g. {"phi-accrual": {"threshold": 10}, "swim": {"preset": "wan"}};
    #: read-only all the way down.
    options: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict, converter=_to_frozen_options, hash=False)
    #: Health checks run periodically; their aggregate travels as a tag.
    health_checks: tuple[str, ...] = attrs.field(default=(), converter=to_names)
    #: Seconds between rounds of health checks.
    health_interval: float = attrs.field(default=5.0, converter=float, validator=positive)
    #: Seconds one health check may take; a slower one counts as unhealthy.
    health_timeout: float = attrs.field(default=2.0, converter=float, validator=positive)
    #: Gossip encryption keys (base64 AES keys of 16, 24 or 32 bytes); the first is primary.
    gossip_keys: tuple[str, ...] = attrs.field(default=(), converter=to_names)
    #: A keyring file instead of gossip_keys.
    keyring_file: str | None = None
    #: Allow unencrypted gossip. Never on a network you do not control.
    insecure_gossip: bool = attrs.field(default=False, converter=to_bool)
    #: Seconds a sealed gossip packet's timestamp may differ from this
    #: node's clock; further off, it is dropped (counted as ``dropped_stale``
    #: and logged). Bounds how long a captured packet could be replayed to a
    #: node that forgot its sender; keep the clocks within it (NTP).
    gossip_clock_skew: float = attrs.field(default=60.0, converter=float, validator=positive)
    #: Cluster label: nodes with different labels never merge.
    label: str = ""
    #: Seconds to keep trying the seeds before ``Cluster.joined()`` raises
    #: UNAVAILABLE (and ``rpcnet node`` exits); unset: keep trying, so nodes
    #: may start in any order.
    join_timeout: float | None = attrs.field(default=None, converter=optional(float), validator=positive)
    #: Seconds between join attempts at most (they start at 0.1 s and double),
    #: and between checks, once joined, that every seed is alive in the view:
    #: a seed that is not (restarted with no seeds of its own), or every seed
    #: when nobody else is alive, gets a full-state sync.
    rejoin_interval: float = attrs.field(default=1.0, converter=float, validator=positive)
    #: Seconds a full-state sync may take.
    sync_timeout: float = attrs.field(default=5.0, converter=float, validator=positive)
    #: TLS for the node's outgoing sync calls; defaults to the server's own
    #: certificate (mutual TLS) and CA.
    tls: TlsConfig | None = attrs.field(default=None, converter=to_tls)

    def __attrs_post_init__(self) -> None:
        moved = {SWIM_ALIASES[name]: getattr(self, name) for name in SWIM_ALIASES if getattr(self, name) is not None}
        if not moved:
            return
        names = sorted(n for n in SWIM_ALIASES if getattr(self, n) is not None)
        warnings.warn(
            " and ".join(f"ClusterConfig.{n}" for n in names)
            + (" is" if len(names) == 1 else " are")
            + " deprecated (removed in 0.3): an option of the swim membership strategy; set "
            + " and ".join(f'options["swim"]["{SWIM_ALIASES[n]}"]' for n in names)
            + " instead ([cluster.options.swim] in TOML)",
            DeprecationWarning,
            stacklevel=3,
        )
        swim = {**moved, **dict(self.options.get("swim", {}))}
        object.__setattr__(self, "options", _to_frozen_options({**self.options, "swim": swim}))
        # Folded in: the options now carry them, so evolving this config does not warn again.
        for name in names:
            object.__setattr__(self, name, None)
