"""IKEv2 proposals from AWS tunnel options, and proposal selection as AWS does it.

Initiator: two IKE proposals (one AES-CBC + HMAC, one AES-GCM without INTEG, because an AEAD proposal
carries no integrity transform, RFC 7296 §3.3), each listing every configured transform.
Responder: AWS "evaluate[s] proposals ... starting with the lowest configured value from the list ...,
regardless of the proposal order from the customer gateway" (``ike-dpd.md`` §1.1): across all acceptable
peer proposals, we pick the one whose (encryption, integrity, DH) ranks in *our* list are lowest.
"""

from __future__ import annotations

import functools

from cgw_peer.config import (
    PHASE1_DH_GROUPS,
    PHASE2_DH_GROUPS,
    PHASE_ENCRYPTION,
    PHASE_INTEGRITY,
    PeerConfig,
)
from cgw_peer.errors import ConfigError
from cgw_peer.ikev2.codec import Proposal, Transform, encode_sa_template, parse_sa
from cgw_peer.ikev2.constants import Encr, Integ, Prf, Protocol, TransformType
from cgw_peer.ikev2.suite import ChildSuite, IkeSuite

# AWS algorithm names -> (ENCR id, key bits); integrity -> (INTEG id, PRF id).
AWS_ENCR = {
    "AES128": (Encr.AES_CBC, 128),
    "AES256": (Encr.AES_CBC, 256),
    "AES128-GCM-16": (Encr.AES_GCM_16, 128),
    "AES256-GCM-16": (Encr.AES_GCM_16, 256),
}
AWS_INTEG = {
    "SHA1": (Integ.HMAC_SHA1_96, Prf.HMAC_SHA1),
    "SHA2-256": (Integ.HMAC_SHA2_256_128, Prf.HMAC_SHA2_256),
    "SHA2-384": (Integ.HMAC_SHA2_384_192, Prf.HMAC_SHA2_384),
    "SHA2-512": (Integ.HMAC_SHA2_512_256, Prf.HMAC_SHA2_512),
}
# strongSwan proposal keywords (PeerConfig.proposals / esp_proposals), the subset AWS can negotiate.
SW_ENCR = {
    "aes128": (Encr.AES_CBC, 128),
    "aes256": (Encr.AES_CBC, 256),
    "aes128gcm16": (Encr.AES_GCM_16, 128),
    "aes256gcm16": (Encr.AES_GCM_16, 256),
    "aes128gcm128": (Encr.AES_GCM_16, 128),
    "aes256gcm128": (Encr.AES_GCM_16, 256),
}
SW_INTEG = {"sha1": "SHA1", "sha256": "SHA2-256", "sha384": "SHA2-384", "sha512": "SHA2-512"}
SW_PRF = {
    "prfsha1": Prf.HMAC_SHA1,
    "prfsha256": Prf.HMAC_SHA2_256,
    "prfsha384": Prf.HMAC_SHA2_384,
    "prfsha512": Prf.HMAC_SHA2_512,
}
SW_DH = {
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


_CHOICE_CACHE_MAX = 256


class Offer:
    """What one side offers/accepts for one SA kind, in preference order (lowest configured value first)."""

    def __init__(self, encrs: list[tuple[int, int]], integs: list[int], prfs: list[int], dhs: list[int]) -> None:
        self.encrs = encrs
        self.integs = integs
        self.prfs = prfs
        self.dhs = dhs
        self._sa_templates: dict[tuple[int, int, bool, bool], tuple[bytes, ...]] = {}
        self._ike_choices: dict[tuple[bytes, int | None], tuple[int, IkeSuite] | None] = {}

    def choose_ike(self, sa_body: bytes, ke_group: int | None) -> tuple[int, IkeSuite] | None:
        """``select_ike(self, parse_sa(sa_body), ke_group)``, remembered per SA payload body: an initiator sends
        the same IKE_SA_INIT offer every time, so it is parsed and judged once. Raises ``DecodeError`` as
        :func:`~cgw_peer.ikev2.codec.parse_sa` does (failures are not remembered)."""
        key = (sa_body, ke_group)
        try:
            return self._ike_choices[key]
        except KeyError:
            pass
        choice = select_ike(self, parse_sa(sa_body), ke_group)
        if len(self._ike_choices) >= _CHOICE_CACHE_MAX:  # bounded: arbitrary peers must not grow it forever
            self._ike_choices.clear()
        self._ike_choices[key] = choice
        return choice

    def sa_payload(self, protocol: int, spi: bytes, esn: bool = False, with_dh: bool = True) -> bytes:
        """``encode_sa(self.proposals(...))``: encoded once per shape, then only the SPI is spliced in."""
        key = (protocol, len(spi), esn, with_dh)
        template = self._sa_templates.get(key)
        if template is None:
            template = encode_sa_template(self.proposals(protocol, bytes(len(spi)), esn, with_dh))
            self._sa_templates[key] = template
        return spi.join(template)

    def proposals(self, protocol: int, spi: bytes, esn: bool = False, with_dh: bool = True) -> list[Proposal]:
        """Up to two proposals: CBC+HMAC, then GCM (RFC 7296 §3.3: AEAD proposals carry no INTEG)."""
        out: list[Proposal] = []
        for aead in (False, True):
            encrs = [e for e in self.encrs if (e[0] == Encr.AES_GCM_16) == aead]
            if not encrs:
                continue
            ts = [Transform(TransformType.ENCR, e, bits) for e, bits in encrs]
            if protocol == Protocol.IKE:
                ts += [Transform(TransformType.PRF, p) for p in self.prfs]
            if not aead:
                ts += [Transform(TransformType.INTEG, i) for i in self.integs]
            if with_dh:
                ts += [Transform(TransformType.DH, d) for d in self.dhs]
            if esn:
                ts.append(Transform(TransformType.ESN, 0))
            out.append(Proposal(len(out) + 1, protocol, spi, ts))
        return out


@functools.lru_cache(maxsize=64)
def ike_offer(config: PeerConfig) -> Offer:
    """What we offer/accept for IKE SAs (cached per configuration; treat the result as read-only)."""
    if config.proposals:
        return _parse_sw(config.proposals, "proposals", ike=True)
    o = config.options
    encrs = [AWS_ENCR[n] for n in o.sorted_for_selection(o.phase1_encryption_algorithms, PHASE_ENCRYPTION)]
    integ_names = o.sorted_for_selection(o.phase1_integrity_algorithms, PHASE_INTEGRITY)
    integs = [int(AWS_INTEG[n][0]) for n in integ_names]
    prfs = [int(AWS_INTEG[n][1]) for n in integ_names]
    dhs = [int(d) for d in o.sorted_for_selection(o.phase1_dh_group_numbers, PHASE1_DH_GROUPS)]
    return Offer([(int(e), b) for e, b in encrs], integs, prfs, dhs)


@functools.lru_cache(maxsize=64)
def esp_offer(config: PeerConfig) -> Offer:
    """What we offer/accept for Child SAs (cached per configuration; treat the result as read-only)."""
    if config.esp_proposals:
        return _parse_sw(config.esp_proposals, "esp_proposals", ike=False)
    o = config.options
    encrs = [AWS_ENCR[n] for n in o.sorted_for_selection(o.phase2_encryption_algorithms, PHASE_ENCRYPTION)]
    integ_names = o.sorted_for_selection(o.phase2_integrity_algorithms, PHASE_INTEGRITY)
    integs = [int(AWS_INTEG[n][0]) for n in integ_names]
    dhs = [int(d) for d in o.sorted_for_selection(o.phase2_dh_group_numbers, PHASE2_DH_GROUPS)]
    return Offer([(int(e), b) for e, b in encrs], integs, [], dhs)


def _parse_sw(proposals: tuple[str, ...], field: str, *, ike: bool) -> Offer:
    """strongSwan proposal strings (``aes256-sha256-modp2048``, ``aes128gcm16-prfsha256-ecp256``)."""
    encrs: list[tuple[int, int]] = []
    integs: list[int] = []
    prfs: list[int] = []
    dhs: list[int] = []
    for prop in proposals:
        for word in prop.lower().split("-"):
            if word in SW_ENCR:
                e, bits = SW_ENCR[word]
                if (int(e), bits) not in encrs:
                    encrs.append((int(e), bits))
            elif word in SW_INTEG:
                i, p = AWS_INTEG[SW_INTEG[word]]
                if int(i) not in integs:
                    integs.append(int(i))
                # strongSwan: without an explicit prf, the integrity hash also gives the PRF.
                if ike and int(p) not in prfs:
                    prfs.append(int(p))
            elif word in SW_PRF:
                if int(SW_PRF[word]) not in prfs:
                    prfs.append(int(SW_PRF[word]))
            elif word in SW_DH:
                if SW_DH[word] not in dhs:
                    dhs.append(SW_DH[word])
            elif word in ("esn", "noesn"):
                pass
            else:
                allowed = ", ".join([*SW_ENCR, *SW_INTEG, *SW_PRF, *SW_DH])
                raise ConfigError(field, f"unknown algorithm {word!r} in {prop!r} (allowed: {allowed})")
    if not encrs or (ike and (not prfs or not dhs)):
        raise ConfigError(
            field,
            f"{proposals!r} must name an encryption algorithm"
            + (", a PRF/integrity algorithm and a DH group" if ike else ""),
        )
    return Offer(encrs, integs, prfs, dhs)


def _rank(value: int | tuple[int, int], order: list[int] | list[tuple[int, int]]) -> int:
    return order.index(value) if value in order else 1 << 30  # type: ignore[arg-type]


def select_ike(offer: Offer, proposals: list[Proposal], ke_group: int | None) -> tuple[int, IkeSuite] | None:
    """Pick (proposal number, suite) from the peer's IKE proposals, our order first. If the peer's KE group is
    acceptable within a proposal, prefer it (saves an INVALID_KE_PAYLOAD round trip; strongSwan does this)."""
    best: tuple[tuple[int, ...], int, IkeSuite] | None = None
    for p in proposals:
        if p.protocol != Protocol.IKE:
            continue
        encrs = [(t.tid, t.key_length or 0) for t in p.of_type(TransformType.ENCR)]
        encrs = [e for e in encrs if e in offer.encrs]
        prfs = [t.tid for t in p.of_type(TransformType.PRF) if t.tid in offer.prfs]
        dhs = [t.tid for t in p.of_type(TransformType.DH) if t.tid in offer.dhs]
        if not encrs or not prfs or not dhs:
            continue
        encr = min(encrs, key=lambda e: _rank(e, offer.encrs))
        aead = encr[0] == Encr.AES_GCM_16
        integ = 0
        if not aead:
            integs = [t.tid for t in p.of_type(TransformType.INTEG) if t.tid in offer.integs]
            if not integs:
                continue
            integ = min(integs, key=lambda i: _rank(i, offer.integs))
        elif any(t.tid != 0 for t in p.of_type(TransformType.INTEG)):
            continue
        prf = min(prfs, key=lambda x: _rank(x, offer.prfs))
        dh = ke_group if ke_group in dhs else min(dhs, key=lambda x: _rank(x, offer.dhs))
        key = (
            _rank(encr, offer.encrs),
            _rank(integ, offer.integs) if integ else 0,
            0 if dh == ke_group else 1,
            _rank(dh, offer.dhs),
        )
        suite = IkeSuite(encr[0], encr[1], prf, integ, dh)
        if best is None or key < best[0]:
            best = (key, p.num, suite)
    return None if best is None else (best[1], best[2])


def select_child(
    offer: Offer, proposals: list[Proposal], ke_group: int | None, *, pfs: bool
) -> tuple[int, bytes, ChildSuite] | None:
    """Pick (proposal number, peer's SPI, suite) from the peer's ESP proposals. ``pfs``: a DH transform is
    needed (CREATE_CHILD_SA with KE); without it DH transforms are ignored (IKE_AUTH, RFC 7296 §1.2)."""
    best: tuple[tuple[int, ...], int, bytes, ChildSuite] | None = None
    for p in proposals:
        if p.protocol != Protocol.ESP or len(p.spi) != 4:
            continue
        encrs = [(t.tid, t.key_length or 0) for t in p.of_type(TransformType.ENCR)]
        encrs = [e for e in encrs if e in offer.encrs]
        if not encrs:
            continue
        encr = min(encrs, key=lambda e: _rank(e, offer.encrs))
        integ = 0
        if encr[0] != Encr.AES_GCM_16:
            integs = [t.tid for t in p.of_type(TransformType.INTEG) if t.tid in offer.integs]
            if not integs:
                continue
            integ = min(integs, key=lambda i: _rank(i, offer.integs))
        esns = [t.tid for t in p.of_type(TransformType.ESN)]
        if esns and 0 not in esns:
            continue
        dh = 0
        if pfs:
            dhs = [t.tid for t in p.of_type(TransformType.DH) if t.tid in offer.dhs]
            if not dhs:
                continue
            dh = ke_group if ke_group in dhs else min(dhs, key=lambda x: _rank(x, offer.dhs))
        key = (_rank(encr, offer.encrs), _rank(integ, offer.integs) if integ else 0, 0 if dh == ke_group else 1)
        suite = ChildSuite(encr[0], encr[1], integ, dh)
        if best is None or key < best[0]:
            best = (key, p.num, p.spi, suite)
    return None if best is None else (best[1], best[2], best[3])


def suite_proposal(num: int, protocol: int, spi: bytes, suite: IkeSuite | ChildSuite) -> Proposal:
    """The single proposal a responder returns (or an initiator checks against)."""
    ts = [Transform(TransformType.ENCR, suite.encr, suite.key_bits)]
    if isinstance(suite, IkeSuite):
        ts.append(Transform(TransformType.PRF, suite.prf_id))
        if not suite.aead:
            ts.append(Transform(TransformType.INTEG, suite.integ_id))
        ts.append(Transform(TransformType.DH, suite.dh))
    else:
        if not suite.aead and suite.integ_id:
            ts.append(Transform(TransformType.INTEG, suite.integ_id))
        if suite.dh:
            ts.append(Transform(TransformType.DH, suite.dh))
        ts.append(Transform(TransformType.ESN, suite.esn))
    return Proposal(num, protocol, spi, ts)


def suite_sa_payload(num: int, protocol: int, spi: bytes, suite: IkeSuite | ChildSuite) -> bytes:
    """``encode_sa([suite_proposal(num, protocol, spi, suite)])``, the encoding cached per suite."""
    return spi.join(_suite_template(num, protocol, len(spi), suite))


@functools.lru_cache(maxsize=256)
def _suite_template(num: int, protocol: int, spi_len: int, suite: IkeSuite | ChildSuite) -> tuple[bytes, ...]:
    return encode_sa_template([suite_proposal(num, protocol, bytes(spi_len), suite)])


def suite_from_response(p: Proposal) -> IkeSuite | ChildSuite | None:
    """Read the one proposal a responder chose (None if it does not name exactly one of each transform)."""
    e = p.of_type(TransformType.ENCR)
    if len(e) != 1:
        return None
    encr, bits = e[0].tid, e[0].key_length or 0
    integ = [t.tid for t in p.of_type(TransformType.INTEG)]
    dh = [t.tid for t in p.of_type(TransformType.DH)]
    if p.protocol == Protocol.IKE:
        prf = [t.tid for t in p.of_type(TransformType.PRF)]
        if len(prf) != 1 or len(dh) != 1 or len(integ) > 1:
            return None
        return IkeSuite(encr, bits, prf[0], integ[0] if integ else 0, dh[0])
    if len(integ) > 1 or len(dh) > 1:
        return None
    return ChildSuite(encr, bits, integ[0] if integ else 0, dh[0] if dh else 0)
