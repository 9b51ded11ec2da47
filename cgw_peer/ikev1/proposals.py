"""IKEv1 proposals: algorithm suites, their SA-payload encoding and AWS-style selection.

A phase-1 suite is one Main Mode transform (encryption + key length, hash = prf, PSK, DH group, lifetime);
a phase-2 suite is one ESP transform (AES-CBC + HMAC or AES-GCM-16, optional PFS group, encapsulation mode,
lifetime). Attribute values: RFC 2409 App. A, RFC 2407 §4.5, RFC 3947 §5.1 (``ike-dpd.md`` §2.6, §2.7).

Selection (:func:`select_p1` / :func:`select_p2`): the responder walks *its own* candidate list in order
and takes the first candidate that the initiator offered. For the AWS role the candidate list is sorted
"starting with the lowest configured value ..., regardless of the proposal order from the customer gateway"
(``ike-dpd.md`` §1.1). AWS does not say which algorithm class is most significant; this engine sorts by
encryption, then integrity, then DH group (:data:`AWS_SELECTION_ORDER`).

strongSwan-style proposal strings (``aes256-sha256-modp2048``, ``aes128gcm16-ecp256``) are parsed by
:func:`parse_p1_proposal` / :func:`parse_p2_proposal`; several algorithms of one kind expand to every
combination, as strongSwan does.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from cgw_peer.config import PHASE_ENCRYPTION, PHASE_INTEGRITY, PeerConfig, Role, TunnelOptions
from cgw_peer.errors import ConfigError, DecodeError
from cgw_peer.wire.constants import AUTH_PSK, KEY_IKE, LIFE_SECONDS, EncapMode, P1Attr, P2Attr, ProtocolId
from cgw_peer.wire.payloads import Attribute, Proposal, SaPayload, Transform, encode_sa_body, parse_sa_body, verify

AWS_SELECTION_ORDER = ("encryption", "integrity", "dh_group")
"""Significance of the algorithm classes when AWS sorts its candidates lowest-first (an assumption: AWS
documents only "lowest configured value first")."""

ENCR_AES_CBC_V1 = 7
"""IKEv1 phase-1 encryption attribute value for AES-CBC (RFC 3602 / IANA)."""
ESP_AES_CBC = 12
ESP_AES_GCM_16 = 20

HASH_V1 = {"sha1": 2, "sha256": 4, "sha384": 5, "sha512": 6}
"""Phase-1 hash attribute values (class 2)."""
HASH_V1_REV = {v: k for k, v in HASH_V1.items()}
AUTH_ALG_V1 = {"sha1": 2, "sha256": 5, "sha384": 6, "sha512": 7}
"""Phase-2 authentication algorithm attribute values (class 5)."""
AUTH_ALG_V1_REV = {v: k for k, v in AUTH_ALG_V1.items()}
INTEG_KEY_LEN = {"sha1": 20, "sha256": 32, "sha384": 48, "sha512": 64}

_AWS_ENC = {
    "AES128": ("cbc", 128),
    "AES256": ("cbc", 256),
    "AES128-GCM-16": ("gcm", 128),
    "AES256-GCM-16": ("gcm", 256),
}
_AWS_INTEG = {"SHA1": "sha1", "SHA2-256": "sha256", "SHA2-384": "sha384", "SHA2-512": "sha512"}

GROUP_TOKENS = {
    "modp1024": 2,
    "modp1536": 5,
    "modp2048": 14,
    "modp3072": 15,
    "modp4096": 16,
    "modp6144": 17,
    "modp8192": 18,
    "ecp256": 19,
    "ecp384": 20,
    "ecp521": 21,
    "modp1024s160": 22,
    "modp2048s224": 23,
    "modp2048s256": 24,
}
GROUP_NAMES = {v: k for k, v in GROUP_TOKENS.items()}
_ENC_TOKENS = {
    "aes128": ("cbc", 128),
    "aes256": ("cbc", 256),
    "aes128gcm16": ("gcm", 128),
    "aes256gcm16": ("gcm", 256),
}
_INTEG_TOKENS = {"sha1": "sha1", "sha256": "sha256", "sha384": "sha384", "sha512": "sha512"}


def _life_attr(attr_type: int, seconds: int) -> Attribute:
    return Attribute(attr_type, seconds) if seconds <= 0xFFFF else Attribute(attr_type, seconds, 4)


@dataclass(frozen=True, slots=True)
class P1Suite:
    """One Main Mode transform: AES-CBC key bits, hash (also the prf), DH group."""

    enc_bits: int
    hash: str
    group: int

    @property
    def name(self) -> str:
        return f"aes{self.enc_bits}-{self.hash}-{GROUP_NAMES.get(self.group, f'group{self.group}')}"

    def transform(self, number: int, lifetime: int) -> Transform:
        return Transform(
            number,
            KEY_IKE,
            (
                Attribute(P1Attr.ENCRYPTION, ENCR_AES_CBC_V1),
                Attribute(P1Attr.KEY_LENGTH, self.enc_bits),
                Attribute(P1Attr.HASH, HASH_V1[self.hash]),
                Attribute(P1Attr.AUTH_METHOD, AUTH_PSK),
                Attribute(P1Attr.GROUP, self.group),
                Attribute(P1Attr.LIFE_TYPE, LIFE_SECONDS),
                _life_attr(P1Attr.LIFE_DURATION, lifetime),
            ),
        )


@dataclass(frozen=True, slots=True)
class P2Suite:
    """One ESP transform: AES-CBC + HMAC (``integ``) or AES-GCM-16 (``integ`` None), PFS group or None."""

    enc: str
    enc_bits: int
    integ: str | None
    group: int | None

    @property
    def name(self) -> str:
        enc = f"aes{self.enc_bits}" + ("gcm16" if self.enc == "gcm" else "")
        parts = [enc]
        if self.integ:
            parts.append(self.integ)
        if self.group:
            parts.append(GROUP_NAMES.get(self.group, f"group{self.group}"))
        return "-".join(parts)

    @property
    def enc_key_len(self) -> int:
        """Bytes of encryption KEYMAT (GCM: key + 4-byte salt, RFC 4106 §8.1)."""
        return self.enc_bits // 8 + (4 if self.enc == "gcm" else 0)

    @property
    def integ_key_len(self) -> int:
        return INTEG_KEY_LEN[self.integ] if self.integ else 0

    def transform(self, number: int, lifetime: int, encap: int) -> Transform:
        attrs = [Attribute(P2Attr.LIFE_TYPE, LIFE_SECONDS), _life_attr(P2Attr.LIFE_DURATION, lifetime)]
        if self.group:
            attrs.append(Attribute(P2Attr.GROUP, self.group))
        attrs.append(Attribute(P2Attr.ENCAPSULATION_MODE, encap))
        if self.integ:
            attrs.append(Attribute(P2Attr.AUTH_ALGORITHM, AUTH_ALG_V1[self.integ]))
        attrs.append(Attribute(P2Attr.KEY_LENGTH, self.enc_bits))
        return Transform(number, ESP_AES_GCM_16 if self.enc == "gcm" else ESP_AES_CBC, tuple(attrs))


def p1_from_transform(t: Transform) -> tuple[P1Suite, int] | None:
    """(suite, lifetime seconds) of a received phase-1 transform, or None if unsupported."""
    if t.transform_id != KEY_IKE:
        return None
    if t.attr(P1Attr.ENCRYPTION) != ENCR_AES_CBC_V1 or t.attr(P1Attr.AUTH_METHOD) != AUTH_PSK:
        return None
    bits = t.attr(P1Attr.KEY_LENGTH)
    h = HASH_V1_REV.get(t.attr(P1Attr.HASH, 0) or 0)
    group = t.attr(P1Attr.GROUP)
    if bits not in (128, 256) or h is None or group is None:
        return None
    life = t.attr(P1Attr.LIFE_DURATION, 28800) if t.attr(P1Attr.LIFE_TYPE, 1) == LIFE_SECONDS else 28800
    return P1Suite(bits, h, group), int(life or 28800)


def p2_from_transform(t: Transform) -> tuple[P2Suite, int, int] | None:
    """(suite, lifetime seconds, encapsulation mode) of a received ESP transform, or None if unsupported."""
    bits = t.attr(P2Attr.KEY_LENGTH)
    if bits not in (128, 256):
        return None
    if t.transform_id == ESP_AES_CBC:
        integ = AUTH_ALG_V1_REV.get(t.attr(P2Attr.AUTH_ALGORITHM, 0) or 0)
        if integ is None:
            return None
        suite = P2Suite("cbc", bits, integ, t.attr(P2Attr.GROUP))
    elif t.transform_id == ESP_AES_GCM_16:
        if t.attr(P2Attr.AUTH_ALGORITHM) is not None:
            return None
        suite = P2Suite("gcm", bits, None, t.attr(P2Attr.GROUP))
    else:
        return None
    life = t.attr(P2Attr.LIFE_DURATION, 3600) if t.attr(P2Attr.LIFE_TYPE, 1) == LIFE_SECONDS else 3600
    encap = t.attr(P2Attr.ENCAPSULATION_MODE, EncapMode.TUNNEL) or EncapMode.TUNNEL
    return suite, int(life or 3600), int(encap)


def parse_p1_proposal(text: str, where: str = "proposals") -> list[P1Suite]:
    """``aes128-aes256-sha1-sha256-modp2048-ecp256`` -> every combination (IKEv1 phase-1 is CBC only)."""
    encs: list[int] = []
    hashes: list[str] = []
    groups: list[int] = []
    for tok in text.lower().split("-"):
        if tok in _ENC_TOKENS and _ENC_TOKENS[tok][0] == "cbc":
            encs.append(_ENC_TOKENS[tok][1])
        elif tok in _INTEG_TOKENS:
            hashes.append(_INTEG_TOKENS[tok])
        elif tok in GROUP_TOKENS:
            groups.append(GROUP_TOKENS[tok])
        else:
            allowed = "aes128 aes256 sha1 sha256 sha384 sha512 " + " ".join(GROUP_TOKENS)
            raise ConfigError(where, f"unknown or unsupported IKEv1 algorithm {tok!r} in {text!r} (allowed: {allowed})")
    if not encs or not hashes or not groups:
        raise ConfigError(where, f"{text!r} needs an encryption, an integrity/prf and a DH group token")
    return [P1Suite(e, h, g) for e, h, g in itertools.product(encs, hashes, groups)]


def parse_p2_proposal(text: str, where: str = "esp_proposals") -> list[P2Suite]:
    """``aes128-sha1-modp2048`` / ``aes256gcm16-ecp256`` / ``aes128-sha256`` (no PFS)."""
    encs: list[tuple[str, int]] = []
    integs: list[str] = []
    groups: list[int] = []
    for tok in text.lower().split("-"):
        if tok in _ENC_TOKENS:
            encs.append(_ENC_TOKENS[tok])
        elif tok in _INTEG_TOKENS:
            integs.append(_INTEG_TOKENS[tok])
        elif tok in GROUP_TOKENS:
            groups.append(GROUP_TOKENS[tok])
        elif tok in ("esn", "noesn"):
            continue
        else:
            allowed = "aes128 aes256 aes128gcm16 aes256gcm16 sha1 sha256 sha384 sha512 " + " ".join(GROUP_TOKENS)
            raise ConfigError(where, f"unknown or unsupported ESP algorithm {tok!r} in {text!r} (allowed: {allowed})")
    if not encs:
        raise ConfigError(where, f"{text!r} needs an encryption token")
    out: list[P2Suite] = []
    pfs: list[int | None] = list(groups) if groups else [None]
    for (kind, bits), g in itertools.product(encs, pfs):
        if kind == "gcm":
            out.append(P2Suite("gcm", bits, None, g))
        else:
            if not integs:
                raise ConfigError(where, f"{text!r}: AES-CBC needs an integrity token (sha1, sha256, ...)")
            out.extend(P2Suite("cbc", bits, i, g) for i in integs)
    return out


def _enc_rank(kind: str, bits: int) -> int:
    name = {
        ("cbc", 128): "AES128",
        ("cbc", 256): "AES256",
        ("gcm", 128): "AES128-GCM-16",
        ("gcm", 256): "AES256-GCM-16",
    }
    return PHASE_ENCRYPTION.index(name[(kind, bits)])


def _integ_rank(h: str | None) -> int:
    if h is None:
        return -1
    return PHASE_INTEGRITY.index({v: k for k, v in _AWS_INTEG.items()}[h])


@functools.lru_cache(maxsize=64)
def _aws_p1(opts: TunnelOptions) -> tuple[P1Suite, ...]:
    return tuple(aws_p1_candidates(opts))


@functools.lru_cache(maxsize=64)
def _aws_p2(opts: TunnelOptions) -> tuple[P2Suite, ...]:
    return tuple(aws_p2_candidates(opts))


@functools.lru_cache(maxsize=256)
def _parsed_p1(texts: tuple[str, ...]) -> tuple[P1Suite, ...]:
    out: list[P1Suite] = []
    for i, text in enumerate(texts):
        out.extend(parse_p1_proposal(text, f"proposals[{i}]"))
    return tuple(dict.fromkeys(out))


@functools.lru_cache(maxsize=256)
def _parsed_p2(texts: tuple[str, ...]) -> tuple[P2Suite, ...]:
    out: list[P2Suite] = []
    for i, text in enumerate(texts):
        out.extend(parse_p2_proposal(text, f"esp_proposals[{i}]"))
    return tuple(dict.fromkeys(out))


def aws_p1_candidates(opts: TunnelOptions) -> list[P1Suite]:
    """The AWS side's phase-1 suites, lowest configured values first (GCM is IKEv2-only in phase 1)."""
    encs = [_AWS_ENC[e] for e in opts.phase1_encryption_algorithms if _AWS_ENC[e][0] == "cbc"]
    out = [
        P1Suite(bits, _AWS_INTEG[i], g)
        for (_k, bits), i, g in itertools.product(encs, opts.phase1_integrity_algorithms, opts.phase1_dh_group_numbers)
    ]
    out.sort(key=lambda s: (_enc_rank("cbc", s.enc_bits), _integ_rank(s.hash), s.group))
    return out


