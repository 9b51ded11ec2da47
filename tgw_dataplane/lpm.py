"""Longest-prefix match: one dict per prefix length, with per-bucket length lists and a bounded result cache.

perf-facts §10: a dict per prefix length costs about 1 µs per uncached lookup when every length is probed.
To probe fewer, addresses are split into buckets by their top ``split`` bits (/16 for IPv4, /32 for IPv6):

* routes longer than the split are listed per bucket by length, so a lookup probes only the lengths that
  actually have a route inside the address's bucket (usually one to three);
* the best route at or shorter than the split depends only on the bucket, so it is computed once per bucket
  on first use and remembered (``_short``; cleared when a short route is inserted).

:meth:`lookup` additionally caches whole results per address (bounded; any insert clears it).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

V = TypeVar("V")
_MISS: object = object()


class Lpm(Generic[V]):
    """Longest-prefix match over one address family (``bits`` = 32 or 128). Values are arbitrary objects."""

    __slots__ = (
        "_bits",
        "_bshift",
        "_cache",
        "_cache_size",
        "_long",
        "_short",
        "_short_plens",
        "_split",
        "_tables",
        "count",
    )

    def __init__(self, bits: int, cache_size: int = 1 << 16) -> None:
        self._bits = bits
        self._split = 16 if bits == 32 else 32
        self._bshift = bits - self._split
        self._tables: dict[int, dict[int, V]] = {}
        # bucket -> [(shift, table), ...] for prefix lengths > split present in that bucket, longest first
        self._long: dict[int, list[tuple[int, dict[int, V]]]] = {}
        # (shift, table) for prefix lengths <= split, longest first
        self._short_plens: list[tuple[int, dict[int, V]]] = []
        self._short: dict[int, V | None] = {}
        self._cache: dict[int, object] = {}
        self._cache_size = cache_size
        self.count = 0

    def insert(self, network: int, plen: int, value: V) -> None:
        """Add (or replace) the route ``network/plen``; ``network`` has its host bits zero."""
        t = self._tables.get(plen)
        shift = self._bits - plen
        if t is None:
            t = self._tables[plen] = {}
            if plen <= self._split:
                self._short_plens = sorted(
                    ((self._bits - p, tb) for p, tb in self._tables.items() if p <= self._split),
                    key=lambda x: x[0],
                )
        k = network >> shift
        if k not in t:
            self.count += 1
        t[k] = value
        if plen > self._split:
            lst = self._long.setdefault(network >> self._bshift, [])
            if all(s != shift for s, _ in lst):
                lst.append((shift, t))
                lst.sort(key=lambda x: x[0])
        else:
            self._short.clear()
        self._cache.clear()

    def insert_many(self, routes: Iterable[tuple[int, int, V]]) -> None:
        for n, p, v in routes:
            self.insert(n, p, v)

    def lookup_uncached(self, addr: int) -> V | None:
        """The value of the longest prefix containing ``addr``, or None (no per-address cache)."""
        b = addr >> self._bshift
        lst = self._long.get(b)
        if lst is not None:
            for shift, t in lst:
                v = t.get(addr >> shift)
                if v is not None:
                    return v
        s = self._short.get(b, _MISS)
        if s is _MISS:
            s = None
            for shift, t in self._short_plens:
                v = t.get(addr >> shift)
                if v is not None:
                    s = v
                    break
            if len(self._short) >= 1 << 16:
                self._short.clear()
            self._short[b] = s
        return s  # type: ignore[return-value]

    def lookup(self, addr: int) -> V | None:
        """As :meth:`lookup_uncached`, with a bounded per-address result cache."""
        r = self._cache.get(addr, _MISS)
        if r is not _MISS:
            return r  # type: ignore[return-value]
        res = self.lookup_uncached(addr)
        c = self._cache
        if len(c) >= self._cache_size:
            c.clear()
        c[addr] = res
        return res
