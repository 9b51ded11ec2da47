"""The IKEv2 peer (RFC 7296): one side (CGW or AWS endpoint) of one tunnel, sans-I/O.

Theory of operation
-------------------
An :class:`IkeV2Peer` owns IKE SAs (:class:`IkeSa`, looked up by *our* SPI) and their Child SAs. Inputs are
API calls (``start``, ``initiate``, ``close``, ``rekey_child``, ``rekey_ike``, ``check_liveness``), datagrams
and timers; each returns ``list[Action]``.

Exchanges (§1.2-1.5): IKE_SA_INIT (with INVALID_KE_PAYLOAD retry and COOKIE, §1.2, §2.6), IKE_AUTH with
PSK (§2.15) creating the first Child SA with traffic selectors (§2.9), CREATE_CHILD_SA for Child rekeys
(REKEY_SA, optional PFS) and IKE rekeys (§1.3.2, §2.18), INFORMATIONAL for Delete and liveness (§1.4).

Message IDs and windows (§2.1-2.3): the window is 1 each way. ``IkeSa.my_mid`` is the next ID of a request
we send, ``IkeSa.peer_mid`` the next one we expect. At most one request of ours is outstanding; others wait
in ``IkeSa.pending``. A retransmitted request (same ID as the last one we answered, same bytes) gets the
cached response again, unprocessed (§2.1). Other IDs outside the window are dropped and counted.

Retransmission (§2.1, §2.4): only requests, on the shared schedule of :mod:`cgw_peer.lifecycle.retransmit`.
When the peer is dead, which DPD timeout action follows, restarts and the tunnel status are the shared
:class:`~cgw_peer.lifecycle.Lifecycle` (``Behaviour.liveness_model``: aws | strongswan | libreswan); what is
IKEv2-specific is that a probe is one empty INFORMATIONAL request, retransmitted (AWS: every ``dpd_interval``),
and that any request of ours on the established IKE SA is a probe too. Giving up on IKE_SA_INIT/IKE_AUTH is a
``negotiation_failed`` (retried with the restart backoff by the side that brings the tunnel up).

NAT-T (§2.23, RFC 3948): NAT_DETECTION_* notifies in IKE_SA_INIT; on a mismatch (or ``force_encap``) the
initiator floats to port 4500 from IKE_AUTH on. Whenever our port or the peer's configured port is not
500, every IKE datagram carries the 4-octet zero non-ESP marker (``real-peers.md`` §1.7); a source port a
NAT rewrote does not count. A single 0xFF octet is a NAT keepalive: counted, never a sign of life; the side
whose own address is translated (its NAT_DETECTION_DESTINATION_IP did not match) sends one every
``Behaviour.nat_keepalive`` seconds (RFC 3948 §2.3; forced encapsulation alone sends none, as charon).

Collisions (§2.8.1, §2.25): a simultaneous Child or IKE rekey leaves two new SAs; the one holding the lowest
of the four nonces is deleted by the side that created it (for IKE, the creator of the survivor deletes the
old SA). A Delete for a Child SA we are rekeying is answered and the rekey completes (strongSwan #1458:
"CHILD_REKEY collision with CHILD_DELETE"). Two IKE SAs set up at once by both sides (simultaneous
initiation) are resolved by the same nonce rule. AWS log lines (``ike-dpd.md`` §1.5) are ``aws_log`` events,
emitted by the AWS role only.

Settings (all named, with documented defaults): ``Behaviour.ikev2_require_cookie`` (off), ``rekey_initiator``,
``nat_keepalive``, and through the lifecycle every liveness, restart and retransmission setting;
``TunnelOptions`` for algorithms, lifetimes, margin/fuzz, DPDTimeoutSeconds/Action and StartupAction.
Lifetimes (§2.8, not negotiated): each side rekeys by its own schedule and, when nobody rekeyed in time,
deletes a Child SA at Phase2LifetimeSeconds and the IKE SA at Phase1LifetimeSeconds (tunnel DOWN, reason
``expired``; nothing re-initiates on its own).

Not settable (fixed here): window size 1 (no SET_WINDOW_SIZE), one Child SA per IKE SA (an extra
CREATE_CHILD_SA gets NO_ADDITIONAL_SAS, as AWS allows one SA pair), 32-octet nonces, the IKE rekey reuses
the IKE SA's DH group, a TEMPORARY_FAILURE answer to a Child rekey is retried after 2 s.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import random
import struct
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from cgw_peer.config import DpdTimeoutAction, PeerConfig, Role, TrafficSelector
from cgw_peer.crypto.dh import DhKeyPair, get_group
from cgw_peer.crypto.keymat_v2 import child_keymat, derive_ike_keys, psk_auth, rekey_skeyseed, skeyseed
from cgw_peer.errors import ConfigError, DecodeError
from cgw_peer.events import (
    child_sa_established,
    negotiation_failed,
    rekey_collision,
    rekey_done,
    request_retransmitted,
    response_retransmitted,
)
from cgw_peer.ikev2 import codec
from cgw_peer.ikev2.codec import DeletePayload, Header, NotifyPayload, Proposal, RawPayload, Ts
from cgw_peer.ikev2.constants import (
    ERROR_NOTIFY_MAX,
    NAT_KEEPALIVE,
    NON_ESP_MARKER,
    AuthMethod,
    Exchange,
    Flag,
    IdType,
    Notify,
    Payload,
    Protocol,
)
from cgw_peer.ikev2.proposals import (
    Offer,
    esp_offer,
    ike_offer,
    select_child,
    select_ike,
    suite_from_response,
    suite_sa_payload,
)
from cgw_peer.ikev2.suite import ChildSuite, IkeSuite, SkKeys, gcm_iv
from cgw_peer.lifecycle import DEAD, PROBE, Lifecycle, Liveness, PhaseState, Retransmission, TunnelStatus, rekey_delay
from cgw_peer.lifecycle.retransmit import RetransmitPolicy, may_resend
from cgw_peer.lifecycle.status import (
    LOG_CHILD_REKEY_COLLISION,
    LOG_DELETE_IKE_SA_FROM_CGW,
    LOG_REDUNDANT_CHILD_SA,
    LOG_SENDING_CREATE_CHILD_SA,
)
from cgw_peer.natt import IKE_PORT, NATT_PORT, Keepalive
from cgw_peer.satable import SaTable
from emulator.actions import Action, Address, Event, Transmit

NONCE_LEN = 32
HEADER_LEN = codec.HEADER_LEN
_HEADER = codec.HEADER
_GENERIC = codec.GENERIC
_ZERO_SPI = bytes(8)
_INITIAL_CONTACT = NotifyPayload(Notify.INITIAL_CONTACT).encode()
# Notify bodies without SPI are their 4-octet header followed by the data (RFC 7296 §3.10).
_NAT_SRC_NOTIFY = NotifyPayload(Notify.NAT_DETECTION_SOURCE_IP).encode()
_NAT_DST_NOTIFY = NotifyPayload(Notify.NAT_DETECTION_DESTINATION_IP).encode()
NAT_T_PORT = NATT_PORT
INF = float("inf")
HALF_OPEN_TIMEOUT = 30.0
"""Seconds a responder keeps an IKE SA whose IKE_AUTH never came (strongSwan ``half_open_timeout``, 30 s)."""
REKEYED_LINGER = 30.0
"""Seconds a rekeyed IKE SA is kept waiting for the peer's Delete before it is dropped silently."""


class SaState(Enum):
    INIT_SENT = "init_sent"
    """Initiator: IKE_SA_INIT request outstanding."""
    AUTH_SENT = "auth_sent"
    """Initiator: IKE_AUTH request outstanding."""
    INIT_DONE = "init_done"
    """Responder: IKE_SA_INIT answered, waiting for IKE_AUTH."""
    ESTABLISHED = "established"
    REKEYED = "rekeyed"
    """Replaced by a rekey; waiting for its Delete exchange."""
    DELETING = "deleting"
    """Our Delete for it is outstanding."""
    DEAD = "dead"


# Plain values of the enum members used on the hot paths. Reading a member off an Enum class costs about 0.2 us in
# CPython 3.11 (the Python metaclass defeats the attribute cache), several times a module global. IntEnum members
# become plain ints here (same comparisons, same wire encoding); the other members stay the same objects (``is``).
_PL_AUTH = int(Payload.AUTH)
_PL_DELETE = int(Payload.DELETE)
_PL_IDI = int(Payload.IDI)
_PL_IDR = int(Payload.IDR)
_PL_KE = int(Payload.KE)
_PL_NONCE = int(Payload.NONCE)
_PL_NOTIFY = int(Payload.NOTIFY)
_PL_SA = int(Payload.SA)
_PL_SK = int(Payload.SK)
_PL_TSI = int(Payload.TSI)
_PL_TSR = int(Payload.TSR)
_EX_CREATE_CHILD_SA = int(Exchange.CREATE_CHILD_SA)
_EX_IKE_AUTH = int(Exchange.IKE_AUTH)
_EX_IKE_SA_INIT = int(Exchange.IKE_SA_INIT)
_EX_INFORMATIONAL = int(Exchange.INFORMATIONAL)
_FL_INITIATOR = int(Flag.INITIATOR)
_FL_RESPONSE = int(Flag.RESPONSE)
_PR_ESP = int(Protocol.ESP)
_PR_IKE = int(Protocol.IKE)
_NT_AUTHENTICATION_FAILED = int(Notify.AUTHENTICATION_FAILED)
_NT_CHILD_SA_NOT_FOUND = int(Notify.CHILD_SA_NOT_FOUND)
_NT_COOKIE = int(Notify.COOKIE)
_NT_INITIAL_CONTACT = int(Notify.INITIAL_CONTACT)
_NT_INVALID_KE_PAYLOAD = int(Notify.INVALID_KE_PAYLOAD)
_NT_NAT_DETECTION_DESTINATION_IP = int(Notify.NAT_DETECTION_DESTINATION_IP)
_NT_NAT_DETECTION_SOURCE_IP = int(Notify.NAT_DETECTION_SOURCE_IP)
_NT_NO_ADDITIONAL_SAS = int(Notify.NO_ADDITIONAL_SAS)
_NT_NO_PROPOSAL_CHOSEN = int(Notify.NO_PROPOSAL_CHOSEN)
_NT_REKEY_SA = int(Notify.REKEY_SA)
_NT_TEMPORARY_FAILURE = int(Notify.TEMPORARY_FAILURE)
_NT_TS_UNACCEPTABLE = int(Notify.TS_UNACCEPTABLE)
_AM_PSK = int(AuthMethod.PSK)
_ST_AUTH_SENT = SaState.AUTH_SENT
_ST_DEAD = SaState.DEAD
_ST_DELETING = SaState.DELETING
_ST_ESTABLISHED = SaState.ESTABLISHED
_ST_INIT_DONE = SaState.INIT_DONE
_ST_INIT_SENT = SaState.INIT_SENT
_ST_REKEYED = SaState.REKEYED
_ROLE_AWS = Role.AWS
_PS_DOWN = PhaseState.DOWN
_PS_ESTABLISHED = PhaseState.ESTABLISHED
_PS_NEGOTIATING = PhaseState.NEGOTIATING
_PS_REKEYING = PhaseState.REKEYING
_EXCHANGE_NAMES = {
    _EX_IKE_SA_INIT: "ike_sa_init",
    _EX_IKE_AUTH: "ike_auth",
    _EX_CREATE_CHILD_SA: "create_child_sa",
    _EX_INFORMATIONAL: "informational",
}


@dataclass(eq=False, slots=True)
class ChildSa:
    """One ESP SA pair. ``spi_in`` is ours (the peer sends with it); ``spi_out`` the peer's."""

    spi_in: bytes
    spi_out: bytes
    suite: ChildSuite
    ts_local: list[Ts]
    ts_remote: list[Ts]
    ni: bytes
    nr: bytes
    created_by_us: bool
    established_at: float
    keys: dict[str, str] = field(default_factory=dict)
    rekey_at: float | None = None
    rekeying: bool = False
    deleted: bool = False
    """Deleted by the peer while our rekey of it was outstanding (collision with CHILD_DELETE)."""
    deleting: bool = False
    """Our Delete for it is queued or outstanding."""
    replaced_by: ChildSa | None = None
    expire_at: float | None = None
    """Hard lifetime end (established + Phase2LifetimeSeconds): the SA is deleted then if nobody rekeyed it."""


Handler = Callable[["IkeSa", "Message", float], list[Action]]


