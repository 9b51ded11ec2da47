"""The Security Association Database of one tunnel end (RFC 4301 §4.4.2, reduced to what a VPN tunnel needs).

Inbound SAs are found by SPI alone (RFC 4303 §2.1: for a unicast SA the SPI suffices). There may be several at
once: after a rekey the new SA takes over, but the old one keeps decrypting what the peer still sends with it
until IKE deletes it (RFC 7296 §2.8, RFC 2409 §5.5 rekeying leaves both in place for a while). Outbound there is
one current SA, the newest; older ones stay listed (for counters and Wireshark's table) until deleted.

Counters: every SA counts its own packets and drops (:attr:`EspSa.drops`); the SAD adds the drops that belong to no
SA (``esp_unknown_spi``, ``esp_truncated`` before an SPI could be read, ``esp_no_sa``) and keeps a total per
reason over all SAs it has held, deleted ones included (:attr:`EspSad.drops`).
"""

from __future__ import annotations

from cgw_peer.esp.reasons import EspDrop
from cgw_peer.esp.sa import DecryptResult, EspSa

__all__ = ["EspSad"]


class EspSad:
    """The ESP SAs of one tunnel end: inbound by SPI, the current outbound SA, and per-reason counters."""

    __slots__ = ("_outbound_all", "drops", "inbound", "outbound", "packets_in", "packets_out")

    def __init__(self) -> None:
        self.inbound: dict[int, EspSa] = {}
        """Inbound SAs by SPI (old ones stay until deleted)."""
        self.outbound: EspSa | None = None
        """The SA :meth:`encrypt` sends with (the newest installed)."""
        self._outbound_all: dict[int, EspSa] = {}
        self.drops: dict[str, int] = {}
        """Drops per :class:`EspDrop` reason, over every SA this SAD has held."""
        self.packets_in = 0
        """Packets accepted by any inbound SA."""
        self.packets_out = 0
        """Packets encrypted by any outbound SA."""

    # -- SA lifecycle -----------------------------------------------------------------------------------------

    def install(self, sa_in: EspSa, sa_out: EspSa) -> None:
        """Add a new SA pair (first establishment or a rekey): ``sa_in`` joins the inbound SAs, ``sa_out``
        becomes the outbound SA. Older SAs stay until :meth:`delete`."""
        self.add_inbound(sa_in)
        self.set_outbound(sa_out)

    def add_inbound(self, sa: EspSa) -> None:
        """Accept packets with ``sa.spi`` (replaces an SA with the same SPI)."""
        if sa.direction != "in":
            raise ValueError(f"SA {sa.spi:#010x} is outbound")
        self.inbound[sa.spi] = sa

    def set_outbound(self, sa: EspSa) -> None:
        """Send with ``sa`` from now on."""
        if sa.direction != "out":
            raise ValueError(f"SA {sa.spi:#010x} is inbound")
        self._outbound_all[sa.spi] = sa
        self.outbound = sa

    def delete(self, spi: int) -> bool:
        """Remove the inbound and/or outbound SA with this SPI (an IKE Delete or an expiry). If it was the current
        outbound SA, the newest remaining outbound SA takes over (none: :meth:`encrypt` refuses). Returns whether
        anything was removed."""
        found = self.inbound.pop(spi, None) is not None
        out = self._outbound_all.pop(spi, None)
        if out is not None:
            found = True
            if self.outbound is out:
                self.outbound = next(reversed(self._outbound_all.values()), None)
        return found

    def clear(self) -> None:
        """Remove every SA (the tunnel went down); the counters stay."""
        self.inbound.clear()
        self._outbound_all.clear()
        self.outbound = None

    def sas(self) -> list[EspSa]:
        """Every SA held, inbound first, each in installation order."""
        return [*self.inbound.values(), *self._outbound_all.values()]

    # -- packets ----------------------------------------------------------------------------------------------

    def encrypt(self, inner: bytes, now: float) -> bytes | None:
        """The ESP packet for ``inner`` from the current outbound SA; None (counted) when there is none or its
        sequence numbers are used up."""
        sa = self.outbound
        if sa is None:
            self._count(EspDrop.NO_SA)
            return None
        esp = sa.encrypt(inner, now)
        if esp is None:
            self._count(EspDrop.SEQ_OVERFLOW)
            return None
        self.packets_out += 1
        return esp

    def encapsulate(self, inner: bytes, now: float) -> bytes | None:
        """:meth:`encrypt` plus the outer IP/UDP header (:meth:`EspSa.encapsulate`)."""
        sa = self.outbound
        if sa is None:
            self._count(EspDrop.NO_SA)
            return None
        packet = sa.encapsulate(inner, now)
        if packet is None:
            self._count(EspDrop.SEQ_OVERFLOW)
            return None
        self.packets_out += 1
        return packet

    def decrypt(self, esp: bytes, now: float) -> DecryptResult:
        """Open ``esp`` (SPI first) with the inbound SA its SPI names: ``(inner, None)`` or ``(None, reason)``."""
        if len(esp) < 8:
            return self._drop(EspDrop.TRUNCATED)
        sa = self.inbound.get(int.from_bytes(esp[:4], "big"))
        if sa is None:
            return self._drop(EspDrop.UNKNOWN_SPI)
        result = sa.decrypt(esp, now)
        if result[1] is None:
            self.packets_in += 1
        else:
            self._count(result[1])
        return result

    def lookup(self, esp: bytes) -> EspSa | None:
        """The inbound SA the SPI of ``esp`` names, if any (e.g. to see which SA a packet used)."""
        return self.inbound.get(int.from_bytes(esp[:4], "big")) if len(esp) >= 4 else None

    def _drop(self, reason: EspDrop) -> tuple[None, EspDrop]:
        self._count(reason)
        return None, reason

    def _count(self, reason: EspDrop) -> None:
        self.drops[reason] = self.drops.get(reason, 0) + 1

    # -- outputs ----------------------------------------------------------------------------------------------

    def esp_sa_rows(self) -> list[dict[str, str]]:
        """Wireshark ``esp_sa`` rows (:meth:`EspSa.esp_sa_row`) of every SA held."""
        return [sa.esp_sa_row() for sa in self.sas()]
