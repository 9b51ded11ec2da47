"""AES-CBC (RFC 3602) and AES-GCM with a 16-octet ICV (RFC 4106 for ESP, RFC 5282 for IKEv2).

These are raw transforms: no padding logic (the IKE/ESP codecs own padding), no IV generation (IVs come from
the caller, which draws them from its injected ``random.Random``).

Speed (perf-facts.md §4): building ``algorithms.AES(key)`` and a cipher context costs more than a small CBC
operation, so long-lived users should keep an :class:`AesCbc` per key; :func:`aes_cbc_encrypt` /
:func:`aes_cbc_decrypt` are convenience wrappers. :class:`AesGcm16` keeps its ``AESGCM`` object for the same reason.
"""

from __future__ import annotations

from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cgw_peer.errors import DecodeError

__all__ = ["AES_BLOCK", "AesCbc", "AesGcm16", "aes_cbc_decrypt", "aes_cbc_encrypt"]

AES_BLOCK = 16


class AesCbc:
    """AES-CBC with a fixed key; the IV is given per call (RFC 3602).

    Speed: creating a ``Cipher(CBC(iv))`` per message costs about three times the work itself
    (perf-facts.md §4), so the contexts are created once per key and kept:

    * Encryption keeps one persistent CBC context. After each call its chaining value is the last ciphertext
      block it produced (``_chain``). CBC computes ``C_1 = E(P_1 xor chain)``; feeding
      ``P_1 xor IV xor chain`` instead yields ``E(P_1 xor IV)``, i.e. the message encrypted under its own IV,
      in one ``update()`` call of any length (RFC 3602 §2: the later blocks chain on the message's own
      ciphertext either way).
    * Decryption runs one ECB context over the whole buffer and XORs it with ``IV | C[:-1]`` as one big
      integer (CBC decryption is parallel); it keeps no state.

    Not thread-safe (the contexts are shared); keep one object per SA and thread.
    """

    __slots__ = ("_aes", "_cbc", "_chain", "_dec")

    ECB_CHAIN_MAX_BLOCKS = 5
    """Kept for compatibility; encryption no longer switches strategy by length."""

    def __init__(self, key: bytes) -> None:
        if len(key) not in (16, 24, 32):
            raise ValueError(f"AES key must be 16, 24 or 32 bytes, got {len(key)}")
        self._aes = algorithms.AES(key)
        # Whole blocks only go in, so neither context ever buffers a partial block between calls. Each context
        # is created on first use: a context costs more than a short message, and many users only ever go one
        # way with a key (an IKEv2 SK_e is used for sending or for receiving, never both).
        self._cbc: Any = None
        self._chain = 0
        """The persistent CBC context's chaining value (its last output block; the zero IV at first), as an int."""
        self._dec: Any = None

    def encrypt(self, iv: bytes, data: bytes) -> bytes:
        """Encrypt ``data`` (a multiple of 16 bytes; the caller pads)."""
        n = len(data)
        if n % AES_BLOCK:
            raise ValueError(f"plaintext length {n} is not a multiple of {AES_BLOCK}")
        if len(iv) != AES_BLOCK:
            raise ValueError(f"IV must be {AES_BLOCK} bytes, got {len(iv)}")
        if not n:
            return b""
        cbc = self._cbc
        if cbc is None:
            cbc = self._cbc = Cipher(self._aes, modes.CBC(bytes(AES_BLOCK))).encryptor()
        first = int.from_bytes(data[:AES_BLOCK], "big") ^ int.from_bytes(iv, "big") ^ self._chain
        out: bytes = cbc.update(first.to_bytes(AES_BLOCK, "big") + data[AES_BLOCK:])
        self._chain = int.from_bytes(out[-AES_BLOCK:], "big")
        return out

    def decrypt(self, iv: bytes, data: bytes) -> bytes:
        """Decrypt wire data; ``DecodeError("bad_ciphertext_length")`` unless it is whole blocks."""
        n = len(data)
        if n % AES_BLOCK:
            raise DecodeError("bad_ciphertext_length", f"{n} bytes is not a multiple of {AES_BLOCK}")
        if len(iv) != AES_BLOCK:
            raise ValueError(f"IV must be {AES_BLOCK} bytes, got {len(iv)}")
        if not n:
            return b""
        dec = self._dec
        if dec is None:
            dec = self._dec = Cipher(self._aes, modes.ECB()).decryptor()
        # P_i = D(C_i) xor C_(i-1), with C_0 = IV (RFC 3602 §2), for all blocks at once.
        x = int.from_bytes(dec.update(data), "big") ^ int.from_bytes(iv + data[:-AES_BLOCK], "big")
        return x.to_bytes(n, "big")


def aes_cbc_encrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-CBC encrypt; ``len(data) % 16 == 0`` is required (ValueError otherwise: a local bug).

    One-off helper; per-message users keep an :class:`AesCbc`.
    """
    if len(data) % AES_BLOCK:
        raise ValueError(f"plaintext length {len(data)} is not a multiple of {AES_BLOCK}")
    enc = Cipher(algorithms.AES(key), modes.CBC(iv)).encryptor()
    return enc.update(data) + enc.finalize()


def aes_cbc_decrypt(key: bytes, iv: bytes, data: bytes) -> bytes:
    """AES-CBC decrypt; raises ``DecodeError("bad_ciphertext_length")`` when ``data`` is not block aligned."""
    if len(data) % AES_BLOCK:
        raise DecodeError("bad_ciphertext_length", f"{len(data)} bytes is not a multiple of {AES_BLOCK}")
    dec = Cipher(algorithms.AES(key), modes.CBC(iv)).decryptor()
    return dec.update(data) + dec.finalize()


class AesGcm16:
    """AES-GCM with 16-byte ICV as used by ESP (RFC 4106) and IKEv2 SK payloads (RFC 5282).

    ``key_with_salt`` is the AES key followed by a 4-byte salt, which is how IKE key material is cut
    (RFC 4106 §8.1, RFC 5282 §7.1). The nonce is ``salt | iv8`` (RFC 4106 §4).
    """

    __slots__ = ("_aead", "key_len", "salt")

    ICV_LEN = 16
    IV_LEN = 8
    SALT_LEN = 4

    def __init__(self, key_with_salt: bytes) -> None:
        if len(key_with_salt) not in (20, 28, 36):
            raise ValueError(f"AES-GCM key+salt must be 20, 28 or 36 bytes, got {len(key_with_salt)}")
        self.salt = key_with_salt[-4:]
        self.key_len = len(key_with_salt) - 4
        self._aead = AESGCM(key_with_salt[:-4])

    def seal(self, iv8: bytes, plaintext: bytes, aad: bytes) -> bytes:
        """Return ciphertext | 16-byte ICV."""
        if len(iv8) != 8:
            raise ValueError(f"GCM explicit IV must be 8 bytes, got {len(iv8)}")
        return self._aead.encrypt(self.salt + iv8, plaintext, aad)

    def open(self, iv8: bytes, ct_and_tag: bytes, aad: bytes) -> bytes:
        """Check and decrypt ``ciphertext | ICV``; ``DecodeError("icv_mismatch")`` on any failure."""
        if len(iv8) != 8:
            raise DecodeError("bad_iv_length", f"GCM explicit IV must be 8 bytes, got {len(iv8)}")
        if len(ct_and_tag) < self.ICV_LEN:
            raise DecodeError("icv_mismatch", f"{len(ct_and_tag)} bytes is shorter than the ICV")
        try:
            return self._aead.decrypt(self.salt + iv8, ct_and_tag, aad)
        except InvalidTag:
            raise DecodeError("icv_mismatch") from None
