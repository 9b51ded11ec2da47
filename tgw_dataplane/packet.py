"""Per-packet parsing, the symmetric flow key and the flow hash (plain ints and precompiled ``struct``).

Everything here is on the hot path. A parsed packet is one ``__slots__`` object (:class:`Packet`); addresses
are ints (IPv4 32-bit, IPv6 128-bit), so comparisons and LPM shifts are integer operations.

Flow key (tgw.md §4.4): the two endpoints are ordered by unsigned big-endian address (Python ints are
unsigned, so the signed-difference bug of Linux 64ae13ed4784, §4.1, cannot happen); the ports follow their
address, and are only sorted when the two addresses are equal. Both directions of a flow therefore get the
same key. TCP and UDP use the 5-tuple; every other protocol the 3-tuple (ports 0), mirroring GWLB (§1.9).

Flow hash: keyed BLAKE2b (``digest_size=8``, key = the per-TGW seed) over the packed key, never builtin
``hash()``. Rendezvous (highest-random-weight) hashing then mixes that 64-bit value with a per-candidate salt
(splitmix64 finaliser), so removing one candidate only moves the flows that were on it.
"""

from __future__ import annotations

import functools
import struct
from hashlib import blake2b

# IPv4 header, RFC 791 §3.1: ver/ihl, tos, total length, id, flags/frag, ttl, proto, checksum, src, dst.
_V4 = struct.Struct("!BBHHHBBHII")
# IPv6 fixed header, RFC 8200 §3: ver/class/label, payload length, next header, hop limit (addresses apart).
_V6 = struct.Struct("!IHBB")
_PORTS = struct.Struct("!HH")
_TTL_PROTO_CSUM = struct.Struct("!BBH")
_BYTE = struct.Struct("!B")
_TCP_FLAGS_OFF = 13  # RFC 9293 §3.1: the flags byte (CWR ECE URG ACK PSH RST SYN FIN)
_U64 = (1 << 64) - 1

PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_GRE = 47
PROTO_ESP = 50
PROTO_ICMPV6 = 58

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10

# IPv6 next-header values that are extension headers (RFC 8200 §4; 44 = Fragment).
_V6_EXT = frozenset((0, 43, 44, 51, 60, 135, 139, 140, 253, 254))  # AH (51) counts here; ESP is a payload
_V6_FRAG = 44

# Drop reasons produced by the parser (see dataplane.DropReason for the full list).
R_TRUNCATED = "truncated"
R_MALFORMED = "malformed"
R_IP_OPTIONS = "ip_options"
R_FRAGMENT = "fragment"
R_IPV6_EXT = "ipv6_extension_header"
R_UNKNOWN_PROTOCOL = "unknown_protocol"

DEFAULT_PROTOCOLS = frozenset((PROTO_ICMP, PROTO_TCP, PROTO_UDP, PROTO_GRE, PROTO_ESP, PROTO_ICMPV6))


class Packet:
    """One parsed IP packet. ``data`` holds the original bytes; ``ttl`` the current TTL / hop limit, which the
    TGW may decrement (:meth:`wire` materialises the bytes with the new TTL and a fixed IPv4 checksum).

    ``key`` is the direction-normalised flow key (an int, see the module docstring); ``forward`` is True when
    the packet travels from the lower endpoint to the higher one, i.e. the key's own order.
    """

    __slots__ = (
        "_wire",
        "_wttl",
        "data",
        "dport",
        "dst",
        "flags",
        "forward",
        "icmp_type",
        "key",
        "length",
        "proto",
        "sport",
        "src",
        "ttl",
        "ttl0",
        "version",
    )

    data: bytes
    version: int
    src: int
    dst: int
    proto: int
    sport: int
    dport: int
    flags: int
    icmp_type: int
    ttl: int
    ttl0: int
    length: int
    key: int
    forward: bool
    _wttl: int  # TTL of the memoised wire() bytes (-1: none)
    _wire: bytes

    def wire(self) -> bytes:
        """The packet bytes as they are now (TTL/hop limit rewritten, IPv4 header checksum updated)."""
        ttl = self.ttl
        if ttl == self.ttl0:
            return self.data
        if ttl == self._wttl:
            return self._wire
        d = self.data
        if self.version == 4:
            # RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), over the 16-bit word holding TTL and protocol. The TTL
            # only decreases (by k), so ~m + m' = 0xFFFF - (k << 8); the sum is at most 0x1FFFE and one
            # end-around carry folds it into 16 bits.
            k = self.ttl0 - ttl
            if 0 < k < 256:
                s = (((d[10] << 8) | d[11]) ^ 0xFFFF) + 0xFFFF - (k << 8)
                s = (s & 0xFFFF) + (s >> 16)
            else:
                proto = self.proto
                s = (~((d[10] << 8) | d[11]) & 0xFFFF) + (~((self.ttl0 << 8) | proto) & 0xFFFF) + ((ttl << 8) | proto)
                s = (s & 0xFFFF) + (s >> 16)
                s = (s & 0xFFFF) + (s >> 16)
            w = d[:8] + _TTL_PROTO_CSUM.pack(ttl, self.proto, ~s & 0xFFFF) + d[12:]
        else:
            w = d[:7] + _BYTE.pack(ttl) + d[8:]
        self._wttl = ttl
        self._wire = w
        return w