def aws_p2_candidates(opts: TunnelOptions) -> list[P2Suite]:
    """The AWS side's ESP suites, lowest first. AWS phase 2 always uses PFS with a Phase2DHGroupNumbers group
    (AWS's generic IKEv1 configuration requires PFS); AES-GCM carries no separate integrity algorithm."""
    out: list[P2Suite] = []
    for e in opts.phase2_encryption_algorithms:
        kind, bits = _AWS_ENC[e]
        for g in opts.phase2_dh_group_numbers:
            if kind == "gcm":
                out.append(P2Suite("gcm", bits, None, g))
            else:
                out.extend(P2Suite("cbc", bits, _AWS_INTEG[i], g) for i in opts.phase2_integrity_algorithms)
    out = list(dict.fromkeys(out))
    out.sort(key=lambda s: (_enc_rank(s.enc, s.enc_bits), _integ_rank(s.integ), s.group or 0))
    return out


def p1_candidates(config: PeerConfig) -> tuple[P1Suite, ...]:
    """This side's phase-1 suites in preference order (cached per configuration)."""
    if config.proposals:
        return _parsed_p1(tuple(config.proposals))
    return _aws_p1(config.options)


def p2_candidates(config: PeerConfig) -> tuple[P2Suite, ...]:
    """This side's ESP suites in preference order (cached per configuration)."""
    if config.esp_proposals:
        return _parsed_p2(tuple(config.esp_proposals))
    return _aws_p2(config.options)


