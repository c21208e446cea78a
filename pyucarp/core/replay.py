"""Replay detection that works with ucarp peers. No I/O.

ucarp never checks counters, and a ucarp master that has heard no peer sends a fresh
random counter in every advert (``carp_prepare_ad``), so no ordering rule can be
enforced without breaking mixed clusters. What does hold for every sender, ucarp or
pyucarp: a legitimate advert never repeats a (source, counter) pair — random 64-bit
counters do not collide, and a following counter only goes up. So a repeated pair is a
duplicate or a replay, and is dropped before it can touch the state machine.

The memory is bounded: the last ``capacity`` pairs (at advbase 1 the default covers
about 4.5 hours of one master's adverts). A capture older than that, or replayed after
a restart, is not recognised; the HMAC still stops anything forged.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from ipaddress import IPv4Address, IPv6Address

DEFAULT_CAPACITY = 16384


_MASK64 = (1 << 64) - 1
_MIX = 0x9E3779B97F4A7C15  # spreads the source address over all 64 bits


def _key(src: IPv4Address | IPv6Address, counter: int) -> int:
    # Folding the source into the counter keeps one 64-bit key per advert; two senders
    # would need colliding random counters for a false alarm, which costs one advert.
    return (counter ^ (int(src) * _MIX)) & _MASK64


class ReplayGuard:
    """Remembers recently accepted (source, counter) pairs: 16 bytes each, in two arrays."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be positive")
        self.capacity = capacity
        self._sorted: array[int] = array("Q")  # for lookups (bisect)
        self._fifo: array[int] = array("Q")  # ring of keys in arrival order, for eviction
        self._next = 0  # where the next key goes in the ring once it is full

    def __len__(self) -> int:
        return len(self._sorted)

    def seen(self, src: IPv4Address | IPv6Address, counter: int) -> bool:
        """True if this pair was accepted before; otherwise remember it and return False."""
        key = _key(src, counter)
        i = bisect_left(self._sorted, key)
        if i < len(self._sorted) and self._sorted[i] == key:
            return True
        if len(self._fifo) < self.capacity:
            self._fifo.append(key)
        else:
            old = self._fifo[self._next]
            self._fifo[self._next] = key
            self._next = (self._next + 1) % self.capacity
            j = bisect_left(self._sorted, old)
            del self._sorted[j]
            if j < i:
                i -= 1
        self._sorted.insert(i, key)
        return False
