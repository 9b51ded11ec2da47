"""One ESP Security Association, one direction (RFC 4303, tunnel mode), sans-I/O.

An outbound SA turns inner IP packets into ESP packets; an inbound SA checks and opens them. Both are built from
what an IKE engine negotiated (:meth:`EspSa.from_child_event` reads the ``child_sa_established`` event), and
neither does I/O: time comes in as ``now``, CBC IVs from an injected ``random.Random``.

ESP packet (RFC 4303 §2)::

    SPI (4) | Sequence Number (4) | IV (16 CBC / 8 GCM) | E(payload | padding | pad length | next header) | ICV

* Outbound (§3.3): the sequence number starts at 1 and never cycles: once 2^32 - 1 has been sent the SA refuses
  to send (counted as ``esp_seq_overflow``) until IKE replaces it (§3.3.3). Padding is 1, 2, 3, ... (§2.4) up to
  the cipher block (CBC: 16) or the 4-octet boundary (GCM), the minimum that aligns. CBC takes a fresh IV from the
  injected RNG per packet (RFC 3602 §3); GCM uses the sequence number as its 8-octet explicit IV, a counter that
  never repeats under one key (RFC 4106 §3.1 allows any scheme that keeps IVs unique; a counter is its example).
* CBC + HMAC (RFC 3602, RFC 2404, RFC 4868): the ICV is the truncated HMAC over SPI through the end of the
  ciphertext. GCM (RFC 4106): the nonce is salt (last 4 octets of the key material) | IV, the AAD is
  SPI | sequence number (§5, 32-bit sequence numbers), the 16-octet ICV is the GCM tag.
* Inbound (§3.4): length, then the anti-replay window (§3.4.3: checked before the ICV so replays cost nothing),
  then the ICV (constant-time compare; GCM checks its tag before releasing plaintext), then the window update
  (only after the ICV verified), then padding and next header. Every failure returns an
  :class:`~cgw_peer.esp.reasons.EspDrop` and counts it; nothing raises.

Per-packet work is ``struct``, plain ints and crypto contexts made once per SA: one ``AESGCM`` object, or an
:class:`~cgw_peer.crypto.cipher.AesCbc` (persistent CBC/ECB contexts) and a precomputed HMAC key schedule
(:meth:`~cgw_peer.crypto.prf.Integ.keyed`), as perf-facts.md §4 recommends.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Mapping
from hmac import compare_digest
from typing import Any, Literal

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cgw_peer.crypto.cipher import AesCbc
from cgw_peer.crypto.prf import get_integ
from cgw_peer.errors import ConfigError
from cgw_peer.esp.framing import OuterFramer
from cgw_peer.esp.reasons import EspDrop
from cgw_peer.esp.replay import DEFAULT_REPLAY_WINDOW, ReplayWindow
from cgw_peer.esp.suite import EspSuite
from emulator.actions import Address

__all__ = [
    "NH_DUMMY",
    "NH_IPV4",
    "NH_IPV6",
    "SEQ_MAX",
    "DecryptResult",
    "Direction",
    "EspSa",
]

NH_IPV4 = 4
"""Next header of an IPv4 packet in tunnel mode (IP-in-IP, IANA protocol 4)."""
NH_IPV6 = 41
"""Next header of an IPv6 packet in tunnel mode."""
NH_DUMMY = 59
"""Next header of a dummy packet ("no next header", RFC 4303 §2.6)."""
SEQ_MAX = 0xFFFFFFFF
"""The last 32-bit sequence number an SA may send (RFC 4303 §3.3.3)."""

Direction = Literal["in", "out"]
DecryptResult = tuple[bytes, None] | tuple[None, EspDrop]
"""``(inner packet, None)`` or ``(None, reason)``."""

_HDR = struct.Struct("!II")  # SPI, sequence number (RFC 4303 §2.1, §2.2)
_HDR_IV = struct.Struct("!IIQ")  # SPI, sequence number, GCM explicit IV
_PADS = [bytes(range(1, n + 1)) for n in range(256)]
"""``_PADS[n]`` is the default padding of length n: octets 1, 2, ..., n (RFC 4303 §2.4)."""
_TRAILERS: dict[int, list[bytes]] = {}
"""Per next header: ``padding | pad length | next header`` for every pad length (built on first use)."""
_NH_VERSION = {NH_IPV4: 4, NH_IPV6: 6}

_MIN_PLAIN = 2  # pad length + next header


def _trailers(nh: int) -> list[bytes]:
    t = _TRAILERS.get(nh)
    if t is None:
        t = _TRAILERS[nh] = [_PADS[n] + bytes((n, nh)) for n in range(256)]
    return t


_TAILS_BY_VERSION = {4: _trailers(NH_IPV4), 6: _trailers(NH_IPV6)}
"""Trailers by the inner packet's IP version (tunnel mode: IPv4 -> next header 4, IPv6 -> 41)."""


