"""The piggyback queue: each update is handed out a limited number of times.

One entry per member: a newer update about a member replaces the older one.
Entries sent fewer times go first, and among equals the newest, so fresh news
spreads before stale news (memberlist's TransmitLimitedQueue).
"""

from __future__ import annotations

__all__ = ["BroadcastQueue"]


class _Entry:
    __slots__ = ("data", "transmits", "order")

    def __init__(self, data: bytes, order: int) -> None:
        self.data = data
        self.transmits = 0
        self.order = order


class BroadcastQueue:
    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}
        self._order = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def put(self, key: str, data: bytes) -> None:
        """Queue ``data`` (an encoded update about member ``key``), replacing any older one."""
        self._order += 1
        self._entries[key] = _Entry(data, self._order)

    def take(self, budget: int, limit: int) -> list[bytes]:
        """Updates that fit in ``budget`` bytes; each is dropped after ``limit`` hand-outs."""
        if not self._entries or budget <= 0:
            return []
        chosen: list[bytes] = []
        used = 0
        entries = self._entries
        for key, entry in sorted(entries.items(), key=lambda item: (item[1].transmits, -item[1].order)):
            size = len(entry.data)
            if used + size > budget:
                continue
            used += size
            chosen.append(entry.data)
            entry.transmits += 1
            if entry.transmits >= limit:
                del entries[key]
        return chosen
