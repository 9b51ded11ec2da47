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


_FLOW = re.compile(r"^\s*(\S+)\s+(\S+?)\s*>\s*(\S+?)\s*$")
_ENDPOINT6 = re.compile(r"^\[([^\]]*)\](?::(.*))?$")
_FORM = "expected 'tcp|udp|icmp SRC[:PORT] > DST[:PORT]' (IPv6 as [ADDR]:PORT)"


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


def _endpoint(text: str, flow: str, side: str) -> tuple[str, int | None]:
    """``ADDR``, ``ADDR:PORT``, ``[ADDR6]`` or ``[ADDR6]:PORT`` -> (address, port or None)."""
    m = _ENDPOINT6.match(text)
    if m is not None:
        addr, port = m.group(1), m.group(2)
    elif text.count(":") == 1:
        addr, port = text.split(":")
    else:
        addr, port = text, None  # an IPv4 address, or a bare IPv6 address (no port possible)
    try:
        a = ipaddress.ip_address(addr)
    except ValueError:
        raise ValueError(f"flow {flow!r}: {side} {addr!r} is not an IPv4 or IPv6 address ({_FORM})") from None
    if m is None and a.version == 6 and port is not None:
        raise ValueError(f"flow {flow!r}: write an IPv6 {side} with a port as [{addr}]:PORT")
    if port is None:
        return str(a), None
    if not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ValueError(f"flow {flow!r}: {side} port {port!r} is not an integer in 0..65535")
    return str(a), int(port)


def parse_flow(text: str) -> FlowSpec:
    """Parse ``PROTO SRC[:PORT] > DST[:PORT]`` (IPv6 as ``[ADDR]:PORT``); raises ValueError naming what is wrong
    and the expected form. TCP and UDP need both ports (0..65535); ICMP takes none; both ends must be of one
    address family."""
    m = _FLOW.match(text)
    if not m:
        raise ValueError(f"flow {text!r}: {_FORM}")
    proto, src_t, dst_t = m.groups()
    proto = proto.lower()
    if proto not in _PROTO:
        raise ValueError(f"flow {text!r}: protocol {proto!r} is not one of tcp, udp, icmp")
    src, sport = _endpoint(src_t, text, "source")
    dst, dport = _endpoint(dst_t, text, "destination")
    if ipaddress.ip_address(src).version != ipaddress.ip_address(dst).version:
        raise ValueError(f"flow {text!r}: source {src} and destination {dst} are of different address families")
    if proto in ("tcp", "udp") and (sport is None or dport is None):
        raise ValueError(f"flow {text!r}: {proto} needs both ports (SRC:PORT > DST:PORT)")
    if proto == "icmp" and (sport is not None or dport is not None):
        raise ValueError(f"flow {text!r}: icmp takes no ports")
    return FlowSpec(proto, src, sport or 0, dst, dport or 0)