# IPv4 fast path (no options): total length, flags/fragment offset, TTL, protocol, addresses, L4 ports.
_V4FAST = struct.Struct("!2xH2xHBB2xIIHH")


def parse(data: bytes, protocols: frozenset[int] = DEFAULT_PROTOCOLS) -> Packet | str:
    """Parse an IPv4 or IPv6 packet. Returns a :class:`Packet`, or a drop-reason string; never raises."""
    n = len(data)
    if n >= 40 and data[0] == 0x45:
        # Fast path: IPv4 without options carrying TCP or UDP (the common case); same checks as below.
        total, frag, ttl, proto, src, dst, sport, dport = _V4FAST.unpack_from(data)
        if (
            total <= n
            and not frag & 0x3FFF
            and proto in protocols
            and ((proto == PROTO_TCP and total >= 40 and data[32] >= 0x50) or (proto == PROTO_UDP and total >= 28))
        ):
            p = Packet()
            p.data = data
            p.version = 4
            p.src = src
            p.dst = dst
            p.proto = proto
            p.sport = sport
            p.dport = dport
            p.flags = data[33] if proto == PROTO_TCP else 0
            p.icmp_type = -1
            p.ttl = p.ttl0 = ttl
            p._wttl = -1
            p.length = total
            if src < dst or (src == dst and sport <= dport):
                p.forward = True
                p.key = (proto << 96) | (src << 64) | (dst << 32) | (sport << 16) | dport
            else:
                p.forward = False
                p.key = (proto << 96) | (dst << 64) | (src << 32) | (dport << 16) | sport
            return p
    if n < 20:
        return R_TRUNCATED
    v = data[0] >> 4
    p = Packet()
    if v == 4:
        vihl, _tos, total, _ident, frag, ttl, proto, _csum, src, dst = _V4.unpack_from(data)
        if total > n or total < 20:
            return R_TRUNCATED if total > n else R_MALFORMED
        ihl = vihl & 0x0F
        if ihl != 5:
            return R_IP_OPTIONS if ihl > 5 else R_MALFORMED
        if frag & 0x3FFF:  # MF set or a non-zero offset (RFC 791 §3.1)
            return R_FRAGMENT
        off = 20
        p.length = total
    elif v == 6:
        if n < 40:
            return R_TRUNCATED
        _vcl, plen, proto, ttl = _V6.unpack_from(data)
        if 40 + plen > n:
            return R_TRUNCATED
        if proto in _V6_EXT:
            return R_FRAGMENT if proto == _V6_FRAG else R_IPV6_EXT
        src = int.from_bytes(data[8:24], "big")
        dst = int.from_bytes(data[24:40], "big")
        off = 40
        p.length = 40 + plen
    else:
        return R_MALFORMED
    if proto not in protocols:
        return R_UNKNOWN_PROTOCOL
    end = p.length
    flags = 0
    icmp_type = -1
    if proto == PROTO_TCP:
        if off + 20 > end:
            return R_TRUNCATED
        sport, dport = _PORTS.unpack_from(data, off)
        if (data[off + 12] >> 4) < 5:
            return R_MALFORMED
        flags = data[off + _TCP_FLAGS_OFF]
    elif proto == PROTO_UDP:
        if off + 8 > end:
            return R_TRUNCATED
        sport, dport = _PORTS.unpack_from(data, off)
    else:
        sport = dport = 0
        if proto in (PROTO_ICMP, PROTO_ICMPV6):
            if off + 8 > end:
                return R_TRUNCATED
            icmp_type = data[off]
    p.data = data
    p.version = v
    p.src = src
    p.dst = dst
    p.proto = proto
    p.sport = sport
    p.dport = dport
    p.flags = flags
    p.icmp_type = icmp_type
    p.ttl = p.ttl0 = ttl
    p._wttl = -1
    # Canonical key (tgw.md §4.4): order by address, ports tied to their address.
    if src < dst or (src == dst and sport <= dport):
        p.forward = True
        lo, hi, lp, hp = src, dst, sport, dport
    else:
        p.forward = False
        lo, hi, lp, hp = dst, src, dport, sport
    if v == 4:
        p.key = (proto << 96) | (lo << 64) | (hi << 32) | (lp << 16) | hp
    else:
        p.key = (1 << 300) | (proto << 288) | (lo << 160) | (hi << 32) | (lp << 16) | hp
    return p