def initiator_p2_offer(cands: Sequence[P2Suite]) -> list[P2Suite]:
    """Quick Mode sends one KE, so every offered transform must use the first suite's PFS group."""
    if not cands:
        return []
    g = cands[0].group
    return [c for c in cands if c.group == g]


def build_p1_sa(suites: Sequence[P1Suite], lifetime: int) -> SaPayload:
    """MM1's SA payload: one ISAKMP proposal with one transform per suite (cached: a peer re-sends the same)."""
    return _p1_sa(tuple(suites), lifetime)


@functools.lru_cache(maxsize=256)
def _p1_sa(suites: tuple[P1Suite, ...], lifetime: int) -> SaPayload:
    transforms = tuple(s.transform(i + 1, lifetime) for i, s in enumerate(suites))
    return SaPayload((Proposal(1, ProtocolId.ISAKMP, b"", transforms),))


@functools.lru_cache(maxsize=256)
def _p2_transforms(suites: tuple[P2Suite, ...], lifetime: int, encap: int) -> tuple[Transform, ...]:
    return tuple(s.transform(i + 1, lifetime, encap) for i, s in enumerate(suites))


def build_p2_sa(suites: Sequence[P2Suite], spi: bytes, lifetime: int, encap: int) -> SaPayload:
    """QM1's SA payload: one ESP proposal carrying our inbound SPI, one transform per suite."""
    return SaPayload((Proposal(1, ProtocolId.ESP, spi, _p2_transforms(tuple(suites), lifetime, encap)),))


