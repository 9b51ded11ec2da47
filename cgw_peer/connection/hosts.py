"""Emulated hosts that answer: ICMP echo, UDP echo and TCP echo (sans-I/O; packets in, packets out).

:class:`EchoHost` plays every address it is given (VPC instances behind the emulated TGW, on-premises hosts behind
the emulated CGW). :meth:`EchoHost.respond` takes one IPv4 packet addressed to it and returns the packets it sends
back:

* ICMP echo request (type 8, code 0) -> echo reply (type 0) with the same identifier, sequence number and data
  (RFC 792; RFC 1122 §3.2.2.6: the data is returned unchanged);
* UDP -> the same payload back from the destination port to the source port (the echo service of RFC 862, here
  on every port, so that any tool's datagram comes back);
* TCP -> a small echo server on every port (RFC 862 over TCP): SYN is answered with SYN-ACK, each in-order data
  segment with an ACK that carries the same data back, FIN with FIN-ACK, RST forgets the connection. Segments out
  of order are answered with a duplicate ACK (RFC 9293 §3.10.7.4); a retransmitted segment we already echoed gets
  our last segment again. No options are sent (the peer assumes an MSS of 536, RFC 9293 §3.7.1, which is all an
  echo needs); the initial sequence number is a CRC of the connection's addresses and ports (no randomness, so
  runs repeat exactly).

Everything else (ICMP other than echo, fragments, non-IPv4) is counted in :attr:`EchoHost.ignored` and gets no
answer. Replies leave with TTL 64 (Linux's default) and an IPv4 identification counted per host.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable

from cgw_peer.connection.packets import PROTO_ICMP, PROTO_TCP, PROTO_UDP, icmp4, ip_bytes, parse4, tcp4, udp4

__all__ = ["TCP_ACK", "TCP_FIN", "TCP_PSH", "TCP_RST", "TCP_SYN", "EchoHost"]

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10

_TCP_HDR = struct.Struct("!HHIIBB")
_MAX_CONNECTIONS = 10_000
"""TCP connections an :class:`EchoHost` remembers; the oldest is forgotten beyond this (bounded memory)."""


class _Conn:
    __slots__ = ("last", "rcv_nxt", "snd_nxt")

    def __init__(self, snd_nxt: int, rcv_nxt: int) -> None:
        self.snd_nxt = snd_nxt
        self.rcv_nxt = rcv_nxt
        self.last = b""


class EchoHost:
    """Answers ICMP echo, UDP and TCP for the IPv4 ``addresses`` it plays (see the module docstring)."""

    def __init__(self, addresses: Iterable[str] = ()) -> None:
        self.addresses: set[bytes] = {ip_bytes(a) for a in addresses}
        self.answered = 0
        """Packets answered (one per request, whatever number of packets the answer took)."""
        self.ignored = 0
        """Packets that got no answer (not for us, not echo, malformed)."""
        self._ident = 0
        self._tcp: dict[tuple[bytes, int, bytes, int], _Conn] = {}

    def add(self, address: str) -> None:
        """Play one more address."""
        self.addresses.add(ip_bytes(address))

    def respond(self, packet: bytes) -> list[bytes]:
        """The packets this host sends in answer to ``packet`` (empty: no answer). Never raises."""
        ip = parse4(packet)
        if ip is None or ip.dst not in self.addresses:
            self.ignored += 1
            return []
        self._ident = (self._ident + 1) & 0xFFFF
        seg = packet[ip.start : ip.end]
        if ip.proto == PROTO_ICMP:
            if len(seg) >= 8 and seg[0] == 8 and seg[1] == 0:
                ident, seq = struct.unpack_from("!HH", seg, 4)
                self.answered += 1
                return [icmp4(ip.dst, ip.src, 0, ident, seq, seg[8:], ip_ident=self._ident)]
        elif ip.proto == PROTO_UDP:
            if len(seg) >= 8:
                sport, dport = struct.unpack_from("!HH", seg)
                self.answered += 1
                return [udp4(ip.dst, ip.src, dport, sport, seg[8:], ident=self._ident)]
        elif ip.proto == PROTO_TCP and len(seg) >= 20:
            out = self._tcp_segment(ip.src, ip.dst, seg)
            if out:
                self.answered += 1
            return out
        self.ignored += 1
        return []

    def _tcp_segment(self, src: bytes, dst: bytes, seg: bytes) -> list[bytes]:
        sport, dport, seq, ack, off, flags = _TCP_HDR.unpack_from(seg)
        data = seg[(off >> 4) * 4 :]
        key = (src, sport, dst, dport)
        conn = self._tcp.get(key)
        ident = self._ident

        def send(flags_out: int, payload: bytes = b"") -> bytes:
            assert conn is not None
            return tcp4(dst, src, dport, sport, conn.snd_nxt, conn.rcv_nxt, flags_out, payload, ident=ident)

        if flags & TCP_RST:
            self._tcp.pop(key, None)
            return []
        if flags & TCP_SYN and not flags & TCP_ACK:
            isn = zlib.crc32(src + dst + struct.pack("!HH", sport, dport))
            if len(self._tcp) >= _MAX_CONNECTIONS:
                self._tcp.pop(next(iter(self._tcp)))
            conn = self._tcp[key] = _Conn(isn, (seq + 1) & 0xFFFFFFFF)
            syn_ack = send(TCP_SYN | TCP_ACK)
            conn.snd_nxt = (isn + 1) & 0xFFFFFFFF
            conn.last = syn_ack
            return [syn_ack]
        if conn is None:
            # RFC 9293 §3.10.7.1: a segment for no connection gets a reset (unless it is a reset).
            if flags & TCP_ACK:
                return [tcp4(dst, src, dport, sport, ack, 0, TCP_RST, ident=ident)]
            return [tcp4(dst, src, dport, sport, 0, (seq + len(data)) & 0xFFFFFFFF, TCP_RST | TCP_ACK, ident=ident)]
        if seq != conn.rcv_nxt:
            if ((conn.rcv_nxt - seq) & 0xFFFFFFFF) < 0x80000000 and (data or flags & TCP_FIN) and conn.last:
                return [conn.last]  # a retransmission of what we already echoed: our last answer again
            return [send(TCP_ACK)]  # out of order: duplicate ACK
        out: list[bytes] = []
        if data:
            conn.rcv_nxt = (conn.rcv_nxt + len(data)) & 0xFFFFFFFF
            echo = send(TCP_ACK | TCP_PSH, data)
            conn.snd_nxt = (conn.snd_nxt + len(data)) & 0xFFFFFFFF
            conn.last = echo
            out.append(echo)
        if flags & TCP_FIN:
            conn.rcv_nxt = (conn.rcv_nxt + 1) & 0xFFFFFFFF
            fin = send(TCP_FIN | TCP_ACK)
            conn.snd_nxt = (conn.snd_nxt + 1) & 0xFFFFFFFF
            conn.last = fin
            out.append(fin)
        elif not data and ack == conn.snd_nxt and _is_fin(conn.last):
            self._tcp.pop(key, None)  # the ACK of our FIN: the connection is closed
        return out


def _is_fin(packet: bytes) -> bool:
    ip = parse4(packet)
    return ip is not None and ip.proto == PROTO_TCP and bool(packet[ip.start + 13] & TCP_FIN)
