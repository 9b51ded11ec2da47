"""GENEVE (RFC 8926) as AWS Gateway Load Balancer emits it: codec for the UDP payload and the outer IPv4/UDP.

GWLB sends every packet to a target inside GENEVE over UDP port 6081 (RFC 8926 §3.3) with an IPv4 outer header,
even for IPv6 client traffic. The payload is the original IP packet with no inner Ethernet (Protocol Type
0x0800 or 0x86DD, RFC 8926 §3.4). Three AWS option TLVs of class 0x0108 follow the 8-byte base header:

=====  ====  ======  =============================================================
type   len   bytes   meaning
=====  ====  ======  =============================================================
1      2     8       GWLB endpoint id (the ``vpce-`` id as a 64-bit number, not its ENI)
2      2     8       attachment id (64-bit)
3      1     4       flow cookie (32-bit, chosen by GWLB per flow; targets echo it back)
=====  ====  ======  =============================================================

So a GWLB header is 8 + 3*4 + 8 + 8 + 4 = 40 bytes and the total overhead with outer IPv4 and UDP is 68 bytes.
The appliance returns the packet with the same encapsulation. A packet missing any of the three options is
rejected, as the AWS reference tunnel handler (aws-gateway-load-balancer-tunnel-handler, GenevePacket.cpp) does.

The hot path is one precompiled :class:`struct.Struct` for the 40-byte header in each direction; other layouts
(options in a different order, extra options) go through a strict generic parser. Everything raises only
:class:`GeneveDecodeError`, whose ``reason`` is a :class:`GeneveDropReason` a dataplane can count.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import StrEnum

GENEVE_UDP_PORT = 6081
"""IANA port for GENEVE (RFC 8926 §3.3)."""

AWS_OPTION_CLASS = 0x0108
"""Option class GWLB uses for its three metadata options (seen in GWLBTUN; the IANA registry names 0x0108
"Amazon.com, Inc."-range vendor classes)."""

OPT_GWLBE_ENDPOINT_ID = 1
OPT_ATTACHMENT_ID = 2
OPT_FLOW_COOKIE = 3

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD

BASE_HEADER_LEN = 8
AWS_OPTIONS_LEN = 32  # (4 + 8) + (4 + 8) + (4 + 4)
GWLB_HEADER_LEN = BASE_HEADER_LEN + AWS_OPTIONS_LEN  # 40
OUTER_OVERHEAD = 20 + 8 + GWLB_HEADER_LEN  # 68 bytes added to every packet (tgw.md §1.9)

_MAX_U64 = (1 << 64) - 1
_MAX_U32 = (1 << 32) - 1


class GeneveDropReason(StrEnum):
    """Why a GENEVE payload was rejected. Values are stable strings for counters and ``datagram_dropped``."""

    TOO_SHORT = "geneve_too_short"
    """Fewer than 8 bytes: no base header (RFC 8926 §3.4)."""
    BAD_VERSION = "geneve_bad_version"
    """Version field is not 0; RFC 8926 §3.4 says such packets MUST be dropped."""
    OAM_PACKET = "geneve_oam_packet"
    """O bit set: a control message, never data for an appliance (RFC 8926 §3.4)."""
    BAD_PROTOCOL = "geneve_bad_protocol"
    """Protocol Type other than IPv4 / IPv6; GWLB carries L3 packets only (GWLBTUN checks the same)."""
    OPTIONS_TRUNCATED = "geneve_options_truncated"
    """Opt Len runs past the end of the payload, or an option's length runs past the options area."""
    UNKNOWN_CRITICAL_OPTION = "geneve_unknown_critical_option"
    """An option with the critical bit (type bit 7) that we do not understand (RFC 8926 §3.5.1: MUST drop)."""
    BAD_AWS_OPTION = "geneve_bad_aws_option"
    """An AWS option with the wrong length or present twice."""
    MISSING_GWLB_OPTIONS = "geneve_missing_gwlb_options"
    """One of the three AWS options is absent (GWLBTUN's GP_STATUS_MISSING_GWLB_OPTIONS)."""
    INNER_TRUNCATED = "geneve_inner_truncated"
    """The inner packet is shorter than its IP header or than its own length field."""
    INNER_VERSION_MISMATCH = "geneve_inner_version_mismatch"
    """Protocol Type says IPv4 but the inner header is not version 4, or likewise for IPv6."""
    INNER_LENGTH_MISMATCH = "geneve_inner_length_mismatch"
    """Bytes follow the inner packet's declared length (no link layer here, so nothing may pad it)."""
    OUTER_NOT_GENEVE = "geneve_outer_not_geneve"
    """The outer packet is not IPv4/UDP to port 6081, or its headers are truncated or inconsistent."""


