"""Negotiated IKEv2 algorithms and SK payload protection (RFC 7296 §3.14, RFC 5282).

:class:`IkeSuite` is what an IKE SA negotiated (ENCR/PRF/INTEG/DH transform IDs) plus the ready-made
primitives from :mod:`cgw_peer.crypto`; :func:`protect` / :func:`unprotect` build and open SK payloads.
:class:`ChildSuite` is the ESP side (only key lengths and names matter here: ESP itself is elsewhere).

Transform IDs map to algorithms and Wireshark names through ``cgw_peer.crypto.algorithms``.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from hmac import compare_digest
from typing import Any

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from cgw_peer.crypto.algorithms import HASH_BY_IKEV2_INTEG, HASH_BY_IKEV2_PRF, WIRESHARK_INTEG_NONE, enc_by_ikev2
from cgw_peer.crypto.cipher import AesCbc, AesGcm16
from cgw_peer.crypto.dh import DhGroup, get_group
from cgw_peer.crypto.prf import Integ as IntegAlg
from cgw_peer.crypto.prf import Prf as PrfAlg
from cgw_peer.crypto.prf import get_integ, get_prf
from cgw_peer.errors import DecodeError
from cgw_peer.ikev2.codec import HEADER_LEN, Header
from cgw_peer.ikev2.constants import Encr, Integ, Prf

# strongSwan-style names, for events and logs.
SW_ENCR = {Encr.AES_CBC: "aes{bits}", Encr.AES_GCM_16: "aes{bits}gcm16"}
SW_INTEG = {
    Integ.HMAC_SHA1_96: "sha1",
    Integ.HMAC_SHA2_256_128: "sha256",
    Integ.HMAC_SHA2_384_192: "sha384",
    Integ.HMAC_SHA2_512_256: "sha512",
}
SW_PRF = {
    Prf.HMAC_SHA1: "prfsha1",
    Prf.HMAC_SHA2_256: "prfsha256",
    Prf.HMAC_SHA2_384: "prfsha384",
    Prf.HMAC_SHA2_512: "prfsha512",
}

# IKE header (RFC 7296 §3.1) immediately followed by the SK payload's generic header (§3.14): one pack.
_HDR_SK = struct.Struct("!8s8sBBBBIIBBH")
GCM_SALT = 4
_GCM_IV = 8
_GCM_ICV = 16
_CBC_IV = 16
_EMPTY_PLAIN = 15  # an empty inner chain padded to one block: 15 zero octets, then PadLength 15 (as an int)


def encr_key_len(encr: int, bits: int) -> int:
    """Octets of SK_e / ESP encryption key material: the AES key, plus a 4-octet salt for GCM (RFC 5282 §7.1)."""
    return bits // 8 + (GCM_SALT if encr == Encr.AES_GCM_16 else 0)


def dh_name(group: int) -> str:
    return get_group(group).name


@dataclass(frozen=True, slots=True)
class IkeSuite:
    """The transforms of an IKE SA, with their primitives."""

    encr: int
    key_bits: int
    prf_id: int
    integ_id: int
    dh: int

    @property
    def aead(self) -> bool:
        return self.encr == Encr.AES_GCM_16

    @property
    def prf(self) -> PrfAlg:
        return get_prf(HASH_BY_IKEV2_PRF[self.prf_id].prf)

    @property
    def integ(self) -> IntegAlg | None:
        return None if self.aead else get_integ(HASH_BY_IKEV2_INTEG[self.integ_id].integ)

    @property
    def enc_key_len(self) -> int:
        return encr_key_len(self.encr, self.key_bits)

    @property
    def integ_key_len(self) -> int:
        i = self.integ
        return 0 if i is None else i.key_len

    @property
    def group(self) -> DhGroup:
        return get_group(self.dh)

    @property
    def ws_encr(self) -> str:
        """Wireshark's ``ikev2_decryption_table`` encryption column (``cgw_peer.crypto.algorithms``)."""
        return _ws_encr(self.encr, self.key_bits)

    @property
    def ws_integ(self) -> str:
        return WIRESHARK_INTEG_NONE if self.aead else HASH_BY_IKEV2_INTEG[self.integ_id].wireshark_integ

    def describe(self) -> str:
        """strongSwan-style proposal string, e.g. ``aes128-sha256-prfsha256-modp2048``."""
        return _describe_ike(self.encr, self.key_bits, self.integ_id, self.prf_id, self.dh)