class Request(Retransmission):
    """Our outstanding request (its datagram and retransmission schedule are the :class:`Retransmission`)."""

    __slots__ = ("exchange", "handler", "liveness", "mid")

    def __init__(
        self,
        mid: int,
        exchange: int,
        kind: str,
        datagram: bytes,
        handler: Handler,
        policy: RetransmitPolicy,
        now: float,
        rng: random.Random,
        liveness: bool = False,
    ) -> None:
        # Retransmission.__init__, inlined: one call less per request (the liveness path sends one per check).
        self.data = datagram
        self.kind = kind
        self.policy = policy
        self.retransmits = 0
        self.mid = mid
        self.exchange = exchange
        self.handler = handler
        self.liveness = liveness
        policy.start(self, now, rng)


@dataclass(eq=False, slots=True)
class Pending:
    """A request waiting for the window (built when it goes out: message ID and IV are fresh then)."""

    exchange: int
    kind: str
    build: Callable[[IkeSa], list[tuple[int, bytes]]]
    handler: Handler
    liveness: bool = False
    event: Event | None = None
    """Reported when the request actually goes out (e.g. ``delete_sent``)."""


@dataclass(eq=False, slots=True)
class Message:
    """A received, authenticated (or plain IKE_SA_INIT) message."""

    header: Header
    payloads: list[RawPayload]
    raw: bytes
    _notifies: list[NotifyPayload] | None = None

    def first(self, ptype: int) -> bytes | None:
        for p in self.payloads:
            if p.ptype == ptype:
                return p.body
        return None

    def all(self, ptype: int) -> list[bytes]:
        return [p.body for p in self.payloads if p.ptype == ptype]

    def notifies(self) -> list[NotifyPayload]:
        if self._notifies is None:
            self._notifies = [codec.parse_notify(p.body) for p in self.payloads if p.ptype == _PL_NOTIFY]
        return self._notifies

    def notify(self, ntype: int) -> NotifyPayload | None:
        for n in self.notifies():
            if n.ntype == ntype:
                return n
        return None

    def error(self) -> NotifyPayload | None:
        for n in self.notifies():
            if n.ntype <= ERROR_NOTIFY_MAX:
                return n
        return None


@dataclass(eq=False, slots=True)
class IkeSa:
    """One IKE SA and its Child SAs."""

    initiator: bool
    """We are the original initiator of this IKE SA (we set the I flag, use SK_ei/SK_ai to send)."""
    spi_i: bytes
    spi_r: bytes
    state: SaState
    local: Address
    remote: Address
    created_at: float
    suite: IkeSuite | None = None
    ni: bytes = b""
    nr: bytes = b""
    dh: DhKeyPair | None = None
    ke_group: int = 0
    cookie: bytes = b""
    init_request: bytes = b""
    init_response: bytes = b""
    sk_d: bytes = b""
    sk_pi: bytes = b""
    sk_pr: bytes = b""
    sk: SkKeys | None = None
    keys_event: dict[str, object] = field(default_factory=dict)
    my_mid: int = 0
    peer_mid: int = 0
    outstanding: Request | None = None
    pending: deque[Pending] = field(default_factory=deque)
    last_request: bytes = b""
    last_response: bytes = b""
    last_response_kind: str = ""
    """The ``kind`` of the cached response: a resend keeps it, so fault plans see the same label."""
    children: list[ChildSa] = field(default_factory=list)
    established_at: float | None = None
    rekey_at: float | None = None
    rekeying: bool = False
    nat_detected: bool = False
    nat_local: bool = False
    """We are behind a NAT (the peer's NAT_DETECTION_DESTINATION_IP does not match our address): we send the
    RFC 3948 §2.3 keepalives."""
    gcm_counter: int = 0
    child_spi: bytes = b""
    """Initiator: the SPI we offered for the first Child SA in IKE_AUTH."""
    initial_contact: bool = False
    expire_at: float | None = None
    """A half-open (INIT_DONE) or replaced (REKEYED) SA is dropped at this instant if nothing is outstanding."""
    lifetime_end: float | None = None
    """Hard lifetime end of an established IKE SA (established + Phase1LifetimeSeconds): deleted then."""
    rekeyed_into: IkeSa | None = None
    """The IKE SA that replaced this one in a rekey (the peer's, in a simultaneous rekey)."""
    answers: int = 0
    """Cached answers resent to the peer's retransmission of its last request (``cached_answer_limit``)."""
    answered_at: float = -INF

    @property
    def local_spi(self) -> bytes:
        return self.spi_i if self.initiator else self.spi_r

    @property
    def remote_spi(self) -> bytes:
        return self.spi_r if self.initiator else self.spi_i