class GeneveDecodeError(ValueError):
    """A GENEVE payload (or outer packet) that must be dropped; ``reason`` says why."""

    def __init__(self, reason: GeneveDropReason, detail: str = "") -> None:
        super().__init__(f"{reason.value}: {detail}" if detail else reason.value)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class GwlbMetadata:
    """The three AWS options plus the base-header fields that travel with every encapsulated packet."""

    endpoint_id: int
    """GWLB endpoint (``vpce-``) id as a 64-bit number; see :func:`vpce_id_to_int`."""
    attachment_id: int
    """64-bit attachment id."""
    flow_cookie: int
    """32-bit per-flow cookie."""
    vni: int = 0
    """24-bit VNI. GWLB's value is not documented; 0 by default."""

    def __post_init__(self) -> None:
        if not 0 <= self.endpoint_id <= _MAX_U64:
            raise ValueError(f"endpoint_id must fit in 64 bits, got {self.endpoint_id:#x}")
        if not 0 <= self.attachment_id <= _MAX_U64:
            raise ValueError(f"attachment_id must fit in 64 bits, got {self.attachment_id:#x}")
        if not 0 <= self.flow_cookie <= _MAX_U32:
            raise ValueError(f"flow_cookie must fit in 32 bits, got {self.flow_cookie:#x}")
        if not 0 <= self.vni < (1 << 24):
            raise ValueError(f"vni must fit in 24 bits, got {self.vni:#x}")


def vpce_id_to_int(vpce_id: str) -> int:
    """``vpce-0123456789abcdef0`` -> the 64-bit number GWLB puts in option type 1.

    AWS ids carry 17 hex digits; GWLBTUN prints the 64-bit option as 17 zero-padded hex digits, so the first digit
    of a real id is always 0. Raises ValueError for anything else.
    """
    if not vpce_id.startswith("vpce-"):
        raise ValueError(f"not a VPC endpoint id: {vpce_id!r}")
    digits = vpce_id[5:]
    try:
        value = int(digits, 16)
    except ValueError:
        raise ValueError(f"not a VPC endpoint id: {vpce_id!r}") from None
    if not digits or value > _MAX_U64 or not all(c in "0123456789abcdef" for c in digits):
        raise ValueError(f"not a 64-bit VPC endpoint id: {vpce_id!r}")
    return value


def int_to_vpce_id(value: int) -> str:
    """Inverse of :func:`vpce_id_to_int` (17 zero-padded hex digits, as GWLBTUN renders it)."""
    return f"vpce-{value:017x}"