@dataclass(frozen=True, slots=True)
class ChildSuite:
    """The transforms of an ESP SA (PFS group 0 = none)."""

    encr: int
    key_bits: int
    integ_id: int
    dh: int = 0
    esn: int = 0

    @property
    def aead(self) -> bool:
        return self.encr == Encr.AES_GCM_16

    @property
    def enc_key_len(self) -> int:
        return encr_key_len(self.encr, self.key_bits)

    @property
    def integ_key_len(self) -> int:
        return 0 if self.aead or not self.integ_id else HASH_BY_IKEV2_INTEG[self.integ_id].integ_key_len

    def describe(self) -> str:
        return _describe_child(self.encr, self.key_bits, self.integ_id, self.dh)


@functools.lru_cache(maxsize=64)
def _ws_encr(encr: int, key_bits: int) -> str:
    enc = enc_by_ikev2(encr, key_bits)
    assert enc is not None
    return enc.wireshark_name


# Cached on the plain field values (hashing the frozen dataclass itself costs more than building the string).
@functools.lru_cache(maxsize=256)
def _describe_ike(encr: int, key_bits: int, integ_id: int, prf_id: int, dh: int) -> str:
    parts = [SW_ENCR[Encr(encr)].format(bits=key_bits)]
    if encr != Encr.AES_GCM_16:
        parts.append(SW_INTEG[Integ(integ_id)])
    parts.append(SW_PRF[Prf(prf_id)])
    parts.append(dh_name(dh))
    return "-".join(parts)


@functools.lru_cache(maxsize=256)
def _describe_child(encr: int, key_bits: int, integ_id: int, dh: int) -> str:
    parts = [SW_ENCR[Encr(encr)].format(bits=key_bits)]
    if encr != Encr.AES_GCM_16 and integ_id:
        parts.append(SW_INTEG[Integ(integ_id)])
    if dh:
        parts.append(dh_name(dh))
    return "-".join(parts)