class IkeV2Peer:
    """One side of one IKEv2 tunnel (see the module docstring). Never raises on wire input."""

    def __init__(self, config: PeerConfig, *, local: Address, remote: Address, rng: random.Random) -> None:
        self.config = config
        self.local = local
        self.remote = remote
        self.rng = rng
        self.counters: dict[str, int] = {}
        self._life = Lifecycle(config, rng, 2)
        self._live = self._life.liveness
        self._keepalive = Keepalive(config.behaviour.nat_keepalive)
        self._sas: SaTable[IkeSa] = SaTable(_spis)
        """IKE SAs by our SPI; half-open responder ones kept apart (cgw_peer.satable)."""
        self._init_by_spi_i: dict[bytes, IkeSa] = {}
        self._ike_offer, self._esp_offer = _offers(config)
        self._cookie_secret = rng.randbytes(32)
        self._liveness_pending: Pending | None = None
        b = config.behaviour
        if b.dpd_delay <= 0 and b.dpd_enabled:
            raise ConfigError("behaviour.dpd_delay", f"must be > 0 when dpd_enabled, got {b.dpd_delay}")

    # ------------------------------------------------------------------------------------------ public API

    @property
    def status(self) -> TunnelStatus:
        return self._life.status

    @property
    def liveness(self) -> Liveness:
        """The liveness monitor (for tests and tools)."""
        return self._live

    @property
    def lifecycle(self) -> Lifecycle:
        return self._life

    def ike_spis(self) -> set[bytes]:
        """Both SPIs of every live IKE SA (8 octets each; zero SPIs left out)."""
        return self._sas.spis()

    def spi_changes(self) -> tuple[list[bytes], list[bytes]]:
        """SPIs (added, removed) since the last call: the UDP driver's demultiplexing table follows these
        instead of rebuilding :meth:`ike_spis` after every datagram."""
        return self._sas.spi_changes()

    def verify_indexes(self) -> None:
        """Recompute the SA indexes by scanning and compare (for tests; AssertionError on a mismatch)."""
        self._sas.check()

    def start(self, now: float) -> list[Action]:
        """StartupAction: ``start`` (or the CGW role) initiates, ``add`` waits for the peer."""
        if self.config.initiates_at_startup:
            return self.initiate(now)
        return []

    def initiate(self, now: float) -> list[Action]:
        """Start IKE_SA_INIT now (no-op while an IKE SA is up or being set up)."""
        self._life.reopen()
        if any(sa.state is not _ST_DEAD for sa in self._sas.own.values()):
            return []
        self._life.restart.cancel()
        return self._initiate(now)

    def close(self, now: float) -> list[Action]:
        """Delete every IKE SA (an INFORMATIONAL Delete each, not waited for), tunnel DOWN, no restart."""
        out: list[Action] = []
        self._life.close()
        self._life.state.cause("closed")
        self._keepalive.stop()
        for sa in list(self._sas.values()):
            if sa.state in (_ST_ESTABLISHED, _ST_REKEYED) and sa.sk is not None:
                # Send a Delete now without waiting for the window: we are going away (RFC 7296 §1.4.1 allows
                # an IKE SA Delete to be sent and the SA closed without waiting long).
                mid = sa.my_mid
                payloads = [(_PL_DELETE, DeletePayload(_PR_IKE).encode())]
                raw = self._encrypt(sa, _EX_INFORMATIONAL, mid, False, payloads)
                out.append(self._tx(sa, raw, "delete_request"))
                out.append(Event("delete_sent", {"protocol": "ike", "spi": sa.local_spi.hex(), "message_id": mid}))
            self._drop_sa(sa)
        out += self._update_status(now, "closed")
        return out

    def note_esp_inbound(self, now: float) -> None:
        """Inbound ESP for this tunnel: liveness, per ``Behaviour.liveness_traffic``."""
        cur = self._current()
        if cur is not None and self._life.esp_counts(cur.nat_detected):
            self._live.on_inbound(now, cur.outstanding is not None)

    def rekey_child(self, now: float) -> list[Action]:
        """Rekey the current Child SA now (CREATE_CHILD_SA with REKEY_SA; PFS if configured)."""
        sa = self._current()
        if sa is None:
            return []
        child = self._live_child(sa)
        if child is None or child.rekeying:
            return []
        return self._start_child_rekey(sa, child, now)

    def rekey_ike(self, now: float) -> list[Action]:
        """Rekey the current IKE SA now (CREATE_CHILD_SA with a new IKE SA proposal and KE)."""
        sa = self._current()
        if sa is None or sa.rekeying:
            return []
        return self._start_ike_rekey(sa, now)

    def delete_child(self, now: float, spi_in: bytes | None = None) -> list[Action]:
        """Delete the current Child SA, or the one whose inbound SPI is ``spi_in`` (INFORMATIONAL Delete of
        our inbound SPI)."""
        sa = self._current()
        if sa is None:
            return []
        child = self._live_child(sa) if spi_in is None else next((c for c in sa.children if c.spi_in == spi_in), None)
        if child is None:
            return []
        return self._queue(sa, self._delete_child_request(sa, child), now)

    def check_liveness(self, now: float) -> list[Action]:
        """Send a liveness check now (an empty INFORMATIONAL request), whatever the idle time."""
        sa = self._current()
        if sa is None:
            return []
        return self._queue(sa, self._liveness_request(), now)

    def child_sas(self) -> list[ChildSa]:
        """The Child SAs of the current IKE SA."""
        sa = self._current()
        return [] if sa is None else list(sa.children)

    def ike_sa(self) -> IkeSa | None:
        """The current established IKE SA (for tests and tools)."""
        return self._current()

    # --------------------------------------------------------------------------------------------- timers

    def next_deadline(self) -> float | None:
        t = INF
        at = self._life.restart.at
        if at is not None:
            t = at
        at = self._keepalive.at
        if at is not None and at < t:
            t = at
        live = self._live
        if live.active:
            at = live.deadline()
            if at is not None and at < t:
                t = at
        for sa in self._sas.own.values():
            at = self._sa_deadline(sa)
            if at < t:
                t = at
        if self._sas.half:  # half-open responder SAs expire in arrival order: the first is the next
            first = self._sas.first_half()
            if first is not None and first.expire_at is not None and first.expire_at < t:
                t = first.expire_at
        return None if t == INF else t

    def _sa_deadline(self, sa: IkeSa) -> float:
        t = INF if sa.expire_at is None else sa.expire_at
        req = sa.outstanding
        if req is not None:
            t = req.next_at if req.next_at < req.give_up_at else req.give_up_at
        if sa.state is _ST_ESTABLISHED:
            if sa.lifetime_end is not None:
                t = min(t, sa.lifetime_end)
            for c in sa.children:
                if c.expire_at is not None and not c.deleting and not c.deleted:
                    t = min(t, c.expire_at)
            if req is None and self.config.behaviour.rekey_initiator:
                if sa.rekey_at is not None and not sa.rekeying:
                    t = min(t, sa.rekey_at)
                for c in sa.children:
                    if c.rekey_at is not None and not c.rekeying and c.replaced_by is None:
                        t = min(t, c.rekey_at)
        return t

    def handle_timer(self, now: float) -> list[Action]:
        out: list[Action] = []
        if self._keepalive.at is not None and self._keepalive.due(now):
            cur = self._current()
            if cur is not None and cur.nat_local:
                # RFC 3948 §2.3 (RFC 7296 §2.23): one 0xFF octet to the peer's NAT-T port keeps our mapping alive.
                out.append(Transmit(NAT_KEEPALIVE, cur.local, cur.remote, "nat_keepalive"))
            else:
                self._keepalive.stop()
        life = self._life
        if (
            life.restart.at is not None
            and life.restart.due(now)
            and not any(s.state is not _ST_DEAD for s in self._sas.own.values())
        ):
            out += self._initiate(now)
        live = self._live
        # Dead first: at t0 + DPDTimeout AWS declares the peer dead instead of sending another copy.
        if live.active and live.poll(now) == DEAD:
            out += self._peer_dead(now)
        sas = self._sas
        while sas.half:  # half-open responder SAs, oldest first (IKE_AUTH never came)
            first = sas.first_half()
            if first is None or first.expire_at is None or now < first.expire_at:
                break
            self._drop_sa(first)
            self._count("half_open_expired")
        for sa in list(sas.own.values()):
            if sa.local_spi not in sas.own:
                continue
            if sa.state is _ST_ESTABLISHED:
                out += self._hard_expiry(sa, now)
                if sa.state is not _ST_ESTABLISHED:
                    continue
            req = sa.outstanding
            if req is not None:
                if now >= req.give_up_at:
                    out += self._give_up(sa, req, now)
                elif now >= req.next_at:
                    out += self._retransmit(sa, req, now)
                continue
            if sa.state is not _ST_ESTABLISHED:
                if sa.expire_at is not None and now >= sa.expire_at:
                    self._drop_sa(sa)
                    self._count(
                        "half_open_expired" if sa.init_response and not sa.established_at else "rekeyed_expired"
                    )
                    out += self._update_status(now, "expired")
                continue
            if sa.pending:
                out += self._send_next(sa, now)
                continue
            if self.config.behaviour.rekey_initiator:
                if sa.rekey_at is not None and not sa.rekeying and now >= sa.rekey_at:
                    out += self._start_ike_rekey(sa, now)
                    continue
                child = next(
                    (
                        c
                        for c in sa.children
                        if c.rekey_at is not None and not c.rekeying and c.replaced_by is None and now >= c.rekey_at
                    ),
                    None,
                )
                if child is not None:
                    out += self._start_child_rekey(sa, child, now)
                    continue
        if live.active and live.poll(now) == PROBE:
            cur = self._current()
            # (life.may_probe(rekeying), inlined: this runs for every liveness check)
            if (
                cur is None
                or cur.outstanding is not None
                or cur.pending
                or (cur.rekeying and not self.config.behaviour.dpd_during_rekey)
            ):
                # RFC 7296 §2.3, a window of one: no liveness check while another exchange is in flight.
                live.on_probe_skipped(now)
            else:
                out += self._queue(cur, self._liveness_request(), now)
        return out

    def _hard_expiry(self, sa: IkeSa, now: float) -> list[Action]:
        """Lifetimes end (RFC 7296 §2.8: each side enforces its own; nothing is negotiated): an IKE SA past
        Phase1LifetimeSeconds is deleted (its Child SAs with it), a Child SA past Phase2LifetimeSeconds that
        nobody rekeyed is unusable at once and a Delete for it is queued. The tunnel then goes DOWN with
        reason ``expired``; nothing re-initiates on its own (as the IKEv1 engine)."""
        out: list[Action] = []
        if sa.lifetime_end is not None and now >= sa.lifetime_end:
            sa.lifetime_end = None
            self._count("ike:expired")
            out.append(Event("ike_sa_expired", {"spi_i": sa.spi_i.hex(), "spi_r": sa.spi_r.hex()}))
            out += self._delete_ike(sa, now)
            return out + self._update_status(now, "expired")
        for c in sa.children:
            if c.expire_at is not None and now >= c.expire_at and not c.deleting and not c.deleted:
                c.expire_at = c.rekey_at = None
                c.deleted = True  # unusable from now on; removed when the peer answers our Delete
                self._count("child:expired")
                out.append(Event("child_sa_expired", {"spi_in": c.spi_in.hex(), "spi_out": c.spi_out.hex()}))
                out += self._queue(sa, self._delete_child_request(sa, c), now)
        if out:
            out += self._update_status(now, "expired")
        return out

    # ------------------------------------------------------------------------------------- datagram input

    def receive_datagram(self, data: bytes, src: Address, dst: Address, now: float) -> list[Action]:
        try:
            return self._receive(data, src, dst, now)
        except DecodeError as e:
            return self._drop(e.reason, e.detail)
        except (ValueError, KeyError, IndexError, struct.error) as e:
            # Defence in depth: content that passed the codec but that a handler could not use (an
            # authenticated peer sending nonsense). Counted and dropped like any other bad input.
            return self._drop("invalid_content", f"{type(e).__name__}: {e}")

    def _drop(self, reason: str, detail: str = "") -> list[Action]:
        key = f"dropped:{reason}"
        self.counters[key] = self.counters.get(key, 0) + 1
        fields: dict[str, object] = {"reason": reason}
        if detail:
            fields["detail"] = detail
        return [Event("datagram_dropped", fields)]

    def _count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    def _receive(self, data: bytes, src: Address, dst: Address, now: float) -> list[Action]:
        if self._needs_marker(dst[1]):
            # RFC 3948 §2.2/§2.3: on an encapsulation port IKE carries a zero marker; 0xFF is a keepalive. The
            # port decides, ours or the one the peer is configured on, never a source port a NAT rewrote
            # (a NAT maps the peer's 500 to anything; the peer still sends unmarked from 500).
            if data == NAT_KEEPALIVE:
                self._count("nat_keepalive_received")
                return []
            if len(data) < 4 or data[:4] != NON_ESP_MARKER:
                raise DecodeError("not_ike", "no non-ESP marker on an encapsulation port (ESP?)")
            data = data[4:]
        # The header (codec.parse_header, inlined: this runs for every datagram).
        if len(data) < HEADER_LEN:
            raise DecodeError("short_header", f"{len(data)} octets")
        spi_i, spi_r, np, ver, exchange, flags, mid, length = _HEADER.unpack_from(data)
        if ver >> 4 != 2:
            raise DecodeError("bad_version", f"0x{ver:02x}")
        if length != len(data):
            raise DecodeError("bad_length", f"header says {length}, datagram has {len(data)}")
        hdr = Header(spi_i, spi_r, np, exchange, flags, mid, length)
        if exchange == _EX_IKE_SA_INIT:
            if flags & _FL_RESPONSE:
                sa = self._sas.own.get(spi_i)  # our own IKE_SA_INIT: never a half-open responder SA
                if sa is None or not sa.initiator or sa.state is not _ST_INIT_SENT:
                    raise DecodeError("unexpected_ike_sa_init_response")
                return self._on_init_response(sa, hdr, data, src, dst, now)
            if spi_r != _ZERO_SPI or mid != 0:
                raise DecodeError("bad_ike_sa_init_request", "SPIr or message ID not zero")
            return self._on_init_request(hdr, data, src, dst, now)
        from_initiator = bool(flags & _FL_INITIATOR)
        local_spi, remote_spi = (spi_r, spi_i) if from_initiator else (spi_i, spi_r)
        sa = self._sas.own.get(local_spi)
        if sa is None:
            sa = self._sas.half.get(local_spi)  # IKE_AUTH to a half-open responder SA
        if sa is None:
            raise DecodeError("unknown_spi", local_spi.hex())
        if from_initiator == sa.initiator or remote_spi != (sa.spi_i if from_initiator else sa.spi_r):
            raise DecodeError("wrong_spi")
        if sa.sk is None:
            raise DecodeError("no_keys_yet")
        if flags & _FL_RESPONSE:
            req = sa.outstanding
            if req is None or mid != req.mid:
                raise DecodeError("unexpected_response", f"message ID {mid}")
            if exchange != req.exchange:
                raise DecodeError("wrong_exchange_type", f"{exchange}")
            msg = self._decrypt(sa, hdr, data)
            sa.outstanding = None
            self._live.on_inbound(now)  # authenticated, and it answers our only outstanding request
            out = req.handler(sa, msg, now)
            if sa.pending and sa.outstanding is None and sa.state is not _ST_DEAD:
                out += self._send_next(sa, now)
            return out
        # A request.
        peer_mid = sa.peer_mid
        if mid == peer_mid - 1 and sa.last_response and data == sa.last_request:
            # RFC 7296 §2.1: a retransmitted request gets the same response again, unprocessed. It is bitwise what
            # a replay would be, so it proves nothing (§2.4: only fresh protected messages do) and is answered
            # within limits (cached_answer_*), so a replay storm cannot make us an amplifier.
            b = self.config.behaviour
            if not may_resend(sa, now, b.cached_answer_interval, b.cached_answer_limit):
                return self._drop("resend_limited", f"message ID {mid}")
            self._count("response_retransmitted")
            return [
                self._tx(sa, sa.last_response, sa.last_response_kind),
                response_retransmitted(kind=sa.last_response_kind, message_id=mid),
            ]
        if mid != peer_mid:
            reason = "old_message_id" if mid < peer_mid else "out_of_window"
            raise DecodeError(reason, f"got {mid}, expected {peer_mid}")
        name = _REQUEST_HANDLERS.get(exchange)
        if name is None:
            raise DecodeError("unknown_exchange", str(exchange))
        # Looked up by name per request: bound methods kept on the peer would make every peer a reference cycle
        # that only the cyclic garbage collector can free.
        handler: Callable[[IkeSa, Message, float], list[Action]] = getattr(self, name)
        state = sa.state
        if (exchange == _EX_IKE_AUTH) != (state is _ST_INIT_DONE):
            raise DecodeError("unexpected_ike_auth" if state is not _ST_INIT_DONE else "not_authenticated_yet")
        msg = self._decrypt(sa, hdr, data)
        if state is _ST_INIT_DONE or (state is _ST_ESTABLISHED and src != sa.remote):
            # The responder learns the initiator's (possibly floated) address from IKE_AUTH, and follows a
            # NAT mapping change on any authenticated request (§2.23).
            sa.remote, sa.local = src, dst
        saved = (peer_mid, sa.last_request, sa.last_response, sa.last_response_kind)
        sa.peer_mid = peer_mid + 1
        sa.last_request = data
        sa.answers = 0
        sa.answered_at = -INF
        self._live.on_inbound(now, sa.outstanding is not None)
        try:
            out = handler(sa, msg, now)
        except DecodeError:
            # Authenticated but malformed inside: drop it as if never received (the window does not move, and
            # a retransmission is not answered with a stale cached response).
            sa.peer_mid, sa.last_request, sa.last_response, sa.last_response_kind = saved
            raise
        if sa.pending and sa.outstanding is None and sa.local_spi in self._sas:
            out += self._send_next(sa, now)
        return out

    def _alive(self, sa: IkeSa, now: float) -> None:
        """An authenticated message arrived on ``sa`` (liveness, cgw_peer.lifecycle)."""
        self._live.on_inbound(now, sa.outstanding is not None)

    def _decrypt(self, sa: IkeSa, hdr: Header, data: bytes) -> Message:
        if hdr.next_payload != _PL_SK:
            raise DecodeError("unprotected_message", f"first payload {hdr.next_payload}")
        n = len(data)
        if n < HEADER_LEN + 4:
            raise DecodeError("truncated_payload", "SK")
        # We send and accept SK as the only payload (RFC 7296 §3.14: nothing may follow it; no other payload
        # of an exchange after IKE_SA_INIT may be outside it).
        inner_np, _, plen = _GENERIC.unpack_from(data, HEADER_LEN)
        if HEADER_LEN + plen != n:
            raise DecodeError("bad_payload_length", f"SK length {plen}")
        assert sa.sk is not None
        inner = sa.sk.unprotect(data, plen - 4)
        return Message(hdr, codec.parse_chain(inner_np, inner) if inner else [], data)

    # ------------------------------------------------------------------------------------------- sending

    def _needs_marker(self, local_port: int) -> bool:
        """Whether IKE datagrams on our ``local_port`` carry the RFC 3948 §2.2 non-ESP marker, both ways: on the
        NAT-T port, and on every port when the peer is configured off 500. The port the peer's datagrams come
        from does not count: a NAT may rewrite it, while the peer itself still sends unmarked from 500."""
        return local_port != IKE_PORT or self.remote[1] != IKE_PORT

    def _tx(self, sa: IkeSa, raw: bytes, kind: str) -> Transmit:
        local, remote = sa.local, sa.remote
        if self._needs_marker(local[1]):
            raw = NON_ESP_MARKER + raw
        return Transmit(raw, local, remote, kind)

    def _encrypt(
        self, sa: IkeSa, exchange: int, mid: int, response: bool, payloads: Sequence[tuple[int, bytes]]
    ) -> bytes:
        assert sa.sk is not None
        flags = (_FL_INITIATOR if sa.initiator else 0) | (_FL_RESPONSE if response else 0)
        first, inner = codec.encode_chain(payloads) if payloads else (0, b"")
        sk = sa.sk
        if sk.aead:
            sa.gcm_counter += 1
            iv = gcm_iv(sa.gcm_counter)
        else:
            iv = self.rng.randbytes(16)
        return sk.protect_fields(sa.spi_i, sa.spi_r, exchange, flags, mid, first, inner, iv)

    def _respond(self, sa: IkeSa, msg: Message, payloads: Sequence[tuple[int, bytes]], kind: str) -> Transmit:
        raw = self._encrypt(sa, msg.header.exchange, msg.header.message_id, True, payloads)
        sa.last_response = raw
        sa.last_response_kind = kind
        return self._tx(sa, raw, kind)

    def _queue(self, sa: IkeSa, p: Pending, now: float) -> list[Action]:
        sa.pending.append(p)
        if sa.outstanding is None:
            return self._send_next(sa, now)
        return []

    def _send_next(self, sa: IkeSa, now: float) -> list[Action]:
        if sa.outstanding is not None or not sa.pending or sa.sk is None:
            return []
        p = sa.pending.popleft()
        mid = sa.my_mid
        sa.my_mid += 1
        raw = self._encrypt(sa, p.exchange, mid, False, p.build(sa))
        out: list[Action] = [self._tx(sa, raw, p.kind)]
        life = self._life
        policy = life.liveness_retransmit if p.liveness else life.retransmit
        sa.outstanding = Request(mid, p.exchange, p.kind, raw, p.handler, policy, now, self.rng, p.liveness)
        live = self._live
        if sa.state is _ST_ESTABLISHED:
            if p.liveness:
                # As events.dpd_request_sent(), inlined on this per-check path.
                out.append(Event("dpd_request_sent", {"attempt": live.probes + 1, "message_id": mid}))
            # Any request of ours on the established IKE SA is a probe (cgw_peer.lifecycle).
            live.on_probe_sent(now)
        if p.event is not None:
            out.append(Event(p.event.name, {**p.event.fields, "message_id": mid}))
        if p.exchange == _EX_CREATE_CHILD_SA and self.config.role is _ROLE_AWS:
            out.append(Event("aws_log", {"message": LOG_SENDING_CREATE_CHILD_SA.format(id=mid)}))
        return out

    def _arm(self, sa: IkeSa, req: Request) -> None:
        """A request of the IKE SA set-up just went out (IKE_SA_INIT, IKE_AUTH): it is the outstanding one."""
        sa.outstanding = req

    def _retransmit(self, sa: IkeSa, req: Request, now: float) -> list[Action]:
        if not req.advance(now):
            return self._give_up(sa, req, now)
        self._count("retransmits")
        n = req.retransmits
        out: list[Action] = [
            self._tx(sa, req.data, req.kind),
            request_retransmitted(kind=req.kind, retransmit=n, message_id=req.mid),
        ]
        if sa.state is _ST_ESTABLISHED:
            live = self._live
            if req.liveness:
                out.append(Event("dpd_request_sent", {"attempt": live.probes + 1, "message_id": req.mid}))
            live.on_probe_repeated()
        return out

    def _give_up(self, sa: IkeSa, req: Request, now: float) -> list[Action]:
        sa.outstanding = None
        if sa.state in (_ST_INIT_SENT, _ST_AUTH_SENT):
            out: list[Action] = [
                negotiation_failed(
                    exchange=_EXCHANGE_NAMES[req.exchange], reason="peer_not_responding", retransmits=req.retransmits
                )
            ]
            self._drop_sa(sa)
            out += self._update_status(now, "negotiation_failed")
            self._life.negotiation_failed(now, out)
            return out
        if sa.state in (_ST_REKEYED, _ST_DELETING):
            self._drop_sa(sa)
            return self._update_status(now, "ike_deleted")
        # RFC 7296 §2.4: unanswered retransmissions on the established IKE SA mean the peer is dead (the
        # strongSwan and libreswan models decide this way; under the AWS model the DPD timeout comes first).
        if self._live.dead_reported:
            # Already reported for this silence (DPDTimeoutAction=none): keep the request going.
            sa.outstanding = req
            req.hold(now, self.config.behaviour.dpd_interval)
            return []
        sa.outstanding = req
        return self._peer_dead(now)

    # ------------------------------------------------------------------------------ DPD timeout and restart

    def _peer_dead(self, now: float) -> list[Action]:
        """The lifecycle declared the peer dead: carry out the DPDTimeoutAction it returns."""
        out: list[Action] = []
        action = self._life.dpd_timeout(now, out)
        cur = self._current()
        if action is DpdTimeoutAction.NONE:
            # Keep the SAs and UP; the outstanding request keeps going (its message ID must stay in sequence,
            # §2.2), one copy every dpd_interval, so a returning peer is recognised (cgw_peer.lifecycle).
            req = cur.outstanding if cur is not None else None
            if req is not None and req.give_up_at <= now:
                req.hold(now, self.config.behaviour.dpd_interval)
            return out
        if self.config.behaviour.send_delete_on_clear:
            for s in list(self._sas.values()):
                if s.sk is not None and s.state is not _ST_INIT_DONE:
                    raw = self._encrypt(
                        s,
                        _EX_INFORMATIONAL,
                        s.my_mid,
                        False,
                        [(_PL_DELETE, DeletePayload(_PR_IKE).encode())],
                    )
                    out.append(self._tx(s, raw, "delete_request"))
                    out.append(
                        Event("delete_sent", {"protocol": "ike", "spi": s.local_spi.hex(), "message_id": s.my_mid})
                    )
        for s in list(self._sas.values()):
            self._drop_sa(s)
        out += self._update_status(now, "dpd_timeout")
        if action is DpdTimeoutAction.RESTART:
            self._life.schedule_restart(now, out)
        return out

    def _drop_sa(self, sa: IkeSa) -> None:
        sa.state = _ST_DEAD
        sa.outstanding = None
        sa.pending.clear()
        self._sas.remove(sa.local_spi)
        if self._init_by_spi_i.get(sa.spi_i) is sa:
            del self._init_by_spi_i[sa.spi_i]

    def _current(self) -> IkeSa | None:
        """The newest established IKE SA."""
        own = self._sas.own
        if len(own) == 1:
            for only in own.values():
                return only if only.state is _ST_ESTABLISHED else None
        best: IkeSa | None = None
        for sa in own.values():
            if sa.state is _ST_ESTABLISHED and (best is None or (sa.established_at or 0) >= (best.established_at or 0)):
                best = sa
        return best

    def _live_child(self, sa: IkeSa) -> ChildSa | None:
        for c in reversed(sa.children):
            if c.replaced_by is None and not c.deleted:
                return c
        return None

    def _update_status(self, now: float, reason: str) -> list[Action]:
        """Recompute the status; ``reason`` (one of ``events.DOWN_REASONS``) names a DOWN transition if this is
        one and nothing noted an earlier cause."""
        sa = self._current()
        if sa is not None:
            up = self._live_child(sa) is not None
            p1 = _PS_REKEYING if sa.rekeying else _PS_ESTABLISHED
            p2 = _PS_NEGOTIATING
            if up:
                p2 = _PS_REKEYING if any(c.rekeying for c in sa.children) else _PS_ESTABLISHED
        else:
            up = False
            negotiating = bool(self._sas.half) or any(
                s.state in (_ST_INIT_SENT, _ST_AUTH_SENT, _ST_INIT_DONE) for s in self._sas.own.values()
            )
            p1 = p2 = _PS_NEGOTIATING if negotiating else _PS_DOWN
        out: list[Action] = []
        if sa is None:
            self._live.stop()  # no IKE SA left to check
        self._life.settle(now, up, p1, p2, reason, out)
        return out

    # --------------------------------------------------------------------------------------- IKE_SA_INIT

    def _new_spi(self) -> bytes:
        while True:
            spi = self.rng.randbytes(8)
            if spi != bytes(8) and spi not in self._sas:
                return spi

    def _new_child_spi(self) -> bytes:
        return self.rng.randint(0x100, 0xFFFFFFFF).to_bytes(4, "big")

    def _nat_hash(self, spi_i: bytes, spi_r: bytes, addr: Address) -> bytes:
        # RFC 7296 §2.23: SHA-1(SPIi | SPIr | IP | Port).
        return hashlib.sha1(spi_i + spi_r + _packed_addr(addr[0], addr[1])).digest()

    def _nat_notifies(self, spi_i: bytes, spi_r: bytes, local: Address, remote: Address) -> list[tuple[int, bytes]]:
        if not self.config.nat_t:
            return []
        src = self._nat_hash(spi_i, spi_r, local)
        if self.config.force_encap:
            # strongSwan encap=yes: a bogus source hash makes both sides believe in a NAT and float (§2.23).
            src = self.rng.randbytes(20)
        dst = self._nat_hash(spi_i, spi_r, remote)
        return [(_PL_NOTIFY, _NAT_SRC_NOTIFY + src), (_PL_NOTIFY, _NAT_DST_NOTIFY + dst)]

    def _check_nat(self, sa: IkeSa, msg: Message, spi_r: bytes, local: Address, remote: Address) -> bool:
        """True when NAT was detected either way (or encapsulation is forced)."""
        if not self.config.nat_t:
            return False
        srcs: list[bytes] = []
        dsts: list[bytes] = []
        for n in msg.notifies():
            if n.ntype == _NT_NAT_DETECTION_SOURCE_IP:
                srcs.append(n.data)
            elif n.ntype == _NT_NAT_DETECTION_DESTINATION_IP:
                dsts.append(n.data)
        if not srcs or not dsts:
            return self.config.force_encap
        peer_ok = self._nat_hash(sa.spi_i, spi_r, remote) in srcs
        us_ok = self._nat_hash(sa.spi_i, spi_r, local) in dsts
        sa.nat_local = not us_ok
        return self.config.force_encap or not (peer_ok and us_ok)

    def _initiate(self, now: float) -> list[Action]:
        group = self._ike_offer.dhs[0]
        sa = IkeSa(True, self._new_spi(), bytes(8), _ST_INIT_SENT, self.local, self.remote, now)
        sa.ke_group = group
        sa.initial_contact = not any(s.state is _ST_ESTABLISHED for s in self._sas.own.values())
        self._sas.add(sa.spi_i, sa)
        out = self._send_init(sa, now)
        out += self._update_status(now, "negotiation_failed")
        return out

    def _send_init(self, sa: IkeSa, now: float) -> list[Action]:
        # §2.6: a COOKIE retry leaves every other payload unchanged; an INVALID_KE retry needs a new KE.
        if not sa.ni:
            sa.ni = self.rng.randbytes(NONCE_LEN)
        if sa.dh is None or sa.dh.group.number != sa.ke_group:
            sa.dh = get_group(sa.ke_group).generate(self.rng)
        payloads: list[tuple[int, bytes]] = []
        if sa.cookie:
            payloads.append((_PL_NOTIFY, NotifyPayload(_NT_COOKIE, sa.cookie).encode()))
        payloads += [
            (_PL_SA, self._ike_offer.sa_payload(_PR_IKE, b"")),
            (_PL_KE, codec.encode_ke(sa.ke_group, sa.dh.public)),
            (_PL_NONCE, sa.ni),
        ]
        payloads += self._nat_notifies(sa.spi_i, bytes(8), sa.local, sa.remote)
        hdr = Header(sa.spi_i, bytes(8), 0, _EX_IKE_SA_INIT, _FL_INITIATOR, 0)
        raw = codec.encode_plain_message(hdr, payloads)
        sa.init_request = raw
        sa.my_mid = 1
        life = self._life
        self._arm(
            sa,
            Request(0, _EX_IKE_SA_INIT, "ike_sa_init_request", raw, self._no_handler, life.retransmit, now, self.rng),
        )
        return [self._tx(sa, raw, "ike_sa_init_request")]

    def _no_handler(self, sa: IkeSa, msg: Message, now: float) -> list[Action]:
        return []

    def _on_init_response(
        self, sa: IkeSa, hdr: Header, data: bytes, src: Address, dst: Address, now: float
    ) -> list[Action]:
        chain = codec.parse_chain(hdr.next_payload, data, codec.HEADER_LEN)
        msg = Message(hdr, chain, data)
        cookie = msg.notify(_NT_COOKIE)
        if cookie is not None:
            # RFC 7296 §2.6: repeat IKE_SA_INIT with the cookie first, same SPIi.
            self._count("cookie_received")
            sa.cookie = cookie.data
            sa.outstanding = None
            return [Event("cookie_received", {"length": len(cookie.data)}), *self._send_init(sa, now)]
        ike = msg.notify(_NT_INVALID_KE_PAYLOAD)
        if ike is not None:
            wanted = int.from_bytes(ike.data[:2], "big") if len(ike.data) >= 2 else 0
            if wanted not in self._ike_offer.dhs or wanted == sa.ke_group:
                raise DecodeError("bad_invalid_ke", f"group {wanted}")
            # §1.2: retry with the group the responder asked for.
            self._count("invalid_ke_retry")
            sa.ke_group = wanted
            sa.outstanding = None
            return [Event("invalid_ke_payload", {"group": wanted}), *self._send_init(sa, now)]
        err = msg.error()
        if err is not None:
            sa.outstanding = None
            self._drop_sa(sa)
            out: list[Action] = [
                Event(
                    "negotiation_failed",
                    {
                        "exchange": "ike_sa_init",
                        "reason": Notify(err.ntype).name.lower()
                        if err.ntype in Notify._value2member_map_
                        else str(err.ntype),
                    },
                )
            ]
            # A refusal is final (cgw_peer.lifecycle): only an unanswered negotiation is retried.
            return out + self._update_status(now, "negotiation_failed")
        sa_body, ke_body, nonce = msg.first(_PL_SA), msg.first(_PL_KE), msg.first(_PL_NONCE)
        if sa_body is None or ke_body is None or nonce is None or hdr.spi_r == bytes(8):
            raise DecodeError("missing_payload", "IKE_SA_INIT response needs SA, KE, Nr and SPIr")
        suite = _response_suite(sa_body)
        if not isinstance(suite, IkeSuite) or suite.dh != sa.ke_group or not self._offered_ike(suite):
            raise DecodeError("bad_proposal_choice")
        group, pub = codec.parse_ke(ke_body)
        if group != sa.ke_group:
            raise DecodeError("bad_ke_group", str(group))
        sa.nr = codec.check_nonce(nonce)
        assert sa.dh is not None
        shared = sa.dh.compute(pub)
        sa.outstanding = None
        sa.spi_r = hdr.spi_r
        self._sas.add_spi(hdr.spi_r)
        sa.init_response = data
        self._install_keys(sa, suite, skeyseed(suite.prf, sa.ni, sa.nr, shared))
        sa.dh = None
        sa.nat_detected = self._check_nat(sa, msg, hdr.spi_r, dst, src)
        if sa.nat_detected:
            # §2.23: the initiator floats to 4500 once NAT is detected (ports 500 only: charon keeps others).
            if sa.local[1] == IKE_PORT:
                sa.local = (sa.local[0], NAT_T_PORT)
            if sa.remote[1] == IKE_PORT:
                sa.remote = (sa.remote[0], NAT_T_PORT)
        self._alive(sa, now)
        return self._send_auth(sa, now)

    def _offered_ike(self, s: IkeSuite) -> bool:
        o = self._ike_offer
        return (
            (s.encr, s.key_bits) in o.encrs
            and s.prf_id in o.prfs
            and s.dh in o.dhs
            and (s.aead or s.integ_id in o.integs)
        )

    def _install_keys(self, sa: IkeSa, suite: IkeSuite, seed: bytes) -> None:
        sa.suite = suite
        k = derive_ike_keys(
            suite.prf,
            seed,
            sa.ni,
            sa.nr,
            sa.spi_i,
            sa.spi_r,
            enc_key_len=suite.enc_key_len,
            integ_key_len=suite.integ_key_len,
        )
        sa.sk_d, sa.sk_pi, sa.sk_pr = k.sk_d, k.sk_pi, k.sk_pr
        if sa.initiator:
            sa.sk = SkKeys(suite, k.sk_ei, k.sk_ai, k.sk_er, k.sk_ar)
        else:
            sa.sk = SkKeys(suite, k.sk_er, k.sk_ar, k.sk_ei, k.sk_ai)
        sa.keys_event = {
            "ike_version": 2,
            "spi_i": sa.spi_i.hex(),
            "spi_r": sa.spi_r.hex(),
            "sk_ei": k.sk_ei.hex(),
            "sk_er": k.sk_er.hex(),
            "encr_alg": suite.ws_encr,
            "sk_ai": k.sk_ai.hex(),
            "sk_ar": k.sk_ar.hex(),
            "integ_alg": suite.ws_integ,
        }

    def _make_cookie(self, hdr: Header, ni: bytes, src: Address) -> bytes:
        # RFC 7296 §2.6: Cookie = <VersionIDofSecret> | Hash(Ni | IPi | SPIi | <secret>).
        ip = _packed_ip(src[0])
        return b"\x00" + hashlib.sha256(ni + ip + hdr.spi_i + self._cookie_secret).digest()

    def _plain_response(self, hdr: Header, spi_r: bytes, payloads: list[tuple[int, bytes]]) -> bytes:
        h = Header(hdr.spi_i, spi_r, 0, _EX_IKE_SA_INIT, _FL_RESPONSE, 0)
        return codec.encode_plain_message(h, payloads)

    def _on_init_request(self, hdr: Header, data: bytes, src: Address, dst: Address, now: float) -> list[Action]:
        old = self._init_by_spi_i.get(hdr.spi_i)
        if old is not None and old.init_request == data and old.state is not _ST_DEAD:
            # A retransmitted IKE_SA_INIT: answer again from the cache (§2.1), within limits.
            b = self.config.behaviour
            if not may_resend(old, now, b.cached_answer_interval, b.cached_answer_limit):
                return self._drop("resend_limited", "IKE_SA_INIT")
            self._count("response_retransmitted")
            return [
                self._tx(old, old.init_response, "ike_sa_init_response"),
                response_retransmitted(kind="ike_sa_init_response", message_id=0),
            ]
        chain = codec.parse_chain(hdr.next_payload, data, codec.HEADER_LEN)
        msg = Message(hdr, chain, data)
        sa_body, ke_body, nonce = msg.first(_PL_SA), msg.first(_PL_KE), msg.first(_PL_NONCE)
        if sa_body is None or ke_body is None or nonce is None:
            raise DecodeError("missing_payload", "IKE_SA_INIT request needs SA, KE and Ni")
        ni = codec.check_nonce(nonce)
        # The proposal choice is a pure function of the SA payload and the KE group: cached per offer (it also
        # checks the SA payload, before the KE payload as always).
        choice = self._ike_offer.choose_ike(sa_body, int.from_bytes(ke_body[:2], "big") if len(ke_body) >= 4 else None)
        group, pub = codec.parse_ke(ke_body)
        marker = NON_ESP_MARKER if self._needs_marker(dst[1]) else b""
        b = self.config.behaviour
        half = self._sas.half_count()
        if b.ikev2_require_cookie or (b.cookie_threshold is not None and half >= b.cookie_threshold):
            # RFC 7296 §2.6: above the threshold (strongSwan's cookie_threshold) every IKE_SA_INIT must first
            # prove it can receive at its source address; a spoofed flood never gets past here.
            expected = self._make_cookie(hdr, ni, src)
            got = msg.notify(_NT_COOKIE)
            if got is None or got.data != expected:
                # Stateless answer: no SA is kept (RFC 7296 §2.6).
                self._count("cookie_sent")
                raw = self._plain_response(hdr, bytes(8), [(_PL_NOTIFY, NotifyPayload(_NT_COOKIE, expected).encode())])
                return [Transmit(marker + raw, dst, src, "ike_sa_init_response"), Event("cookie_sent", {})]
        if choice is None:
            self._count("no_proposal_chosen")
            raw = self._plain_response(hdr, bytes(8), [(_PL_NOTIFY, NotifyPayload(_NT_NO_PROPOSAL_CHOSEN).encode())])
            return [
                Transmit(marker + raw, dst, src, "ike_sa_init_response"),
                Event("negotiation_failed", {"exchange": "ike_sa_init", "reason": "no_proposal_chosen"}),
            ]
        # Half-open limits before any DH work: a flood costs a counter, not state or CPU.
        if half >= b.half_open_limit:
            raise DecodeError("half_open_limit", f"{half} half-open IKE SAs")
        per_src = b.half_open_limit_per_source
        if per_src is not None and self._sas.half_count(src[0]) >= per_src:
            raise DecodeError("half_open_limit_per_source", src[0])
        num, suite = choice
        if suite.dh != group:
            # §1.2: tell the initiator which group we want.
            self._count("invalid_ke_sent")
            raw = self._plain_response(
                hdr,
                bytes(8),
                [(_PL_NOTIFY, NotifyPayload(_NT_INVALID_KE_PAYLOAD, suite.dh.to_bytes(2, "big")).encode())],
            )
            return [
                Transmit(marker + raw, dst, src, "ike_sa_init_response"),
                Event("invalid_ke_payload_sent", {"group": suite.dh}),
            ]
        sa = IkeSa(False, hdr.spi_i, self._new_spi(), _ST_INIT_DONE, dst, src, now)
        sa.ni = ni
        sa.nr = self.rng.randbytes(NONCE_LEN)
        sa.ke_group = group
        dh = get_group(group).generate(self.rng)
        try:
            shared = dh.compute(pub)
        except DecodeError:
            raise
        sa.init_request = data
        sa.nat_detected = self._check_nat(sa, msg, bytes(8), dst, src)
        payloads: list[tuple[int, bytes]] = [
            (_PL_SA, suite_sa_payload(num, _PR_IKE, b"", suite)),
            (_PL_KE, codec.encode_ke(group, dh.public)),
            (_PL_NONCE, sa.nr),
        ]
        if msg.notify(_NT_NAT_DETECTION_SOURCE_IP) is not None:
            payloads += self._nat_notifies(sa.spi_i, sa.spi_r, dst, src)
        raw = self._plain_response(hdr, sa.spi_r, payloads)
        sa.init_response = raw
        self._install_keys(sa, suite, skeyseed(suite.prf, sa.ni, sa.nr, shared))
        sa.peer_mid = 1
        sa.expire_at = now + HALF_OPEN_TIMEOUT
        self._sas.add(sa.spi_r, sa, half_open_from=src[0])
        self._init_by_spi_i[sa.spi_i] = sa
        out: list[Action] = [Transmit(marker + raw, dst, src, "ike_sa_init_response")]
        out += self._update_status(now, "negotiation_failed")
        return out

    # ------------------------------------------------------------------------------------------ IKE_AUTH

    def _id_payload(self, ident: str | None, addr: Address) -> bytes:
        return _id_payload(ident if ident is not None else addr[0])

    def _send_auth(self, sa: IkeSa, now: float) -> list[Action]:
        assert sa.suite is not None
        id_body = self._id_payload(self.config.local_id, self.local)
        auth = psk_auth(sa.suite.prf, self.config.psk, sa.init_request, sa.nr, sa.sk_pi, id_body)
        sa.child_spi = self._new_child_spi()
        payloads: list[tuple[int, bytes]] = [(_PL_IDI, id_body)]
        # INITIAL_CONTACT (§2.4) says "I hold no other IKE SA with you": decided now, not when IKE_SA_INIT went
        # out, since the peer may have brought a tunnel up meanwhile (a restart crossing the peer's initiation).
        sa.initial_contact = sa.initial_contact and not any(
            s.state is _ST_ESTABLISHED for s in self._sas.own.values() if s is not sa
        )
        if sa.initial_contact:
            payloads.append((_PL_NOTIFY, _INITIAL_CONTACT))
        if self.config.remote_id is not None:
            payloads.append((_PL_IDR, self._id_payload(self.config.remote_id, self.remote)))
        payloads += [
            (_PL_AUTH, codec.encode_auth(_AM_PSK, auth)),
            (
                _PL_SA,
                self._esp_offer.sa_payload(_PR_ESP, sa.child_spi, esn=True, with_dh=False),
            ),
            (_PL_TSI, _ts_payload(*_ts_key(self.config.local_ts))),
            (_PL_TSR, _ts_payload(*_ts_key(self.config.remote_ts))),
        ]
        sa.state = _ST_AUTH_SENT
        mid = sa.my_mid
        sa.my_mid += 1
        raw = self._encrypt(sa, _EX_IKE_AUTH, mid, False, payloads)
        self._arm(
            sa,
            Request(
                mid, _EX_IKE_AUTH, "ike_auth_request", raw, self._on_auth_response, self._life.retransmit, now, self.rng
            ),
        )
        return [self._tx(sa, raw, "ike_auth_request")]

    def _check_peer_id(self, id_body: bytes) -> bool:
        if self.config.remote_id is None:
            return True
        return id_body == self._id_payload(self.config.remote_id, self.remote)

    def _on_auth_request(self, sa: IkeSa, msg: Message, now: float) -> list[Action]:
        assert sa.suite is not None
        idi, auth = msg.first(_PL_IDI), msg.first(_PL_AUTH)
        if idi is None or auth is None:
            raise DecodeError("missing_payload", "IKE_AUTH needs IDi and AUTH")
        method, auth_data = codec.parse_auth(auth)
        expected = psk_auth(sa.suite.prf, self.config.psk, sa.init_request, sa.nr, sa.sk_pi, idi)
        if method != _AM_PSK or auth_data != expected or not self._check_peer_id(idi):
            self._count("authentication_failed")
            tx = self._respond(
                sa, msg, [(_PL_NOTIFY, NotifyPayload(_NT_AUTHENTICATION_FAILED).encode())], "ike_auth_response"
            )
            self._drop_sa(sa)
            return [tx, Event("negotiation_failed", {"exchange": "ike_auth", "reason": "authentication_failed"})]
        id_r = self._id_payload(self.config.local_id, self.local)
        auth_r = psk_auth(sa.suite.prf, self.config.psk, sa.init_response, sa.ni, sa.sk_pr, id_r)
        payloads: list[tuple[int, bytes]] = [
            (_PL_IDR, id_r),
            (_PL_AUTH, codec.encode_auth(_AM_PSK, auth_r)),
        ]
        out: list[Action] = []
        child_payloads, child, err = self._accept_child(sa, msg, sa.ni, sa.nr, None, pfs=False)
        payloads += child_payloads
        if msg.notify(_NT_INITIAL_CONTACT) is not None:
            # §2.4: INITIAL_CONTACT: every other IKE SA with this peer is stale.
            for other in list(self._sas.own.values()):
                if other is not sa and other.state in (_ST_ESTABLISHED, _ST_REKEYED, _ST_DELETING):
                    self._life.state.cause("initial_contact")
                    self._drop_sa(other)
                    out.append(Event("ike_sa_replaced", {"spi": other.local_spi.hex(), "reason": "initial_contact"}))
        out.insert(0, self._respond(sa, msg, payloads, "ike_auth_response"))
        out += self._established(sa, now)
        # The peer brought the tunnel up: a fresh negotiation of ours that has not reached IKE_AUTH yet (a restart
        # crossing the peer's own initiation) would end in a second IKE SA; it is abandoned (the peer's half-open
        # state for it expires on its own). One already in IKE_AUTH completes, and the duplicate rule (§2.8.1,
        # lowest nonce) keeps one of the two on both sides.
        for other in list(self._sas.own.values()):
            if other is not sa and other.initiator and other.state is _ST_INIT_SENT:
                self._drop_sa(other)
                self._count("negotiation_superseded")
        if child is not None:
            sa.children.append(child)
            out += self._child_established(sa, child, now)
        elif err:
            out.append(Event("negotiation_failed", {"exchange": "ike_auth", "reason": err}))
        out += self._update_status(now, "negotiation_failed")
        return out

    def _on_auth_response(self, sa: IkeSa, msg: Message, now: float) -> list[Action]:
        assert sa.suite is not None
        idr, auth = msg.first(_PL_IDR), msg.first(_PL_AUTH)
        if idr is None or auth is None:
            err = msg.error()
            reason = (
                Notify(err.ntype).name.lower() if err and err.ntype in Notify._value2member_map_ else "missing_auth"
            )
            self._drop_sa(sa)
            out: list[Action] = [Event("negotiation_failed", {"exchange": "ike_auth", "reason": reason})]
            return out + self._update_status(now, "negotiation_failed")
        method, auth_data = codec.parse_auth(auth)
        expected = psk_auth(sa.suite.prf, self.config.psk, sa.init_response, sa.ni, sa.sk_pr, idr)
        if method != _AM_PSK or auth_data != expected or not self._check_peer_id(idr):
            self._count("authentication_failed")
            self._drop_sa(sa)
            out = [Event("negotiation_failed", {"exchange": "ike_auth", "reason": "authentication_failed"})]
            return out + self._update_status(now, "negotiation_failed")
        out = self._established(sa, now)
        child = self._child_from_response(sa, msg, sa.child_spi, sa.ni, sa.nr, None, now)
        if child is not None:
            sa.children.append(child)
            out += self._child_established(sa, child, now)
        else:
            err = msg.error()
            out.append(
                Event(
                    "negotiation_failed",
                    {
                        "exchange": "ike_auth",
                        "reason": Notify(err.ntype).name.lower()
                        if err and err.ntype in Notify._value2member_map_
                        else "child_sa_failed",
                    },
                )
            )
        out += self._update_status(now, "negotiation_failed")
        return out

    def _established(self, sa: IkeSa, now: float, fresh: bool = True) -> list[Action]:
        assert sa.suite is not None
        self._sas.promote(sa.local_spi)  # authenticated: no longer half-open
        sa.state = _ST_ESTABLISHED
        sa.established_at = now
        sa.expire_at = None
        sa.lifetime_end = now + self.config.options.phase1_lifetime_seconds
        if self._keepalive.at is None:
            self._keepalive.start(now, sa.nat_local)
        live = self._live
        if self.config.behaviour.dpd_enabled:
            live.periodic = self._life.periodic(sa.nat_detected)
            if not live.active:
                live.start(now)
            else:
                live.on_inbound(now)  # a new IKE SA was just authenticated: the peer is alive
        o = self.config.options
        sa.rekey_at = now + rekey_delay(
            o.phase1_lifetime_seconds, o.rekey_margin_time_seconds, o.rekey_fuzz_percentage, self.rng
        )
        if self._init_by_spi_i.get(sa.spi_i) is sa:
            del self._init_by_spi_i[sa.spi_i]
        out: list[Action] = [
            Event(
                "ike_sa_established",
                {
                    "spi_i": sa.spi_i.hex(),
                    "spi_r": sa.spi_r.hex(),
                    "version": 2,
                    "proposal": sa.suite.describe(),
                    "initiator": sa.initiator,
                    "nat": sa.nat_detected,
                    "local": f"{sa.local[0]}:{sa.local[1]}",
                    "remote": f"{sa.remote[0]}:{sa.remote[1]}",
                },
            ),
            Event("sa_keys", dict(sa.keys_event)),
        ]
        if fresh:
            out += self._resolve_duplicate_ike(sa, now)
        return out

    def _resolve_duplicate_ike(self, sa: IkeSa, now: float) -> list[Action]:
        """Two IKE SAs with the same peer (both sides initiated): like a rekey collision (§2.8.1), the SA
        with the lowest of the four nonces is deleted by the side that initiated it."""
        for other in list(self._sas.own.values()):
            if other is sa or other.state is not _ST_ESTABLISHED:
                continue
            lowest = min(
                (sa.ni, sa, True),
                (sa.nr, sa, False),
                (other.ni, other, True),
                (other.nr, other, False),
                key=lambda x: x[0],
            )
            loser = lowest[1]
            self._count("ike_sa_collision")
            out: list[Action] = [
                rekey_collision(
                    sa="ike", kind="duplicate_ike_sa", redundant=loser.local_spi.hex(), ours_redundant=loser.initiator
                )
            ]
            if loser.initiator:
                out += self._delete_ike(loser, now)
            return out
        return []

    # --------------------------------------------------------------------------------------------- Child SAs

    def _accept_child(
        self,
        sa: IkeSa,
        msg: Message,
        ni: bytes,
        nr: bytes,
        shared: bytes | None,
        *,
        pfs: bool,
        ke_group: int | None = None,
        spi_in: bytes | None = None,
    ) -> tuple[list[tuple[int, bytes]], ChildSa | None, str]:
        """Responder side of a Child SA (IKE_AUTH or CREATE_CHILD_SA): choose a proposal and narrow the
        traffic selectors. Returns (payloads to answer with, the new Child SA or None, error reason)."""
        sa_body, tsi_b, tsr_b = msg.first(_PL_SA), msg.first(_PL_TSI), msg.first(_PL_TSR)
        if sa_body is None or tsi_b is None or tsr_b is None:
            return [(_PL_NOTIFY, NotifyPayload(_NT_NO_PROPOSAL_CHOSEN).encode())], None, "missing_payload"
        choice = select_child(self._esp_offer, codec.parse_sa(sa_body), ke_group, pfs=pfs)
        if choice is None:
            self._count("no_proposal_chosen")
            return [(_PL_NOTIFY, NotifyPayload(_NT_NO_PROPOSAL_CHOSEN).encode())], None, "no_proposal_chosen"
        num, peer_spi, suite = choice
        tsi_t, tsi_payload = _narrowed(tsi_b, *_ts_key(self.config.remote_ts))
        tsr_t, tsr_payload = _narrowed(tsr_b, *_ts_key(self.config.local_ts))
        tsi, tsr = list(tsi_t), list(tsr_t)
        if not tsi or not tsr:
            self._count("ts_unacceptable")
            return [(_PL_NOTIFY, NotifyPayload(_NT_TS_UNACCEPTABLE).encode())], None, "ts_unacceptable"
        spi = spi_in or self._new_child_spi()
        child = self._make_child(
            sa, spi, peer_spi, suite, tsr, tsi, ni, nr, shared, created_by_us=False, we_initiated=False
        )
        payloads: list[tuple[int, bytes]] = [
            (_PL_SA, suite_sa_payload(num, _PR_ESP, spi, suite)),
            (_PL_TSI, tsi_payload),
            (_PL_TSR, tsr_payload),
        ]
        return payloads, child, ""

    def _child_from_response(
        self, sa: IkeSa, msg: Message, spi_in: bytes, ni: bytes, nr: bytes, shared: bytes | None, now: float
    ) -> ChildSa | None:
        sa_body, tsi_b, tsr_b = msg.first(_PL_SA), msg.first(_PL_TSI), msg.first(_PL_TSR)
        if sa_body is None or tsi_b is None or tsr_b is None:
            return None
        props = codec.parse_sa(sa_body)
        suite = suite_from_response(props[0]) if len(props) == 1 else None
        if not isinstance(suite, ChildSuite) or len(props[0].spi) != 4:
            raise DecodeError("bad_proposal_choice", "child SA")
        o = self._esp_offer
        if (
            (suite.encr, suite.key_bits) not in o.encrs
            or (not suite.aead and suite.integ_id not in o.integs)
            or (suite.dh and suite.dh not in o.dhs)
        ):
            raise DecodeError("bad_proposal_choice", "child SA transforms we did not offer")
        return self._make_child(
            sa,
            spi_in,
            props[0].spi,
            suite,
            codec.parse_ts(tsi_b),
            codec.parse_ts(tsr_b),
            ni,
            nr,
            shared,
            created_by_us=True,
            we_initiated=True,
        )

    def _make_child(
        self,
        sa: IkeSa,
        spi_in: bytes,
        spi_out: bytes,
        suite: ChildSuite,
        ts_local: list[Ts],
        ts_remote: list[Ts],
        ni: bytes,
        nr: bytes,
        shared: bytes | None,
        *,
        created_by_us: bool,
        we_initiated: bool,
    ) -> ChildSa:
        assert sa.suite is not None
        ek, ak = suite.enc_key_len, suite.integ_key_len
        km = child_keymat(sa.suite.prf, sa.sk_d, ni, nr, 2 * (ek + ak), shared)
        ei, ai, er, ar = km[:ek], km[ek : ek + ak], km[ek + ak : 2 * ek + ak], km[2 * ek + ak :]
        # KEYMAT order (§2.17): initiator->responder first. "in" = what the peer sends to us.
        if we_initiated:
            keys = {"enc_out": ei.hex(), "integ_out": ai.hex(), "enc_in": er.hex(), "integ_in": ar.hex()}
        else:
            keys = {"enc_out": er.hex(), "integ_out": ar.hex(), "enc_in": ei.hex(), "integ_in": ai.hex()}
        now_est = sa.established_at or 0.0
        return ChildSa(spi_in, spi_out, suite, ts_local, ts_remote, ni, nr, created_by_us, now_est, keys)

    def _child_established(self, sa: IkeSa, child: ChildSa, now: float) -> list[Action]:
        o = self.config.options
        child.established_at = now
        child.rekey_at = now + rekey_delay(
            o.phase2_lifetime_seconds, o.rekey_margin_time_seconds, o.rekey_fuzz_percentage, self.rng
        )
        child.expire_at = now + o.phase2_lifetime_seconds
        k = child.keys
        return [
            child_sa_established(
                spi_in=child.spi_in.hex(),
                spi_out=child.spi_out.hex(),
                proposal=child.suite.describe(),
                ts_local=[str(t) for t in child.ts_local],
                ts_remote=[str(t) for t in child.ts_remote],
                enc_in=k["enc_in"],
                integ_in=k["integ_in"],
                enc_out=k["enc_out"],
                integ_out=k["integ_out"],
                encap=sa.nat_detected,
            )
        ]

    # -------------------------------------------------------------------------------- CREATE_CHILD_SA (ours)

    def _pfs_group(self) -> int:
        return self._esp_offer.dhs[0] if self._esp_offer.dhs else 0

    def _start_child_rekey(self, sa: IkeSa, child: ChildSa, now: float) -> list[Action]:
        child.rekeying = True
        new_spi = self._new_child_spi()
        ni = self.rng.randbytes(NONCE_LEN)
        group = self._pfs_group()
        dh = get_group(group).generate(self.rng) if group else None

        def build(s: IkeSa) -> list[tuple[int, bytes]]:
            p: list[tuple[int, bytes]] = [
                (_PL_NOTIFY, NotifyPayload(_NT_REKEY_SA, b"", _PR_ESP, child.spi_in).encode()),
                (
                    _PL_SA,
                    self._esp_offer.sa_payload(_PR_ESP, new_spi, esn=True, with_dh=dh is not None),
                ),
                (_PL_NONCE, ni),
            ]
            if dh is not None:
                p.append((_PL_KE, codec.encode_ke(group, dh.public)))
            p += [(_PL_TSI, codec.encode_ts(child.ts_local)), (_PL_TSR, codec.encode_ts(child.ts_remote))]
            return p

        def handler(s: IkeSa, msg: Message, t: float) -> list[Action]:
            return self._on_child_rekey_response(s, child, msg, new_spi, ni, dh, t)

        out: list[Action] = [Event("rekey_started", {"sa": "child", "spi": child.spi_in.hex()})]
        out += self._queue(sa, Pending(_EX_CREATE_CHILD_SA, "create_child_sa_request", build, handler), now)
        out += self._update_status(now, "child_deleted")
        return out

    def _on_child_rekey_response(
        self, sa: IkeSa, old: ChildSa, msg: Message, new_spi: bytes, ni: bytes, dh: DhKeyPair | None, now: float
    ) -> list[Action]:
        old.rekeying = False
        nr_b = msg.first(_PL_NONCE)
        if nr_b is None:
            err = msg.error()
            name = Notify(err.ntype).name.lower() if err and err.ntype in Notify._value2member_map_ else "failed"
            out: list[Action] = [Event("negotiation_failed", {"exchange": "create_child_sa", "reason": name})]
            if err is not None and err.ntype == _NT_TEMPORARY_FAILURE:
                old.rekey_at = now + 2.0  # §2.25: retry later; the peer is busy with a collision
            return out + self._update_status(now, "child_deleted")
        nr = codec.check_nonce(nr_b)
        shared = None
        if dh is not None:
            ke = msg.first(_PL_KE)
            if ke is None:
                raise DecodeError("missing_payload", "KEr for PFS")
            group, pub = codec.parse_ke(ke)
            if group != dh.group.number:
                raise DecodeError("bad_ke_group", str(group))
            shared = dh.compute(pub)
        new = self._child_from_response(sa, msg, new_spi, ni, nr, shared, now)
        if new is None:
            return [Event("negotiation_failed", {"exchange": "create_child_sa", "reason": "child_sa_failed"})]
        sa.children.append(new)
        out = self._child_established(sa, new, now)
        out.append(rekey_done(sa="child", old_spi=old.spi_in.hex(), new_spi=new.spi_in.hex(), initiator=True))
        collided = old.replaced_by
        if collided is not None and collided is not new:
            # §2.8.1 simultaneous rekey: two new SAs. The one holding the lowest of the four nonces is
            # redundant; its creator deletes it.
            self._count("child_rekey_collision")
            redundant = min((new, collided), key=lambda c: min(c.ni, c.nr))
            out.append(
                rekey_collision(
                    sa="child",
                    kind="simultaneous_rekey",
                    redundant=redundant.spi_in.hex(),
                    ours_redundant=redundant is new,
                )
            )
            if redundant is new:
                if self.config.role is _ROLE_AWS:
                    out.append(Event("aws_log", {"message": LOG_REDUNDANT_CHILD_SA}))
                new.replaced_by = collided
                out += self._queue(sa, self._delete_child_request(sa, new), now)
                out += self._update_status(now, "child_deleted")
                return out
            # We won: the peer deletes its redundant SA; we delete the old one.
            collided.replaced_by = new
        old.replaced_by = new
        if not old.deleted:
            out += self._queue(sa, self._delete_child_request(sa, old), now)
        else:
            sa.children.remove(old)
        out += self._update_status(now, "child_deleted")
        return out

    def _delete_child_request(self, sa: IkeSa, child: ChildSa) -> Pending:
        child.deleting = True

        def build(s: IkeSa) -> list[tuple[int, bytes]]:
            return [(_PL_DELETE, DeletePayload(_PR_ESP, (child.spi_in,)).encode())]

        def handler(s: IkeSa, msg: Message, t: float) -> list[Action]:
            if child in s.children:
                s.children.remove(child)
            return self._update_status(t, "child_deleted")

        ev = Event("delete_sent", {"protocol": "esp", "spi": child.spi_in.hex()})
        return Pending(_EX_INFORMATIONAL, "delete_request", build, handler, event=ev)

    def _liveness_request(self) -> Pending:
        # Stateless, so one instance serves every liveness check.
        p = self._liveness_pending
        if p is None:
            p = self._liveness_pending = Pending(
                _EX_INFORMATIONAL, "liveness_request", _no_payloads, self._on_liveness_response, liveness=True
            )
        return p

    def _on_liveness_response(self, sa: IkeSa, msg: Message, now: float) -> list[Action]:
        # strongSwan ike_dpd.c: any response is success.
        self.counters["liveness_ok"] = self.counters.get("liveness_ok", 0) + 1
        # As events.dpd_ack_received(), inlined on this per-check path.
        return [Event("dpd_ack_received", {"valid": True, "message_id": msg.header.message_id})]

    def _start_ike_rekey(self, sa: IkeSa, now: float) -> list[Action]:
        assert sa.suite is not None
        sa.rekeying = True
        new_spi = self._new_spi()
        ni = self.rng.randbytes(NONCE_LEN)
        group = sa.suite.dh
        dh = get_group(group).generate(self.rng)

        def build(s: IkeSa) -> list[tuple[int, bytes]]:
            return [
                (_PL_SA, self._ike_offer.sa_payload(_PR_IKE, new_spi)),
                (_PL_NONCE, ni),
                (_PL_KE, codec.encode_ke(group, dh.public)),
            ]

        def handler(s: IkeSa, msg: Message, t: float) -> list[Action]:
            return self._on_ike_rekey_response(s, msg, new_spi, ni, dh, t)

        out: list[Action] = [Event("rekey_started", {"sa": "ike", "spi": sa.local_spi.hex()})]
        out += self._queue(sa, Pending(_EX_CREATE_CHILD_SA, "create_child_sa_request", build, handler), now)
        out += self._update_status(now, "child_deleted")
        return out

    def _on_ike_rekey_response(
        self, sa: IkeSa, msg: Message, new_spi: bytes, ni: bytes, dh: DhKeyPair, now: float
    ) -> list[Action]:
        sa.rekeying = False
        sa_body, nr_b, ke = msg.first(_PL_SA), msg.first(_PL_NONCE), msg.first(_PL_KE)
        if sa_body is None or nr_b is None or ke is None:
            err = msg.error()
            name = Notify(err.ntype).name.lower() if err and err.ntype in Notify._value2member_map_ else "failed"
            if err is not None and err.ntype == _NT_TEMPORARY_FAILURE:
                sa.rekey_at = now + 2.0
            return [
                Event("negotiation_failed", {"exchange": "create_child_sa", "reason": name}),
                *self._update_status(now, "child_deleted"),
            ]
        props = codec.parse_sa(sa_body)
        suite = suite_from_response(props[0]) if len(props) == 1 else None
        if not isinstance(suite, IkeSuite) or len(props[0].spi) != 8 or not self._offered_ike(suite):
            raise DecodeError("bad_proposal_choice", "IKE rekey")
        group, pub = codec.parse_ke(ke)
        if group != dh.group.number or suite.dh != group:
            raise DecodeError("bad_ke_group", str(group))
        nr = codec.check_nonce(nr_b)
        other = sa.rekeyed_into  # the peer's new SA, if it rekeyed this SA at the same time
        new = self._rekeyed_ike(sa, True, new_spi, props[0].spi, suite, ni, nr, dh.compute(pub), now)
        out = self._established(new, now, fresh=False)
        out.append(rekey_done(sa="ike", old_spi=sa.local_spi.hex(), new_spi=new.local_spi.hex(), initiator=True))
        if other is not None and other.state is _ST_ESTABLISHED:
            # §2.8.1 simultaneous IKE rekey: the new SA holding the lowest of the four nonces is redundant and
            # is deleted by its creator; the creator of the survivor deletes the old SA.
            redundant = min((new, other), key=lambda x: min(x.ni, x.nr))
            self._count("ike_rekey_collision")
            out.append(
                rekey_collision(
                    sa="ike",
                    kind="simultaneous_rekey",
                    redundant=redundant.local_spi.hex(),
                    ours_redundant=redundant is new,
                )
            )
            if redundant is new:
                # The Child SAs already moved to the peer's SA when we answered its request.
                out += self._delete_ike(new, now)
                out += self._update_status(now, "child_deleted")
                return out
            new.children, other.children = other.children, []
            other.state = _ST_REKEYED  # the peer deletes it
            other.expire_at = now + REKEYED_LINGER
        # §2.18: the initiator of the (surviving) rekey deletes the old IKE SA (on the old SA).
        out += self._delete_ike(sa, now)
        out += self._update_status(now, "child_deleted")
        return out

    def _rekeyed_ike(
        self,
        old: IkeSa,
        we_initiated: bool,
        spi_ours: bytes,
        spi_peer: bytes,
        suite: IkeSuite,
        ni: bytes,
        nr: bytes,
        shared: bytes,
        now: float,
    ) -> IkeSa:
        """The new IKE SA of a rekey (§2.18). Its initiator is whoever initiated the rekey; message IDs
        restart at 0; the Child SAs move over."""
        assert old.suite is not None
        spi_i, spi_r = (spi_ours, spi_peer) if we_initiated else (spi_peer, spi_ours)
        new = IkeSa(we_initiated, spi_i, spi_r, _ST_ESTABLISHED, old.local, old.remote, now)
        new.ni, new.nr = ni, nr
        new.nat_detected = old.nat_detected
        new.nat_local = old.nat_local
        seed = rekey_skeyseed(old.suite.prf, old.sk_d, shared, ni, nr)
        self._install_keys(new, suite, seed)
        new.children = old.children
        old.children = []
        old.state = _ST_REKEYED
        old.expire_at = now + REKEYED_LINGER
        if old.rekeyed_into is None:
            old.rekeyed_into = new
        self._sas.add(new.local_spi, new)
        return new

    def _delete_ike(self, sa: IkeSa, now: float) -> list[Action]:
        if sa.state is _ST_ESTABLISHED:
            sa.state = _ST_DELETING

        def build(s: IkeSa) -> list[tuple[int, bytes]]:
            return [(_PL_DELETE, DeletePayload(_PR_IKE).encode())]

        def handler(s: IkeSa, msg: Message, t: float) -> list[Action]:
            self._drop_sa(s)
            return self._update_status(t, "ike_deleted")

        ev = Event("delete_sent", {"protocol": "ike", "spi": sa.local_spi.hex()})
        return self._queue(sa, Pending(_EX_INFORMATIONAL, "delete_request", build, handler, event=ev), now)

    # ----------------------------------------------------------------------- CREATE_CHILD_SA (the peer's)

    def _on_create_child_request(self, sa: IkeSa, msg: Message, now: float) -> list[Action]:
        sa_body, ni_b = msg.first(_PL_SA), msg.first(_PL_NONCE)
        if sa_body is None or ni_b is None:
            raise DecodeError("missing_payload", "CREATE_CHILD_SA needs SA and Ni")
        ni = codec.check_nonce(ni_b)
        props = codec.parse_sa(sa_body)
        if props and props[0].protocol == _PR_IKE:
            return self._on_ike_rekey_request(sa, msg, props, ni, now)
        rekey = msg.notify(_NT_REKEY_SA)
        old = None
        if rekey is not None:
            old = next((c for c in sa.children if c.spi_out == rekey.spi and c.replaced_by is None), None)
            if old is None:
                tx = self._respond(
                    sa,
                    msg,
                    [(_PL_NOTIFY, NotifyPayload(_NT_CHILD_SA_NOT_FOUND, b"", _PR_ESP, rekey.spi).encode())],
                    "create_child_sa_response",
                )
                return [
                    tx,
                    Event("negotiation_failed", {"exchange": "create_child_sa", "reason": "child_sa_not_found"}),
                ]
        elif self._live_child(sa) is not None:
            # AWS: one SA pair per tunnel (ike-dpd.md §1.1).
            tx = self._respond(
                sa,
                msg,
                [(_PL_NOTIFY, NotifyPayload(_NT_NO_ADDITIONAL_SAS).encode())],
                "create_child_sa_response",
            )
            return [tx]
        nr = self.rng.randbytes(NONCE_LEN)
        ke = msg.first(_PL_KE)
        shared = None
        ke_payload: list[tuple[int, bytes]] = []
        group = None
        if ke is not None:
            group, pub = codec.parse_ke(ke)
            choice = select_child(self._esp_offer, props, group, pfs=True)
            if choice is not None and choice[2].dh != group:
                tx = self._respond(
                    sa,
                    msg,
                    [
                        (
                            _PL_NOTIFY,
                            NotifyPayload(_NT_INVALID_KE_PAYLOAD, choice[2].dh.to_bytes(2, "big")).encode(),
                        )
                    ],
                    "create_child_sa_response",
                )
                return [tx]
            if choice is not None:
                mine = get_group(group).generate(self.rng)
                shared = mine.compute(pub)
                ke_payload = [(_PL_KE, codec.encode_ke(group, mine.public))]
        payloads, child, err = self._accept_child(sa, msg, ni, nr, shared, pfs=ke is not None, ke_group=group)
        if child is None:
            return [
                self._respond(sa, msg, payloads, "create_child_sa_response"),
                Event("negotiation_failed", {"exchange": "create_child_sa", "reason": err}),
            ]
        sa_p, rest = payloads[0], payloads[1:]
        tx = self._respond(sa, msg, [sa_p, (_PL_NONCE, nr), *ke_payload, *rest], "create_child_sa_response")
        sa.children.append(child)
        out: list[Action] = [tx, *self._child_established(sa, child, now)]
        if old is not None:
            out.append(
                Event(
                    "rekey_done",
                    {"sa": "child", "old_spi": old.spi_in.hex(), "new_spi": child.spi_in.hex(), "initiator": False},
                )
            )
            if old.rekeying:
                # We are rekeying the same SA: a simultaneous rekey, resolved (and reported, one event per side as
                # in IKEv1) when our response arrives.
                self._count("child_rekey_collision_detected")
            old.replaced_by = child
        out += self._update_status(now, "child_deleted")
        return out

    def _on_ike_rekey_request(
        self, sa: IkeSa, msg: Message, props: list[Proposal], ni: bytes, now: float
    ) -> list[Action]:
        ke = msg.first(_PL_KE)
        if ke is None:
            raise DecodeError("missing_payload", "IKE rekey needs KEi")
        group, pub = codec.parse_ke(ke)
        choice = select_ike(self._ike_offer, props, group)
        if choice is None:
            return [
                self._respond(
                    sa,
                    msg,
                    [(_PL_NOTIFY, NotifyPayload(_NT_NO_PROPOSAL_CHOSEN).encode())],
                    "create_child_sa_response",
                )
            ]
        num, suite = choice
        if suite.dh != group:
            return [
                self._respond(
                    sa,
                    msg,
                    [(_PL_NOTIFY, NotifyPayload(_NT_INVALID_KE_PAYLOAD, suite.dh.to_bytes(2, "big")).encode())],
                    "create_child_sa_response",
                )
            ]
        if sa.state is not _ST_ESTABLISHED:
            # Already rekeyed or being deleted: nothing to rekey (§2.25.2).
            return [
                self._respond(
                    sa,
                    msg,
                    [(_PL_NOTIFY, NotifyPayload(_NT_TEMPORARY_FAILURE).encode())],
                    "create_child_sa_response",
                )
            ]
        peer_spi = next((p.spi for p in props if p.num == num), b"")
        if len(peer_spi) != 8:
            raise DecodeError("bad_sa", "IKE rekey SPI size")
        mine = get_group(group).generate(self.rng)
        nr = self.rng.randbytes(NONCE_LEN)
        new_spi = self._new_spi()
        tx = self._respond(
            sa,
            msg,
            [
                (_PL_SA, suite_sa_payload(num, _PR_IKE, new_spi, suite)),
                (_PL_NONCE, nr),
                (_PL_KE, codec.encode_ke(group, mine.public)),
            ],
            "create_child_sa_response",
        )
        new = self._rekeyed_ike(sa, False, new_spi, peer_spi, suite, ni, nr, mine.compute(pub), now)
        out: list[Action] = [tx, *self._established(new, now, fresh=False)]
        if sa.rekeying:
            # §2.8.1: we are rekeying this IKE SA too; both new SAs exist until our response arrives, then the
            # one holding the lowest nonce is deleted by its creator (see _on_ike_rekey_response).
            self._count("ike_rekey_collision_detected")
        out.append(
            Event(
                "rekey_done",
                {"sa": "ike", "old_spi": sa.local_spi.hex(), "new_spi": new.local_spi.hex(), "initiator": False},
            )
        )
        return out

    # --------------------------------------------------------------------------------- INFORMATIONAL

    def _on_informational_request(self, sa: IkeSa, msg: Message, now: float) -> list[Action]:
        mid = msg.header.message_id
        if not msg.payloads:
            # §1.4 / ike_dpd.c: an empty request is a liveness check; answer with an empty response.
            tx = self._respond(sa, msg, (), "liveness_response")
            return [tx, Event("dpd_request_received", {"message_id": mid}), Event("dpd_ack_sent", {"message_id": mid})]
        deletes = [codec.parse_delete(b) for b in msg.all(_PL_DELETE)]
        if any(d.protocol == _PR_IKE for d in deletes):
            # §1.4.1: answered with an empty response; the IKE SA and all its Child SAs are gone.
            tx = self._respond(sa, msg, [], "delete_response")
            out: list[Action] = [tx, Event("delete_received", {"protocol": "ike", "spi": sa.remote_spi.hex()})]
            if self.config.role is _ROLE_AWS and sa.state is _ST_ESTABLISHED:
                out.append(Event("aws_log", {"message": LOG_DELETE_IKE_SA_FROM_CGW}))
            self._drop_sa(sa)
            out += self._update_status(now, "delete_received")
            return out
        answer: list[bytes] = []
        out = []
        for d in deletes:
            if d.protocol != _PR_ESP:
                continue
            for spi in d.spis:
                out.append(Event("delete_received", {"protocol": "esp", "spi": spi.hex()}))
                child = next((c for c in sa.children if c.spi_out == spi), None)
                if child is None:
                    continue
                if child.rekeying:
                    # strongSwan #1458: the Delete overtook the CREATE_CHILD_SA response. Keep the rekey going:
                    # its response installs the new SA; the old one goes now.
                    self._count("child_rekey_delete_collision")
                    out.append(rekey_collision(sa="child", kind="child_delete"))
                    if self.config.role is _ROLE_AWS:
                        out.append(Event("aws_log", {"message": LOG_CHILD_REKEY_COLLISION}))
                    child.deleted = True
                    answer.append(child.spi_in)
                    continue
                # §1.4.1: answer with our inbound SPI of the pair, unless we already asked to delete it
                # ourselves (crossed Deletes are answered without a Delete).
                if not child.deleting:
                    answer.append(child.spi_in)
                sa.children.remove(child)
        payloads = [(_PL_DELETE, DeletePayload(_PR_ESP, tuple(answer)).encode())] if answer else []
        out.insert(0, self._respond(sa, msg, payloads, "delete_response" if deletes else "informational_response"))
        out += self._update_status(now, "child_deleted")
        return out


