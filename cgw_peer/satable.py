"""The IKE SAs of one peer, indexed so that no per-datagram work depends on how many are held (issue 13).

Both engines keep their SAs here:

* ``own`` (also ``by_key``): the SAs this side drives, by their lookup key (IKEv1: the initiator cookie; IKEv2:
  our SPI): ones it initiated, and every established one. Few, and the only ones the engines' timer and status
  code iterate over. The per-datagram lookup reads this dict directly and falls back to ``half``;
* ``half``: half-open responder SAs (IKEv1 Main Mode before MM5 arrived; IKEv2 IKE_SA_INIT answered, IKE_AUTH
  not yet), in arrival order, which is also their expiry order (a fixed half-open timeout): the next expiry is
  the first one, and a flood of them costs nothing but memory, which ``Behaviour.half_open_limit`` and
  ``half_open_limit_per_source`` bound;
* the changes of the SPIs the peer answers for since the driver last asked (:meth:`spi_changes`), so the UDP
  driver's demultiplexing table follows without rebuilding a set of every SPI after each datagram. Nothing is
  recorded until the first call (a peer on the virtual-time network is never asked), which returns every SPI.

SPIs are random 64-bit values, unique among the SAs of a peer (the engines draw them so).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

_T = TypeVar("_T")
ZERO_SPI = bytes(8)
_NONE: dict[Any, Any] = {}
"""Shared, always empty: the half-open indexes of a table that holds no half-open SA (memory per tunnel: most
tables never hold one for long). Never written to: :meth:`SaTable.add` makes real dicts first."""


class SaTable(Generic[_T]):
    """SAs by key, split into the ones we drive and half-open responder ones (see the module docstring)."""

    __slots__ = ("_half_src", "_pending", "half", "half_by_source", "own", "spis_of")

    def __init__(self, spis_of: Callable[[_T], tuple[bytes, ...]]) -> None:
        self.spis_of = spis_of
        """The SPIs an SA answers for (zero SPIs are ignored)."""
        self.own: dict[bytes, _T] = {}
        self.half: dict[bytes, _T] = _NONE
        self._half_src: dict[bytes, str] = _NONE
        self.half_by_source: dict[str, int] = _NONE
        self._pending: dict[bytes, bool] | None = None
        """Net SPI changes since the last :meth:`spi_changes` (True added, False removed); None: never asked."""

    @property
    def by_key(self) -> dict[bytes, _T]:
        """The SAs we drive, by key (read it, never change it); half-open ones are in :attr:`half`."""
        return self.own

    # -- lookup ------------------------------------------------------------------------------------------------

    def get(self, key: bytes) -> _T | None:
        sa = self.own.get(key)
        return sa if sa is not None else self.half.get(key)

    def __contains__(self, key: bytes) -> bool:
        return key in self.own or key in self.half

    def __len__(self) -> int:
        return len(self.own) + len(self.half)

    def values(self) -> Iterator[_T]:
        """Every SA (own and half-open). Only for rare paths: teardown, tests."""
        return iter([*self.own.values(), *self.half.values()])

    def half_count(self, source: str | None = None) -> int:
        return len(self.half) if source is None else self.half_by_source.get(source, 0)

    def first_half(self) -> _T | None:
        """The oldest half-open SA (the next to expire)."""
        for sa in self.half.values():
            return sa
        return None

    # -- changes -----------------------------------------------------------------------------------------------

    def add(self, key: bytes, sa: _T, *, half_open_from: str | None = None) -> None:
        """Add ``sa``; ``half_open_from``: it is a half-open responder SA created for this source address."""
        if half_open_from is None:
            self.own[key] = sa
        else:
            if self.half is _NONE:
                self.half, self._half_src, self.half_by_source = {}, {}, {}
            self.half[key] = sa
            self._half_src[key] = half_open_from
            self.half_by_source[half_open_from] = self.half_by_source.get(half_open_from, 0) + 1
        if self._pending is not None:
            for spi in self.spis_of(sa):
                self.add_spi(spi)

    def promote(self, key: bytes) -> None:
        """A half-open SA got authenticated: it becomes one of ours."""
        sa = self.half.pop(key, None)
        if sa is None:
            return
        self._forget_source(key)
        self.own[key] = sa

    def remove(self, key: bytes) -> _T | None:
        sa = self.own.pop(key, None)
        if sa is None:
            sa = self.half.pop(key, None)
            if sa is None:
                return None
            self._forget_source(key)
        if self._pending is not None:
            for spi in self.spis_of(sa):
                self.drop_spi(spi)
        return sa

    def clear(self) -> None:
        for key in [*self.own, *self.half]:
            self.remove(key)

    def _forget_source(self, key: bytes) -> None:
        src = self._half_src.pop(key)
        n = self.half_by_source[src] - 1
        if n:
            self.half_by_source[src] = n
        else:
            del self.half_by_source[src]
        if not self.half:
            # A dict keeps the table it grew to after a flood; drop them all (memory per tunnel).
            self.half, self._half_src, self.half_by_source = _NONE, _NONE, _NONE

    # -- SPIs ----------------------------------------------------------------------------------------------------

    def add_spi(self, spi: bytes) -> None:
        """An SA now answers for ``spi`` too (e.g. the responder cookie, learnt from MM2)."""
        pending = self._pending
        if pending is None or spi == ZERO_SPI:
            return
        if pending.get(spi) is False:
            del pending[spi]  # removed and added again since the last report: no net change
        else:
            pending[spi] = True

    def drop_spi(self, spi: bytes) -> None:
        pending = self._pending
        if pending is None or spi == ZERO_SPI:
            return
        if pending.get(spi) is True:
            del pending[spi]  # added and removed since the last report: no net change
        else:
            pending[spi] = False

    def spis(self) -> set[bytes]:
        """Every SPI the SAs answer for (a scan: for tests and the first :meth:`spi_changes`)."""
        out: set[bytes] = set()
        for sa in self.values():
            out.update(spi for spi in self.spis_of(sa) if spi != ZERO_SPI)
        return out

    def spi_changes(self) -> tuple[list[bytes], list[bytes]]:
        """The net (added, removed) SPIs since the last call (an SPI is in at most one of them); the first call
        returns every SPI as added."""
        pending = self._pending
        if pending is None:
            self._pending = {}
            return sorted(self.spis()), []
        if not pending:
            return [], []
        self._pending = {}
        return [k for k, v in pending.items() if v], [k for k, v in pending.items() if not v]

    def check(self) -> None:
        """Recompute every index by scanning and compare (for tests). Raises AssertionError on a mismatch."""
        assert not set(self.own) & set(self.half), "an SA is both own and half-open"
        assert set(self._half_src) == set(self.half), "half-open sources out of date"
        counts: dict[str, int] = {}
        for key in self.half:
            src = self._half_src[key]
            counts[src] = counts.get(src, 0) + 1
        assert counts == self.half_by_source, (counts, self.half_by_source)
        spis = [spi for sa in self.values() for spi in self.spis_of(sa) if spi != ZERO_SPI]
        assert len(spis) == len(set(spis)), "two SAs answer for the same SPI"
