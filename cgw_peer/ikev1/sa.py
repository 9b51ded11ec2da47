"""IKEv1 per-SA state: the ISAKMP SA (phase 1), a Quick Mode exchange in flight, an IPsec SA pair (phase 2).

Plain ``__slots__`` classes: one tunnel pair keeps two peers, each with one or two ISAKMP SAs and one or two
IPsec SA pairs, so per-object overhead matters (bench target: <= 20 KB per established tunnel pair). Negotiation
temporaries (DH key pairs, nonces, SAi_b, cached messages) are dropped once an exchange completes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from enum import IntEnum
from typing import Any

from cgw_peer.crypto.cipher import AesCbc
from cgw_peer.crypto.dh import DhKeyPair
from cgw_peer.crypto.prf import Prf
from cgw_peer.ikev1.proposals import P1Suite, P2Suite
from cgw_peer.lifecycle.retransmit import Retransmission
from emulator.actions import Address

ZERO_COOKIE = bytes(8)


class MmState(IntEnum):
    """Main Mode progress (RFC 2409 §5). ``I*``: we initiated; ``R*``: we respond."""

    I1 = 1
    """MM1 sent, waiting for MM2."""
    I2 = 2
    """MM3 sent, waiting for MM4."""
    I3 = 3
    """MM5 sent, waiting for MM6."""
    R1 = 11
    """MM2 sent, waiting for MM3."""
    R2 = 12
    """MM4 sent, waiting for MM5."""
    ESTABLISHED = 20


class IsakmpSa:
    """One ISAKMP SA, from MM1 to deletion."""

    __slots__ = (
        "answered_at",
        "answers",
        "block",
        "cipher",
        "dh",
        "dpd_ack_prefix",
        "dpd_ct_len",
        "dpd_dup",
        "dpd_expect",
        "dpd_hash_hdr",
        "dpd_hdr_prefix",
        "dpd_hl",
        "dpd_len",
        "dpd_mids",
        "dpd_notify_hdr",
        "dpd_pad",
        "dpd_recv",
        "dpd_req_prefix",
        "dpd_ring",
        "dpd_ring_i",
        "dpd_seq",
        "established_at",
        "expire_at",
        "gen",
        "gxi",
        "gxr",
        "hash_name",
        "icookie",
        "initial_contact",
        "initiator",
        "iv",
        "iv_hash",
        "ka",
        "last_in",
        "last_out",
        "last_out_kind",
        "last_p1_block",
        "lifetime",
        "local",
        "low_nonce",
        "mac_a",
        "nat_local",
        "nat_remote",
        "natt",
        "ni",
        "nr",
        "p2_mids",
        "peer_dpd",
        "peer_natt",
        "prf",
        "rcookie",
        "rekey",
        "rekey_at",
        "remote",
        "replaces_gen",
        "retrans",
        "sai_b",
        "skeyid",
        "skeyid_a",
        "skeyid_d",
        "state",
        "suite",
    )

    def __init__(self, icookie: bytes, rcookie: bytes, initiator: bool, local: Address, remote: Address) -> None:
        self.icookie = icookie
        self.rcookie = rcookie
        self.initiator = initiator
        self.local = local
        self.remote = remote
        self.state = MmState.I1 if initiator else MmState.R1
        self.rekey = False
        """True when this Main Mode replaces an established ISAKMP SA (our own rekey)."""
        self.initial_contact = False
        self.suite: P1Suite | None = None
        self.lifetime = 28800
        self.prf: Prf | None = None
        self.hash_name = "sha1"
        self.sai_b = b""
        self.dh: DhKeyPair | None = None
        self.gxi = b""
        self.gxr = b""
        self.ni = b""
        self.nr = b""
        self.skeyid = b""
        self.skeyid_d = b""
        self.skeyid_a = b""
        self.ka = b""
        self.cipher: AesCbc | None = None
        self.mac_a: Callable[[bytes], bytes] | None = None
        self.block = 16
        self.iv = b""
        self.last_p1_block = b""
        self.peer_dpd = False
        self.peer_natt = False
        self.natt = False
        """NAT-T in use: UDP-encapsulated ESP, port 4500 (NAT detected, or forced)."""
        self.nat_local = False
        self.nat_remote = False
        self.retrans: Retransmission | None = None
        self.last_in = b""
        """Last request we answered (responder): a bitwise retransmission gets ``last_out`` again."""
        self.last_out = b""
        self.last_out_kind = ""
        self.established_at = 0.0
        self.rekey_at: float | None = None
        self.expire_at: float | None = None
        """Half-open timeout before establishment, hard lifetime after."""
        self.dpd_seq = 0
        """Sequence number of our next R-U-THERE (RFC 3706 §6.1)."""
        self.dpd_expect: int | None = None
        """Sequence number of the R-U-THERE we wait an ACK for."""
        self.dpd_recv: int | None = None
        self.gen = 0
        """Rekey generation: 0 for a fresh ISAKMP SA, n+1 for one that replaced generation n."""
        self.replaces_gen = -1
        """The generation of the SA that was current when this Main Mode started (-1: none; a fresh SA)."""
        self.low_nonce = b""
        """min(Ni, Nr), kept on a rekeyed SA for the collision rule (the nonces are dropped after Main Mode)."""
        self.answers = 0
        """Cached answers resent to retransmitted Main Mode requests (``Behaviour.cached_answer_limit``)."""
        self.answered_at = float("-inf")
        self.dpd_mids: dict[bytes, None] | None = None
        """Recent message IDs of the peer's DPD messages (replay detection), created on first use."""
        self.dpd_ring: list[bytes] | None = None
        """The same IDs in arrival order (a ring: the oldest leaves as the newest comes in)."""
        self.dpd_ring_i = 0
        self.p2_mids: list[bytes] | None = None
        """Message IDs of every other phase-2 exchange on this SA (replay detection), created on first use."""
        """Last R-U-THERE sequence number received from the peer."""
        self.dpd_dup = 0
        # DPD fast path (set when the SA is established): constant parts of R-U-THERE / ACK messages.
        self.iv_hash: Callable[[bytes], Any] | None = None
        self.dpd_req_prefix = b""
        self.dpd_ack_prefix = b""
        self.dpd_hash_hdr = b""
        self.dpd_hdr_prefix = b""
        self.dpd_pad = b""
        self.dpd_ct_len = 0
        self.dpd_len = b""
        """The packed ISAKMP length field of a DPD message (constant per SA)."""
        self.dpd_hl = 0
        """Length of the HASH payload of a DPD message (4 + prf output)."""
        self.dpd_notify_hdr = b""
        """The first 10 bytes of a DPD notify payload: generic header, DOI, protocol, SPI size."""
        """Length of the HASH payload of a DPD message (4 + prf output)."""

    @property
    def established(self) -> bool:
        return self.state == MmState.ESTABLISHED

    def spi_hex(self) -> str:
        return (self.icookie + self.rcookie).hex()

    def forget_negotiation(self) -> None:
        """Drop what only the negotiation needed (keeps memory per tunnel small)."""
        self.sai_b = b""
        self.dh = None
        self.gxi = b""
        self.gxr = b""
        self.ni = b""
        self.nr = b""
        self.skeyid = b""
        self.retrans = None