@functools.lru_cache(maxsize=256)
def _id_payload(value: str) -> bytes:
    """ID payload body for an identity string (IP address, @fqdn, user@fqdn, or FQDN), cached."""
    try:
        ip = ipaddress.ip_address(value)
        return codec.encode_id(IdType.IPV4_ADDR if ip.version == 4 else IdType.IPV6_ADDR, ip.packed)
    except ValueError:
        pass
    if value.startswith("@"):
        return codec.encode_id(IdType.FQDN, value[1:].encode())
    if "@" in value:
        return codec.encode_id(IdType.RFC822_ADDR, value.encode())
    return codec.encode_id(IdType.FQDN, value.encode())


@functools.lru_cache(maxsize=256)
def _response_suite(sa_body: bytes) -> IkeSuite | ChildSuite | None:
    """The suite of an SA payload holding the responder's single chosen proposal (None if it does not hold
    exactly one, or names not exactly one of each transform), cached per body: a responder answers the same
    IKE_SA_INIT offer with the same bytes. Raises DecodeError for a malformed body (not cached)."""
    props = codec.parse_sa(sa_body)
    return suite_from_response(props[0]) if len(props) == 1 else None


_REQUEST_HANDLERS = {
    _EX_IKE_AUTH: "_on_auth_request",
    _EX_CREATE_CHILD_SA: "_on_create_child_request",
    _EX_INFORMATIONAL: "_on_informational_request",
}
"""The IkeV2Peer method that handles each exchange's requests."""