# Base header (b0 = Ver|OptLen, b1 = O|C|Rsvd, protocol, VNI<<8 | reserved) followed by the three AWS options in
# the order GWLB sends them: endpoint id, attachment id, flow cookie (class, type, R|len, data each).
_GWLB_HDR = struct.Struct("!BBHIHBBQHBBQHBBI")
_BASE = struct.Struct("!BBHI")
_OPT_HDR = struct.Struct("!HBB")
_U64 = struct.Struct("!Q")
_U32 = struct.Struct("!I")
_IPV4_PREFIX = struct.Struct("!BxH")  # version/IHL, total length
_IPV6_PLEN = struct.Struct("!4xH")  # payload length
_B0_GWLB = AWS_OPTIONS_LEN // 4  # version 0, Opt Len 8
# The same 40 bytes with each option header read as one 32-bit word (decoding fast path).
_GWLB_FAST = struct.Struct("!BBHIIQIQII")
_OPT1_WORD = (AWS_OPTION_CLASS << 16) | (OPT_GWLBE_ENDPOINT_ID << 8) | 2
_OPT2_WORD = (AWS_OPTION_CLASS << 16) | (OPT_ATTACHMENT_ID << 8) | 2
_OPT3_WORD = (AWS_OPTION_CLASS << 16) | (OPT_FLOW_COOKIE << 8) | 1
# Decoded values are in range by construction (struct widths), so the fast path skips __post_init__'s checks.
_new = object.__new__
_set = object.__setattr__


def encapsulate(inner: bytes, meta: GwlbMetadata) -> bytes:
    """The GENEVE payload (what goes after the outer UDP header) carrying ``inner``, as GWLB builds it.

    ``inner`` must be an IPv4 or IPv6 packet; its first nibble selects the Protocol Type.
    """
    version = inner[0] >> 4 if inner else 0
    if version == 4:
        proto = ETHERTYPE_IPV4
    elif version == 6:
        proto = ETHERTYPE_IPV6
    else:
        raise ValueError(f"inner packet is not IPv4/IPv6 (version nibble {version})")
    return (
        _GWLB_HDR.pack(
            _B0_GWLB,
            0,
            proto,
            meta.vni << 8,
            AWS_OPTION_CLASS,
            OPT_GWLBE_ENDPOINT_ID,
            2,
            meta.endpoint_id,
            AWS_OPTION_CLASS,
            OPT_ATTACHMENT_ID,
            2,
            meta.attachment_id,
            AWS_OPTION_CLASS,
            OPT_FLOW_COOKIE,
            1,
            meta.flow_cookie,
        )
        + inner
    )


def decapsulate(payload: bytes) -> tuple[GwlbMetadata, bytes]:
    """Parse a GENEVE payload from GWLB or a target: ``(metadata, inner IP packet)``.

    Strict: raises :class:`GeneveDecodeError` and nothing else for any input.
    """
    n = len(payload)
    if n < BASE_HEADER_LEN:
        raise GeneveDecodeError(GeneveDropReason.TOO_SHORT, f"{n} bytes")
    if n >= GWLB_HEADER_LEN:
        b0, b1, proto, vni_word, o1, eid, o2, att, o3, cookie = _GWLB_FAST.unpack_from(payload)
        # Fast path: exactly GWLB's layout (each option header compared as one 32-bit word: class, type, R=0 and
        # length). Anything else, including the O bit, takes the strict generic path.
        if b0 == _B0_GWLB and o1 == _OPT1_WORD and o2 == _OPT2_WORD and o3 == _OPT3_WORD and not b1 & 0x80:
            inner = payload[GWLB_HEADER_LEN:]
            _check_inner(proto, inner)
            m = _new(GwlbMetadata)
            _set(m, "endpoint_id", eid)
            _set(m, "attachment_id", att)
            _set(m, "flow_cookie", cookie)
            _set(m, "vni", vni_word >> 8)
            return m, inner
    return _decapsulate_generic(payload)


