"""The outer headers around ESP: UDP encapsulation on port 4500 (RFC 3948) or IP protocol 50 (RFC 4303).

:class:`OuterFramer` builds one SA direction's outer IPv4/IPv6 (+ UDP) header per packet with ``struct`` and plain
ints: everything but the length and the identification is fixed per SA, so the IPv4 header checksum is the
one's-complement sum of the fixed words (computed once) plus those two (RFC 1071 §2(4): the sum can be updated
incrementally). :func:`parse_outer` goes the other way and sorts a received IP packet into ESP, IKE, NAT-keepalive
or other.

RFC 3948 rules applied here:

* §2.1: ESP in UDP uses the IKE ports (4500 on both sides unless a NAT rewrote them), and the IPv4 UDP checksum
  "SHOULD be transmitted as a zero value"; IPv6 has no zero-checksum option (RFC 8200 §8.1), so it is computed.
* §2.2: on port 4500 a UDP payload whose first four octets are zero is IKE (the non-ESP marker), because no ESP
  SPI is zero (RFC 4303 §2.1 reserves SPI 0).
* §2.3: a one-octet payload 0xFF is a NAT-keepalive.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

__all__ = [
    "ESP_PROTO",
    "KIND_ESP",
    "KIND_IKE",
    "KIND_KEEPALIVE",
    "KIND_MALFORMED",
    "KIND_OTHER",
    "NAT_T_PORT",
    "Outer",
    "OuterFramer",
    "frame_esp",
    "internet_checksum",
    "parse_outer",
]

ESP_PROTO = 50
"""IP protocol number of ESP (RFC 4303 §2)."""
UDP_PROTO = 17
NAT_T_PORT = 4500
"""UDP port of IKE and UDP-encapsulated ESP after NAT detection (RFC 3947 §4, RFC 3948 §2.1)."""
IKE_PORT = 500

KIND_ESP = "esp"
"""ESP, as IP protocol 50 or in UDP (non-zero first four octets on port 4500)."""
KIND_IKE = "ike"
"""IKE: UDP port 500, or port 4500 with the four-octet non-ESP marker (RFC 3948 §2.2)."""
KIND_KEEPALIVE = "nat_keepalive"
"""A NAT-keepalive: one octet 0xFF on port 4500 (RFC 3948 §2.3)."""
KIND_OTHER = "other"
"""Anything else (another protocol or port)."""
KIND_MALFORMED = "malformed"
"""Not a well-formed IPv4/IPv6 packet (short header, length fields larger than the packet)."""

_IP4 = struct.Struct("!BBHHHBBH4s4s")
_IP4_PARSE = struct.Struct("!BxHHHBBH4s4s")
_IP4_UDP = struct.Struct("!BBHHHBBH4s4sHHHH")  # an IPv4 header without options, then the UDP header
_UDP = struct.Struct("!HHHH")
_IP6 = struct.Struct("!IHBB16s16s")
_PORTS = struct.Struct("!HH")
_ZERO_MARKER = b"\0\0\0\0"
_KEEPALIVE = b"\xff"


def internet_checksum(data: bytes) -> int:
    """The 16-bit one's-complement checksum of ``data`` (RFC 1071), odd lengths padded with a zero octet."""
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def _sum16(data: bytes) -> int:
    """Unfolded sum of the 16-bit words of an even-length ``data``."""
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    return total


class OuterFramer:
    """The outer header of one SA direction: ``src`` -> ``dst``, ESP in UDP (``encap``) or IP protocol 50.

    Addresses are IPv4 or IPv6 text (both the same family). ``sport``/``dport`` are the UDP ports (4500, or what a
    NAT mapped them to). ``df`` sets the IPv4 Don't Fragment bit; ``ttl`` is the IPv4 TTL / IPv6 hop limit.
    """

    __slots__ = ("_base", "_dst", "_src", "_v6", "df", "dport", "dst", "encap", "sport", "src", "ttl")

    def __init__(
        self,
        src: str,
        dst: str,
        *,
        encap: bool,
        sport: int = NAT_T_PORT,
        dport: int = NAT_T_PORT,
        ttl: int = 64,
        df: bool = False,
    ) -> None:
        s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
        if s.version != d.version:
            raise ValueError(f"mixed address families: {src} -> {dst}")
        self.src, self.dst, self.encap = src, dst, encap
        self.sport, self.dport, self.ttl, self.df = sport, dport, ttl, df
        self._src, self._dst = s.packed, d.packed
        self._v6 = s.version == 6
        proto = UDP_PROTO if encap else ESP_PROTO
        if self._v6:
            # The IPv6 UDP pseudo-header sum without the length (RFC 8200 §8.1): addresses and next header.
            self._base = _sum16(self._src + self._dst) + UDP_PROTO
        else:
            # Every IPv4 header word but total length, identification and the checksum itself (RFC 791 §3.1).
            self._base = 0x4500 + (0x4000 if df else 0) + ((ttl << 8) | proto) + _sum16(self._src + self._dst)

    def frame(self, esp: bytes, ident: int = 0) -> bytes:
        """The IP packet carrying ``esp`` (IPv4 identification ``ident``; ignored for IPv6)."""
        if self._v6:
            return self._frame6(esp)
        ident &= 0xFFFF
        if self.encap:
            ulen = 8 + len(esp)
            total = 20 + ulen
            s = self._base + total + ident
            s = (s & 0xFFFF) + (s >> 16)
            s = (s & 0xFFFF) + (s >> 16)
            hdr = _IP4_UDP.pack(
                0x45,
                0,
                total,
                ident,
                0x4000 if self.df else 0,
                self.ttl,
                UDP_PROTO,
                ~s & 0xFFFF,
                self._src,
                self._dst,
                self.sport,
                self.dport,
                ulen,
                0,  # RFC 3948 §2.1: the IPv4 UDP checksum SHOULD be zero for ESP in UDP
            )
            return hdr + esp
        total = 20 + len(esp)
        s = self._base + total + ident
        s = (s & 0xFFFF) + (s >> 16)
        s = (s & 0xFFFF) + (s >> 16)
        hdr = _IP4.pack(
            0x45, 0, total, ident, 0x4000 if self.df else 0, self.ttl, ESP_PROTO, ~s & 0xFFFF, self._src, self._dst
        )
        return hdr + esp

    def _frame6(self, esp: bytes) -> bytes:
        if not self.encap:
            return _IP6.pack(6 << 28, len(esp), ESP_PROTO, self.ttl, self._src, self._dst) + esp
        ulen = 8 + len(esp)
        udp0 = _UDP.pack(self.sport, self.dport, ulen, 0)
        body = esp + b"\0" if len(esp) % 2 else esp
        s = self._base + ulen + _sum16(udp0) + _sum16(body)
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        csum = (~s & 0xFFFF) or 0xFFFF  # RFC 768: a computed 0 is sent as all ones
        return (
            _IP6.pack(6 << 28, ulen, UDP_PROTO, self.ttl, self._src, self._dst)
            + _UDP.pack(self.sport, self.dport, ulen, csum)
            + esp
        )