_OFFERS: dict[int, tuple[PeerConfig, Offer, Offer]] = {}


def _offers(config: PeerConfig) -> tuple[Offer, Offer]:
    """``(ike_offer(config), esp_offer(config))`` looked up by identity first: the lru_cache behind those hashes
    the whole (frozen, nested) configuration on every call, which costs more than a peer's other set-up."""
    hit = _OFFERS.get(id(config))
    if hit is not None and hit[0] is config:
        return hit[1], hit[2]
    offers = (ike_offer(config), esp_offer(config))
    if len(_OFFERS) >= 256:
        _OFFERS.clear()
    _OFFERS[id(config)] = (config, *offers)
    return offers


@functools.lru_cache(maxsize=256)
def _packed_ip(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


@functools.lru_cache(maxsize=1024)
def _packed_addr(ip: str, port: int) -> bytes:
    """IP | Port as the NAT detection hash covers them (RFC 7296 §2.23)."""
    return _packed_ip(ip) + port.to_bytes(2, "big")


@functools.lru_cache(maxsize=256)
def _ts_cached(cidr: str, protocol: int, low: int, high: int) -> tuple[Ts, ...]:
    return (Ts.from_cidr(cidr, protocol, low, high),)


def _ts_key(t: TrafficSelector) -> tuple[str, int, int, int]:
    return t.cidr, t.protocol, t.port_low, t.port_high


@functools.lru_cache(maxsize=256)
def _ts_payload(cidr: str, protocol: int, low: int, high: int) -> bytes:
    """The TS payload body for one configured selector (encoded once)."""
    return codec.encode_ts(list(_ts_cached(cidr, protocol, low, high)))


@functools.lru_cache(maxsize=512)
def _narrowed(body: bytes, cidr: str, protocol: int, low: int, high: int) -> tuple[tuple[Ts, ...], bytes]:
    """The peer's TS payload ``body`` narrowed to our configured selector (RFC 7296 §2.9) and its encoding
    (empty if nothing is left), cached: the same proposal arrives in every exchange. Raises DecodeError for a
    malformed body (not cached)."""
    narrowed = _narrow(codec.parse_ts(body), list(_ts_cached(cidr, protocol, low, high)))
    return tuple(narrowed), codec.encode_ts(narrowed) if narrowed else b""


def _narrow(offered: list[Ts], ours: list[Ts]) -> list[Ts]:
    out: list[Ts] = []
    for a in offered:
        for b in ours:
            n = a.intersect(b)
            if n is not None and n not in out:
                out.append(n)
    return out


def _spis(sa: IkeSa) -> tuple[bytes, bytes]:
    """The SPIs an IKE SA answers for (an initiator's SPIr is zero until IKE_SA_INIT is answered)."""
    return sa.spi_i, sa.spi_r


def _no_payloads(sa: IkeSa) -> list[tuple[int, bytes]]:
    return []