def _decapsulate_generic(payload: bytes) -> tuple[GwlbMetadata, bytes]:
    b0, b1, proto, vni_word = _BASE.unpack_from(payload)
    if b0 >> 6:
        raise GeneveDecodeError(GeneveDropReason.BAD_VERSION, f"version {b0 >> 6}")
    if b1 & 0x80:
        raise GeneveDecodeError(GeneveDropReason.OAM_PACKET)
    if proto not in (ETHERTYPE_IPV4, ETHERTYPE_IPV6):
        raise GeneveDecodeError(GeneveDropReason.BAD_PROTOCOL, f"protocol type {proto:#06x}")
    end = BASE_HEADER_LEN + (b0 & 0x3F) * 4
    if end > len(payload):
        raise GeneveDecodeError(
            GeneveDropReason.OPTIONS_TRUNCATED, f"Opt Len {end - BASE_HEADER_LEN} B > {len(payload) - 8} B left"
        )
    found: dict[int, int] = {}
    pos = BASE_HEADER_LEN
    while pos < end:
        if pos + 4 > end:
            raise GeneveDecodeError(GeneveDropReason.OPTIONS_TRUNCATED, f"option header at {pos} crosses Opt Len")
        cls, typ, rlen = _OPT_HDR.unpack_from(payload, pos)
        dlen = (rlen & 0x1F) * 4
        data_at = pos + 4
        pos = data_at + dlen
        if pos > end:
            raise GeneveDecodeError(GeneveDropReason.OPTIONS_TRUNCATED, f"option {cls:#06x}/{typ} data crosses Opt Len")
        if cls == AWS_OPTION_CLASS and typ in (OPT_GWLBE_ENDPOINT_ID, OPT_ATTACHMENT_ID, OPT_FLOW_COOKIE):
            want = 4 if typ == OPT_FLOW_COOKIE else 8
            if dlen != want:
                raise GeneveDecodeError(GeneveDropReason.BAD_AWS_OPTION, f"type {typ} has {dlen} data bytes")
            if typ in found:
                raise GeneveDecodeError(GeneveDropReason.BAD_AWS_OPTION, f"type {typ} repeated")
            found[typ] = (_U32 if want == 4 else _U64).unpack_from(payload, data_at)[0]
        elif typ & 0x80:
            # RFC 8926 §3.5.1: an unrecognised critical option means the packet MUST be dropped.
            raise GeneveDecodeError(GeneveDropReason.UNKNOWN_CRITICAL_OPTION, f"class {cls:#06x} type {typ:#04x}")
        # Non-critical options we do not know are skipped (RFC 8926 §3.5.1).
    if len(found) != 3:
        missing = sorted({OPT_GWLBE_ENDPOINT_ID, OPT_ATTACHMENT_ID, OPT_FLOW_COOKIE} - found.keys())
        raise GeneveDecodeError(GeneveDropReason.MISSING_GWLB_OPTIONS, f"missing AWS option type(s) {missing}")
    inner = payload[end:]
    _check_inner(proto, inner)
    return (
        GwlbMetadata(found[OPT_GWLBE_ENDPOINT_ID], found[OPT_ATTACHMENT_ID], found[OPT_FLOW_COOKIE], vni_word >> 8),
        inner,
    )


def _check_inner(proto: int, inner: bytes) -> None:
    n = len(inner)
    if proto == ETHERTYPE_IPV4:
        if n < 20:
            raise GeneveDecodeError(GeneveDropReason.INNER_TRUNCATED, f"inner IPv4 of {n} bytes")
        vihl, total = _IPV4_PREFIX.unpack_from(inner)
        if vihl >> 4 != 4:
            raise GeneveDecodeError(GeneveDropReason.INNER_VERSION_MISMATCH, f"version {vihl >> 4} under 0x0800")
        if total < (vihl & 0x0F) * 4 or (vihl & 0x0F) < 5 or total > n:
            raise GeneveDecodeError(GeneveDropReason.INNER_TRUNCATED, f"IPv4 total length {total}, {n} bytes")
    elif proto == ETHERTYPE_IPV6:
        if n < 40:
            raise GeneveDecodeError(GeneveDropReason.INNER_TRUNCATED, f"inner IPv6 of {n} bytes")
        if inner[0] >> 4 != 6:
            raise GeneveDecodeError(GeneveDropReason.INNER_VERSION_MISMATCH, f"version {inner[0] >> 4} under 0x86dd")
        total = 40 + _IPV6_PLEN.unpack_from(inner)[0]
        if total > n:
            raise GeneveDecodeError(GeneveDropReason.INNER_TRUNCATED, f"IPv6 length {total}, {n} bytes")
    else:
        raise GeneveDecodeError(GeneveDropReason.BAD_PROTOCOL, f"protocol type {proto:#06x}")
    if total != n:
        raise GeneveDecodeError(GeneveDropReason.INNER_LENGTH_MISMATCH, f"declared {total}, carried {n}")