class QmExchange:
    """One Quick Mode exchange in flight (RFC 2409 §5.5)."""

    __slots__ = (
        "answered_at",
        "answers",
        "dh",
        "done",
        "encap",
        "expire_at",
        "gqm",
        "id_ci",
        "id_cr",
        "initiator",
        "isakmp",
        "iv",
        "last_in",
        "lifetime",
        "mid",
        "ni",
        "nr",
        "offer",
        "rekey_of",
        "retrans",
        "spi_in",
        "spi_out",
        "suite",
    )

    def __init__(self, isakmp: IsakmpSa, mid: int, initiator: bool) -> None:
        self.isakmp = isakmp
        self.mid = mid
        self.initiator = initiator
        self.answers = 0
        """Cached answers resent to the peer's retransmissions (``Behaviour.cached_answer_limit``)."""
        self.answered_at = float("-inf")
        self.iv = b""
        self.ni = b""
        self.nr = b""
        self.dh: DhKeyPair | None = None
        self.gqm: bytes | None = None
        self.spi_in = b""
        self.spi_out = b""
        self.suite: P2Suite | None = None
        self.offer: Sequence[P2Suite] = ()
        self.lifetime = 3600
        self.encap = 1
        self.id_ci = b""
        self.id_cr = b""
        self.rekey_of: ChildSa | None = None
        self.retrans: Retransmission | None = None
        self.last_in = b""
        self.done = False
        """Initiator: QM3 sent (kept a while to answer a retransmitted QM2)."""
        self.expire_at = 0.0


class ChildSa:
    """An IPsec ESP SA pair (tunnel mode). Keys are derived and kept for the ESP data plane."""

    __slots__ = (
        "encap",
        "established_at",
        "expire_at",
        "keys_in",
        "keys_out",
        "lifetime",
        "rekey_at",
        "replaced",
        "spi_in",
        "spi_out",
        "suite",
    )

    def __init__(
        self,
        spi_in: bytes,
        spi_out: bytes,
        suite: P2Suite,
        keys_in: bytes,
        keys_out: bytes,
        established_at: float,
        lifetime: float,
        encap: int,
    ) -> None:
        self.spi_in = spi_in
        self.spi_out = spi_out
        self.suite = suite
        self.keys_in = keys_in
        """Inbound KEYMAT: encryption key, then integrity key (RFC 2409 §5.5)."""
        self.keys_out = keys_out
        self.established_at = established_at
        self.lifetime = lifetime
        self.expire_at = established_at + lifetime
        self.rekey_at: float | None = None
        self.replaced = False
        """A newer pair replaced this one (our rekey); it is deleted at ``expire_at``."""
        self.encap = encap