def select_p1(sa: SaPayload, candidates: Sequence[P1Suite]) -> tuple[P1Suite, int, Transform] | None:
    """First of ``candidates`` (responder's order) that the initiator offered: (suite, lifetime, transform)."""
    offered: dict[P1Suite, tuple[int, Transform]] = {}
    for prop in sa.proposals:
        if prop.protocol != ProtocolId.ISAKMP:
            continue
        for t in prop.transforms:
            got = p1_from_transform(t)
            if got is not None and got[0] not in offered:
                offered[got[0]] = (got[1], t)
    for c in candidates:
        if c in offered:
            life, t = offered[c]
            return c, life, t
    return None


def select_p2(sa: SaPayload, candidates: Sequence[P2Suite]) -> tuple[P2Suite, int, int, Proposal, Transform] | None:
    """As :func:`select_p1` for ESP: (suite, lifetime, encap mode, proposal, transform)."""
    offered: dict[P2Suite, tuple[int, int, Proposal, Transform]] = {}
    for prop in sa.proposals:
        if prop.protocol != ProtocolId.ESP or len(prop.spi) != 4:
            continue
        for t in prop.transforms:
            got = p2_from_transform(t)
            if got is not None and got[0] not in offered:
                offered[got[0]] = (got[1], got[2], prop, t)
    for c in candidates:
        if c in offered:
            life, encap, prop, t = offered[c]
            return c, life, encap, prop, t
    return None


