"""The ESP transforms AWS allows in phase 2, their key and ICV sizes, and their names in Wireshark's ``esp_sa`` table.

AWS phase-2 encryption is AES128, AES256, AES128-GCM-16 or AES256-GCM-16, and phase-2 integrity SHA1, SHA2-256,
SHA2-384 or SHA2-512 (``ike-dpd.md`` §1.1). As ESP transforms that is:

* AES-CBC (RFC 3602) with HMAC-SHA1-96 (RFC 2404), HMAC-SHA-256-128, -384-192 or -512-256 (RFC 4868): a 16-octet
  IV, ciphertext in 16-octet blocks, an ICV of the truncated HMAC's length;
* AES-GCM with a 16-octet ICV (RFC 4106): the key material is the AES key followed by a 4-octet salt (RFC 4106
  §8.1), an 8-octet explicit IV, no separate integrity algorithm.

The engines describe a negotiated ESP suite strongSwan-style in the ``proposal`` field of ``child_sa_established``
(IKEv1 ``P2Suite.name``, IKEv2 ``ChildSuite.describe()``): ``aes128-sha1-modp2048``, ``aes256gcm16``,
``aes256-sha512-ecp256``. :meth:`EspSuite.parse` reads those strings (a DH group token names PFS and does not
matter to ESP). Extended Sequence Numbers are not supported: neither engine offers them (IKEv2 proposes ESN
transform 0 only, IKEv1 has no ESN attribute), so a proposal naming ``esn`` is refused.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cgw_peer.crypto.algorithms import parse_proposal
from cgw_peer.crypto.prf import get_integ
from cgw_peer.errors import ConfigError

__all__ = ["WS_AUTH", "WS_ENCR_CBC", "WS_ENCR_GCM16", "EspSuite"]

WS_ENCR_CBC = "AES-CBC [RFC3602]"
"""Wireshark's ``esp_sa`` encryption column for AES-CBC, any key length (``packet-ipsec.c`` value strings)."""
WS_ENCR_GCM16 = "AES-GCM with 16 octet ICV [RFC4106]"
"""Wireshark's ``esp_sa`` encryption column for AES-GCM-16; its key column is the key followed by the salt."""
WS_AUTH: dict[str | None, str] = {
    None: "NULL",
    "sha1_96": "HMAC-SHA-1-96 [RFC2404]",
    "sha256_128": "HMAC-SHA-256-128 [RFC4868]",
    "sha384_192": "HMAC-SHA-384-192 [RFC4868]",
    "sha512_256": "HMAC-SHA-512-256 [RFC4868]",
}
"""Wireshark's ``esp_sa`` authentication column by :class:`~cgw_peer.crypto.prf.Integ` name (None: AEAD)."""

_SW_INTEG = {"sha1_96": "sha1", "sha256_128": "sha256", "sha384_192": "sha384", "sha512_256": "sha512"}

GCM_SALT_LEN = 4
"""RFC 4106 §8.1: the last 4 octets of the key material are the salt of the nonce."""


@dataclass(frozen=True, slots=True)
class EspSuite:
    """One ESP transform: AES-CBC + truncated HMAC, or AES-GCM-16."""

    aead: bool
    """AES-GCM-16 (RFC 4106); otherwise AES-CBC (RFC 3602) with :attr:`integ`."""
    key_bits: int
    """AES key size: 128 or 256."""
    integ: str | None
    """:class:`~cgw_peer.crypto.prf.Integ` name (``"sha1_96"``, ``"sha256_128"``, ...); None for AES-GCM."""

    def __post_init__(self) -> None:
        if self.key_bits not in (128, 256):
            raise ConfigError("proposal", f"AES key size {self.key_bits} is not one AWS allows (128, 256)")
        if self.aead and self.integ is not None:
            raise ConfigError("proposal", "AES-GCM carries its own ICV; no integrity algorithm may be given")
        if not self.aead and self.integ not in _SW_INTEG:
            raise ConfigError(
                "proposal", f"AES-CBC needs an integrity algorithm, one of {', '.join(_SW_INTEG)} (got {self.integ!r})"
            )

    @classmethod
    def parse(cls, proposal: str) -> EspSuite:
        """The suite named by a strongSwan-style ESP proposal (``aes128-sha1-modp2048``, ``aes256gcm16``).

        Raises :class:`~cgw_peer.errors.ConfigError` naming the ``proposal`` field for anything else."""
        return _parse(proposal)

    @property
    def enc_key_len(self) -> int:
        """Octets of encryption key material: the AES key, plus the 4-octet salt for GCM (RFC 4106 §8.1)."""
        return self.key_bits // 8 + (GCM_SALT_LEN if self.aead else 0)

    @property
    def integ_key_len(self) -> int:
        """Octets of integrity key: the hash length (RFC 2404 §3, RFC 4868 §2.1.1); 0 for GCM."""
        return 0 if self.integ is None else get_integ(self.integ).key_len

    @property
    def icv_len(self) -> int:
        """Octets of ICV: 16 for GCM-16 (RFC 4106 §6), else the truncated HMAC (12, 16, 24 or 32)."""
        return 16 if self.integ is None else get_integ(self.integ).icv_len

    @property
    def iv_len(self) -> int:
        """Octets of IV on the wire: 8 for GCM (RFC 4106 §3.1), 16 for CBC (RFC 3602 §3)."""
        return 8 if self.aead else 16

    @property
    def align(self) -> int:
        """What ``payload | padding | pad length | next header`` is padded to: the cipher block (16) for CBC,
        the 4-octet boundary for GCM, whose block size is 1 (RFC 4303 §2.4, RFC 4106 §3.2)."""
        return 4 if self.aead else 16

    @property
    def name(self) -> str:
        """strongSwan-style name without a DH group: ``aes128-sha1``, ``aes256gcm16``."""
        if self.integ is None:
            return f"aes{self.key_bits}gcm16"
        return f"aes{self.key_bits}-{_SW_INTEG[self.integ]}"

    @property
    def ws_encr(self) -> str:
        """Wireshark ``esp_sa`` encryption algorithm column."""
        return WS_ENCR_GCM16 if self.aead else WS_ENCR_CBC

    @property
    def ws_auth(self) -> str:
        """Wireshark ``esp_sa`` authentication algorithm column."""
        return WS_AUTH[self.integ]


@functools.lru_cache(maxsize=64)
def _parse(proposal: str) -> EspSuite:
    tokens = proposal.strip().lower().split("-")
    if "esn" in tokens:
        raise ConfigError(
            "proposal", f"{proposal!r}: extended sequence numbers are not supported (the engines negotiate noesn)"
        )
    text = "-".join(t for t in tokens if t != "noesn")
    p = parse_proposal(text)
    return EspSuite(aead=p.integ is None, key_bits=p.key_bits, integ=p.integ)
