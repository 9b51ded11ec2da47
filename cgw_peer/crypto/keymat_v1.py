"""IKEv1 key material (RFC 2409 §5, §5.5 and Appendix B) for Main Mode with pre-shared keys and Quick Mode.

All functions take a :class:`~cgw_peer.crypto.prf.Prf` (HMAC of the negotiated hash) and raw bytes. ``*_b``
arguments are payload *bodies* (without the 4-byte generic payload header), as RFC 2409 §5 defines them.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

from cgw_peer.crypto.prf import Prf, hash_digest

__all__ = [
    "expand_ka",
    "hash_i",
    "hash_r",
    "phase1_iv",
    "phase2_iv",
    "qm_hash1",
    "qm_hash2",
    "qm_hash3",
    "qm_keymat",
    "skeyid_chain",
    "skeyid_psk",
]


def skeyid_psk(prf: Prf, psk: bytes, ni_b: bytes, nr_b: bytes) -> bytes:
    """SKEYID = prf(pre-shared-key, Ni_b | Nr_b) (RFC 2409 §5)."""
    return prf(psk, ni_b + nr_b)


def skeyid_chain(prf: Prf, skeyid: bytes, gxy: bytes, cky_i: bytes, cky_r: bytes) -> tuple[bytes, bytes, bytes]:
    """(SKEYID_d, SKEYID_a, SKEYID_e) (RFC 2409 §5)."""
    mac = prf.keyed(skeyid)
    tail = gxy + cky_i + cky_r
    skeyid_d = mac(tail + b"\x00")
    skeyid_a = mac(skeyid_d + tail + b"\x01")
    skeyid_e = mac(skeyid_a + tail + b"\x02")
    return skeyid_d, skeyid_a, skeyid_e


def expand_ka(prf: Prf, skeyid_e: bytes, key_len: int) -> bytes:
    """Encryption key Ka from SKEYID_e (RFC 2409 Appendix B).

    If SKEYID_e is long enough its first ``key_len`` bytes are used; otherwise K1 = prf(SKEYID_e, 0x00),
    Ki = prf(SKEYID_e, K(i-1)) and Ka is the prefix of K1 | K2 | ... (e.g. AES-256 with HMAC-SHA1).
    """
    if len(skeyid_e) >= key_len:
        return skeyid_e[:key_len]
    mac = prf.keyed(skeyid_e)
    block = mac(b"\x00")
    out = [block]
    total = len(block)
    while total < key_len:
        block = mac(block)
        out.append(block)
        total += len(block)
    return b"".join(out)[:key_len]


def phase1_iv(hash_name: str, gxi: bytes, gxr: bytes, block_size: int = 16) -> bytes:
    """IV of the first encrypted Main Mode message: hash(g^xi | g^xr) truncated to the block size (App. B)."""
    return hash_digest(hash_name, gxi + gxr)[:block_size]


def phase2_iv(hash_name: str, last_phase1_block: bytes, message_id: int, block_size: int = 16) -> bytes:
    """IV of the first message of a Quick Mode / Informational exchange (RFC 2409 Appendix B).

    hash(last ciphertext block of the last Phase 1 message | M-ID), M-ID as 4 bytes big-endian.
    """
    return hash_digest(hash_name, last_phase1_block + struct.pack("!I", message_id))[:block_size]


def hash_i(
    prf: Prf, skeyid: bytes, gxi: bytes, gxr: bytes, cky_i: bytes, cky_r: bytes, sai_b: bytes, idii_b: bytes
) -> bytes:
    """HASH_I = prf(SKEYID, g^xi | g^xr | CKY-I | CKY-R | SAi_b | IDii_b) (RFC 2409 §5)."""
    return prf(skeyid, gxi + gxr + cky_i + cky_r + sai_b + idii_b)


def hash_r(
    prf: Prf, skeyid: bytes, gxi: bytes, gxr: bytes, cky_i: bytes, cky_r: bytes, sai_b: bytes, idir_b: bytes
) -> bytes:
    """HASH_R = prf(SKEYID, g^xr | g^xi | CKY-R | CKY-I | SAi_b | IDir_b) (RFC 2409 §5).

    Arguments are in the same (initiator-first) order as :func:`hash_i`; the swap happens inside.
    """
    return prf(skeyid, gxr + gxi + cky_r + cky_i + sai_b + idir_b)


def qm_hash1(prf: Prf, skeyid_a: bytes, message_id: int, rest: bytes) -> bytes:
    """HASH(1) = prf(SKEYID_a, M-ID | rest) (RFC 2409 §5.5; the same form protects Informational, §5.7).

    ``rest`` is the message from the payload after HASH to the end (generic headers included).
    """
    return prf(skeyid_a, struct.pack("!I", message_id) + rest)


def qm_hash2(prf: Prf, skeyid_a: bytes, message_id: int, ni_b: bytes, rest: bytes) -> bytes:
    """HASH(2) = prf(SKEYID_a, M-ID | Ni_b | rest) (RFC 2409 §5.5)."""
    return prf(skeyid_a, struct.pack("!I", message_id) + ni_b + rest)


def qm_hash3(prf: Prf, skeyid_a: bytes, message_id: int, ni_b: bytes, nr_b: bytes) -> bytes:
    """HASH(3) = prf(SKEYID_a, 0x00 | M-ID | Ni_b | Nr_b) (RFC 2409 §5.5)."""
    return prf(skeyid_a, b"\x00" + struct.pack("!I", message_id) + ni_b + nr_b)


def qm_keymat(
    prf: Prf,
    skeyid_d: bytes,
    protocol: int,
    spi: bytes,
    ni_b: bytes,
    nr_b: bytes,
    length: int,
    g_qm: bytes | None = None,
    *,
    mac: Callable[[bytes], bytes] | None = None,
) -> bytes:
    """Quick Mode KEYMAT for one direction (RFC 2409 §5.5), ``length`` bytes (encryption key first).

    K1 = prf(SKEYID_d, [g(qm)^xy |] protocol | SPI | Ni_b | Nr_b), Ki = prf(SKEYID_d, K(i-1) | same seed).
    ``spi`` is the SPI chosen by the *destination* of the SA (RFC 2409 §5.5); ``g_qm`` is the PFS secret.
    ``mac``: ``prf.keyed(skeyid_d)`` when the caller has it already (both directions share one key schedule).
    """
    seed = (g_qm or b"") + bytes((protocol,)) + spi + ni_b + nr_b
    if mac is None:
        mac = prf.keyed(skeyid_d)
    block = mac(seed)
    out = [block]
    total = len(block)
    while total < length:
        block = mac(block + seed)
        out.append(block)
        total += len(block)
    return b"".join(out)[:length]
