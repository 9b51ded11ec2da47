"""IKEv1 payload codecs: pure ``parse_*`` / ``encode_*`` functions over small slotted dataclasses.

Every payload starts with the RFC 2408 §3.2 generic header::

    ! Next Payload  !   RESERVED    !         Payload Length        !

:func:`parse_chain` walks the chain by the Next Payload / Length fields, decodes each body with the table
:data:`_PARSERS` and applies the per-type length rules of :func:`verify` (strongSwan keeps the same rules in a
``verify()`` per payload, e.g. ``notify_payload.c``: DPD data must be 4 bytes). Anything malformed raises
:class:`~cgw_peer.errors.DecodeError` with a snake_case ``reason``; nothing else escapes.

``encode_chain`` fills in the Next Payload fields and returns ``(first_payload_type, bytes)``.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from cgw_peer.errors import DecodeError
from cgw_peer.wire.constants import DOI_IPSEC, SIT_IDENTITY_ONLY, NotifyType, PayloadType, ProtocolId

GENERIC = struct.Struct(">BBH")
_H = struct.Struct(">H")
_I = struct.Struct(">I")
_ATTR = struct.Struct(">HH")
_SA_HDR = struct.Struct(">II")  # DOI, situation
_PROP_HDR = struct.Struct(">BBBB")  # proposal #, protocol, SPI size, # transforms
_TRANS_HDR = struct.Struct(">BBH")  # transform #, transform id, RESERVED2
_ID_HDR = struct.Struct(">BBH")  # ID type, protocol, port
_NOTIFY_HDR = struct.Struct(">IBBH")  # DOI, protocol, SPI size, notify type
_DELETE_HDR = struct.Struct(">IBBH")  # DOI, protocol, SPI size, # SPIs

_NOTIFY_SPI_SIZES: dict[int, tuple[int, int]] = {
    ProtocolId.ISAKMP: (0, 16),
    ProtocolId.ESP: (0, 4),
    ProtocolId.AH: (0, 4),
}

NONCE_MIN = 8
NONCE_MAX = 256
"""RFC 2409 §5: "The length of nonce payload MUST be between 8 and 256 bytes inclusive"."""


# -- payload types -------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Attribute:
    """A data attribute (RFC 2408 §3.3). ``length == 0``: TV form (AF=1, 16-bit value);
    otherwise TLV form with a ``length``-byte big-endian value."""

    type: int
    value: int
    length: int = 0


@dataclass(frozen=True, slots=True)
class Transform:
    """RFC 2408 §3.6 (carried inside a proposal)."""

    number: int
    transform_id: int
    attributes: tuple[Attribute, ...] = ()

    def attr(self, attr_type: int, default: int | None = None) -> int | None:
        for a in self.attributes:
            if a.type == attr_type:
                return a.value
        return default


@dataclass(frozen=True, slots=True)
class Proposal:
    """RFC 2408 §3.5 (carried inside an SA payload)."""

    number: int
    protocol: int
    spi: bytes
    transforms: tuple[Transform, ...]


@dataclass(frozen=True, slots=True)
class SaPayload:
    """RFC 2408 §3.4 with the RFC 2407 §4.6.1 IPsec DOI body (situation SIT_IDENTITY_ONLY)."""

    proposals: tuple[Proposal, ...]
    doi: int = DOI_IPSEC
    situation: int = SIT_IDENTITY_ONLY
    TYPE = PayloadType.SA


@dataclass(frozen=True, slots=True)
class KePayload:
    data: bytes
    TYPE = PayloadType.KE


@dataclass(frozen=True, slots=True)
class IdPayload:
    """RFC 2407 §4.6.2: ID type, protocol, port, data. ``body`` (IDii_b) is what HASH_I covers."""

    id_type: int
    protocol: int
    port: int
    data: bytes
    TYPE = PayloadType.ID


@dataclass(frozen=True, slots=True)
class HashPayload:
    data: bytes
    TYPE = PayloadType.HASH


@dataclass(frozen=True, slots=True)
class NoncePayload:
    data: bytes
    TYPE = PayloadType.NONCE


@dataclass(frozen=True, slots=True)
class NotifyPayload:
    """RFC 2408 §3.14; the DPD notifies (RFC 3706 §5.3) carry SPI = CKY-I|CKY-R and a 4-byte sequence."""

    notify_type: int
    protocol: int = ProtocolId.ISAKMP
    spi: bytes = b""
    data: bytes = b""
    doi: int = DOI_IPSEC
    TYPE = PayloadType.NOTIFY


@dataclass(frozen=True, slots=True)
class DeletePayload:
    """RFC 2408 §3.15."""

    protocol: int
    spi_size: int
    spis: tuple[bytes, ...]
    doi: int = DOI_IPSEC
    TYPE = PayloadType.DELETE


@dataclass(frozen=True, slots=True)
class VendorIdPayload:
    data: bytes
    TYPE = PayloadType.VENDOR_ID


@dataclass(frozen=True, slots=True)
class NatDPayload:
    """RFC 3947 §3.2: HASH(CKY-I | CKY-R | IP | Port)."""

    data: bytes
    TYPE = PayloadType.NAT_D


@dataclass(frozen=True, slots=True)
class GenericPayload:
    """A payload type this engine does not interpret (kept for round trips)."""

    payload_type: int
    body: bytes = field(default=b"")


Payload = (
    SaPayload
    | KePayload
    | IdPayload
    | HashPayload
    | NoncePayload
    | NotifyPayload
    | DeletePayload
    | VendorIdPayload
    | NatDPayload
    | GenericPayload
)


def payload_type(p: Payload) -> int:
    t = _TYPE_NUMBERS.get(type(p))
    if t is not None:
        return t
    if isinstance(p, GenericPayload):
        return p.payload_type
    return int(p.TYPE)


# -- attributes, transforms, proposals -----------------------------------------------------------------------


def encode_attributes(attrs: tuple[Attribute, ...]) -> bytes:
    out = bytearray()
    for a in attrs:
        if a.length == 0:
            out += _ATTR.pack(0x8000 | a.type, a.value)
        else:
            out += _ATTR.pack(a.type & 0x7FFF, a.length) + a.value.to_bytes(a.length, "big")
    return bytes(out)


def parse_attributes(buf: bytes) -> tuple[Attribute, ...]:
    out: list[Attribute] = []
    off = 0
    n = len(buf)
    while off < n:
        if n - off < 4:
            raise DecodeError("truncated_attribute", f"{n - off} bytes left")
        af_type, val = _ATTR.unpack_from(buf, off)
        off += 4
        if af_type & 0x8000:
            out.append(Attribute(af_type & 0x7FFF, val))
        else:
            if val == 0 or off + val > n:
                raise DecodeError("bad_attribute_length", f"type {af_type} length {val}")
            out.append(Attribute(af_type, int.from_bytes(buf[off : off + val], "big"), val))
            off += val
    return tuple(out)


def _encode_transform(t: Transform, last: bool) -> bytes:
    body = _TRANS_HDR.pack(t.number, t.transform_id, 0) + encode_attributes(t.attributes)
    return GENERIC.pack(0 if last else PayloadType.TRANSFORM, 0, 4 + len(body)) + body


def _encode_proposal(p: Proposal, last: bool) -> bytes:
    body = bytearray(_PROP_HDR.pack(p.number, p.protocol, len(p.spi), len(p.transforms)))
    body += p.spi
    for i, t in enumerate(p.transforms):
        body += _encode_transform(t, i == len(p.transforms) - 1)
    return GENERIC.pack(0 if last else PayloadType.PROPOSAL, 0, 4 + len(body)) + bytes(body)


def encode_sa_body(sa: SaPayload) -> bytes:
    out = bytearray(_SA_HDR.pack(sa.doi, sa.situation))
    for i, p in enumerate(sa.proposals):
        out += _encode_proposal(p, i == len(sa.proposals) - 1)
    return bytes(out)


def _parse_sub_chain(buf: bytes, first_type: int, expect: int, what: str) -> list[bytes]:
    """Split a chain of Proposal or Transform sub-payloads into their bodies."""
    bodies: list[bytes] = []
    off = 0
    np = first_type
    while np != 0:
        if np != expect:
            raise DecodeError(f"bad_{what}_chain", f"next payload {np}")
        if len(buf) - off < 4:
            raise DecodeError(f"truncated_{what}")
        np, _res, plen = GENERIC.unpack_from(buf, off)
        if plen < 4 or off + plen > len(buf):
            raise DecodeError(f"bad_{what}_length", f"{plen}")
        bodies.append(buf[off + 4 : off + plen])
        off += plen
    if off != len(buf):
        raise DecodeError(f"trailing_{what}_bytes", f"{len(buf) - off}")
    return bodies


def parse_sa_body(body: bytes) -> SaPayload:
    if len(body) < 8:
        raise DecodeError("bad_sa_length", f"{len(body)}")
    doi, sit = _SA_HDR.unpack_from(body)
    if doi != DOI_IPSEC:
        raise DecodeError("doi_not_supported", f"{doi}")
    proposals: list[Proposal] = []
    rest = body[8:]
    for pbody in _parse_sub_chain(rest, PayloadType.PROPOSAL if rest else 0, PayloadType.PROPOSAL, "proposal"):
        if len(pbody) < 4:
            raise DecodeError("bad_proposal_length", f"{len(pbody)}")
        num, proto, spi_size, ntrans = _PROP_HDR.unpack_from(pbody)
        if 4 + spi_size > len(pbody):
            raise DecodeError("bad_proposal_spi", f"SPI size {spi_size}")
        spi = pbody[4 : 4 + spi_size]
        tbuf = pbody[4 + spi_size :]
        transforms: list[Transform] = []
        for tbody in _parse_sub_chain(tbuf, PayloadType.TRANSFORM if tbuf else 0, PayloadType.TRANSFORM, "transform"):
            if len(tbody) < 4:
                raise DecodeError("bad_transform_length", f"{len(tbody)}")
            tnum, tid, _r = _TRANS_HDR.unpack_from(tbody)
            transforms.append(Transform(tnum, tid, parse_attributes(tbody[4:])))
        if len(transforms) != ntrans:
            raise DecodeError("bad_transform_count", f"says {ntrans}, has {len(transforms)}")
        proposals.append(Proposal(num, proto, spi, tuple(transforms)))
    if not proposals:
        raise DecodeError("no_proposals")
    return SaPayload(tuple(proposals), doi, sit)


# -- per-type body codecs ------------------------------------------------------------------------------------


def encode_body(p: Payload) -> bytes:
    """The payload body (without the 4-byte generic header)."""
    enc = _BODY_ENCODERS.get(type(p))
    if enc is not None:
        return enc(p)
    return _encode_body_any(p)


def _encode_body_any(p: Payload) -> bytes:
    if isinstance(p, SaPayload):
        return encode_sa_body(p)
    if isinstance(p, (KePayload, HashPayload, NoncePayload, VendorIdPayload, NatDPayload)):
        return p.data
    if isinstance(p, IdPayload):
        return _ID_HDR.pack(p.id_type, p.protocol, p.port) + p.data
    if isinstance(p, NotifyPayload):
        return _NOTIFY_HDR.pack(p.doi, p.protocol, len(p.spi), p.notify_type) + p.spi + p.data
    if isinstance(p, DeletePayload):
        return _DELETE_HDR.pack(p.doi, p.protocol, p.spi_size, len(p.spis)) + b"".join(p.spis)
    return p.body


def _data_body(p: KePayload | HashPayload | NoncePayload | VendorIdPayload | NatDPayload) -> bytes:
    return p.data


def _id_body(p: IdPayload) -> bytes:
    return _ID_HDR.pack(p.id_type, p.protocol, p.port) + p.data


def _notify_body(p: NotifyPayload) -> bytes:
    return _NOTIFY_HDR.pack(p.doi, p.protocol, len(p.spi), p.notify_type) + p.spi + p.data


def _delete_body(p: DeletePayload) -> bytes:
    return _DELETE_HDR.pack(p.doi, p.protocol, p.spi_size, len(p.spis)) + b"".join(p.spis)


def _generic_body(p: GenericPayload) -> bytes:
    return p.body


# Exact-type dispatch (the hot path); encode_body() falls back to isinstance checks for anything else.
_BODY_ENCODERS: dict[type, Callable[[Any], bytes]] = {
    SaPayload: encode_sa_body,
    KePayload: _data_body,
    HashPayload: _data_body,
    NoncePayload: _data_body,
    VendorIdPayload: _data_body,
    NatDPayload: _data_body,
    IdPayload: _id_body,
    NotifyPayload: _notify_body,
    DeletePayload: _delete_body,
    GenericPayload: _generic_body,
}
_TYPE_NUMBERS: dict[type, int] = {
    cls: int(cls.TYPE)
    for cls in (
        SaPayload,
        KePayload,
        IdPayload,
        HashPayload,
        NoncePayload,
        NotifyPayload,
        DeletePayload,
        VendorIdPayload,
        NatDPayload,
    )
}


def _parse_id(body: bytes) -> IdPayload:
    if len(body) < 4:
        raise DecodeError("bad_id_length", f"{len(body)}")
    t, proto, port = _ID_HDR.unpack_from(body)
    return IdPayload(t, proto, port, body[4:])


def _parse_notify(body: bytes) -> NotifyPayload:
    if len(body) < 8:
        raise DecodeError("bad_notify_length", f"{len(body)}")
    doi, proto, spi_size, ntype = _NOTIFY_HDR.unpack_from(body)
    if 8 + spi_size > len(body):
        raise DecodeError("bad_notify_spi", f"SPI size {spi_size}")
    return NotifyPayload(ntype, proto, body[8 : 8 + spi_size], body[8 + spi_size :], doi)


def _parse_delete(body: bytes) -> DeletePayload:
    if len(body) < 8:
        raise DecodeError("bad_delete_length", f"{len(body)}")
    doi, proto, spi_size, n = _DELETE_HDR.unpack_from(body)
    if spi_size * n != len(body) - 8:
        raise DecodeError("bad_delete_spis", f"{n} SPIs of {spi_size} bytes in {len(body) - 8}")
    spis = tuple(body[8 + i * spi_size : 8 + (i + 1) * spi_size] for i in range(n))
    return DeletePayload(proto, spi_size, spis, doi)


_PARSERS = {
    PayloadType.SA: parse_sa_body,
    PayloadType.KE: KePayload,
    PayloadType.ID: _parse_id,
    PayloadType.HASH: HashPayload,
    PayloadType.NONCE: NoncePayload,
    PayloadType.NOTIFY: _parse_notify,
    PayloadType.DELETE: _parse_delete,
    PayloadType.VENDOR_ID: VendorIdPayload,
    PayloadType.NAT_D: NatDPayload,
}


def _verify_nonce(p: NoncePayload) -> None:
    if not NONCE_MIN <= len(p.data) <= NONCE_MAX:
        raise DecodeError("bad_nonce_length", f"{len(p.data)}")


def _verify_data(p: KePayload | HashPayload | VendorIdPayload | NatDPayload) -> None:
    if not p.data:
        raise DecodeError(f"empty_{p.TYPE.name.lower()}")


def _verify_notify(p: NotifyPayload) -> None:
    if p.notify_type in (NotifyType.R_U_THERE, NotifyType.R_U_THERE_ACK):
        # RFC 3706 §5.3 / strongSwan notify_payload.c: SPI = CKY-I|CKY-R, data = 32-bit sequence.
        if len(p.spi) != 16:
            raise DecodeError("bad_dpd_spi_size", f"{len(p.spi)}")
        if len(p.data) != 4:
            raise DecodeError("bad_dpd_data_length", f"{len(p.data)}")
    else:
        allowed = _NOTIFY_SPI_SIZES.get(p.protocol)
        if allowed is not None and len(p.spi) not in allowed:
            raise DecodeError("bad_notify_spi_size", f"{len(p.spi)}")


def _verify_delete(p: DeletePayload) -> None:
    # RFC 2408 §3.15: ISAKMP SPI = the cookie pair (16); IPsec SPIs are 4 bytes (RFC 2407 §4.6.3.3).
    if p.protocol == ProtocolId.ISAKMP and p.spi_size != 16:
        raise DecodeError("bad_delete_spi_size", f"{p.spi_size}")
    if p.protocol in (ProtocolId.ESP, ProtocolId.AH) and p.spi_size != 4:
        raise DecodeError("bad_delete_spi_size", f"{p.spi_size}")
    if not p.spis:
        raise DecodeError("empty_delete")


def _verify_sa(p: SaPayload) -> None:
    for prop in p.proposals:
        if prop.protocol == ProtocolId.ISAKMP and len(prop.spi) not in (0, 8, 16):
            raise DecodeError("bad_proposal_spi_size", f"{len(prop.spi)}")
        if prop.protocol in (ProtocolId.ESP, ProtocolId.AH) and len(prop.spi) != 4:
            raise DecodeError("bad_proposal_spi_size", f"{len(prop.spi)}")
        if not prop.transforms:
            raise DecodeError("no_transforms")


def _verify_nothing(p: Payload) -> None:
    return None


_VERIFIERS: dict[type, Callable[[Any], None]] = {
    NoncePayload: _verify_nonce,
    KePayload: _verify_data,
    HashPayload: _verify_data,
    VendorIdPayload: _verify_data,
    NatDPayload: _verify_data,
    NotifyPayload: _verify_notify,
    DeletePayload: _verify_delete,
    SaPayload: _verify_sa,
    IdPayload: _verify_nothing,
    GenericPayload: _verify_nothing,
}


def verify(p: Payload) -> None:
    """Per-type length rules (strongSwan ``verify()`` per payload). Raises :class:`DecodeError`."""
    check = _VERIFIERS.get(type(p))
    if check is not None:
        check(p)
        return
    # Subclasses of the payload classes: the first matching rule, in the order of the table.
    for cls, fn in _VERIFIERS.items():
        if isinstance(p, cls):
            fn(p)
            return


def parse_payload(ptype: int, body: bytes) -> Payload:
    parser = _PARSERS.get(ptype)  # type: ignore[call-overload]
    if parser is None:
        if ptype in (PayloadType.PROPOSAL, PayloadType.TRANSFORM, PayloadType.NONE) or ptype > 255:
            raise DecodeError("unexpected_payload", f"type {ptype}")
        return GenericPayload(ptype, body)
    p: Payload = parser(body)
    _VERIFIERS[type(p)](p)
    return p


_EMPTY_REASONS: dict[int, str] = {
    PayloadType.KE: "empty_ke",
    PayloadType.HASH: "empty_hash",
    PayloadType.VENDOR_ID: "empty_vendor_id",
    PayloadType.NAT_D: "empty_nat_d",
}


def check_body(ptype: int, body: bytes) -> None:
    """Validate one payload body exactly as :func:`parse_payload` would (same ``DecodeError`` reasons), without
    building the payload object when the body is all the caller needs (KE, HASH, NONCE, VID, NAT-D data)."""
    reason = _EMPTY_REASONS.get(ptype)
    if reason is not None:
        if not body:
            raise DecodeError(reason)
    elif ptype == PayloadType.NONCE:
        if not NONCE_MIN <= len(body) <= NONCE_MAX:
            raise DecodeError("bad_nonce_length", f"{len(body)}")
    else:
        parse_payload(ptype, body)


def split_chain(first_type: int, buf: bytes, *, allow_trailing: bool = False) -> tuple[list[tuple[int, bytes]], int]:
    """Walk the generic headers: ``([(payload type, body), ...], end offset of the last payload)``.

    Engines need the raw bodies (HASH_I covers SAi_b exactly as received) and the end offset (HASH(1) covers
    the payloads but not the padding). ``allow_trailing``: bytes after the last payload are accepted (RFC 2409
    App. B padding of encrypted messages; receivers parse by payload lengths and ignore the trailing bytes).
    """
    out: list[tuple[int, bytes]] = []
    off = 0
    n = len(buf)
    np = first_type
    unpack = GENERIC.unpack_from
    while np != 0:
        if n - off < 4:
            raise DecodeError("truncated_payload", f"type {np} at {off}")
        nxt, _res, plen = unpack(buf, off)
        end = off + plen
        if plen < 4 or end > n:
            raise DecodeError("bad_payload_length", f"type {np} length {plen}")
        out.append((np, buf[off + 4 : end]))
        off = end
        np = nxt
        if len(out) > 64:
            raise DecodeError("too_many_payloads")
    if off != n and not allow_trailing:
        raise DecodeError("trailing_bytes", f"{n - off}")
    return out, off


def parse_chain(first_type: int, buf: bytes, *, allow_trailing: bool = False) -> list[Payload]:
    """Decode and verify the payload chain that starts with ``first_type`` at ``buf[0]``."""
    raw, _end = split_chain(first_type, buf, allow_trailing=allow_trailing)
    return [parse_payload(t, b) for t, b in raw]


def encode_payload(p: Payload, next_type: int) -> bytes:
    """One payload with its generic header."""
    body = encode_body(p)
    return GENERIC.pack(next_type, 0, 4 + len(body)) + body


def encode_chain(payloads: list[Payload]) -> tuple[int, bytes]:
    """``(type of the first payload, encoded chain)``; Next Payload fields are filled in."""
    if not payloads:
        return 0, b""
    return encode_raw_chain([(payload_type(p), encode_body(p)) for p in payloads])


def encode_raw_chain(parts: Sequence[tuple[int, bytes]]) -> tuple[int, bytes]:
    """As :func:`encode_chain` for payloads given as ``(payload type, body)`` (bodies encoded, or cached,
    by the caller): ``(type of the first payload, encoded chain)``."""
    if not parts:
        return 0, b""
    out = []
    pack = GENERIC.pack
    last = len(parts) - 1
    for i, (_t, body) in enumerate(parts):
        out.append(pack(parts[i + 1][0] if i < last else 0, 0, 4 + len(body)))
        out.append(body)
    return parts[0][0], b"".join(out)


def dpd_notify(notify_type: int, icookie: bytes, rcookie: bytes, seq: int) -> bytes:
    """The 32-byte R-U-THERE / R-U-THERE-ACK payload of RFC 3706 §5.3 (Next Payload 0)."""
    return (
        GENERIC.pack(0, 0, 32)
        + _NOTIFY_HDR.pack(DOI_IPSEC, ProtocolId.ISAKMP, 16, notify_type)
        + icookie
        + rcookie
        + _I.pack(seq)
    )
