"""IKEv2 key derivation (RFC 7296 §2.13-2.18) and the shared-key AUTH value (§2.15)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

from cgw_peer.crypto.prf import Prf

__all__ = [
    "KEY_PAD",
    "IkeKeys",
    "child_keymat",
    "derive_ike_keys",
    "prf_plus",
    "psk_auth",
    "psk_key",
    "rekey_skeyseed",
    "skeyseed",
]

KEY_PAD = b"Key Pad for IKEv2"  # 17 ASCII bytes, no NUL (RFC 7296 §2.15)


def prf_plus(prf: Prf, key: bytes, seed: bytes, length: int) -> bytes:
    """prf+(K, S) truncated to ``length`` bytes (RFC 7296 §2.13).

    T1 = prf(K, S | 0x01), Tn = prf(K, T(n-1) | S | n); the counter is one octet, so at most 255 blocks.
    """
    n_blocks = -(-length // prf.digest_size)
    if n_blocks > 255:
        raise ValueError(f"prf+ can produce at most {255 * prf.digest_size} bytes with {prf.name}, asked {length}")
    if length <= 0:
        return b""
    mac = prf.keyed(key)
    block = b""
    out = []
    for i in range(1, n_blocks + 1):
        block = mac(block + seed + bytes((i,)))
        out.append(block)
    return b"".join(out)[:length]


def skeyseed(prf: Prf, ni: bytes, nr: bytes, g_ir: bytes) -> bytes:
    """SKEYSEED = prf(Ni | Nr, g^ir) (RFC 7296 §2.14); nonces are the Nonce payload data."""
    return prf(ni + nr, g_ir)


@dataclass(frozen=True, slots=True)
class IkeKeys:
    """The seven IKE SA keys of RFC 7296 §2.14 (``sk_a*`` are empty for AEAD ciphers)."""

    sk_d: bytes
    sk_ai: bytes
    sk_ar: bytes
    sk_ei: bytes
    sk_er: bytes
    sk_pi: bytes
    sk_pr: bytes


def derive_ike_keys(
    prf: Prf,
    skeyseed: bytes,
    ni: bytes,
    nr: bytes,
    spi_i: bytes,
    spi_r: bytes,
    *,
    enc_key_len: int,
    integ_key_len: int,
) -> IkeKeys:
    """{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr} = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr).

    SK_d, SK_pi, SK_pr have the PRF output length. For AES-GCM ``enc_key_len`` includes the 4-byte salt
    (RFC 5282 §7.1) and ``integ_key_len`` is 0.
    """
    p = prf.digest_size
    total = 3 * p + 2 * integ_key_len + 2 * enc_key_len
    km = prf_plus(prf, skeyseed, ni + nr + spi_i + spi_r, total)
    o = 0
    sizes = (p, integ_key_len, integ_key_len, enc_key_len, enc_key_len, p, p)
    parts = []
    for size in sizes:
        parts.append(km[o : o + size])
        o += size
    return IkeKeys(*parts)


def rekey_skeyseed(old_prf: Prf, sk_d_old: bytes, g_ir_new: bytes, ni: bytes, nr: bytes) -> bytes:
    """SKEYSEED of a rekeyed IKE SA = prf_old(SK_d_old, g^ir(new) | Ni | Nr) (RFC 7296 §2.18).

    Ni/Nr are the nonces of the CREATE_CHILD_SA exchange; the new keys then use :func:`derive_ike_keys` with
    the *new* PRF and the new SPIs.
    """
    return old_prf(sk_d_old, g_ir_new + ni + nr)


def child_keymat(prf: Prf, sk_d: bytes, ni: bytes, nr: bytes, length: int, g_ir_new: bytes | None = None) -> bytes:
    """Child SA KEYMAT = prf+(SK_d, [g^ir(new) |] Ni | Nr) (RFC 7296 §2.17).

    Order of use: initiator-to-responder encryption key, its integrity key, then the responder-to-initiator pair.
    """
    return prf_plus(prf, sk_d, (g_ir_new or b"") + ni + nr, length)


def psk_auth(prf: Prf, psk: bytes, real_message: bytes, nonce_other: bytes, sk_p: bytes, id_body: bytes) -> bytes:
    """Shared-key AUTH data (RFC 7296 §2.15).

    prf(prf(PSK, "Key Pad for IKEv2"), RealMessage | Nonce of the other side | prf(SK_p, ID body)).
    ``sk_p`` is SK_pi for the initiator's AUTH and SK_pr for the responder's; ``id_body`` is IDType | RESERVED(3)
    | data.
    """
    return prf(psk_key(prf, psk), real_message + nonce_other + prf(sk_p, id_body))


@functools.lru_cache(maxsize=256)
def psk_key(prf: Prf, psk: bytes) -> bytes:
    """prf(PSK, "Key Pad for IKEv2") (RFC 7296 §2.15), the same for every IKE SA of a configuration: cached."""
    return prf(psk, KEY_PAD)
