"""Reading what the device sends and building the one-message probes.

The battery watches every datagram (its own and the device's) and needs only the cleartext parts: the IKE
header (version, exchange type, flags, message ID, SPIs), and the unencrypted first messages (the device's
proposals in Main Mode message 1 / IKE_SA_INIT). Encrypted content is the engine's business: it reports what
it decrypted as events.

Probes are single crafted messages sent by :mod:`emulator.conformance.probe`: a Main Mode message 1 (IKEv1,
RFC 2409 §5) or an IKE_SA_INIT request (IKEv2, RFC 7296 §1.2) with chosen transforms and, for the robustness
checks, an extra payload (an unknown Vendor ID, or an unknown payload type with or without the critical bit,
RFC 7296 §2.5). The algorithm numbers come from the engine's codecs (``cgw_peer``), so a probe offers exactly
what the AWS endpoint would.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field

from cgw_peer.crypto.dh import get_group
from cgw_peer.errors import DecodeError
from cgw_peer.ikev1.proposals import GROUP_NAMES, P1Suite, build_p1_sa
from cgw_peer.ikev2 import codec as v2codec
from cgw_peer.ikev2.constants import Exchange, Notify, Payload, TransformType
from cgw_peer.wire.constants import (
    DPD_VENDOR_ID,
    NATT_RFC3947_VENDOR_ID,
    ExchangeType,
    P1Attr,
    PayloadType,
)
from cgw_peer.wire.header import HEADER
from cgw_peer.wire.payloads import (
    GENERIC,
    NotifyPayload,
    SaPayload,
    Transform,
    VendorIdPayload,
    encode_body,
    encode_raw_chain,
    parse_payload,
    split_chain,
)

NON_ESP_MARKER = b"\x00\x00\x00\x00"
IKE_PORT = 500
NATT_PORT = 4500

V1_EXCHANGES = {2: "Main Mode", 4: "Aggressive Mode", 5: "Informational", 32: "Quick Mode"}
V2_EXCHANGES = {34: "IKE_SA_INIT", 35: "IKE_AUTH", 36: "CREATE_CHILD_SA", 37: "INFORMATIONAL"}

# Names for what a device may offer, also outside AWS's set (IANA "IKE Attributes" and "IKEv2 Parameters").
_V1_ENC = {1: "des", 5: "3des", 7: "aes"}
_V1_HASH = {1: "md5", 2: "sha1", 4: "sha256", 5: "sha384", 6: "sha512"}
_V1_AUTH = {1: "psk", 3: "rsasig", 64221: "hybrid", 65001: "xauth-psk"}
_V2_ENC = {3: "3des", 12: "aes", 13: "aesctr", 18: "aesgcm8", 19: "aesgcm12", 20: "aesgcm16", 28: "chacha20poly1305"}
_V2_PRF = {1: "prfmd5", 2: "prfsha1", 4: "prfaesxcbc", 5: "prfsha256", 6: "prfsha384", 7: "prfsha512"}
_V2_INTEG = {1: "md5", 2: "sha1", 5: "aesxcbc", 12: "sha256", 13: "sha384", 14: "sha512"}


def group_name(g: int) -> str:
    return GROUP_NAMES.get(g, "curve25519" if g == 31 else f"group{g}")


@dataclass(frozen=True)
class IkeInfo:
    """The cleartext of one datagram, as far as the battery reads it."""

    kind: str
    """``ike``, ``keepalive`` (the 0xFF NAT keepalive, RFC 3948 §2.3), ``esp`` (RFC 3948 UDP-encapsulated ESP)
    or ``garbage``."""
    marker: bool = False
    """The IKE message followed the 4-octet non-ESP marker (RFC 3948 §2.2)."""
    version: int = 0
    exchange: int = 0
    flags: int = 0
    message_id: int = 0
    spi_i: bytes = b""
    spi_r: bytes = b""
    length: int = 0
    next_payload: int = 0
    body: bytes = b""
    """The whole IKE message (marker removed)."""

    @property
    def response(self) -> bool:
        """IKEv2 R flag (RFC 7296 §3.1)."""
        return self.version == 2 and bool(self.flags & 0x20)

    @property
    def encrypted(self) -> bool:
        if self.version == 1:
            return bool(self.flags & 0x01)
        return self.next_payload == Payload.SK

    @property
    def name(self) -> str:
        """``Main Mode``, ``IKE_AUTH response``, ``Informational (encrypted)``, ..."""
        if self.kind != "ike":
            return {"keepalive": "NAT keepalive", "esp": "ESP"}.get(self.kind, "not IKE")
        if self.version == 1:
            n = V1_EXCHANGES.get(self.exchange, f"exchange {self.exchange}")
            return n
        n = V2_EXCHANGES.get(self.exchange, f"exchange {self.exchange}")
        return f"{n} {'response' if self.response else 'request'}"


def classify(data: bytes, natt_port: bool = False) -> IkeInfo:
    """What ``data`` carries: a NAT keepalive, an IKE message (after an RFC 3948 §2.2 non-ESP marker or
    not: a device on port 500 sends none even to our NAT-T or custom port), ESP (``natt_port``: it travelled
    where RFC 3948 UDP encapsulation applies), or something else."""
    if data == b"\xff":
        return IkeInfo("keepalive")
    marker = False
    body = data
    if data[:4] == NON_ESP_MARKER:
        marker = True
        body = data[4:]
    if len(body) >= 28:
        spi_i, spi_r, np, ver, exch, flags, mid, length = HEADER.unpack_from(body)
        if ver >> 4 in (1, 2) and (marker or length == len(body)):
            return IkeInfo("ike", marker, ver >> 4, exch, flags, mid, spi_i, spi_r, length, np, body)
    if natt_port and not marker and len(data) >= 8:
        return IkeInfo("esp")
    return IkeInfo("garbage")


# ============================================================================================== IKEv1


def v1_payloads(info: IkeInfo) -> list[object]:
    """The payloads of an unencrypted IKEv1 message (empty if encrypted or malformed)."""
    if info.version != 1 or info.encrypted:
        return []
    try:
        raw, _ = split_chain(info.next_payload, info.body[28:], allow_trailing=True)
        out: list[object] = []
        for t, b in raw:
            try:
                out.append(parse_payload(t, b))
            except DecodeError:
                out.append((t, b))
        return out
    except DecodeError:
        return []


def v1_transform_name(t: Transform) -> str:
    """``aes128-sha1-modp2048`` (with ``/auth`` and the lifetime when they are not the usual ones)."""
    enc = _V1_ENC.get(t.attr(P1Attr.ENCRYPTION, 0) or 0, f"enc{t.attr(P1Attr.ENCRYPTION)}")
    bits = t.attr(P1Attr.KEY_LENGTH)
    if enc == "aes" and bits:
        enc = f"aes{bits}"
    h = _V1_HASH.get(t.attr(P1Attr.HASH, 0) or 0, f"hash{t.attr(P1Attr.HASH)}")
    g = group_name(t.attr(P1Attr.GROUP, 0) or 0)
    name = f"{enc}-{h}-{g}"
    auth = t.attr(P1Attr.AUTH_METHOD)
    if auth is not None and auth != 1:
        name += f"/{_V1_AUTH.get(auth, f'auth{auth}')}"
    return name


def v1_lifetime(t: Transform) -> int | None:
    """A transform's life duration in seconds (life type 1), None when absent."""
    if t.attr(P1Attr.LIFE_TYPE, 1) != 1:
        return None
    return t.attr(P1Attr.LIFE_DURATION)


