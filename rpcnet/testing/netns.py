"""Network namespaces as test hosts, with nftables to cut links.

``NetnsLab(count)`` creates ``count`` namespaces joined by a bridge (in a
namespace of its own), each with one address on a private /24 that exists
only inside the lab. :meth:`NetnsLab.partition` drops, at the receiver,
everything arriving from the other side; :meth:`NetnsLab.heal` removes the
rules. Needs root, ``ip`` (iproute2) and ``nft`` (nftables). Everything is
deleted on :meth:`NetnsLab.close`.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence

__all__ = ["NetnsLab", "netns_available"]


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def netns_available() -> str | None:
    """None if a lab can be built here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "network namespaces need root"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"{tool!r} is not installed (apt-get install iproute2 nftables)"
    probe = f"rpcnet-probe-{os.getpid()}"
    result = _run("ip", "netns", "add", probe, check=False)
    if result.returncode != 0:
        return f"cannot create a network namespace: {result.stderr.strip()}"
    _run("ip", "netns", "del", probe, check=False)
    return None


class NetnsLab:
    def __init__(self, count: int, *, subnet: str = "10.231.7", tag: str | None = None) -> None:
        self.count = count
        self.subnet = subnet
        self.tag = tag or f"{os.getpid() % 100000}"
        self.bridge_ns = f"rpcnet-br-{self.tag}"
        self.names = [f"rpcnet-n{i}-{self.tag}" for i in range(count)]
        self.addresses = [f"{subnet}.{i + 1}" for i in range(count)]
        self._created: list[str] = []

    def __enter__(self) -> NetnsLab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _build(self) -> None:
        _run("ip", "netns", "add", self.bridge_ns)
        self._created.append(self.bridge_ns)
        br = ("ip", "netns", "exec", self.bridge_ns)
        _run(*br, "ip", "link", "add", "br0", "type", "bridge")
        _run(*br, "ip", "link", "set", "br0", "up")
        _run(*br, "ip", "link", "set", "lo", "up")
        for index, (name, address) in enumerate(zip(self.names, self.addresses)):
            _run("ip", "netns", "add", name)
            self._created.append(name)
            inside, outside = f"v{index}a{self.tag}"[:15], f"v{index}b{self.tag}"[:15]
            _run("ip", "link", "add", inside, "netns", name, "type", "veth", "peer", "name", outside, "netns", self.bridge_ns)
            ns = ("ip", "netns", "exec", name)
            _run(*ns, "ip", "link", "set", "lo", "up")
            _run(*ns, "ip", "link", "set", inside, "name", "eth0")
            _run(*ns, "ip", "addr", "add", f"{address}/24", "dev", "eth0")
            _run(*ns, "ip", "link", "set", "eth0", "up")
            _run(*br, "ip", "link", "set", outside, "master", "br0")
            _run(*br, "ip", "link", "set", outside, "up")
            _run(*ns, "nft", "add", "table", "inet", "rpcnet")
            _run(*ns, "nft", "add", "chain", "inet", "rpcnet", "input", "{ type filter hook input priority 0 ; policy accept ; }")

    def exec_prefix(self, index: int) -> list[str]:
        """Prefix a command with this to run it inside host ``index``."""
        return ["ip", "netns", "exec", self.names[index]]

    def drop_from(self, index: int, sources: Iterable[int]) -> None:
        """Host ``index`` drops every packet arriving from ``sources``."""
        ns = self.exec_prefix(index)
        for source in sources:
            _run(*ns, "nft", "add", "rule", "inet", "rpcnet", "input", "ip", "saddr", self.addresses[source], "drop")

    def partition(self, side_a: Sequence[int], side_b: Sequence[int]) -> None:
        for index in side_a:
            self.drop_from(index, side_b)
        for index in side_b:
            self.drop_from(index, side_a)

    def heal(self) -> None:
        for index in range(self.count):
            _run(*self.exec_prefix(index), "nft", "flush", "chain", "inet", "rpcnet", "input")

    def close(self) -> None:
        for name in reversed(self._created):
            _run("ip", "netns", "del", name, check=False)
        self._created.clear()