def is_aws(config: PeerConfig) -> bool:
    return config.role is Role.AWS


# -- per-configuration memoisation --------------------------------------------------------------------------

_CACHE_MAX = 256
"""Entries per memo table; a full table is cleared (the keys are configuration-sized, so it rarely fills)."""


def _put(table: dict[Any, Any], key: Any, value: Any) -> None:
    if len(table) >= _CACHE_MAX:
        table.clear()
    table[key] = value


class P1Policy:
    """One configuration's phase-1 candidates, with the Main Mode SA work memoised.

    Every peer with the same proposals (or AWS tunnel options) shares one instance (:func:`p1_policy`), so the
    SA payload bytes are built once per configuration, and a responder parses and selects each distinct offer
    once (the AWS role facing many CGWs with one configuration sees the same SAi_b again and again). All
    entries are pure functions of the candidates and the bytes; malformed input raises and is never stored.
    """

    __slots__ = ("_accepted", "_offers", "_selected", "cands")

    def __init__(self, cands: tuple[P1Suite, ...]) -> None:
        self.cands = cands
        self._offers: dict[tuple[int, P1Suite | None], bytes] = {}
        self._selected: dict[bytes, tuple[SaPayload, tuple[P1Suite, int, Transform] | None, bytes]] = {}
        self._accepted: dict[bytes, tuple[P1Suite, int]] = {}

    def ordered(self, first: P1Suite | None) -> Sequence[P1Suite]:
        """The candidates with ``first`` (what was negotiated last time) moved to the front, if configured
        (strongSwan reuses the selected proposal on rekey and restart)."""
        cands: Sequence[P1Suite] = self.cands
        if first is not None and first in cands and cands[0] != first:
            cands = [first] + [c for c in cands if c != first]
        return cands

    def offer_body(self, lifetime: int, first: P1Suite | None = None) -> bytes:
        """SAi_b of MM1: the body of the SA payload offering :meth:`ordered` ``(first)``."""
        key = (lifetime, first)
        body = self._offers.get(key)
        if body is None:
            body = encode_sa_body(build_p1_sa(self.ordered(first), lifetime))
            _put(self._offers, key, body)
        return body

    def select(self, sa_body: bytes) -> tuple[SaPayload, tuple[P1Suite, int, Transform] | None, bytes]:
        """Responder: ``(parsed SA, select_p1() result, body of the SA payload answering it or b"")`` for the
        received SA payload body. Raises :class:`~cgw_peer.errors.DecodeError` on a malformed payload."""
        hit = self._selected.get(sa_body)
        if hit is None:
            sa_p = parse_sa_body(sa_body)
            verify(sa_p)
            chosen = select_p1(sa_p, self.cands)
            reply = b""
            if chosen is not None:
                number = sa_p.proposals[0].number
                reply = encode_sa_body(SaPayload((Proposal(number, ProtocolId.ISAKMP, b"", (chosen[2],)),)))
            hit = (sa_p, chosen, reply)
            _put(self._selected, sa_body, hit)
        return hit

    def accept(self, sa_body: bytes) -> tuple[P1Suite, int]:
        """Initiator: the (suite, lifetime) the responder chose in MM2's SA payload body. Raises
        ``DecodeError`` when it is malformed, chooses more than one transform, or one we did not offer."""
        hit = self._accepted.get(sa_body)
        if hit is None:
            p = parse_sa_body(sa_body)
            verify(p)
            if len(p.proposals) != 1 or len(p.proposals[0].transforms) != 1:
                raise DecodeError("bad_proposal_choice", "responder must choose one transform")
            got = p1_from_transform(p.proposals[0].transforms[0])
            if got is None or got[0] not in self.cands:
                raise DecodeError("bad_proposal_choice", "not one we offered")
            hit = got
            _put(self._accepted, sa_body, hit)
        return hit