# ---- outer IPv4 + UDP -----------------------------------------------------------------------------------------

_OUTER = struct.Struct("!BBHHHBBHIIHHHH")  # IPv4 (20) + UDP (8), addresses as u32
_OUTER_LEN = 28
_SRC_PORT_BASE = 49152  # RFC 8926 §3.3: the source port SHOULD come from a hash of the inner flow, in 49152-65535


def _ipv4_checksum(v0: int, tot: int, ident: int, ttl_proto: int, src: int, dst: int) -> int:
    # One's-complement sum of the ten 16-bit header words (RFC 791); frag word 0x4000 (DF) is constant.
    s = v0 + tot + ident + 0x4000 + ttl_proto + (src >> 16) + (src & 0xFFFF) + (dst >> 16) + (dst & 0xFFFF)
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def geneve_source_port(flow_entropy: int) -> int:
    """Outer UDP source port from a per-flow hash, in the dynamic range RFC 8926 §3.3 recommends.

    GWLB's actual choice is not documented; this is the emulator's named default (``flow-entropy``).
    """
    return _SRC_PORT_BASE + (flow_entropy & 0x3FFF)


def encapsulate_ipv4(
    inner: bytes,
    meta: GwlbMetadata,
    outer_src: int,
    outer_dst: int,
    src_port: int,
    *,
    ttl: int = 64,
    ident: int = 0,
) -> bytes:
    """A complete outer IPv4/UDP/GENEVE packet (addresses as 32-bit ints), as GWLB sends it to a target.

    The UDP checksum is zero, which RFC 8926 §3.3 allows over IPv4 (GWLB's own choice is not documented).
    """
    geneve = encapsulate(inner, meta)
    ulen = 8 + len(geneve)
    tot = 20 + ulen
    ttl_proto = (ttl << 8) | 17
    csum = _ipv4_checksum(0x4500, tot, ident & 0xFFFF, ttl_proto, outer_src, outer_dst)
    return (
        _OUTER.pack(
            0x45,
            0,
            tot,
            ident & 0xFFFF,
            0x4000,
            ttl,
            17,
            csum,
            outer_src,
            outer_dst,
            src_port,
            GENEVE_UDP_PORT,
            ulen,
            0,
        )
        + geneve
    )


@dataclass(frozen=True, slots=True)
class OuterHeader:
    """The outer IPv4/UDP fields of a received GENEVE packet (addresses as 32-bit ints)."""

    src: int
    dst: int
    src_port: int
    dst_port: int


def decapsulate_ipv4(packet: bytes) -> tuple[OuterHeader, GwlbMetadata, bytes]:
    """Parse a full outer IPv4/UDP/GENEVE packet. Raises only :class:`GeneveDecodeError`."""
    if len(packet) < _OUTER_LEN:
        raise GeneveDecodeError(GeneveDropReason.OUTER_NOT_GENEVE, f"{len(packet)} bytes")
    (vihl, _tos, tot, _id, _frag, _ttl, proto, _c, src, dst, sport, dport, ulen, _uc) = _OUTER.unpack_from(packet)
    if vihl != 0x45 or proto != 17 or dport != GENEVE_UDP_PORT:
        raise GeneveDecodeError(
            GeneveDropReason.OUTER_NOT_GENEVE, f"version/IHL {vihl:#x}, protocol {proto}, port {dport}"
        )
    if tot != len(packet) or ulen != tot - 20:
        raise GeneveDecodeError(
            GeneveDropReason.OUTER_NOT_GENEVE, f"IPv4 length {tot}, UDP length {ulen}, {len(packet)} bytes"
        )
    meta, inner = decapsulate(packet[_OUTER_LEN:])
    return OuterHeader(src, dst, sport, dport), meta, inner
