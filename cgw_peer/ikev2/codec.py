"""IKEv2 message codec (RFC 7296 §3): header, generic payload chain and the payload bodies we use.

Pure functions over small slotted dataclasses, ``struct`` only. Every parser raises
:class:`~cgw_peer.errors.DecodeError` (never anything else) on malformed input; the peer counts and drops.

The SK payload (§3.14) is framed here but protected in :mod:`cgw_peer.ikev2.sk`: ``parse_message`` stops at
SK, whose body (IV | ciphertext | ICV) runs to the end of the message by definition.
"""

from __future__ import annotations

import functools
import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field

from cgw_peer.errors import DecodeError
from cgw_peer.ikev2.constants import ATTR_KEY_LENGTH, IKEV2_VERSION, Payload, TsType

#                      1                   2                   3
#  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
# |                       IKE SA Initiator's SPI (8)                |
# |                       IKE SA Responder's SPI (8)                |
# |  Next Payload | MjVer | MnVer | Exchange Type |     Flags     |
# |                          Message ID                           |
# |                            Length                             |
HEADER = struct.Struct("!8s8sBBBBII")
HEADER_LEN = 28
# Generic payload header: Next Payload | C | RESERVED | Payload Length (RFC 7296 §3.2)
GENERIC = struct.Struct("!BBH")
_PROPOSAL = struct.Struct("!BBHBBBB")  # last/more, reserved, length, num, protocol, spi size, n transforms
_TRANSFORM = struct.Struct("!BBHBBH")  # last/more, reserved, length, type, reserved, id
_ATTR_TV = struct.Struct("!HH")
_KE = struct.Struct("!HH")
_ID = struct.Struct("!B3x")
_NOTIFY = struct.Struct("!BBH")
_DELETE = struct.Struct("!BBH")
_TS_HDR = struct.Struct("!B3x")
_TS = struct.Struct("!BBHHH")

# Payloads we understand; an unknown payload with the critical bit set is an error (§2.5).
KNOWN_PAYLOADS = frozenset(int(p) for p in Payload if p is not Payload.NONE)
_SK = int(Payload.SK)


@dataclass(slots=True)
class Header:
    """The 28-octet IKE header. ``length`` is the whole message length as carried on the wire."""

    spi_i: bytes
    spi_r: bytes
    next_payload: int
    exchange: int
    flags: int
    message_id: int
    length: int = 0

    @property
    def is_response(self) -> bool:
        return bool(self.flags & 0x20)

    @property
    def from_initiator(self) -> bool:
        return bool(self.flags & 0x08)

    def encode(self, length: int) -> bytes:
        return HEADER.pack(
            self.spi_i,
            self.spi_r,
            self.next_payload,
            IKEV2_VERSION,
            self.exchange,
            self.flags,
            self.message_id,
            length,
        )


def parse_header(data: bytes) -> Header:
    """Parse and check the IKE header (version, length)."""
    if len(data) < HEADER_LEN:
        raise DecodeError("short_header", f"{len(data)} octets")
    spi_i, spi_r, np, ver, exch, flags, mid, length = HEADER.unpack_from(data)
    if ver >> 4 != 2:
        raise DecodeError("bad_version", f"0x{ver:02x}")
    if length != len(data):
        raise DecodeError("bad_length", f"header says {length}, datagram has {len(data)}")
    return Header(spi_i, spi_r, np, exch, flags, mid, length)


@dataclass(slots=True)
class RawPayload:
    """One payload from a chain: its type, critical bit, body (after the 4-octet generic header) and, for
    SK, the type of the first inner payload (the SK header's Next Payload field)."""

    ptype: int
    body: bytes
    critical: bool = False
    inner_np: int = 0