def frame_esp(
    esp: bytes, src: str, dst: str, *, encap: bool, sport: int = NAT_T_PORT, dport: int = NAT_T_PORT, ident: int = 0
) -> bytes:
    """One-off :meth:`OuterFramer.frame` (per-packet users keep an :class:`OuterFramer`)."""
    return OuterFramer(src, dst, encap=encap, sport=sport, dport=dport).frame(esp, ident)


class Outer(NamedTuple):
    """A received IP packet, sorted by :func:`parse_outer`."""

    kind: str
    """``KIND_ESP``, ``KIND_IKE``, ``KIND_KEEPALIVE``, ``KIND_OTHER`` or ``KIND_MALFORMED``."""
    src: bytes
    """Source address, packed (4 or 16 octets; empty when malformed)."""
    dst: bytes
    """Destination address, packed."""
    proto: int
    """IP protocol / IPv6 next header (50 for ESP, 17 for UDP)."""
    sport: int
    """UDP source port (0 when not UDP)."""
    dport: int
    """UDP destination port."""
    payload: bytes
    """ESP: the ESP packet (SPI first). IKE: the UDP payload as received (with the non-ESP marker on 4500).
    Other kinds: the IP payload."""


_MALFORMED = Outer(KIND_MALFORMED, b"", b"", 0, 0, 0, b"")


def parse_outer(packet: bytes, nat_t_port: int = NAT_T_PORT, ike_port: int = IKE_PORT) -> Outer:
    """Sort an IPv4 or IPv6 packet (no extension headers) into ESP / IKE / NAT-keepalive / other; never raises.

    UDP with ``nat_t_port`` (4500) at either end is the encapsulation port (a NAT rewrites only the port on its
    own side); ``ike_port`` (500) at either end is IKE without a marker. Tests on other ports pass theirs."""
    n = len(packet)
    if n < 1:
        return _MALFORMED
    version = packet[0] >> 4
    # Offsets first, one slice at the end: the payload is copied once.
    if version == 4:
        if n < 20:
            return _MALFORMED
        vihl, end, _ident, _frag, _ttl, proto, _csum, src, dst = _IP4_PARSE.unpack_from(packet)
        start = (vihl & 0x0F) * 4
        if start < 20 or end < start or end > n:
            return _MALFORMED
    elif version == 6:
        if n < 40:
            return _MALFORMED
        _vtf, plen, proto, _hop, src, dst = _IP6.unpack_from(packet)
        start, end = 40, 40 + plen
        if end > n:
            return _MALFORMED
    else:
        return _MALFORMED
    if proto != UDP_PROTO:
        return Outer(KIND_ESP if proto == ESP_PROTO else KIND_OTHER, src, dst, proto, 0, 0, packet[start:end])
    if end - start < 8:
        return _MALFORMED
    sport, dport, ulen, _ = _UDP.unpack_from(packet, start)
    if ulen < 8 or ulen > end - start:
        return _MALFORMED
    data = packet[start + 8 : start + ulen]
    if dport == nat_t_port or sport == nat_t_port:
        if data == _KEEPALIVE:
            return Outer(KIND_KEEPALIVE, src, dst, proto, sport, dport, data)
        if data[:4] == _ZERO_MARKER:
            return Outer(KIND_IKE, src, dst, proto, sport, dport, data)
        return Outer(KIND_ESP, src, dst, proto, sport, dport, data)
    if dport == ike_port or sport == ike_port:
        return Outer(KIND_IKE, src, dst, proto, sport, dport, data)
    return Outer(KIND_OTHER, src, dst, proto, sport, dport, data)
