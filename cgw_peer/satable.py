"""The IKE SAs of one peer, indexed so that no per-datagram work depends on how many are held (issue 13).

Both engines keep their SAs here:

* ``get(key)``: every SA by its lookup key (IKEv1: the initiator cookie; IKEv2: our SPI), one dict lookup;
* ``own``: the SAs this side drives (ones it initiated, and every established one): few, and the only ones the
  engines' timer and status code iterate over;
* ``half``: half-open responder SAs (IKEv1 Main Mode before MM5 arrived; IKEv2 IKE_SA_INIT answered, IKE_AUTH
  not yet), in arrival order, which is also their expiry order (a fixed half-open timeout): the next expiry is
  the first one, and a flood of them costs nothing but memory, which ``Behaviour.half_open_limit`` and
  ``half_open_limit_per_source`` bound;
* the SPIs the peer answers for, with the changes since the driver last asked (:meth:`spi_changes`), so the UDP
  driver's demultiplexing table follows without rebuilding a set of every SPI after each datagram.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

_T = TypeVar("_T")
ZERO_SPI = bytes(8)


class SaTable(Generic[_T]):
    """SAs by key, split into the ones we drive and half-open responder ones (see the module docstring)."""

    __slots__ = ("_half_src", "_pending", "_spi_refs", "by_key", "half", "half_by_source", "own", "spis_of")

    def __init__(self, spis_of: Callable[[_T], tuple[bytes, ...]]) -> None:
        self.spis_of = spis_of
        """The SPIs an SA answers for (zero SPIs are ignored)."""
        self.by_key: dict[bytes, _T] = {}
        """Every SA by its key (read it, never change it: the per-datagram lookup uses it directly)."""
        self.own: dict[bytes, _T] = {}
        self.half: dict[bytes, _T] = {}
        self._half_src: dict[bytes, str] = {}
        self.half_by_source: dict[str, int] = {}
        self._spi_refs: dict[bytes, int] = {}
        self._pending: dict[bytes, bool] = {}
        """Net SPI changes since the last :meth:`spi_changes`: True added, False removed."""

    # -- lookup ------------------------------------------------------------------------------------------------

    def get(self, key: bytes) -> _T | None:
        return self.by_key.get(key)

    def __contains__(self, key: bytes) -> bool:
        return key in self.by_key

    def __len__(self) -> int:
        return len(self.by_key)

    def values(self) -> Iterator[_T]:
        """Every SA (own and half-open). Only for rare paths: teardown, tests."""
        return iter(list(self.by_key.values()))

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
        self.by_key[key] = sa
        if half_open_from is None:
            self.own[key] = sa
        else:
            self.half[key] = sa
            self._half_src[key] = half_open_from
            self.half_by_source[half_open_from] = self.half_by_source.get(half_open_from, 0) + 1
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
        sa = self.by_key.pop(key, None)
        if sa is None:
            return None
        if self.own.pop(key, None) is None and self.half.pop(key, None) is not None:
            self._forget_source(key)
        for spi in self.spis_of(sa):
            self.drop_spi(spi)
        return sa

    def clear(self) -> None:
        for key in list(self.by_key):
            self.remove(key)

    def _forget_source(self, key: bytes) -> None:
        src = self._half_src.pop(key)
        n = self.half_by_source[src] - 1
        if n:
            self.half_by_source[src] = n
        else:
            del self.half_by_source[src]

    # -- SPIs ----------------------------------------------------------------------------------------------------

    def add_spi(self, spi: bytes) -> None:
        """An SA now answers for ``spi`` too (e.g. the responder cookie, learnt from MM2)."""
        if spi == ZERO_SPI:
            return
        n = self._spi_refs.get(spi, 0)
        self._spi_refs[spi] = n + 1
        if n == 0:
            if self._pending.get(spi) is False:
                del self._pending[spi]  # removed and added again since the last report: no net change
            else:
                self._pending[spi] = True

    def drop_spi(self, spi: bytes) -> None:
        if spi == ZERO_SPI:
            return
        n = self._spi_refs.get(spi, 0)
        if n <= 1:
            if self._spi_refs.pop(spi, None) is not None:
                if self._pending.get(spi) is True:
                    del self._pending[spi]  # added and removed since the last report: no net change
                else:
                    self._pending[spi] = False
        else:
            self._spi_refs[spi] = n - 1

    def spis(self) -> set[bytes]:
        """Every SPI the SAs answer for."""
        return set(self._spi_refs)

    def spi_changes(self) -> tuple[list[bytes], list[bytes]]:
        """The net (added, removed) SPIs since the last call (an SPI is in at most one of them)."""
        pending = self._pending
        if not pending:
            return [], []
        self._pending = {}
        return [k for k, v in pending.items() if v], [k for k, v in pending.items() if not v]

    def check(self) -> None:
        """Recompute every index by scanning and compare (for tests). Raises AssertionError on a mismatch."""
        assert set(self.by_key) == set(self.own) | set(self.half), "own/half do not cover the SAs"
        assert not set(self.own) & set(self.half), "an SA is both own and half-open"
        counts: dict[str, int] = {}
        for key in self.half:
            src = self._half_src[key]
            counts[src] = counts.get(src, 0) + 1
        assert counts == self.half_by_source, (counts, self.half_by_source)
        refs: dict[bytes, int] = {}
        for sa in self.by_key.values():
            for spi in self.spis_of(sa):
                if spi != ZERO_SPI:
                    refs[spi] = refs.get(spi, 0) + 1
        assert refs == self._spi_refs, "SPI index out of date"