def parse_chain(first: int, data: bytes, off: int = 0, end: int | None = None) -> list[RawPayload]:
    """Walk a generic payload chain starting with type ``first`` at ``data[off:end]``.

    SK is always the last payload (§3.14); its ``inner_np`` keeps the first inner type.
    """
    end = len(data) if end is None else end
    out: list[RawPayload] = []
    np = first
    unpack = GENERIC.unpack_from
    known = KNOWN_PAYLOADS
    while np:
        if off + 4 > end:
            raise DecodeError("truncated_payload", f"type {np} at {off}")
        nxt, crit, plen = unpack(data, off)
        nend = off + plen
        if plen < 4 or nend > end:
            raise DecodeError("bad_payload_length", f"type {np} length {plen}")
        critical = crit >= 0x80
        if critical and np not in known:
            raise DecodeError("unsupported_critical_payload", f"type {np}")
        if np == _SK:
            if nend != end:
                raise DecodeError("sk_not_last", "data after the SK payload")
            out.append(RawPayload(np, data[off + 4 : nend], critical, nxt))
            return out
        out.append(RawPayload(np, data[off + 4 : nend], critical))
        off = nend
        np = nxt
    if off != end:
        raise DecodeError("trailing_data", f"{end - off} octets after the last payload")
    return out


def encode_chain(payloads: Sequence[tuple[int, bytes]], last_np: int = 0) -> tuple[int, bytes]:
    """Encode ``[(type, body), ...]``; returns (type of the first payload, bytes). ``last_np`` is the Next
    Payload of the last one (0, except inside SK where the caller never needs it)."""
    if not payloads:
        return last_np, b""
    pack = GENERIC.pack
    nexts = [p[0] for p in payloads[1:]]
    nexts.append(last_np)
    parts = [pack(nxt, 0, 4 + len(p[1])) + p[1] for nxt, p in zip(nexts, payloads, strict=True)]
    return payloads[0][0], b"".join(parts)


def encode_plain_message(header: Header, payloads: list[tuple[int, bytes]]) -> bytes:
    """An unprotected message (IKE_SA_INIT)."""
    first, body = encode_chain(payloads)
    header.next_payload = first
    return header.encode(HEADER_LEN + len(body)) + body


# -- SA payload (§3.3) --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Transform:
    """One transform: type (ENCR, PRF, INTEG, DH, ESN), ID, and the Key Length attribute if any."""

    ttype: int
    tid: int
    key_length: int | None = None


@dataclass(slots=True)
class Proposal:
    """One proposal: number (1-based), protocol (IKE/ESP), SPI and transforms."""

    num: int
    protocol: int
    spi: bytes
    transforms: list[Transform] = field(default_factory=list)

    def of_type(self, ttype: int) -> list[Transform]:
        return [t for t in self.transforms if t.ttype == ttype]


def _encode_transforms(transforms: Sequence[Transform]) -> bytes:
    tparts: list[bytes] = []
    last = len(transforms) - 1
    for j, t in enumerate(transforms):
        more = 3 if j < last else 0
        if t.key_length is None:
            tparts.append(_TRANSFORM.pack(more, 0, 8, t.ttype, 0, t.tid))
        else:
            tparts.append(
                _TRANSFORM.pack(more, 0, 12, t.ttype, 0, t.tid) + _ATTR_TV.pack(0x8000 | ATTR_KEY_LENGTH, t.key_length)
            )
    return b"".join(tparts)


def encode_sa_template(proposals: Sequence[Proposal]) -> tuple[bytes, ...]:
    """The SA payload body cut at each proposal's SPI: ``spi.join(template)`` equals :func:`encode_sa` of the
    same proposals carrying ``spi``. Every proposal must have an SPI of the length it will be sent with (the
    SPI octets themselves are ignored). Lets a sender encode its offer once and splice in a fresh SPI."""
    pieces: list[bytes] = []
    tail = b""
    last = len(proposals) - 1
    for i, p in enumerate(proposals):
        tbytes = _encode_transforms(p.transforms)
        hdr = _PROPOSAL.pack(
            2 if i < last else 0, 0, 8 + len(p.spi) + len(tbytes), p.num, p.protocol, len(p.spi), len(p.transforms)
        )
        pieces.append(tail + hdr)
        tail = tbytes
    pieces.append(tail)
    return tuple(pieces)


def encode_sa(proposals: list[Proposal]) -> bytes:
    pieces = encode_sa_template(proposals)
    out = [pieces[0]]
    for p, piece in zip(proposals, pieces[1:], strict=True):
        out.append(p.spi)
        out.append(piece)
    return b"".join(out)


# Transforms are immutable and few distinct ones exist: parse_sa hands out shared instances.
_TRANSFORM_CACHE: dict[tuple[int, int, int | None], Transform] = {}


