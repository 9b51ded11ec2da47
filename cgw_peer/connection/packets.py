"""Inner IPv4 packets for the traffic a VPN connection carries: build and read them with ``struct``.

* :func:`ipv4` (RFC 791, header checksum per RFC 1071), :func:`udp4` (RFC 768), :func:`tcp4` (RFC 9293),
  :func:`icmp4` (RFC 792): complete packets with correct checksums, so Wireshark shows them clean once the ESP
  around them is decrypted.
* :func:`parse4` reads the addresses, the protocol and the transport header's offset of an IPv4 packet; it never
  raises (``None`` for anything that is not a well-formed IPv4 packet).
* Generated traffic carries a small probe header in its UDP payload (:data:`PROBE`: magic, flow number, sequence
  number, send time) so that the receiving end can count each flow's packets and measure their delay without any
  state shared with the sender: :func:`probe_payload` / :func:`read_probe`.
"""

from __future__ import annotations

import ipaddress
import struct
from typing import NamedTuple

__all__ = [
    "PROBE",
    "PROBE_MAGIC",
    "PROTO_ICMP",
    "PROTO_TCP",
    "PROTO_UDP",
    "Ipv4",
    "Probe",
    "checksum",
    "icmp4",
    "ip_bytes",
    "ipv4",
    "parse4",
    "probe_payload",
    "read_probe",
    "tcp4",
    "udp4",
]

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17

_IP = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_TCP = struct.Struct("!HHIIBBHHH")
_ICMP = struct.Struct("!BBHHH")
_PSEUDO = struct.Struct("!4s4sBBH")

PROBE_MAGIC = b"ANE1"
PROBE = struct.Struct("!4sHIQ")
"""Probe header: magic ``ANE1``, flow number (u16), sequence number (u32), send time in microseconds (u64)."""


def checksum(data: bytes) -> int:
    """The 16-bit one's-complement Internet checksum (RFC 1071); odd lengths padded with a zero octet."""
    if len(data) % 2:
        data += b"\0"
    s: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ip_bytes(addr: str) -> bytes:
    """An IPv4 address in text as its four octets."""
    return ipaddress.IPv4Address(addr).packed


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, *, ident: int = 0, ttl: int = 64) -> bytes:
    """An IPv4 packet (no options, DF clear) around ``payload``; ``src``/``dst`` are four octets each."""
    hdr = _IP.pack(0x45, 0, 20 + len(payload), ident & 0xFFFF, 0, ttl, proto, 0, src, dst)
    return hdr[:10] + checksum(hdr).to_bytes(2, "big") + hdr[12:] + payload


def _l4_checksum(src: bytes, dst: bytes, proto: int, segment: bytes) -> int:
    return checksum(_PSEUDO.pack(src, dst, 0, proto, len(segment)) + segment)


def udp4(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes, *, ident: int = 0, ttl: int = 64) -> bytes:
    """An IPv4/UDP packet with both checksums."""
    seg = _UDP.pack(sport, dport, 8 + len(payload), 0) + payload
    c = _l4_checksum(src, dst, PROTO_UDP, seg) or 0xFFFF  # RFC 768: a computed 0 is sent as all ones
    return ipv4(src, dst, PROTO_UDP, seg[:6] + c.to_bytes(2, "big") + seg[8:], ident=ident, ttl=ttl)


def tcp4(
    src: bytes,
    dst: bytes,
    sport: int,
    dport: int,
    seq: int,
    ack: int,
    flags: int,
    payload: bytes = b"",
    *,
    window: int = 65535,
    ident: int = 0,
    ttl: int = 64,
) -> bytes:
    """An IPv4/TCP segment without options (data offset 5) with both checksums."""
    seg = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, window, 0, 0) + payload
    c = _l4_checksum(src, dst, PROTO_TCP, seg)
    return ipv4(src, dst, PROTO_TCP, seg[:16] + c.to_bytes(2, "big") + seg[18:], ident=ident, ttl=ttl)


def icmp4(
    src: bytes, dst: bytes, icmp_type: int, ident: int, seq: int, payload: bytes, *, ip_ident: int = 0, ttl: int = 64
) -> bytes:
    """An IPv4 ICMP echo request (type 8) or reply (type 0) with both checksums."""
    msg = _ICMP.pack(icmp_type, 0, 0, ident, seq) + payload
    msg = msg[:2] + checksum(msg).to_bytes(2, "big") + msg[4:]
    return ipv4(src, dst, PROTO_ICMP, msg, ident=ip_ident, ttl=ttl)


class Ipv4(NamedTuple):
    """What :func:`parse4` reads: addresses (four octets each), protocol, transport offset and end."""

    src: bytes
    dst: bytes
    proto: int
    start: int
    """Offset of the transport header (20 + options)."""
    end: int
    """The packet's total length (the IP header's own; any trailing octets are not the packet's)."""
    ttl: int


def parse4(packet: bytes) -> Ipv4 | None:
    """The IPv4 header of ``packet`` (None: not IPv4, too short, a fragment, or lengths that do not fit)."""
    if len(packet) < 20 or packet[0] >> 4 != 4:
        return None
    vihl, _tos, total, _ident, frag, ttl, proto, _c, src, dst = _IP.unpack_from(packet)
    start = (vihl & 0x0F) * 4
    if start < 20 or total < start or total > len(packet) or frag & 0x3FFF:
        return None
    return Ipv4(src, dst, proto, start, total, ttl)


class Probe(NamedTuple):
    """A generated packet's probe header."""

    flow: int
    seq: int
    sent_at: float


def probe_payload(flow: int, seq: int, sent_at: float, size: int) -> bytes:
    """A UDP payload of ``size`` octets (at least :data:`PROBE` ``.size``) starting with the probe header."""
    head = PROBE.pack(PROBE_MAGIC, flow & 0xFFFF, seq & 0xFFFFFFFF, max(0, round(sent_at * 1e6)))
    return head + bytes(max(0, size - len(head)))


def read_probe(packet: bytes) -> Probe | None:
    """The probe header of an IPv4/UDP packet built with :func:`probe_payload` (None: not one)."""
    ip = parse4(packet)
    if ip is None or ip.proto != PROTO_UDP:
        return None
    off = ip.start + 8
    if ip.end - off < PROBE.size or packet[off : off + 4] != PROBE_MAGIC:
        return None
    _m, flow, seq, us = PROBE.unpack_from(packet, off)
    return Probe(flow, seq, us / 1e6)