P2Choice = tuple[P2Suite, int, int]
"""(suite, lifetime seconds, encapsulation mode) of a chosen ESP transform."""
P2Selected = tuple[P2Choice | None, bytes, bytes, bytes]
""":meth:`P2Policy.select`: (choice, peer SPI, reply head, reply tail)."""
P2Answer = tuple[int, int, P2Choice | None, bytes]
""":meth:`P2Policy.answer`: (# proposals, # transforms of the first, its choice, its SPI)."""


def _spi_masked(sa_body: bytes) -> bytes:
    """Key for memoising a one-proposal ESP SA body: everything but the 4-byte SPI at offset 16 (RFC 2408 §3.4-3.5:
    DOI, situation, proposal generic header, proposal #, protocol, SPI size, # transforms, then the SPI)."""
    return sa_body[:16] + sa_body[20:]


def _single_spi4(sa: SaPayload) -> bool:
    """Whether the SPI of ``sa`` sits at offset 16 of its body (one proposal, 4-byte SPI)."""
    return len(sa.proposals) == 1 and len(sa.proposals[0].spi) == 4


class P2Policy:
    """One configuration's ESP candidates, with the Quick Mode SA work memoised (see :class:`P1Policy`).

    Quick Mode SA payloads carry a fresh SPI in every exchange, so the memo tables for received payloads are
    keyed by the body without its SPI (:func:`_spi_masked`), and only for one-proposal bodies, where the SPI
    position is fixed; two such bodies that agree everywhere else parse to the same proposal and transforms.
    """

    __slots__ = ("_answers", "_bodies", "_offers", "_selected", "cands")

    def __init__(self, cands: tuple[P2Suite, ...]) -> None:
        self.cands = cands
        self._offers: dict[P2Suite | None, tuple[P2Suite, ...]] = {}
        self._bodies: dict[tuple[P2Suite | None, int, int], tuple[bytes, bytes]] = {}
        self._selected: dict[bytes, tuple[P2Choice | None, bytes, bytes]] = {}
        self._answers: dict[bytes, tuple[int, int, P2Choice | None]] = {}

    def select(self, sa_body: bytes) -> P2Selected:
        """Responder: ``(choice, peer SPI, reply head, reply tail)`` for QM1's SA payload body, where the choice
        is :func:`select_p2` on our candidates (None: no proposal chosen; the peer SPI is then the first
        proposal's) and ``head + our SPI + tail`` is the body of our answering SA payload. Raises
        ``DecodeError`` on a malformed payload."""
        key = _spi_masked(sa_body)
        hit = self._selected.get(key)
        if hit is not None:
            return hit[0], sa_body[16:20], hit[1], hit[2]
        sa_p = parse_sa_body(sa_body)
        verify(sa_p)
        chosen = select_p2(sa_p, self.cands)
        if chosen is None:
            choice: P2Choice | None = None
            spi = sa_p.proposals[0].spi if sa_p.proposals else b""
            head = tail = b""
        else:
            suite, life, encap, prop, transform = chosen
            choice, spi = (suite, life, encap), prop.spi
            reply = encode_sa_body(SaPayload((Proposal(prop.number, ProtocolId.ESP, b"\0\0\0\0", (transform,)),)))
            head, tail = reply[:16], reply[20:]
        if _single_spi4(sa_p):
            _put(self._selected, key, (choice, head, tail))
        return choice, spi, head, tail

    def answer(self, sa_body: bytes) -> P2Answer:
        """Initiator: QM2's SA payload body as ``(# proposals, # transforms of the first, its
        p2_from_transform() result, its SPI)``; the caller decides whether that is an acceptable choice.
        Raises ``DecodeError`` on a malformed payload."""
        key = _spi_masked(sa_body)
        hit = self._answers.get(key)
        if hit is not None:
            return hit[0], hit[1], hit[2], sa_body[16:20]
        sa_p = parse_sa_body(sa_body)
        verify(sa_p)
        first = sa_p.proposals[0]
        got = p2_from_transform(first.transforms[0]) if first.transforms else None
        entry = (len(sa_p.proposals), len(first.transforms), got)
        if _single_spi4(sa_p):
            _put(self._answers, key, entry)
        return entry[0], entry[1], entry[2], first.spi

    def offer(self, first: P2Suite | None = None) -> tuple[P2Suite, ...]:
        """What Quick Mode offers: :func:`initiator_p2_offer` of the candidates with ``first`` (what was
        negotiated last time) moved to the front, if configured."""
        hit = self._offers.get(first)
        if hit is None:
            cands: Sequence[P2Suite] = self.cands
            if first is not None and first in cands and cands[0] != first:
                cands = [first] + [c for c in cands if c != first]
            hit = tuple(initiator_p2_offer(cands))
            _put(self._offers, first, hit)
        return hit

    def offer_body(self, first: P2Suite | None, spi: bytes, lifetime: int, encap: int) -> bytes:
        """Body of QM1's SA payload: ``encode_sa_body(build_p2_sa(offer(first), spi, lifetime, encap))``."""
        key = (first, lifetime, encap)
        hit = self._bodies.get(key)
        if hit is None:
            body = encode_sa_body(build_p2_sa(self.offer(first), b"\0\0\0\0", lifetime, encap))
            # RFC 2408 §3.4/3.5: DOI, situation, proposal header (4), proposal fields (4), then the 4-byte SPI.
            hit = (body[:16], body[20:])
            _put(self._bodies, key, hit)
        head, tail = hit
        if len(spi) != 4:
            return encode_sa_body(build_p2_sa(self.offer(first), spi, lifetime, encap))
        return head + spi + tail