def _transform(ttype: int, tid: int, key_length: int | None) -> Transform:
    key = (ttype, tid, key_length)
    t = _TRANSFORM_CACHE.get(key)
    if t is None:
        t = Transform(ttype, tid, key_length)
        if len(_TRANSFORM_CACHE) < 4096:  # bounded: arbitrary wire input must not grow it forever
            _TRANSFORM_CACHE[key] = t
    return t


def parse_sa(body: bytes) -> list[Proposal]:
    props: list[Proposal] = []
    off = 0
    blen = len(body)
    unpack_t = _TRANSFORM.unpack_from
    while True:
        if off + 8 > blen:
            raise DecodeError("bad_sa", "truncated proposal")
        more, _r, plen, num, proto, spisize, ntrans = _PROPOSAL.unpack_from(body, off)
        pend = off + plen
        if plen < 8 + spisize or pend > blen or (more != 0 and more != 2):
            raise DecodeError("bad_sa", "proposal length")
        toff = off + 8 + spisize
        spi = body[off + 8 : toff]
        transforms: list[Transform] = []
        last = ntrans - 1
        for k in range(ntrans):
            if toff + 8 > pend:
                raise DecodeError("bad_sa", "truncated transform")
            tmore, _r2, tlen, ttype, _r3, tid = unpack_t(body, toff)
            tend = toff + tlen
            if tlen < 8 or tend > pend or (tmore != 0 and tmore != 3) or (tmore == 0) != (k == last):
                raise DecodeError("bad_sa", "transform length")
            key_length: int | None = None
            aoff = toff + 8
            while aoff < tend:
                if aoff + 4 > tend:
                    raise DecodeError("bad_sa", "truncated attribute")
                atype, aval = _ATTR_TV.unpack_from(body, aoff)
                if atype & 0x8000:
                    if atype & 0x7FFF == ATTR_KEY_LENGTH:
                        key_length = aval
                    aoff += 4
                else:  # TLV: aval is the length
                    aoff += 4 + aval
            if aoff != tend:
                raise DecodeError("bad_sa", "attribute overrun")
            transforms.append(_transform(ttype, tid, key_length))
            toff = tend
        if toff != pend:
            raise DecodeError("bad_sa", "proposal trailing data")
        props.append(Proposal(num, proto, spi, transforms))
        off = pend
        if more == 0:
            break
    if off != blen:
        raise DecodeError("bad_sa", "trailing data after last proposal")
    return props


# -- KE, Nonce, ID, AUTH (§3.4, §3.9, §3.5, §3.8) ---------------------------------------------------------


def encode_ke(group: int, public: bytes) -> bytes:
    return _KE.pack(group, 0) + public


def parse_ke(body: bytes) -> tuple[int, bytes]:
    if len(body) < 4:
        raise DecodeError("bad_ke", "short")
    group, _ = _KE.unpack_from(body)
    return group, body[4:]


def check_nonce(body: bytes) -> bytes:
    # RFC 7296 §3.9: between 16 and 256 octets.
    if not 16 <= len(body) <= 256:
        raise DecodeError("bad_nonce", f"{len(body)} octets")
    return body


def encode_id(id_type: int, data: bytes) -> bytes:
    return _ID.pack(id_type) + data


def parse_id(body: bytes) -> tuple[int, bytes]:
    if len(body) < 4:
        raise DecodeError("bad_id", "short")
    return body[0], body[4:]


def encode_auth(method: int, data: bytes) -> bytes:
    return _ID.pack(method) + data


def parse_auth(body: bytes) -> tuple[int, bytes]:
    if len(body) < 4:
        raise DecodeError("bad_auth", "short")
    return body[0], body[4:]


# -- Notify and Delete (§3.10, §3.11) ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NotifyPayload:
    ntype: int
    data: bytes = b""
    protocol: int = 0
    spi: bytes = b""

    def encode(self) -> bytes:
        return _NOTIFY.pack(self.protocol, len(self.spi), self.ntype) + self.spi + self.data


def parse_notify(body: bytes) -> NotifyPayload:
    if len(body) < 4:
        raise DecodeError("bad_notify", "short")
    proto, spisize, ntype = _NOTIFY.unpack_from(body)
    if 4 + spisize > len(body):
        raise DecodeError("bad_notify", "SPI overrun")
    return NotifyPayload(ntype, body[4 + spisize :], proto, body[4 : 4 + spisize])