class EspSa:
    """One direction of an ESP SA: its SPI, transform, keys, sequence counter or replay window, and counters.

    ``direction`` is ``"out"`` (we send with ``spi``, :meth:`encrypt`) or ``"in"`` (the peer sends with it,
    :meth:`decrypt`). ``src``/``dst`` are the outer (address, UDP port) endpoints of the packets this SA carries
    (for an outbound SA: local -> remote); with ``encap`` the packets go in UDP (RFC 3948), otherwise as IP
    protocol 50. ``rng`` draws the CBC IVs (outbound CBC only). ``replay_window`` is the window size in packets
    (AWS ``ReplayWindowSize``, 64-2048, default 1024; 0 switches anti-replay off, RFC 4303 §3.4.3).

    Raises :class:`~cgw_peer.errors.ConfigError` when a key length does not fit the suite. Not thread-safe.
    """

    __slots__ = (
        "_aead",
        "_cbc",
        "_gcm",
        "_icv_len",
        "_mac",
        "_min_len",
        "_pad_align",
        "_rng",
        "_salt",
        "created_at",
        "direction",
        "drops",
        "dst",
        "enc_key",
        "encap",
        "framer",
        "integ_key",
        "last_used_at",
        "octets",
        "packets",
        "seq",
        "spi",
        "src",
        "suite",
        "window",
    )

    def __init__(
        self,
        spi: int,
        direction: Direction,
        suite: EspSuite,
        enc_key: bytes,
        integ_key: bytes = b"",
        *,
        rng: random.Random | None = None,
        replay_window: int = DEFAULT_REPLAY_WINDOW,
        src: Address | None = None,
        dst: Address | None = None,
        encap: bool = True,
        created_at: float = 0.0,
    ) -> None:
        if not 0 < spi <= 0xFFFFFFFF:
            raise ConfigError("spi", f"an ESP SPI is 1..0xffffffff (0 is reserved, RFC 4303 §2.1), got {spi:#x}")
        if direction not in ("in", "out"):
            raise ConfigError("direction", f"'in' or 'out', got {direction!r}")
        if len(enc_key) != suite.enc_key_len:
            raise ConfigError(
                "enc_key", f"{suite.name} needs {suite.enc_key_len} octets of encryption key, got {len(enc_key)}"
            )
        if len(integ_key) != suite.integ_key_len:
            raise ConfigError(
                "integ_key", f"{suite.name} needs {suite.integ_key_len} octets of integrity key, got {len(integ_key)}"
            )
        if replay_window < 0:
            raise ConfigError("replay_window", f"a window size in packets (0: off), got {replay_window}")
        if direction == "out" and not suite.aead and rng is None:
            raise ConfigError("rng", "an outbound AES-CBC SA needs an injected random.Random for its IVs")
        self.spi = spi
        self.direction: Direction = direction
        self.suite = suite
        self.enc_key = enc_key
        self.integ_key = integ_key
        self.src = src
        self.dst = dst
        self.encap = encap
        self.created_at = created_at
        self.framer: OuterFramer | None = None
        """Builds this SA's outer IP/UDP header (:meth:`encapsulate`); None when ``src``/``dst`` are not given."""
        if src is not None and dst is not None:
            self.framer = OuterFramer(src[0], dst[0], encap=encap, sport=src[1], dport=dst[1])
        self.seq = 0
        """Outbound: the last sequence number sent (0: none yet)."""
        self.window: ReplayWindow | None = (
            ReplayWindow(replay_window) if direction == "in" and replay_window > 0 else None
        )
        """Inbound: the anti-replay window (None when anti-replay is off, and for outbound SAs)."""
        self.packets = 0
        """Packets encrypted (outbound) or accepted (inbound)."""
        self.octets = 0
        """Inner-packet octets encrypted / accepted."""
        self.drops: dict[str, int] = {}
        """Packets dropped or refused, per :class:`EspDrop` reason."""
        self.last_used_at: float | None = None
        """``now`` of the last packet encrypted / accepted (liveness, idle timers)."""
        self._rng = rng
        self._aead = suite.aead
        self._icv_len = suite.icv_len
        self._pad_align = suite.align
        self._gcm: AESGCM | None = None
        self._cbc: AesCbc | None = None
        self._mac: Callable[[bytes], bytes] | None = None
        self._salt = b""
        if suite.aead:
            self._gcm = AESGCM(enc_key[:-4])
            self._salt = enc_key[-4:]
            # SPI, seq, IV, the 2-octet trailer, ICV.
            self._min_len = 8 + 8 + _MIN_PLAIN + 16
        else:
            assert suite.integ is not None
            self._cbc = AesCbc(enc_key)
            self._mac = get_integ(suite.integ).keyed(integ_key)
            # SPI, seq, IV, one cipher block, ICV.
            self._min_len = 8 + 16 + 16 + self._icv_len

    # -- construction from the IKE engines -------------------------------------------------------------------

    @classmethod
    def from_child_event(
        cls,
        fields: Mapping[str, Any],
        direction: Direction,
        local: Address,
        remote: Address,
        *,
        rng: random.Random | None = None,
        replay_window: int = DEFAULT_REPLAY_WINDOW,
        now: float = 0.0,
        encap: bool | None = None,
    ) -> EspSa:
        """One direction of the SA pair a ``child_sa_established`` event announced (``cgw_peer.events``).

        ``local``/``remote`` are this node's and the peer's outer (address, port): the IKE endpoints, with the
        NAT-mapped port when the peer is behind a NAT. ``"in"`` takes ``spi_in``/``enc_in``/``integ_in`` (the peer
        sends with them, remote -> local), ``"out"`` takes ``spi_out``/``enc_out``/``integ_out`` (local -> remote).
        The suite comes from ``proposal``, the encapsulation from ``encap`` (the ``encap`` argument, when given,
        overrides the field). A missing field raises :class:`~cgw_peer.errors.ConfigError` naming it."""
        want = ("proposal", f"spi_{direction}", f"enc_{direction}", f"integ_{direction}")
        missing = [k for k in (*want, *(() if encap is not None else ("encap",))) if k not in fields]
        if missing:
            raise ConfigError("child_sa_established", f"missing field(s) {', '.join(missing)} for an ESP SA")
        suite = EspSuite.parse(str(fields["proposal"]))
        if encap is None:
            encap = bool(fields["encap"])
        spi, enc, integ = (fields[k] for k in want[1:])
        src, dst = (remote, local) if direction == "in" else (local, remote)
        if not encap:
            src, dst = (src[0], 0), (dst[0], 0)
        return cls(
            int(str(spi), 16),
            direction,
            suite,
            bytes.fromhex(str(enc)),
            bytes.fromhex(str(integ or "")),
            rng=rng,
            replay_window=replay_window,
            src=src,
            dst=dst,
            encap=encap,
            created_at=now,
        )

    @classmethod
    def pair_from_child_event(
        cls,
        fields: Mapping[str, Any],
        local: Address,
        remote: Address,
        *,
        rng: random.Random,
        replay_window: int = DEFAULT_REPLAY_WINDOW,
        now: float = 0.0,
        encap: bool | None = None,
    ) -> tuple[EspSa, EspSa]:
        """``(inbound, outbound)``: both directions of a ``child_sa_established`` event (see
        :meth:`from_child_event`)."""
        sa_in = cls.from_child_event(fields, "in", local, remote, replay_window=replay_window, now=now, encap=encap)
        sa_out = cls.from_child_event(fields, "out", local, remote, rng=rng, now=now, encap=encap)
        return sa_in, sa_out

    # -- outbound ---------------------------------------------------------------------------------------------

    def encrypt(self, inner: bytes, now: float, next_header: int | None = None) -> bytes | None:
        """The ESP packet (SPI through ICV) carrying ``inner``, or None when the sequence numbers are used up.

        ``next_header`` defaults to what ``inner``'s IP version says (4 for IPv4, 41 for IPv6); pass 59 with
        any bytes for a dummy packet (RFC 4303 §2.6). The result goes in UDP or IP as :attr:`encap` says
        (:meth:`encapsulate` adds that header)."""
        if self.direction != "out":
            raise ValueError(f"SA {self.spi:#010x} is inbound; it cannot encrypt")
        seq = self.seq + 1
        if seq > SEQ_MAX:
            self.drops[EspDrop.SEQ_OVERFLOW] = self.drops.get(EspDrop.SEQ_OVERFLOW, 0) + 1
            return None
        if next_header is None:
            tails = _TAILS_BY_VERSION.get(inner[0] >> 4) if inner else None
            if tails is None:
                raise ValueError("inner packet is not IPv4 or IPv6; pass next_header explicitly")
        else:
            tails = _trailers(next_header)
        self.seq = seq
        self.packets += 1
        n = len(inner)
        self.octets += n
        self.last_used_at = now
        plain = inner + tails[-(n + 2) % self._pad_align]
        if self._aead:
            assert self._gcm is not None
            # SPI | seq | IV in one pack; the IV is the sequence number (a counter, RFC 4106 §3.1).
            head = _HDR_IV.pack(self.spi, seq, seq)
            return head + self._gcm.encrypt(self._salt + head[8:], plain, head[:8])
        assert self._cbc is not None and self._mac is not None and self._rng is not None
        iv = self._rng.getrandbits(128).to_bytes(16, "big")
        body = _HDR.pack(self.spi, seq) + iv + self._cbc.encrypt(iv, plain)
        return body + self._mac(body)

    def encapsulate(self, inner: bytes, now: float, ident: int | None = None) -> bytes | None:
        """:meth:`encrypt`, then the outer IP (and UDP) header from ``src`` to ``dst``: the whole IP packet.

        ``ident`` is the IPv4 identification; by default the low 16 bits of the sequence number."""
        esp = self.encrypt(inner, now)
        if esp is None:
            return None
        if self.framer is None:
            raise ValueError(f"SA {self.spi:#010x} has no src/dst addresses to frame with")
        return self.framer.frame(esp, self.seq if ident is None else ident)

    def build(self, payload: bytes, next_header: int, seq: int, iv: bytes) -> bytes:
        """The ESP packet for given fields, with default padding; no counters, no sequence checks.

        For published test vectors and crafted test packets; :meth:`encrypt` is the sending path."""
        plain = payload + _trailers(next_header)[-(len(payload) + 2) % self._pad_align]
        hdr = _HDR.pack(self.spi, seq)
        if self._aead:
            assert self._gcm is not None
            return hdr + iv + self._gcm.encrypt(self._salt + iv, plain, hdr)
        assert self._cbc is not None and self._mac is not None
        body = hdr + iv + self._cbc.encrypt(iv, plain)
        return body + self._mac(body)

    # -- inbound ----------------------------------------------------------------------------------------------

    def decrypt(self, esp: bytes, now: float) -> DecryptResult:
        """Check and open one ESP packet (SPI first): ``(inner IP packet, None)`` or ``(None, reason)``.

        The order is RFC 4303 §3.4: length, SPI, replay window, ICV, window update, padding, next header. A
        dummy packet (next header 59) that verifies is discarded as ``esp_dummy``."""
        n = len(esp)
        if n < self._min_len:
            return self._drop(EspDrop.TRUNCATED)
        spi, seq = _HDR.unpack_from(esp)
        if spi != self.spi or self.direction != "in":
            return self._drop(EspDrop.UNKNOWN_SPI)
        window = self.window
        if window is not None:
            bad = window.check(seq)
            if bad is not None:
                return self._drop(bad)
        if self._aead:
            assert self._gcm is not None
            try:
                # AES-GCM verifies the tag before it releases any plaintext (RFC 4106 §3; AAD = SPI | seq).
                plain = self._gcm.decrypt(self._salt + esp[8:16], esp[16:], esp[:8])
            except InvalidTag:
                return self._drop(EspDrop.BAD_ICV)
        else:
            assert self._cbc is not None and self._mac is not None
            end = n - self._icv_len
            if (end - 24) % 16:
                return self._drop(EspDrop.TRUNCATED)
            # RFC 4303 §3.4.4.1: the ICV first (over SPI .. ciphertext), in constant time, then decryption.
            if not compare_digest(self._mac(esp[:end]), esp[end:]):
                return self._drop(EspDrop.BAD_ICV)
            plain = self._cbc.decrypt(esp[8:24], esp[24:end])
        if window is not None:
            # Authentic: the window moves now, whatever the padding says (RFC 4303 §3.4.3).
            window.update(seq)
        pad = plain[-2]
        nh = plain[-1]
        cut = len(plain) - 2 - pad
        if cut < 0 or plain[cut:-2] != _PADS[pad]:
            return self._drop(EspDrop.BAD_PADDING)
        version = _NH_VERSION.get(nh)
        if version is None:
            return self._drop(EspDrop.DUMMY if nh == NH_DUMMY else EspDrop.BAD_NEXT_HEADER)
        inner = plain[:cut]
        if not inner or inner[0] >> 4 != version:
            return self._drop(EspDrop.BAD_NEXT_HEADER)
        self.packets += 1
        self.octets += cut
        self.last_used_at = now
        return inner, None

    def _drop(self, reason: EspDrop) -> tuple[None, EspDrop]:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        return None, reason

    # -- inspection -------------------------------------------------------------------------------------------

    @property
    def spi_hex(self) -> str:
        """The SPI as 8 hex digits (the form the events use)."""
        return f"{self.spi:08x}"

    @property
    def exhausted(self) -> bool:
        """Outbound: every sequence number has been sent; IKE must replace this SA (RFC 4303 §3.3.3)."""
        return self.seq >= SEQ_MAX

    def esp_sa_row(self) -> dict[str, str]:
        """This SA as one row of Wireshark's ``esp_sa`` table (:mod:`emulator.keytables` formats it).

        Keys: ``protocol`` (``IPv4``/``IPv6``), ``src``, ``dst`` (outer addresses; ``*`` when unknown), ``spi``
        (``0x`` + 8 hex digits), ``encr_alg``, ``encr_key`` (``0x`` hex; GCM: key then salt), ``auth_alg``,
        ``auth_key`` (``0x`` hex, empty for GCM)."""
        src = self.src[0] if self.src is not None else "*"
        dst = self.dst[0] if self.dst is not None else "*"
        v6 = ":" in src or ":" in dst
        return {
            "protocol": "IPv6" if v6 else "IPv4",
            "src": src,
            "dst": dst,
            "spi": f"0x{self.spi:08x}",
            "encr_alg": self.suite.ws_encr,
            "encr_key": "0x" + self.enc_key.hex(),
            "auth_alg": self.suite.ws_auth,
            "auth_key": "0x" + self.integ_key.hex() if self.integ_key else "",
        }

    def __repr__(self) -> str:
        return (
            f"EspSa(spi={self.spi:#010x}, {self.direction}, {self.suite.name}, "
            f"{'udp' if self.encap else 'ip'}, packets={self.packets}, drops={self.drops})"
        )
