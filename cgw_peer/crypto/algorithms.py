"""Algorithm name tables: AWS tunnel-option names, strongSwan proposal tokens, IKEv1 attribute values,
IKEv2 transform IDs and the names Wireshark's decryption tables (UAT) expect.

Sources: IKEv1 attribute values RFC 2409 Appendix A and the IANA "IPSEC Authentication Algorithms"/ESP transform
registries (strongSwan ``transform_attribute.h``, ``proposal_substructure.c``); IKEv2 IDs RFC 7296 §3.3.2,
RFC 5282, RFC 4868; Wireshark names from ``epan/dissectors/packet-isakmp.c`` (``vs_ikev2_encr_algs``,
``vs_ikev2_auth_algs``); strongSwan tokens from ``proposal_keywords_static.txt``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cgw_peer.crypto.dh import get_group
from cgw_peer.errors import ConfigError

__all__ = [
    "DH_BY_AWS",
    "DH_BY_TOKEN",
    "ENC_BY_AWS",
    "ENC_BY_TOKEN",
    "ENC_TOKENS",
    "HASH_BY_AWS",
    "HASH_BY_IKEV1_AUTH_ALG",
    "HASH_BY_IKEV1_ID",
    "HASH_BY_IKEV2_INTEG",
    "HASH_BY_IKEV2_PRF",
    "HASH_BY_TOKEN",
    "HASH_TOKENS",
    "IKEV1_AUTH_PSK",
    "IKEV1_ENC_AES_CBC",
    "PRF_TOKENS",
    "WIRESHARK_INTEG_NONE",
    "EncAlg",
    "HashAlg",
    "Proposal",
    "enc_by_esp_v1",
    "enc_by_ikev1",
    "enc_by_ikev2",
    "parse_proposal",
    "wireshark_names",
]

IKEV1_ENC_AES_CBC = 7  # Phase-1 attribute class 1 value (RFC 3602 §5.1 / IANA); key length in attribute class 14
IKEV1_AUTH_PSK = 1  # Phase-1 attribute class 3
WIRESHARK_INTEG_NONE = "NONE [RFC4306]"  # the integrity column for AEAD ciphers


@dataclass(frozen=True, slots=True)
class EncAlg:
    """One encryption algorithm with a fixed key size."""

    token: str  # strongSwan keyword, e.g. "aes256gcm16"
    aws_name: str  # AWS tunnel option value, e.g. "AES256-GCM-16"
    key_bits: int
    aead: bool
    ikev2_id: int  # IKEv2 transform type 1 ID (ENCR_AES_CBC=12, ENCR_AES_GCM_16=20); also the ESP transform ID
    ikev1_id: int | None  # IKEv1 Phase-1 encryption attribute value (AES-CBC=7); None: not usable in Phase 1
    esp_v1_id: int  # IKEv1 Phase-2 ESP transform ID (ESP_AES=12, ESP_AES-GCM-16=20)
    wireshark_name: str  # IKEv2 decryption table encryption column
    block_size: int  # padding alignment of the SK payload (GCM: 1 per RFC 5282 §3, like strongSwan)
    iv_len: int  # bytes of IV on the wire
    icv_len: int  # AEAD ICV bytes (0 for CBC; the integrity algorithm provides it)
    salt_len: int  # GCM salt appended to the key in IKE key material (RFC 5282 §7.1)

    @property
    def key_len(self) -> int:
        """Bytes of cipher key."""
        return self.key_bits // 8

    @property
    def keymat_len(self) -> int:
        """Bytes taken from key material per direction (key + salt for GCM)."""
        return self.key_bits // 8 + self.salt_len


@dataclass(frozen=True, slots=True)
class HashAlg:
    """One hash family as used for the IKE PRF, the IKEv1 hash attribute and the (truncated) integrity MAC."""

    token: str  # strongSwan keyword, e.g. "sha256" (integrity, and PRF for IKE)
    aws_name: str  # "SHA2-256"
    prf: str  # cgw_peer.crypto.prf name: "sha256"
    integ: str  # cgw_peer.crypto.prf.Integ name: "sha256_128"
    ikev1_hash_id: int  # Phase-1 attribute class 2 (SHA=2, SHA2-256=4, -384=5, -512=6)
    ikev1_auth_alg: int  # Phase-2 attribute class 5 (HMAC-SHA=2, SHA2-256=5, -384=6, -512=7)
    ikev2_prf_id: int  # PRF_HMAC_SHA1=2, _SHA2_256=5, _384=6, _512=7
    ikev2_integ_id: int  # AUTH_HMAC_SHA1_96=2, SHA2_256_128=12, 384_192=13, 512_256=14
    integ_key_len: int
    icv_len: int
    wireshark_integ: str  # IKEv2 decryption table integrity column


def _aes(bits: int) -> EncAlg:
    return EncAlg(
        token=f"aes{bits}",
        aws_name=f"AES{bits}",
        key_bits=bits,
        aead=False,
        ikev2_id=12,
        ikev1_id=IKEV1_ENC_AES_CBC,
        esp_v1_id=12,
        wireshark_name=f"AES-CBC-{bits} [RFC3602]",
        block_size=16,
        iv_len=16,
        icv_len=0,
        salt_len=0,
    )


def _gcm(bits: int) -> EncAlg:
    return EncAlg(
        token=f"aes{bits}gcm16",
        aws_name=f"AES{bits}-GCM-16",
        key_bits=bits,
        aead=True,
        ikev2_id=20,
        ikev1_id=None,
        esp_v1_id=20,
        wireshark_name=f"AES-GCM-{bits} with 16 octet ICV [RFC5282]",
        block_size=1,
        iv_len=8,
        icv_len=16,
        salt_len=4,
    )


_ENCS = (_aes(128), _aes(256), _gcm(128), _gcm(256))
ENC_BY_TOKEN: dict[str, EncAlg] = {e.token: e for e in _ENCS}
ENC_BY_AWS: dict[str, EncAlg] = {e.aws_name: e for e in _ENCS}
# strongSwan also spells the 16-octet-ICV GCM as "aes128gcm128" (ICV in bits); accept it as an alias.
_ENC_ALIASES = {"aes128gcm128": "aes128gcm16", "aes256gcm128": "aes256gcm16"}
ENC_TOKENS: tuple[str, ...] = (*ENC_BY_TOKEN, *_ENC_ALIASES)

_HASHES = (
    HashAlg("sha1", "SHA1", "sha1", "sha1_96", 2, 2, 2, 2, 20, 12, "HMAC_SHA1_96 [RFC2404]"),
    HashAlg("sha256", "SHA2-256", "sha256", "sha256_128", 4, 5, 5, 12, 32, 16, "HMAC_SHA2_256_128 [RFC4868]"),
    HashAlg("sha384", "SHA2-384", "sha384", "sha384_192", 5, 6, 6, 13, 48, 24, "HMAC_SHA2_384_192 [RFC4868]"),
    HashAlg("sha512", "SHA2-512", "sha512", "sha512_256", 6, 7, 7, 14, 64, 32, "HMAC_SHA2_512_256 [RFC4868]"),
)
HASH_BY_TOKEN: dict[str, HashAlg] = {h.token: h for h in _HASHES}
HASH_BY_AWS: dict[str, HashAlg] = {h.aws_name: h for h in _HASHES}
HASH_BY_IKEV1_ID: dict[int, HashAlg] = {h.ikev1_hash_id: h for h in _HASHES}
HASH_BY_IKEV2_PRF: dict[int, HashAlg] = {h.ikev2_prf_id: h for h in _HASHES}
HASH_BY_IKEV2_INTEG: dict[int, HashAlg] = {h.ikev2_integ_id: h for h in _HASHES}
# strongSwan integrity aliases: "sha2_256" etc. are the same algorithms.
_HASH_ALIASES = {"sha": "sha1", "sha2_256": "sha256", "sha2_384": "sha384", "sha2_512": "sha512"}
HASH_TOKENS: tuple[str, ...] = (*HASH_BY_TOKEN, *_HASH_ALIASES)
PRF_TOKENS: tuple[str, ...] = tuple(f"prf{h.token}" for h in _HASHES)

DH_BY_TOKEN: dict[str, int] = {
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
    "x25519": 31,
    "curve25519": 31,
}
DH_BY_AWS: dict[int, int] = {n: n for n in (2, 5, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24)}  # AWS uses numbers


HASH_BY_IKEV1_AUTH_ALG: dict[int, HashAlg] = {h.ikev1_auth_alg: h for h in _HASHES}


def enc_by_ikev2(transform_id: int, key_bits: int) -> EncAlg | None:
    """The :class:`EncAlg` for an IKEv2/ESP transform ID and KeyLength attribute, or None."""
    for e in _ENCS:
        if e.ikev2_id == transform_id and e.key_bits == key_bits:
            return e
    return None


def enc_by_ikev1(enc_attr: int, key_bits: int) -> EncAlg | None:
    """The :class:`EncAlg` for an IKEv1 Phase-1 encryption attribute (class 1) and key length (class 14)."""
    for e in _ENCS:
        if e.ikev1_id is not None and e.ikev1_id == enc_attr and e.key_bits == key_bits:
            return e
    return None


def enc_by_esp_v1(transform_id: int, key_bits: int) -> EncAlg | None:
    """The :class:`EncAlg` for an IKEv1 Phase-2 ESP transform ID and key length attribute (class 6)."""
    for e in _ENCS:
        if e.esp_v1_id == transform_id and e.key_bits == key_bits:
            return e
    return None


def wireshark_names(enc: EncAlg, hash_alg: HashAlg | None) -> tuple[str, str]:
    """(encryption, integrity) column values of Wireshark's ``ikev2_decryption_table`` for a suite."""
    if enc.aead or hash_alg is None:
        return enc.wireshark_name, WIRESHARK_INTEG_NONE
    return enc.wireshark_name, hash_alg.wireshark_integ


