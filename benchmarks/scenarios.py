"""What each scenario sends, shared by the driver and the client worker."""

from __future__ import annotations

import attrs

__all__ = ["SCENARIOS", "DEFAULT_SCENARIOS", "Scenario"]

KIB = 1024
MIB = 1024 * KIB


@attrs.frozen(kw_only=True)
class Scenario:
    name: str
    description: str
    #: "unary" calls echo; "download" calls the server-streaming method.
    kind: str
    #: Callers sharing the one connection, each making one call after another.
    concurrency: int
    #: Unary request (and reply) size in bytes.
    payload_size: int = 0
    #: Messages per download call and bytes per message.
    stream_messages: int = 0
    stream_message_size: int = 0
    #: Run when no --scenarios are named (the others are there to look wider).
    default: bool = True
    #: Through rpcnet's typed services (attrs messages) instead of raw bytes.
    typed: bool = False
    #: The targets that run it (empty: every target).
    targets: tuple[str, ...] = ()
    #: The untyped scenario it is the typed twin of: the report gives typed / untyped.
    untyped: str | None = None

    def runs_on(self, target: str) -> bool:
        return not self.targets or target in self.targets
    #: Largest UDP payload every QUIC target sends (None: each stack's default).
    max_datagram: int | None = None

    @property
    def bytes_per_call(self) -> int:
        """Payload bytes one call moves from server to client."""
        if self.kind == "download":
            return self.stream_messages * self.stream_message_size
        return self.payload_size

    @property
    def messages_per_call(self) -> int:
        return self.stream_messages if self.kind == "download" else 1


#: A real Ethernet path: 1500-byte MTU minus IPv4 (20) and UDP (8) headers,
#: minus 20 more for IPv6 headroom.
ETHERNET_DATAGRAM = 1452
#: Datagrams loopback carries without fragmentation, for the extra rows.
LOOPBACK_DATAGRAM = 16 * KIB

SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            name="unary64_c1",
            description="64-byte echo, one caller: latency of a lone call",
            kind="unary",
            concurrency=1,
            payload_size=64,
        ),
        Scenario(
            name="unary64_c64",
            description="64-byte echo, 64 concurrent callers on one connection: per-call overhead",
            kind="unary",
            concurrency=64,
            payload_size=64,
        ),
        Scenario(
            name="unary_1mib",
            description="1 MiB echo (1 MiB up, 1 MiB down), one caller, 1452-byte datagrams: bulk unary",
            kind="unary",
            concurrency=1,
            payload_size=1 * MIB,
            max_datagram=ETHERNET_DATAGRAM,
        ),
        Scenario(
            name="unary_1mib_lo",
            description="unary_1mib with loopback-sized datagrams (16 KiB)",
            kind="unary",
            concurrency=1,
            payload_size=1 * MIB,
            max_datagram=LOOPBACK_DATAGRAM,
            default=False,
        ),
        Scenario(
            name="stream_throughput",
            description="server streams 64 messages of 16 KiB per call, one caller, 1452-byte datagrams: streaming throughput",
            kind="download",
            concurrency=1,
            stream_messages=64,
            stream_message_size=16 * KIB,
            max_datagram=ETHERNET_DATAGRAM,
        ),
        Scenario(
            name="stream_throughput_lo",
            description="stream_throughput with loopback-sized datagrams (16 KiB)",
            kind="download",
            concurrency=1,
            stream_messages=64,
            stream_message_size=16 * KIB,
            max_datagram=LOOPBACK_DATAGRAM,
            default=False,
        ),
        Scenario(
            name="typed_unary64_c64",
            description="unary64_c64 through a typed service: a one-field attrs request of 64 bytes, the same back",
            kind="unary",
            concurrency=64,
            payload_size=64,
            typed=True,
            targets=("rpcnet",),
            untyped="unary64_c64",
        ),
        Scenario(
            name="typed_stream_throughput",
            description="stream_throughput through a typed service: 64 attrs messages of 16 KiB per call",
            kind="download",
            concurrency=1,
            stream_messages=64,
            stream_message_size=16 * KIB,
            typed=True,
            targets=("rpcnet",),
            untyped="stream_throughput",
        ),
        *(
            Scenario(
                name=f"unary64_c{callers}",
                description=f"64-byte echo, {callers} concurrent callers on one connection{note}",
                kind="unary",
                concurrency=callers,
                payload_size=64,
                default=False,
            )
            for callers, note in ((16, ""), (256, ""))
        ),
        Scenario(
            name="unary256k_c16",
            description="256 KiB echo, 16 concurrent callers on one connection: the reference for unary256k_c1000",
            kind="unary",
            concurrency=16,
            payload_size=256 * KIB,
            default=False,
        ),
        Scenario(
            name="unary256k_c1000",
            description=(
                "256 KiB echo, 1000 concurrent callers on one connection, no deadline: ten times the "
                "stream credit (100), so most calls wait for a stream"
            ),
            kind="unary",
            concurrency=1000,
            payload_size=256 * KIB,
            default=False,
        ),
    )
}

#: The stream credit an RpcServer grants per connection by default
#: (RpcConfig.max_concurrent_calls_per_connection).
DEFAULT_CREDIT = 100

#: What a run without --scenarios measures: the four the goals are about, and their typed twins.
DEFAULT_SCENARIOS = [name for name, scenario in SCENARIOS.items() if scenario.default]