def v1_offer(info: IkeInfo) -> list[Transform]:
    """The transforms of a Main Mode message 1 (or 2: the chosen one)."""
    for p in v1_payloads(info):
        if isinstance(p, SaPayload):
            return [t for prop in p.proposals for t in prop.transforms]
    return []


def v1_notifies(info: IkeInfo) -> list[int]:
    return [p.notify_type for p in v1_payloads(info) if isinstance(p, NotifyPayload)]


def v1_vendor_ids(info: IkeInfo) -> list[bytes]:
    return [p.data for p in v1_payloads(info) if isinstance(p, VendorIdPayload)]


def v1_main_mode_1(
    icookie: bytes,
    suites: list[P1Suite] | None = None,
    *,
    transforms: list[Transform] | None = None,
    lifetime: int = 28800,
    extra_vids: tuple[bytes, ...] = (),
) -> bytes:
    """Main Mode message 1 (RFC 2409 §5): HDR, SA (one ISAKMP proposal, one transform per suite), the
    RFC 3706 DPD and RFC 3947 NAT-T vendor IDs, plus ``extra_vids``."""
    if transforms is None:
        sa = build_p1_sa(suites or [], lifetime)
    else:
        from cgw_peer.wire.payloads import Proposal

        sa = SaPayload((Proposal(1, 1, b"", tuple(transforms)),))
    parts: list[tuple[int, bytes]] = [(PayloadType.SA, encode_body(sa))]
    for vid in (DPD_VENDOR_ID, NATT_RFC3947_VENDOR_ID, *extra_vids):
        parts.append((PayloadType.VENDOR_ID, vid))
    np, chain = encode_raw_chain(parts)
    return HEADER.pack(icookie, bytes(8), np, 0x10, ExchangeType.ID_PROT, 0, 0, 28 + len(chain)) + chain


# ============================================================================================== IKEv2


@dataclass
class V2Message:
    """An unencrypted IKEv2 message, parsed."""

    header: v2codec.Header
    payloads: list[v2codec.RawPayload] = field(default_factory=list)

    def notifies(self) -> list[v2codec.NotifyPayload]:
        out = []
        for p in self.payloads:
            if p.ptype == Payload.NOTIFY:
                try:
                    out.append(v2codec.parse_notify(p.body))
                except DecodeError:
                    continue
        return out

    def notify(self, ntype: int) -> v2codec.NotifyPayload | None:
        return next((n for n in self.notifies() if n.ntype == ntype), None)

    def first(self, ptype: int) -> bytes | None:
        return next((p.body for p in self.payloads if p.ptype == ptype), None)

    def proposals(self) -> list[v2codec.Proposal]:
        body = self.first(Payload.SA)
        if body is None:
            return []
        try:
            return v2codec.parse_sa(body)
        except DecodeError:
            return []


