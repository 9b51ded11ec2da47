"""Diffie-Hellman groups for IKE: MODP (RFC 2409, RFC 3526, RFC 5114), ECP (RFC 5903) and Curve25519 (RFC 8031).

Wire formats (RFC 7296 §3.4, RFC 5903 §7, RFC 8031 §3.1):

* MODP: KE data = g^x mod p, big-endian, left-padded to the modulus length; the shared secret g^xy likewise.
* ECP: KE data = x | y (each padded to the field size, no 0x04 prefix); shared secret = x coordinate only.
* Curve25519 (group 31): 32-byte u-coordinate both ways.

Determinism trade-off: every private value is drawn from the caller's injected ``random.Random``, so a seeded
run replays bit-for-bit (same KE payloads, same keys, same pcaps). The price is that private keys are only as
unpredictable as that generator (Mersenne Twister is *not* cryptographically secure). That is intended: this is
an emulator, not a VPN. A caller that wants real secrecy passes ``random.SystemRandom()``, which works unchanged
(it provides ``getrandbits``/``randrange``/``randbytes`` from the OS).

Speed: the modular exponentiations run in OpenSSL (through ``cryptography``) for every group OpenSSL knows by
name (5, 14-18 and the RFC 5114 groups 22-24), where loading keys is cheap. The deterministic private exponent
is injected as ``DHPrivateNumbers(x, ...)``, and the public value is obtained as ``exchange(g)`` = g^x (one
OpenSSL modexp). Group 2 (1024-bit) is not a named group in OpenSSL, which then re-validates the prime on every
key load (about 24 ms, perf-facts.md §3), so it uses Python's ``pow()``. If ``cryptography`` ever drops FFDH,
every MODP group falls back to ``pow()`` (slower, same results). Exponents are short: twice the group's
security strength in bits (NIST SP 800-56A rev. 3 §5.6.1.1.1 / SP 800-57 table 2, as OpenSSL does), with the top
bit set so every key costs the same; RFC 5114 groups draw x uniformly from [1, q-1].

Validation of the peer's KE (RFC 7296 §2.12, RFC 6989): wrong length, 0, 1, p-1 and values >= p are rejected
for MODP; for the prime-order RFC 5114 groups the value must also lie in the subgroup (y^q = 1, RFC 6989 §2.2);
ECP points must be on the curve; a Curve25519 all-zero result is rejected (RFC 8031 §2.3). Every rejection is
``DecodeError("invalid_ke")``.
"""

from __future__ import annotations

import random
import warnings
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, x25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from cgw_peer.crypto import _groups as _g
from cgw_peer.errors import ConfigError, DecodeError

__all__ = ["SUPPORTED_GROUPS", "DhGroup", "DhKeyPair", "DhKeyReuse", "get_group", "pow_group"]

# Recent ``cryptography`` (50.x here) warns on *attribute access* of the FFDH classes (module
# ``__getattr__``). Fetch them once here with the warning silenced locally, so no caller (and no pytest run
# with -W error) ever sees it.
_DH: Any = None
try:
    from cryptography.utils import CryptographyDeprecationWarning as _CDW

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", _CDW)
        from cryptography.hazmat.primitives.asymmetric import dh as _dh_module

        _DH = (_dh_module.DHParameterNumbers, _dh_module.DHPublicNumbers, _dh_module.DHPrivateNumbers)
except (ImportError, AttributeError):  # pragma: no cover - a future cryptography without FFDH
    _DH = None


class DhKeyPair:
    """One side's ephemeral key: :attr:`public` is the KE payload data; :meth:`compute` gives g^xy."""

    __slots__ = ("group", "public")

    group: DhGroup
    public: bytes

    def compute(self, peer_public: bytes) -> bytes:
        """Shared secret from the peer's KE data; ``DecodeError("invalid_ke")`` if the value is unacceptable."""
        raise NotImplementedError