@functools.lru_cache(maxsize=256)
def _p1_policy_texts(texts: tuple[str, ...]) -> P1Policy:
    return P1Policy(_parsed_p1(texts))


@functools.lru_cache(maxsize=64)
def _p1_policy_opts(opts: TunnelOptions) -> P1Policy:
    return P1Policy(_aws_p1(opts))


@functools.lru_cache(maxsize=256)
def _p2_policy_texts(texts: tuple[str, ...]) -> P2Policy:
    return P2Policy(_parsed_p2(texts))


@functools.lru_cache(maxsize=64)
def _p2_policy_opts(opts: TunnelOptions) -> P2Policy:
    return P2Policy(_aws_p2(opts))


def p1_policy(config: PeerConfig) -> P1Policy:
    """The shared :class:`P1Policy` of ``config`` (its ``cands`` are :func:`p1_candidates`)."""
    if config.proposals:
        return _p1_policy_texts(tuple(config.proposals))
    return _p1_policy_opts(config.options)


def p2_policy(config: PeerConfig) -> P2Policy:
    """The shared :class:`P2Policy` of ``config`` (its ``cands`` are :func:`p2_candidates`)."""
    if config.esp_proposals:
        return _p2_policy_texts(tuple(config.esp_proposals))
    return _p2_policy_opts(config.options)
