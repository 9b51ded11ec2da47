"""Longest-prefix match: one dict per prefix length, with per-bucket length lists and a bounded result cache.

perf-facts §10: a dict per prefix length costs about 1 µs per uncached lookup when every length is probed.
To probe fewer, prefix lengths are split into four bands, looked at longest first:

* *deep* routes, longer than ``mid`` (/24 for IPv4, /64 for IPv6), are listed by length per ``mid``-bit block,
  so a lookup probes only the lengths present in the address's block (usually none);
* *mid* routes, from ``mid - 8`` to ``mid`` bits (/16 < plen <= /24 for IPv4), are expanded when inserted into
  one dict keyed by the address's top ``mid`` bits that holds the longest of them covering that block (at most
  256 entries per route): one probe;
* *wide* routes between ``split`` and ``mid - 8`` bits (IPv6 only: /33../55) are listed per ``split``-bit bucket
  by length, as deep routes are;
* *short* routes, at most ``split`` bits (/16, /32): the best one depends only on the ``split``-bit bucket, so
  it is computed once per bucket on first use and remembered (``_short``; cleared when a short route is
  inserted).

A typical IPv4 lookup is therefore two or three dict probes whatever the table size. :meth:`lookup` additionally
caches whole results per address (bounded; any insert clears it).
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
        "_deep",
        "_long",
        "_mid",
        "_mid_lo",
        "_midlen",
        "_mshift",
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
        mid = 24 if bits == 32 else 64
        self._mshift = bits - mid
        self._mid_lo = mid - 8  # mid band: _mid_lo < plen <= mid
        self._tables: dict[int, dict[int, V]] = {}
        # mid-bit block -> [(shift, table), ...] for prefix lengths > mid present in that block, longest first
        self._deep: dict[int, list[tuple[int, dict[int, V]]]] = {}
        # mid-bit block -> value of the longest mid-band route covering it, and that route's length
        self._mid: dict[int, V] = {}
        self._midlen: dict[int, int] = {}
        # split-bit bucket -> [(shift, table), ...] for wide-band prefix lengths present in that bucket
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
        mshift = self._mshift
        if plen > self._bits - mshift:
            lst = self._deep.setdefault(network >> mshift, [])
            if all(s != shift for s, _ in lst):
                lst.append((shift, t))
                lst.sort(key=lambda x: x[0])
        elif plen > self._mid_lo:
            # Expand over the mid-bit blocks the route covers; a longer mid-band route keeps its blocks.
            first = network >> mshift
            mid, midlen = self._mid, self._midlen
            for blk in range(first, first + (1 << (shift - mshift))):
                if midlen.get(blk, -1) <= plen:
                    mid[blk] = value
                    midlen[blk] = plen
        elif plen > self._split:
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
        blk = addr >> self._mshift
        lst = self._deep.get(blk)
        if lst is not None:
            for shift, t in lst:
                v = t.get(addr >> shift)
                if v is not None:
                    return v
        v = self._mid.get(blk)
        if v is not None:
            return v
        b = addr >> self._bshift
        if self._long:
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