@dataclass(frozen=True, slots=True)
class Proposal:
    """A parsed strongSwan-style proposal such as ``aes256-sha256-modp2048`` or ``aes128gcm16-prfsha256-ecp256``.

    * ``enc``: encryption token (canonical, e.g. ``"aes256gcm16"``); ``key_bits`` its key size.
    * ``integ``: :class:`~cgw_peer.crypto.prf.Integ` name (``"sha256_128"``), None for AEAD.
    * ``prf``: PRF / IKEv1 hash name (``"sha256"``). Without an explicit ``prfX`` token it follows the integrity
      token (strongSwan's rule); None when neither is given (an ESP AEAD proposal).
    * ``dh_group``: first DH group or None (ESP without PFS); ``dh_groups`` lists every group given, in order.
    """

    enc: str
    key_bits: int
    integ: str | None
    prf: str | None
    dh_group: int | None
    dh_groups: tuple[int, ...] = field(default=())

    @property
    def enc_alg(self) -> EncAlg:
        """The :class:`EncAlg` row of :attr:`enc`."""
        return ENC_BY_TOKEN[self.enc]

    @property
    def hash(self) -> str | None:
        """IKEv1 hash / PRF name (same as :attr:`prf`)."""
        return self.prf


def parse_proposal(text: str) -> Proposal:
    """Parse a strongSwan-style proposal string; ``ConfigError("proposal", ...)`` names any bad token.

    One encryption token is required; at most one integrity and one PRF token; any number of DH groups.
    With an AEAD cipher an integrity token is taken as the PRF (as strongSwan does for IKE proposals).
    """
    tokens = [t for t in text.strip().lower().split("-")]
    if not text.strip() or any(not t for t in tokens):
        raise ConfigError("proposal", f"empty token in {text!r}; expected e.g. 'aes256-sha256-modp2048'")
    enc: EncAlg | None = None
    hash_tok: str | None = None
    prf_tok: str | None = None
    groups: list[int] = []
    for tok in tokens:
        canon_enc = _ENC_ALIASES.get(tok, tok)
        canon_hash = _HASH_ALIASES.get(tok, tok)
        if canon_enc in ENC_BY_TOKEN:
            if enc is not None:
                raise ConfigError("proposal", f"{text!r}: more than one encryption algorithm ({tok!r})")
            enc = ENC_BY_TOKEN[canon_enc]
        elif canon_hash in HASH_BY_TOKEN:
            if hash_tok is not None:
                raise ConfigError("proposal", f"{text!r}: more than one integrity algorithm ({tok!r})")
            hash_tok = canon_hash
        elif tok in PRF_TOKENS:
            if prf_tok is not None:
                raise ConfigError("proposal", f"{text!r}: more than one PRF ({tok!r})")
            prf_tok = tok[3:]
        elif tok in DH_BY_TOKEN:
            number = DH_BY_TOKEN[tok]
            get_group(number)  # every token in the table is supported; fails loudly if that ever changes
            if number not in groups:
                groups.append(number)
        else:
            allowed = ", ".join((*ENC_TOKENS, *HASH_TOKENS, *PRF_TOKENS, *DH_BY_TOKEN))
            raise ConfigError("proposal", f"unknown token {tok!r} in {text!r}; allowed: {allowed}")
    if enc is None:
        raise ConfigError("proposal", f"{text!r} has no encryption algorithm; allowed: {', '.join(ENC_TOKENS)}")
    if enc.aead:
        integ = None
        prf = prf_tok or hash_tok
    else:
        if hash_tok is None:
            raise ConfigError(
                "proposal",
                f"{text!r}: {enc.token} needs an integrity algorithm; allowed: {', '.join(HASH_TOKENS)}",
            )
        integ = HASH_BY_TOKEN[hash_tok].integ
        prf = prf_tok or hash_tok
    return Proposal(
        enc=enc.token,
        key_bits=enc.key_bits,
        integ=integ,
        prf=prf,
        dh_group=groups[0] if groups else None,
        dh_groups=tuple(groups),
    )