class SkKeys:
    """The per-direction SK payload primitives of one IKE SA (keyed once, used per message)."""

    __slots__ = (
        "_cbc_in",
        "_cbc_out",
        "_ecb_out",
        "_gcm_in",
        "_gcm_out",
        "_key_out",
        "_mac_in",
        "_mac_out",
        "aead",
        "icv_len",
        "suite",
    )

    def __init__(self, suite: IkeSuite, sk_e_out: bytes, sk_a_out: bytes, sk_e_in: bytes, sk_a_in: bytes) -> None:
        self.suite = suite
        self.aead = suite.aead
        self._cbc_out = self._cbc_in = None
        self._gcm_out = self._gcm_in = None
        self._mac_out: Callable[[bytes], bytes] | None = None
        self._mac_in: Callable[[bytes], bytes] | None = None
        self._key_out = sk_e_out
        self._ecb_out: Any = None
        if suite.aead:
            self._gcm_out, self._gcm_in = AesGcm16(sk_e_out), AesGcm16(sk_e_in)
            self.icv_len = _GCM_ICV
        else:
            integ = suite.integ
            assert integ is not None
            self._cbc_out, self._cbc_in = AesCbc(sk_e_out), AesCbc(sk_e_in)
            self._mac_out, self._mac_in = integ.keyed(sk_a_out), integ.keyed(sk_a_in)
            self.icv_len = integ.icv_len

    def protect(self, header: Header, inner_np: int, inner: bytes, iv: bytes) -> bytes:
        """Build the whole message ``HDR, SK{inner}`` (RFC 7296 §3.14; RFC 5282 §3 for GCM).

        ``iv`` is 16 random octets for CBC, 8 unique octets for GCM. CBC padding is the minimum that aligns
        ``inner | Padding | PadLength`` to the block, with zero octets (any value is allowed).
        """
        h = header
        return self.protect_fields(h.spi_i, h.spi_r, h.exchange, h.flags, h.message_id, inner_np, inner, iv)

    def protect_fields(
        self, spi_i: bytes, spi_r: bytes, exchange: int, flags: int, mid: int, inner_np: int, inner: bytes, iv: bytes
    ) -> bytes:
        """:meth:`protect` from the header fields (the per-message fast path)."""
        if self._gcm_out is not None:
            # GCM needs no alignment: PadLength 0 only (strongSwan does the same).
            plain = inner + b"\x00"
            sk_len = 4 + _GCM_IV + len(plain) + _GCM_ICV
            hdr = _HDR_SK.pack(spi_i, spi_r, 46, 0x20, exchange, flags, mid, HEADER_LEN + sk_len, inner_np, 0, sk_len)
            # RFC 5282 §5.1: AAD = IKE header | SK generic header (the IV is not included).
            return hdr + iv + self._gcm_out.seal(iv, plain, hdr)
        assert self._cbc_out is not None and self._mac_out is not None
        if inner:
            pad = (-(len(inner) + 1)) % 16
            ct = self._cbc_out.encrypt(iv, inner + bytes(pad) + bytes((pad,)))
        else:
            # The empty message (liveness, Delete answers): one block of padding, C = E(P xor IV) (RFC 3602 §2),
            # through an ECB context of its own (cheaper per call than the general path).
            if len(iv) != _CBC_IV:
                raise ValueError(f"IV must be {_CBC_IV} bytes, got {len(iv)}")
            ecb = self._ecb_out
            if ecb is None:
                ecb = self._ecb_out = Cipher(algorithms.AES(self._key_out), modes.ECB()).encryptor()
            ct = ecb.update((_EMPTY_PLAIN ^ int.from_bytes(iv, "big")).to_bytes(_CBC_IV, "big"))
        sk_len = 4 + _CBC_IV + len(ct) + self.icv_len
        msg = _HDR_SK.pack(spi_i, spi_r, 46, 0x20, exchange, flags, mid, HEADER_LEN + sk_len, inner_np, 0, sk_len)
        msg += iv + ct
        # The ICV covers the message from the first octet of the header through the PadLength (ciphertext).
        return msg + self._mac_out(msg)

    def unprotect(self, data: bytes, sk_body_len: int) -> bytes:
        """Check and decrypt the SK payload that ends ``data``; returns the inner payload chain (padding
        removed). Raises :class:`DecodeError` (``icv_mismatch``, ``bad_padding``...) on any failure."""
        sk_off = len(data) - sk_body_len  # first octet of IV
        if self._gcm_in is not None:
            if sk_body_len < _GCM_IV + _GCM_ICV + 1:
                raise DecodeError("short_sk", f"{sk_body_len} octets")
            iv = data[sk_off : sk_off + _GCM_IV]
            plain = self._gcm_in.open(iv, data[sk_off + _GCM_IV :], data[:sk_off])
        else:
            assert self._cbc_in is not None and self._mac_in is not None
            n = self.icv_len
            ct_len = sk_body_len - _CBC_IV - n
            if ct_len < 16 or ct_len % 16:
                raise DecodeError("bad_sk_length", f"{sk_body_len} octets")
            icv = data[-n:]
            expect = self._mac_in(data[:-n])
            if not compare_digest(expect, icv):
                raise DecodeError("icv_mismatch")
            iv = data[sk_off : sk_off + _CBC_IV]
            plain = self._cbc_in.decrypt(iv, data[sk_off + _CBC_IV : -n])
        pad = plain[-1]
        if pad + 1 > len(plain):
            raise DecodeError("bad_padding", f"pad length {pad}")
        return plain[: len(plain) - pad - 1]


def gcm_iv(counter: int) -> bytes:
    """A unique 8-octet GCM IV from a per-SA counter (RFC 5282 §3.1: the IV MUST NOT repeat for a key)."""
    return struct.pack("!Q", counter)