@dataclass(frozen=True, slots=True)
class DeletePayload:
    protocol: int
    spis: tuple[bytes, ...] = ()

    def encode(self) -> bytes:
        size = len(self.spis[0]) if self.spis else 0
        return _DELETE.pack(self.protocol, size, len(self.spis)) + b"".join(self.spis)


def parse_delete(body: bytes) -> DeletePayload:
    if len(body) < 4:
        raise DecodeError("bad_delete", "short")
    proto, size, n = _DELETE.unpack_from(body)
    if len(body) != 4 + size * n or (proto == 1 and (size != 0 or n != 0)) or (proto != 1 and size != 4):
        raise DecodeError("bad_delete", f"proto {proto} size {size} n {n} len {len(body)}")
    return DeletePayload(proto, tuple(body[4 + i * size : 4 + (i + 1) * size] for i in range(n)))


# -- Traffic selectors (§3.13) -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Ts:
    """One traffic selector: an address range (as ints), an IP protocol (0 any) and a port range."""

    version: int
    start: int
    end: int
    ip_proto: int = 0
    port_low: int = 0
    port_high: int = 65535

    @classmethod
    def from_cidr(cls, cidr: str, ip_proto: int = 0, port_low: int = 0, port_high: int = 65535) -> Ts:
        net = ipaddress.ip_network(cidr, strict=False)
        return cls(net.version, int(net.network_address), int(net.broadcast_address), ip_proto, port_low, port_high)

    def intersect(self, other: Ts) -> Ts | None:
        """The narrowed selector both sides accept (RFC 7296 §2.9), or None."""
        if self.version != other.version:
            return None
        if self.ip_proto and other.ip_proto and self.ip_proto != other.ip_proto:
            return None
        start, end = max(self.start, other.start), min(self.end, other.end)
        lo, hi = max(self.port_low, other.port_low), min(self.port_high, other.port_high)
        if start > end or lo > hi:
            return None
        return Ts(self.version, start, end, self.ip_proto or other.ip_proto, lo, hi)

    def __str__(self) -> str:
        return _ts_str(self.version, self.start, self.end, self.ip_proto, self.port_low, self.port_high)


@functools.lru_cache(maxsize=1024)
def _ts_str(version: int, start: int, end: int, proto: int, lo: int, hi: int) -> str:
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    return f"{cls(start)}-{cls(end)}[{proto}/{lo}-{hi}]"


def encode_ts(selectors: list[Ts]) -> bytes:
    parts = [_TS_HDR.pack(len(selectors))]
    for ts in selectors:
        alen = 4 if ts.version == 4 else 16
        t = TsType.IPV4_ADDR_RANGE if ts.version == 4 else TsType.IPV6_ADDR_RANGE
        parts.append(_TS.pack(t, ts.ip_proto, 8 + 2 * alen, ts.port_low, ts.port_high))
        parts.append(ts.start.to_bytes(alen, "big") + ts.end.to_bytes(alen, "big"))
    return b"".join(parts)


_TS_ADDR_LEN = {int(TsType.IPV4_ADDR_RANGE): 4, int(TsType.IPV6_ADDR_RANGE): 16}


def parse_ts(body: bytes) -> list[Ts]:
    return list(_parse_ts(body))


@functools.lru_cache(maxsize=512)
def _parse_ts(body: bytes) -> tuple[Ts, ...]:
    # Cached per body: a peer proposes the same selectors in every exchange (DecodeErrors are not cached).
    if len(body) < 4:
        raise DecodeError("bad_ts", "short")
    n = body[0]
    off = 4
    out: list[Ts] = []
    for _ in range(n):
        if off + 8 > len(body):
            raise DecodeError("bad_ts", "truncated")
        t, proto, slen, lo, hi = _TS.unpack_from(body, off)
        alen = _TS_ADDR_LEN.get(t)
        if alen is None or slen != 8 + 2 * alen or off + slen > len(body):
            raise DecodeError("bad_ts", f"type {t} length {slen}")
        start = int.from_bytes(body[off + 8 : off + 8 + alen], "big")
        end = int.from_bytes(body[off + 8 + alen : off + slen], "big")
        out.append(Ts(4 if alen == 4 else 6, start, end, proto, lo, hi))
        off += slen
    if off != len(body) or n == 0:
        raise DecodeError("bad_ts", "trailing data or no selectors")
    return tuple(out)