class DhGroup:
    """A DH group as negotiated in IKE (transform type 4 / IKEv1 attribute class 4)."""

    __slots__ = ("ke_len", "kind", "name", "number", "secret_len")

    number: int
    name: str
    kind: str  # "modp" | "ecp" | "curve25519"
    ke_len: int  # bytes of KE payload data
    secret_len: int  # bytes of g^xy

    def generate(self, rng: random.Random) -> DhKeyPair:
        """A new key pair whose private value comes from ``rng`` (deterministic for a seeded rng)."""
        raise NotImplementedError

    def key_from_private(self, private: bytes) -> DhKeyPair:
        """A key pair from a given private value (test vectors, replays).

        MODP and ECP: the exponent / scalar as big-endian bytes; Curve25519: the raw 32-byte scalar.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"DhGroup({self.number}, {self.name!r})"


# ---------------------------------------------------------------------------------------------------- MODP


class _ModpGroup(DhGroup):
    __slots__ = ("_g_key", "_pn", "exp_bits", "g", "p", "q")

    def __init__(self, number: int, name: str, p: int, g: int, q: int | None, exp_bits: int, openssl: bool):
        self.number = number
        self.name = name
        self.kind = "modp"
        self.p = p
        self.g = g
        self.q = q
        self.exp_bits = exp_bits
        self.ke_len = self.secret_len = (p.bit_length() + 7) // 8
        self._pn: Any = None
        self._g_key: Any = None
        if openssl and _DH is not None:
            pn_cls, pub_cls, _ = _DH
            self._pn = pn_cls(p, g, q)
            # The generator as a "peer public key": exchange(g) with our private x yields g^x, the public value.
            self._g_key = pub_cls(g, self._pn).public_key()

    def _private_value(self, rng: random.Random) -> int:
        if self.q is not None:
            return rng.randrange(1, self.q)
        return rng.getrandbits(self.exp_bits) | (1 << (self.exp_bits - 1))

    def generate(self, rng: random.Random) -> DhKeyPair:
        x = self._private_value(rng)
        return self._key(x)

    def key_from_private(self, private: bytes) -> DhKeyPair:
        x = int.from_bytes(private, "big")
        if not 1 < x < self.p - 1:
            raise ValueError(f"{self.name}: private exponent out of range")
        return self._key(x)

    def _key(self, x: int) -> DhKeyPair:
        if self._pn is not None:
            return _OsslModpKeyPair(self, x)
        return _PowModpKeyPair(self, x)

    def check_peer(self, peer_public: bytes) -> int:
        """Parse and validate a peer KE value (RFC 6989 §2.1/2.2); returns it as an int."""
        if len(peer_public) != self.ke_len:
            raise DecodeError("invalid_ke", f"{self.name}: KE length {len(peer_public)}, expected {self.ke_len}")
        y = int.from_bytes(peer_public, "big")
        if y <= 1 or y >= self.p - 1:
            raise DecodeError("invalid_ke", f"{self.name}: KE value out of range (0, 1, p-1 or >= p)")
        return y


class _PowModpKeyPair(DhKeyPair):
    __slots__ = ("_x",)

    def __init__(self, group: _ModpGroup, x: int) -> None:
        self.group = group
        self._x = x
        self.public = pow(group.g, x, group.p).to_bytes(group.ke_len, "big")

    def compute(self, peer_public: bytes) -> bytes:
        group = self.group
        assert isinstance(group, _ModpGroup)
        y = group.check_peer(peer_public)
        if group.q is not None and pow(y, group.q, group.p) != 1:
            raise DecodeError("invalid_ke", f"{group.name}: KE value not in the prime-order subgroup")
        return pow(y, self._x, group.p).to_bytes(group.secret_len, "big")


class _OsslModpKeyPair(DhKeyPair):
    __slots__ = ("_key",)

    def __init__(self, group: _ModpGroup, x: int) -> None:
        _, pub_cls, priv_cls = _DH
        self.group = group
        # The public-number slot only has to be a valid group element; OpenSSL (3.0 here) does not tie it to x, and
        # exchange() only uses x. We put g there and then compute the real public value g^x.
        self._key = priv_cls(x, pub_cls(group.g, group._pn)).private_key()
        self.public = self._key.exchange(group._g_key).rjust(group.ke_len, b"\0")

    def compute(self, peer_public: bytes) -> bytes:
        group = self.group
        assert isinstance(group, _ModpGroup)
        y = group.check_peer(peer_public)
        _, pub_cls, _ = _DH
        try:
            # For the RFC 5114 groups OpenSSL also checks y^q == 1 here (DH_check_pub_key with q set).
            secret: bytes = self._key.exchange(pub_cls(y, group._pn).public_key())
        except ValueError as exc:
            raise DecodeError("invalid_ke", f"{group.name}: {exc}") from None
        return secret.rjust(group.secret_len, b"\0")


# ----------------------------------------------------------------------------------------------------- ECP


class _EcpGroup(DhGroup):
    __slots__ = ("coord_len", "curve", "order")

    def __init__(self, number: int, name: str, curve: ec.EllipticCurve, order: int) -> None:
        self.number = number
        self.name = name
        self.kind = "ecp"
        self.curve = curve
        self.order = order
        self.coord_len = (curve.key_size + 7) // 8
        self.ke_len = 2 * self.coord_len
        self.secret_len = self.coord_len

    def generate(self, rng: random.Random) -> DhKeyPair:
        return _EcpKeyPair(self, rng.randrange(1, self.order))

    def key_from_private(self, private: bytes) -> DhKeyPair:
        return _EcpKeyPair(self, int.from_bytes(private, "big"))


class _EcpKeyPair(DhKeyPair):
    __slots__ = ("_key",)

    _ECDH = ec.ECDH()

    def __init__(self, group: _EcpGroup, d: int) -> None:
        self.group = group
        self._key = ec.derive_private_key(d, group.curve)
        # X9.62 uncompressed point is 0x04 | x | y; IKE carries x | y (RFC 5903 §7).
        self.public = self._key.public_key().public_bytes(Encoding.X962, PublicFormat.UncompressedPoint)[1:]

    def compute(self, peer_public: bytes) -> bytes:
        group = self.group
        assert isinstance(group, _EcpGroup)
        if len(peer_public) != group.ke_len:
            raise DecodeError("invalid_ke", f"{group.name}: KE length {len(peer_public)}, expected {group.ke_len}")
        try:
            # from_encoded_point checks that the point is on the curve (RFC 6989 §2.3).
            peer = ec.EllipticCurvePublicKey.from_encoded_point(group.curve, b"\x04" + peer_public)
            secret = self._key.exchange(self._ECDH, peer)
        except ValueError as exc:
            raise DecodeError("invalid_ke", f"{group.name}: {exc}") from None
        return secret


# ---------------------------------------------------------------------------------------------- Curve25519


class _X25519Group(DhGroup):
    __slots__ = ()

    def __init__(self) -> None:
        self.number = 31
        self.name = "curve25519"
        self.kind = "curve25519"
        self.ke_len = self.secret_len = 32

    def generate(self, rng: random.Random) -> DhKeyPair:
        return _X25519KeyPair(self, rng.getrandbits(256).to_bytes(32, "little"))

    def key_from_private(self, private: bytes) -> DhKeyPair:
        if len(private) != 32:
            raise ValueError("curve25519: private key must be 32 bytes")
        return _X25519KeyPair(self, private)


class _X25519KeyPair(DhKeyPair):
    __slots__ = ("_key",)

    def __init__(self, group: _X25519Group, raw: bytes) -> None:
        self.group = group
        self._key = x25519.X25519PrivateKey.from_private_bytes(raw)  # clamping happens inside (RFC 7748 §5)
        self.public = self._key.public_key().public_bytes_raw()

    def compute(self, peer_public: bytes) -> bytes:
        if len(peer_public) != 32:
            raise DecodeError("invalid_ke", f"curve25519: KE length {len(peer_public)}, expected 32")
        try:
            secret = self._key.exchange(x25519.X25519PublicKey.from_public_bytes(peer_public))
        except ValueError as exc:  # OpenSSL refuses an all-zero result (small-order peer point)
            raise DecodeError("invalid_ke", f"curve25519: {exc}") from None
        if secret == bytes(32):  # RFC 8031 §2.3: MUST check (in case the backend does not)
            raise DecodeError("invalid_ke", "curve25519: all-zero shared secret")
        return secret


# ------------------------------------------------------------------------------------------------ registry

# Group orders (n) of the NIST curves, FIPS 186-4 D.1.2.3-5; checked in tests (n*G is rejected by OpenSSL).
_N_P256 = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
_N_P384 = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFC7634D81F4372DDF581A0DB248B0A77AECEC196ACCC52973", 16)
_N_P521 = int(
    "01FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFA"
    "51868783BF2F966B7FCC0148F709A5D03BB5C9B8899C47AEBB6FB71E91386409",
    16,
)

_GROUPS: dict[int, DhGroup] = {
    # number: group. Exponent bits = 2 x security strength (80/96/112/128/152/176/200 bits).
    2: _ModpGroup(2, "modp1024", _g._P2, 2, None, 160, openssl=False),
    5: _ModpGroup(5, "modp1536", _g._P5, 2, None, 192, openssl=True),
    14: _ModpGroup(14, "modp2048", _g._P14, 2, None, 224, openssl=True),
    15: _ModpGroup(15, "modp3072", _g._P15, 2, None, 256, openssl=True),
    16: _ModpGroup(16, "modp4096", _g._P16, 2, None, 304, openssl=True),
    17: _ModpGroup(17, "modp6144", _g._P17, 2, None, 352, openssl=True),
    18: _ModpGroup(18, "modp8192", _g._P18, 2, None, 400, openssl=True),
    19: _EcpGroup(19, "ecp256", ec.SECP256R1(), _N_P256),
    20: _EcpGroup(20, "ecp384", ec.SECP384R1(), _N_P384),
    21: _EcpGroup(21, "ecp521", ec.SECP521R1(), _N_P521),
    22: _ModpGroup(22, "modp1024s160", _g._P22, _g._G22, _g._Q22, 160, openssl=True),
    23: _ModpGroup(23, "modp2048s224", _g._P23, _g._G23, _g._Q23, 224, openssl=True),
    24: _ModpGroup(24, "modp2048s256", _g._P24, _g._G24, _g._Q24, 256, openssl=True),
    31: _X25519Group(),
}

SUPPORTED_GROUPS: tuple[int, ...] = tuple(_GROUPS)


def get_group(number: int) -> DhGroup:
    """The :class:`DhGroup` with IANA number ``number``; ``ConfigError("dh_group", ...)`` if unsupported."""
    try:
        return _GROUPS[number]
    except (KeyError, TypeError):
        allowed = ", ".join(str(n) for n in SUPPORTED_GROUPS)
        raise ConfigError("dh_group", f"unsupported DH group {number!r}; allowed: {allowed}") from None


def pow_group(number: int) -> DhGroup:
    """The same MODP group computed with Python ``pow()`` only (an independent oracle for tests and benches)."""
    g = get_group(number)
    if not isinstance(g, _ModpGroup):
        raise ConfigError("dh_group", f"group {number} is not a MODP group")
    return _ModpGroup(g.number, g.name, g.p, g.g, g.q, g.exp_bits, openssl=False)


class DhKeyReuse:
    """Hands out one key pair per group for up to ``max_uses`` exchanges, then a fresh one.

    RFC 7296 §2.12 allows reusing a DH exponent for several exchanges (it costs perfect forward secrecy
    between the SAs that share it). Reuse halves the MODP cost of an IKE set-up, because only the shared
    secret is computed. ``max_uses=1`` (the default) never reuses: every :meth:`key` call is
    ``group.generate(rng)``. Which value a peer uses is a behaviour setting of the engine that owns this object.
    """

    __slots__ = ("_cache", "max_uses")

    def __init__(self, max_uses: int = 1) -> None:
        if max_uses < 1:
            raise ConfigError("dh_key_reuse", f"max_uses must be >= 1, got {max_uses}")
        self.max_uses = max_uses
        self._cache: dict[int, tuple[DhKeyPair, int]] = {}

    def key(self, group: DhGroup, rng: random.Random) -> DhKeyPair:
        """A key pair for ``group``: the cached one while it has uses left, else a new one from ``rng``."""
        if self.max_uses == 1:
            return group.generate(rng)
        entry = self._cache.get(group.number)
        if entry is not None and entry[1] < self.max_uses:
            self._cache[group.number] = (entry[0], entry[1] + 1)
            return entry[0]
        pair = group.generate(rng)
        self._cache[group.number] = (pair, 1)
        return pair