def v2_parse(info: IkeInfo) -> V2Message | None:
    """An unencrypted IKEv2 message (IKE_SA_INIT), or None."""
    if info.version != 2:
        return None
    try:
        hdr = v2codec.parse_header(info.body)
        payloads = v2codec.parse_chain(hdr.next_payload, info.body, 28)
    except DecodeError:
        return None
    return V2Message(hdr, payloads)


def v2_proposal_name(p: v2codec.Proposal) -> str:
    """``aes128-sha256-prfsha256-modp2048`` style (every transform of the proposal, in order)."""
    parts: list[str] = []
    for t in p.transforms:
        if t.ttype == TransformType.ENCR:
            n = _V2_ENC.get(t.tid, f"encr{t.tid}")
            if n.startswith("aes") and t.key_length:
                n = n.replace("aes", f"aes{t.key_length}", 1)
            parts.append(n)
        elif t.ttype == TransformType.INTEG:
            parts.append(_V2_INTEG.get(t.tid, f"integ{t.tid}"))
        elif t.ttype == TransformType.PRF:
            parts.append(_V2_PRF.get(t.tid, f"prf{t.tid}"))
        elif t.ttype == TransformType.DH:
            parts.append(group_name(t.tid))
    return "-".join(parts)


def v2_chain(payloads: list[tuple[int, bytes, bool]]) -> tuple[int, bytes]:
    """A payload chain with the critical bit where asked (RFC 7296 §3.2): ``(first type, bytes)``."""
    if not payloads:
        return 0, b""
    out = []
    for i, (_t, body, critical) in enumerate(payloads):
        nxt = payloads[i + 1][0] if i + 1 < len(payloads) else 0
        out.append(GENERIC.pack(nxt, 0x80 if critical else 0, 4 + len(body)) + body)
    return payloads[0][0], b"".join(out)


@dataclass
class SaInit:
    """An IKE_SA_INIT request we built (the DH key pair stays with it)."""

    spi_i: bytes
    group: int
    data: bytes


def v2_sa_init(
    rng: random.Random,
    proposals: list[v2codec.Proposal],
    group: int,
    *,
    extra: tuple[tuple[int, bytes, bool], ...] = (),
) -> SaInit:
    """IKE_SA_INIT request (RFC 7296 §1.2): HDR, SAi1, KEi (``group``), Ni, plus ``extra`` payloads
    ``(type, body, critical)`` at the end."""
    spi_i = rng.randbytes(8)
    pub = get_group(group).generate(rng).public
    nonce = rng.randbytes(32)
    payloads: list[tuple[int, bytes, bool]] = [
        (Payload.SA, v2codec.encode_sa(proposals), False),
        (Payload.KE, v2codec.encode_ke(group, pub), False),
        (Payload.NONCE, nonce, False),
        *extra,
    ]
    np, chain = v2_chain(payloads)
    hdr = v2codec.Header(spi_i, bytes(8), np, Exchange.IKE_SA_INIT, 0x08, 0)
    return SaInit(spi_i, group, hdr.encode(28 + len(chain)) + chain)


def v2_sa_init_answer(msg: V2Message) -> tuple[str, str]:
    """How a device answered an IKE_SA_INIT request: ``(outcome, detail)`` with outcome ``accepted`` (SA+KE),
    ``invalid_ke`` (INVALID_KE_PAYLOAD: accepted, with another group), ``refused`` (NO_PROPOSAL_CHOSEN),
    ``critical`` (UNSUPPORTED_CRITICAL_PAYLOAD), ``cookie`` or ``error``."""
    ns = {n.ntype: n for n in msg.notifies()}
    if Notify.INVALID_KE_PAYLOAD in ns:
        data = ns[Notify.INVALID_KE_PAYLOAD].data
        g = struct.unpack("!H", data[:2])[0] if len(data) >= 2 else 0
        return "invalid_ke", group_name(g)
    if Notify.NO_PROPOSAL_CHOSEN in ns:
        return "refused", "NO_PROPOSAL_CHOSEN"
    if Notify.UNSUPPORTED_CRITICAL_PAYLOAD in ns:
        data = ns[Notify.UNSUPPORTED_CRITICAL_PAYLOAD].data
        return "critical", f"UNSUPPORTED_CRITICAL_PAYLOAD (payload type {data[0] if data else '?'})"
    if 16390 in ns:  # COOKIE
        return "cookie", "COOKIE"
    props = msg.proposals()
    if props and msg.first(Payload.KE) is not None:
        return "accepted", v2_proposal_name(props[0])
    errs = [n.ntype for n in msg.notifies() if n.ntype < 16384]
    return "error", ", ".join(_notify_name(t) for t in errs) or "an answer without SA/KE"


def _notify_name(t: int) -> str:
    try:
        return Notify(t).name
    except ValueError:
        return f"notify {t}"
