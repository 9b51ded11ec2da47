"""Build IPv4/IPv6 TCP, UDP and ICMP packets with correct checksums (for the CLI, tests and benchmarks).

Not on the forwarding path. Checksums: RFC 791 §3.1 (IPv4 header), RFC 9293 §3.1 / RFC 768 with the
pseudo-header (RFC 8200 §8.1 for IPv6), RFC 792 / RFC 4443 §2.3 for ICMP / ICMPv6.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass

from tgw_dataplane.packet import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP, TCP_ACK, TCP_SYN

_V4 = struct.Struct("!BBHHHBBH4s4s")
_V6 = struct.Struct("!IHBB16s16s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_ICMP = struct.Struct("!BBHHH")


def checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071)."""
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return int(~s & 0xFFFF)


def build(
    src: str,
    dst: str,
    proto: int,
    sport: int = 0,
    dport: int = 0,
    *,
    flags: int = TCP_SYN,
    seq: int = 1000,
    ack: int = 0,
    icmp_type: int | None = None,
    ident: int = 1,
    payload: bytes = b"",
    ttl: int = 64,
    size: int | None = None,
) -> bytes:
    """An IP packet from ``src`` to ``dst`` (v4 or v6). ``size`` pads the payload to that total length."""
    s = ipaddress.ip_address(src)
    d = ipaddress.ip_address(dst)
    if s.version != d.version:
        raise ValueError(f"mixed address families: {src} -> {dst}")
    v6 = s.version == 6
    hl = 40 if v6 else 20
    if proto == PROTO_TCP:
        l4len = 20
    elif proto in (PROTO_UDP, PROTO_ICMP, PROTO_ICMPV6):
        l4len = 8
    else:
        l4len = 0
    if size is not None:
        payload = payload + b"\0" * max(0, size - hl - l4len - len(payload))
    ulen = l4len + len(payload)
    if v6:
        pseudo = s.packed + d.packed + struct.pack("!I3xB", ulen, proto)
    else:
        pseudo = s.packed + d.packed + struct.pack("!BBH", 0, proto, ulen)
    if proto == PROTO_TCP:
        hdr = _TCP.pack(sport, dport, seq, ack, 5 << 4, flags, 65535, 0, 0)
        c = checksum(pseudo + hdr + payload)
        l4 = hdr[:16] + struct.pack("!H", c) + hdr[18:] + payload
    elif proto == PROTO_UDP:
        hdr = _UDP.pack(sport, dport, ulen, 0)
        c = checksum(pseudo + hdr + payload) or 0xFFFF
        l4 = _UDP.pack(sport, dport, ulen, c) + payload
    elif proto in (PROTO_ICMP, PROTO_ICMPV6):
        t = icmp_type if icmp_type is not None else (128 if v6 else 8)
        hdr = _ICMP.pack(t, 0, 0, ident, 1)
        c = checksum((pseudo if v6 else b"") + hdr + payload)
        l4 = _ICMP.pack(t, 0, c, ident, 1) + payload
    else:
        l4 = payload
    if v6:
        return _V6.pack(6 << 28, len(l4), proto, ttl, s.packed, d.packed) + l4
    h = _V4.pack(0x45, 0, 20 + len(l4), ident & 0xFFFF, 0x4000, ttl, proto, 0, s.packed, d.packed)
    return h[:10] + struct.pack("!H", checksum(h)) + h[12:] + l4


_FLOW = re.compile(r"^\s*(tcp|udp|icmp)\s+(\S+?)(?::(\d+))?\s*>\s*(\S+?)(?::(\d+))?\s*$", re.IGNORECASE)
_FLOW6 = re.compile(r"^\s*(tcp|udp|icmp)\s+\[([^\]]+)\](?::(\d+))?\s*>\s*\[([^\]]+)\](?::(\d+))?\s*$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FlowSpec:
    """A flow from the CLI: ``tcp 10.0.1.10:40000 > 10.1.2.20:443`` (IPv6 as ``[2001:db8::1]:40000``)."""

    proto: str
    src: str
    sport: int
    dst: str
    dport: int

    def request(self) -> bytes:
        """The first packet: a SYN for TCP, a datagram for UDP, an echo request for ICMP."""
        p = _PROTO[self.proto]
        if p == PROTO_ICMP and ":" in self.src:
            p = PROTO_ICMPV6
        return build(self.src, self.dst, p, self.sport, self.dport, flags=TCP_SYN, seq=1000)

    def reply(self) -> bytes:
        """The answer: SYN-ACK for TCP, a datagram back for UDP, an echo reply for ICMP."""
        p = _PROTO[self.proto]
        if p == PROTO_ICMP:
            v6 = ":" in self.src
            return build(self.dst, self.src, PROTO_ICMPV6 if v6 else PROTO_ICMP, icmp_type=129 if v6 else 0)
        return build(self.dst, self.src, p, self.dport, self.sport, flags=TCP_SYN | TCP_ACK, seq=5000, ack=1001)


_PROTO = {"tcp": PROTO_TCP, "udp": PROTO_UDP, "icmp": PROTO_ICMP}


def parse_flow(text: str) -> FlowSpec:
    """Parse ``PROTO SRC[:PORT] > DST[:PORT]``; raises ValueError with the expected form."""
    m = _FLOW6.match(text) or _FLOW.match(text)
    if not m:
        raise ValueError(f"flow {text!r}: expected 'tcp|udp|icmp SRC[:PORT] > DST[:PORT]'")
    proto, src, sport, dst, dport = m.groups()
    proto = proto.lower()
    for a in (src, dst):
        ipaddress.ip_address(a)
    if proto in ("tcp", "udp") and (sport is None or dport is None):
        raise ValueError(f"flow {text!r}: {proto} needs ports")
    return FlowSpec(proto, src, int(sport or 0), dst, int(dport or 0))