def flow_key(version: int, proto: int, src: int, dst: int, sport: int = 0, dport: int = 0) -> int:
    """The canonical (direction-normalised) flow key of a 5-tuple, as :func:`parse` computes it."""
    if proto not in (PROTO_TCP, PROTO_UDP):
        sport = dport = 0
    if src > dst or (src == dst and sport > dport):
        src, dst, sport, dport = dst, src, dport, sport
    if version == 4:
        return (proto << 96) | (src << 64) | (dst << 32) | (sport << 16) | dport
    return (1 << 300) | (proto << 288) | (src << 160) | (dst << 32) | (sport << 16) | dport


def flow_hash(key: int, seed: bytes) -> int:
    """64-bit keyed BLAKE2b of the packed canonical key (38 bytes covers the IPv6 form)."""
    return int.from_bytes(blake2b(key.to_bytes(38, "big"), digest_size=8, key=seed).digest(), "big")


def mix64(x: int) -> int:
    """splitmix64 finaliser: a bijective 64-bit mixer (used to combine a flow hash with a candidate salt)."""
    x &= _U64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _U64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _U64
    return x ^ (x >> 31)


@functools.lru_cache(maxsize=4096)
def salt_of(name: str) -> int:
    """A stable 64-bit salt for a rendezvous candidate (an ENI id, AZ id, VPN attachment or tunnel); cached,
    as the same few names are salted again on per-packet paths (VPN ECMP)."""
    return int.from_bytes(blake2b(name.encode(), digest_size=8).digest(), "big")


def hrw_pick(h: int, salts: list[int]) -> int:
    """Rendezvous hashing: the index of the candidate with the highest ``mix64(h ^ salt)`` (-1 if none)."""
    best = -1
    best_score = -1
    for i, s in enumerate(salts):
        score = mix64(h ^ s)
        if score > best_score:
            best_score = score
            best = i
    return best


def key_proto(key: int) -> int:
    """The IP protocol stored in a canonical flow key."""
    return (key >> 288) & 0xFF if key >> 300 else (key >> 96) & 0xFF


def clamp_mss(pkt: Packet, limit: int) -> tuple[int, int] | None:
    """Lower the MSS option of a TCP SYN / SYN-ACK to ``limit`` (tgw.md §1.11). Rewrites ``pkt.data`` (the TCP
    checksum updated incrementally, RFC 1624 eqn. 3, per 16-bit word of the header that changed, so a wrong
    checksum stays wrong by the same amount) and returns ``(old, new)``; None when there is nothing to do (no
    MSS option, already small enough, or options that do not parse)."""
    data = pkt.data
    off = 20 if pkt.version == 4 else 40  # the parser drops IPv4 options and IPv6 extension headers
    end = off + (data[off + 12] >> 4) * 4
    if end > pkt.length or end <= off + 20:
        return None
    i = off + 20
    while i < end:
        kind = data[i]
        if kind == 0:  # end of option list
            return None
        if kind == 1:  # NOP
            i += 1
            continue
        if i + 1 >= end or data[i + 1] < 2 or i + data[i + 1] > end:
            return None
        if kind == 2 and data[i + 1] == 4:
            old = (data[i + 2] << 8) | data[i + 3]
            if old <= limit:
                return None
            new = bytearray(data)
            new[i + 2] = limit >> 8
            new[i + 3] = limit & 0xFF
            # The checksum covers 16-bit words counted from the TCP header's start: update each word of the
            # two value bytes (one word, or two when the option sits at an odd offset).
            c = ((data[off + 16] << 8) | data[off + 17]) ^ 0xFFFF
            w0 = (i + 2 - off) & ~1
            for w in range(w0, i + 4 - off, 2):
                a = off + w
                c += (((data[a] << 8) | data[a + 1]) ^ 0xFFFF) + ((new[a] << 8) | new[a + 1])
            while c >> 16:
                c = (c & 0xFFFF) + (c >> 16)
            c ^= 0xFFFF
            new[off + 16] = c >> 8
            new[off + 17] = c & 0xFF
            pkt.data = bytes(new)
            pkt._wttl = -1
            return old, limit
        i += data[i + 1]
    return None
