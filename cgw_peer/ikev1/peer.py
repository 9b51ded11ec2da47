"""IKEv1 peer: Main Mode (PSK), Quick Mode, Informational (notify, delete, RFC 3706 DPD), both roles.

Theory of operation
-------------------
One :class:`IkeV1Peer` is one side of one tunnel. It owns:

* ISAKMP SAs (:class:`~cgw_peer.ikev1.sa.IsakmpSa`) keyed by the initiator cookie. At most one is
  *current*: the newest established one, used for Quick Mode and DPD. During a phase-1 rekey two overlap;
  the side that started the rekey deletes the old one once the new one is up (RFC 2409 has no in-place rekey,
  so a rekey is a fresh Main Mode).
* Quick Mode exchanges in flight (:class:`~cgw_peer.ikev1.sa.QmExchange`) keyed by message ID.
* IPsec SA pairs (:class:`~cgw_peer.ikev1.sa.ChildSa`). The tunnel is UP while at least one exists.
* A :class:`~cgw_peer.lifecycle.Lifecycle`: the AWS tunnel behaviour shared with IKEv2 (liveness, the
  DPDTimeoutAction, restarts, status, retransmission schedules). DPD runs only when both sides sent the RFC 3706
  vendor ID; what stays here is the RFC 3706 wire work (R-U-THERE sequence numbers, the encrypted notify).

Inputs are datagrams, timers and API calls; every handler appends to ``self._out`` and the entry point
returns it. Bad bytes raise :class:`~cgw_peer.errors.DecodeError` internally; ``receive_datagram`` turns that
into a ``datagram_dropped`` event and a ``dropped:<reason>`` counter, and never raises.

Timers (all absolute instants, ``*_at``): per ISAKMP SA retransmission / half-open expiry / rekey / hard
expiry; per Quick Mode retransmission; per IPsec SA rekey / expiry; DPD probe / dead; restart; NAT
keepalive. ``next_deadline()`` is their minimum; ``handle_timer(now)`` runs everything due.

Settings used here (``cgw_peer.config.Behaviour``): dpd_enabled, send_dpd_vendor_id, seq_on_retry,
dup_answer_limit, wrong_seq_ack_counts, rekey_initiator, nat_keepalive; through the lifecycle, every liveness,
restart and retransmission setting. From ``TunnelOptions``: DPDTimeoutSeconds/Action, algorithms, lifetimes,
rekey margin/fuzz.
"""

from __future__ import annotations

import functools
import hashlib
import ipaddress
import random
import struct
from collections.abc import Callable
from typing import TypeVar

from cgw_peer.config import DpdTimeoutAction, PeerConfig, Role, SeqOnRetry
from cgw_peer.crypto import keymat_v1 as km
from cgw_peer.crypto.cipher import AesCbc
from cgw_peer.crypto.dh import get_group
from cgw_peer.crypto.prf import get_prf, hash_digest
from cgw_peer.errors import DecodeError
from cgw_peer.events import (
    child_sa_established,
    child_sa_expired,
    delete_received,
    delete_sent,
    ike_sa_established,
    ike_sa_expired,
    ike_sa_replaced,
    negotiation_failed,
    rekey_collision,
    rekey_done,
    rekey_started,
    request_retransmitted,
    response_retransmitted,
)
from cgw_peer.ikev1 import proposals as pr
from cgw_peer.ikev1.sa import ZERO_COOKIE, ChildSa, IsakmpSa, MmState, QmExchange
from cgw_peer.lifecycle import (
    DEAD,
    PROBE,
    Lifecycle,
    Liveness,
    PhaseState,
    Retransmission,
    TunnelStatus,
    redundant,
    rekey_delay,
)
from cgw_peer.lifecycle.retransmit import cached, may_resend
from cgw_peer.lifecycle.status import LOG_DELETE_IKE_SA_FROM_CGW
from cgw_peer.natt import Keepalive
from cgw_peer.satable import SaTable
from cgw_peer.wire.constants import (
    DPD_VENDOR_ID,
    IKE_PORT,
    ISAKMP_VERSION,
    NAT_KEEPALIVE,
    NATT_PORT,
    NATT_RFC3947_VENDOR_ID,
    NON_ESP_MARKER,
    EncapMode,
    ExchangeType,
    Flags,
    IdType,
    NotifyType,
    PayloadType,
    ProtocolId,
)
from cgw_peer.wire.header import HEADER, HEADER_LEN
from cgw_peer.wire.payloads import (
    DeletePayload,
    IdPayload,
    NotifyPayload,
    Payload,
    SaPayload,
    Transform,
    VendorIdPayload,
    check_body,
    dpd_notify,
    encode_body,
    encode_chain,
    encode_raw_chain,
    parse_payload,
    split_chain,
)
from emulator.actions import Action, Address, Event, Transmit

_T = TypeVar("_T")

HALF_OPEN_TIMEOUT = 30.0
"""Seconds a Main Mode may stay unfinished before it is dropped (strongSwan ``half_open_timeout``)."""
QM_DONE_LINGER = 30.0
"""Seconds a finished Quick Mode initiator keeps QM3 to answer a retransmitted QM2."""
REKEY_DELETE_DELAY = 5.0
"""Seconds a rekeyed IPsec SA pair overlaps with its successor before we delete it (strongSwan's
``charon.delete_rekeyed_delay`` default)."""
DPD_MID_WINDOW = 32
"""How many recent DPD message IDs an ISAKMP SA remembers to recognise a replayed R-U-THERE / ACK (an older
replay also fails RFC 3706's sequence-number check)."""
P2_MID_LIMIT = 256
"""At most this many other phase-2 message IDs (the peer's Quick Modes, Deletes, notifies) remembered per ISAKMP SA:
a few per hour in practice, so 256 covers the SA's whole life (8 h at most); a list, small and short to scan."""
PEER_SHORT_LIFETIME_BACKSTOP = 0.95
"""Fraction of a peer-created SA's (shorter) lifetime after which we rekey it ourselves if the peer has not."""
NONCE_LEN = 32
_IDLE: list[Action] = []
"""``self._out`` between calls: each entry point hands its action list to the caller instead of keeping it (a
peer that held its last call's events would keep them alive: 10,000 idle pairs, 10,000 lists). Nothing appends to
it outside an entry point; ``tests/lifecycle/test_timelines.py`` checks that it stays empty."""
_MID = struct.Struct(">I")
_PORT = struct.Struct(">H")
_SEQ = struct.Struct(">I")
_HASH_HDR = struct.Struct(">BBH")
_R_U_THERE = struct.pack(">H", NotifyType.R_U_THERE)
_NT_R_U_THERE = int(NotifyType.R_U_THERE)
_DPD_REQ_HDR = dpd_notify(NotifyType.R_U_THERE, ZERO_COOKIE, ZERO_COOKIE, 0)[:12]
_DPD_ACK_HDR = dpd_notify(NotifyType.R_U_THERE_ACK, ZERO_COOKIE, ZERO_COOKIE, 0)[:12]
_NT_R_U_THERE_ACK = int(NotifyType.R_U_THERE_ACK)
_R_U_THERE_ACK = struct.pack(">H", NotifyType.R_U_THERE_ACK)


@functools.lru_cache(maxsize=1024)
def _ip_bytes(ip: str) -> bytes:
    return ipaddress.ip_address(ip).packed


@functools.lru_cache(maxsize=1024)
def _id_payload(identity: str | None, addr: Address) -> IdPayload:
    """Phase-1 identity: ID_IPV4_ADDR/ID_IPV6_ADDR of the address (protocol 0, port 0 as charon sends), or the
    configured identity (an IP address, else an FQDN)."""
    text = identity if identity is not None else addr[0]
    try:
        ip = ipaddress.ip_address(text)
    except ValueError:
        return IdPayload(IdType.FQDN, 0, 0, text.encode())
    return IdPayload(IdType.IPV4_ADDR if ip.version == 4 else IdType.IPV6_ADDR, 0, 0, ip.packed)


@functools.lru_cache(maxsize=1024)
def _ts_payload(cidr: str, protocol: int, port_low: int, port_high: int) -> IdPayload:
    """Quick Mode client identity (RFC 2409 §5.5): an ID_IPV4_ADDR_SUBNET / ID_IPV6_ADDR_SUBNET."""
    net = ipaddress.ip_network(cidr, strict=False)
    port = port_low if port_low == port_high else 0
    t = IdType.IPV4_ADDR_SUBNET if net.version == 4 else IdType.IPV6_ADDR_SUBNET
    return IdPayload(t, protocol, port, net.network_address.packed + net.netmask.packed)


@functools.lru_cache(maxsize=1024)
def _id_body(identity: str | None, addr: Address) -> bytes:
    """IDii_b / IDir_b: the body of :func:`_id_payload` (what HASH_I / HASH_R cover, RFC 2409 §5)."""
    return encode_body(_id_payload(identity, addr))


@functools.lru_cache(maxsize=1024)
def _ts_body(cidr: str, protocol: int, port_low: int, port_high: int) -> bytes:
    """The body of :func:`_ts_payload`."""
    return encode_body(_ts_payload(cidr, protocol, port_low, port_high))


def _id_span(body: bytes) -> tuple[int, int, int, int, int] | None:
    """A Quick Mode client identity body (RFC 2407 §4.6.2: type, protocol, port, data) as (IP version, first
    address, last address, protocol, port); None for a type that names no addresses (FQDN, KEY_ID, ...) or a
    body of the wrong length."""
    if len(body) < 4:
        return None
    t, proto, port = body[0], body[1], (body[2] << 8) | body[3]
    d = body[4:]
    if t in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
        n = 4 if t == IdType.IPV4_ADDR else 16
        if len(d) != n:
            return None
        a = int.from_bytes(d, "big")
        return (4 if n == 4 else 6), a, a, proto, port
    if t in (IdType.IPV4_ADDR_SUBNET, IdType.IPV6_ADDR_SUBNET, IdType.IPV4_ADDR_RANGE, IdType.IPV6_ADDR_RANGE):
        n = 4 if t in (IdType.IPV4_ADDR_SUBNET, IdType.IPV4_ADDR_RANGE) else 16
        if len(d) != 2 * n:
            return None
        a, b = int.from_bytes(d[:n], "big"), int.from_bytes(d[n:], "big")
        if t in (IdType.IPV4_ADDR_SUBNET, IdType.IPV6_ADDR_SUBNET):  # address and mask
            a, b = a & b, a | (b ^ ((1 << (8 * n)) - 1))
        if a > b:
            return None
        return (4 if n == 4 else 6), a, b, proto, port
    return None


def _id_text(body: bytes) -> str:
    """A client identity in the form the IKEv2 engine reports traffic selectors
    (``10.2.0.0-10.2.0.255[0/0-65535]``: first-last address, [protocol/port range], port 0 meaning any); the
    raw hex for a type that names no addresses."""
    span = _id_span(body)
    if span is None:
        return body.hex()
    version, a, b, proto, port = span
    cls = ipaddress.IPv4Address if version == 4 else ipaddress.IPv6Address
    lo, hi = (port, port) if port else (0, 65535)
    return f"{cls(a)}-{cls(b)}[{proto}/{lo}-{hi}]"


def _host_id(ip: str) -> bytes:
    """The ID_IPV4_ADDR / ID_IPV6_ADDR body of one address (RFC 2409 §5.5: without client identities the
    SA is between the two peers' own addresses)."""
    a = ipaddress.ip_address(ip)
    return struct.pack("!BBH", IdType.IPV4_ADDR if a.version == 4 else IdType.IPV6_ADDR, 0, 0) + a.packed


def _ts_within(got: bytes, offered: bytes) -> bool:
    """The responder may return the client identity we offered or a narrower one (a subset of its addresses,
    a specific protocol/port where we offered any), never a wider or a different one."""
    if got == offered:
        return True
    g, o = _id_span(got), _id_span(offered)
    if g is None or o is None or g[0] != o[0]:
        return False
    return o[1] <= g[1] and g[2] <= o[2] and o[3] in (0, g[3]) and o[4] in (0, g[4])


@functools.lru_cache(maxsize=256)
def _psk_mac(hash_name: str, psk: bytes) -> Callable[[bytes], bytes]:
    """``prf(psk, .)`` with the pre-shared key's HMAC schedule computed once per (prf, PSK)."""
    return get_prf(hash_name).keyed(psk)


def _id_matches(expected: str, got: IdPayload) -> bool:
    try:
        ip = ipaddress.ip_address(expected)
    except ValueError:
        return got.id_type == IdType.FQDN and got.data == expected.encode()
    return got.data == ip.packed


def _cookies(sa: IsakmpSa) -> tuple[bytes, bytes]:
    """The cookies an ISAKMP SA answers for (the responder cookie is zero until MM2)."""
    return sa.icookie, sa.rcookie


def _pad(plain: bytes, block: int) -> bytes:
    """RFC 2409 App. B: "padded up to the nearest block size using bytes containing 0x00"."""
    rem = len(plain) % block
    return plain + bytes(block - rem) if rem else plain


class IkeV1Peer:
    """One side (CGW or AWS) of one IKEv1 tunnel. See the module docstring; API in :mod:`cgw_peer.peer`."""

    __slots__ = (
        "_children",
        "_current",
        "_keepalive",
        "_last_p1",
        "_last_p2",
        "_life",
        "_live",
        "_out",
        "_p1",
        "_p2",
        "_pending_child_rekey",
        "_qms",
        "_rt",
        "_sa_at",
        "_sa_at_dirty",
        "_sas",
        "beh",
        "config",
        "counters",
        "local",
        "remote",
        "rng",
    )

    def __init__(self, config: PeerConfig, *, local: Address, remote: Address, rng: random.Random) -> None:
        self.config = config
        self.beh = config.behaviour
        self.local = local
        self.remote = remote
        self.rng = rng
        self.counters: dict[str, int] = {}
        self._life = Lifecycle(config, rng, 1)
        self._live = self._life.liveness
        """The liveness monitor (``self._life.liveness``), kept at hand for the DPD fast paths."""
        self._rt = self._life.retransmit
        self._keepalive = Keepalive(self.beh.nat_keepalive)
        # Parsing the proposals here makes a bad proposal string a ConfigError at construction. The policies
        # (candidates plus memoised SA payloads and selections) are shared by every peer with this configuration.
        self._p1 = pr.p1_policy(config)
        self._p2 = pr.p2_policy(config)
        self._sas: SaTable[IsakmpSa] = SaTable(_cookies)
        """ISAKMP SAs by initiator cookie; half-open responder ones kept apart (cgw_peer.satable)."""
        self._current: IsakmpSa | None = None
        self._qms: dict[int, QmExchange] = {}
        self._children: list[ChildSa] = []
        self._pending_child_rekey: ChildSa | None = None
        self._out: list[Action] = _IDLE
        self._sa_at: float | None = None
        self._sa_at_dirty = True
        self._last_p1: pr.P1Suite | None = None
        self._last_p2: pr.P2Suite | None = None

    # ================================================================================================ API

    @property
    def status(self) -> TunnelStatus:
        return self._life.status

    def ike_spis(self) -> set[bytes]:
        """Initiator and responder cookies of every ISAKMP SA (established or negotiating)."""
        return self._sas.spis()

    def spi_changes(self) -> tuple[list[bytes], list[bytes]]:
        """Cookies (added, removed) since the last call: the UDP driver's demultiplexing table follows these
        instead of rebuilding :meth:`ike_spis` after every datagram."""
        return self._sas.spi_changes()

    def verify_indexes(self) -> None:
        """Recompute the SA indexes by scanning and compare (for tests; AssertionError on a mismatch)."""
        self._sas.check()

    def start(self, now: float) -> list[Action]:
        self._out = []
        self._sa_at_dirty = True
        if self.config.initiates_at_startup:
            self._initiate_mm(now, rekey=False)
        self._refresh_status(now)
        out, self._out = self._out, _IDLE
        return out

    def initiate(self, now: float) -> list[Action]:
        self._out = []
        self._sa_at_dirty = True
        self._life.reopen()
        if not self._negotiating_fresh() and self._current is None:
            self._initiate_mm(now, rekey=False)
        elif self._current is not None and not self._children and not self._qms:
            self._initiate_qm(now, None)
        self._refresh_status(now)
        out, self._out = self._out, _IDLE
        return out

    def close(self, now: float) -> list[Action]:
        self._out = []
        self._sa_at_dirty = True
        self._life.state.cause("closed")
        self._teardown(now, "closed", send_deletes=True)
        self._life.close()
        self._refresh_status(now)
        out, self._out = self._out, _IDLE
        return out

    def note_esp_inbound(self, now: float) -> None:
        cur = self._current
        if cur is not None and self._life.esp_counts(cur.natt):
            self._liveness(now)

    def next_deadline(self) -> float | None:
        if self._sa_at_dirty:
            self._sa_at = self._sa_deadline()
            self._sa_at_dirty = False
        best = self._sa_at
        live = self._live
        if live.active:
            t = live.deadline()
            if t is not None and (best is None or t < best):
                best = t
        t = self._life.restart.at
        if t is not None and (best is None or t < best):
            best = t
        t = self._keepalive.at
        if t is not None and (best is None or t < best):
            best = t
        return best

    def _sa_deadline(self) -> float | None:
        """Earliest SA-related instant (retransmission, expiry, rekey). Cached in ``_sa_at`` until SA state
        changes (``_sa_at_dirty``), so that the DPD path does not rescan every SA on each call."""
        best: float | None = None

        def upd(t: float | None) -> None:
            nonlocal best
            if t is not None and (best is None or t < best):
                best = t

        for sa in self._sas.own.values():
            if sa.retrans is not None:
                upd(sa.retrans.due())
            upd(sa.expire_at)
            if sa is self._current:
                upd(sa.rekey_at)
        if self._sas.half:  # half-open responder SAs expire in arrival order: the first is the next
            first = self._sas.first_half()
            if first is not None:
                upd(first.expire_at)
        for qm in self._qms.values():
            upd(qm.retrans.due() if qm.retrans is not None else None)
            upd(qm.expire_at)
        for c in self._children:
            upd(c.rekey_at)
            upd(c.expire_at)
        return best

    def handle_timer(self, now: float) -> list[Action]:
        self._out = []
        nd = self.next_deadline()
        if nd is None or now < nd:
            out, self._out = self._out, _IDLE  # early call: no-op
            return out
        sa_at = self._sa_at
        restart_at = self._life.restart.at
        keepalive_at = self._keepalive.at
        if (
            (sa_at is None or now < sa_at)
            and (restart_at is None or now < restart_at)
            and (keepalive_at is None or now < keepalive_at)
        ):
            # Only DPD is due: it touches no SA timer, so skip the full scan and status refresh.
            live = self._live
            if live.active and live.poll(now) == PROBE:
                self._probe(now)  # the usual case, one probe; anything else goes through the loop
            self._dpd_timers(now)
            if self._sa_at_dirty:
                self._refresh_status(now)
            out, self._out = self._out, _IDLE
            return out
        self._sa_at_dirty = True
        try:
            self._timers(now)
        except DecodeError as e:  # pragma: no cover - defensive: a timer must never raise
            self._count(f"timer_error:{e.reason}")
        self._refresh_status(now)
        self._sa_at_dirty = True
        out, self._out = self._out, _IDLE
        return out

    def receive_datagram(self, data: bytes, src: Address, dst: Address, now: float) -> list[Action]:
        self._out = []
        try:
            if self._fast_dpd(data, src, dst, now):
                out, self._out = self._out, _IDLE  # DPD changes no SA state: no status refresh needed
                return out
            self._sa_at_dirty = True
            self._receive(data, src, dst, now)
        except DecodeError as e:
            self._drop(e.reason)
        except (ValueError, KeyError, IndexError, struct.error) as e:  # defensive: bad input never escapes
            self._drop("internal_error:" + type(e).__name__)
        self._refresh_status(now)
        out, self._out = self._out, _IDLE
        return out

    # ========================================================================================= plumbing

    def _count(self, key: str, n: int = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def _emit(self, name: str, **fields: object) -> None:
        self._out.append(Event(name, fields))

    def _drop(self, reason: str) -> None:
        self._count("dropped:" + reason)
        self._out.append(Event("datagram_dropped", {"reason": reason}))

    def _log(self, message: str) -> None:
        if self.config.role is Role.AWS:
            self._out.append(Event("aws_log", {"message": message}))

    def _marked(self, local_port: int) -> bool:
        """Whether IKE messages on this local port carry the RFC 3948 §2.2 non-ESP marker: on the NAT-T port,
        and on every port when either side is configured off 500 (charon does so even for MM1,
        real-peers.md §1.7). A source port rewritten by a NAT does not count: the peer still sits on 500."""
        return local_port != IKE_PORT or self.remote[1] != IKE_PORT

    def _send(self, data: bytes, kind: str, local: Address, remote: Address) -> None:
        if local[1] != IKE_PORT or self.remote[1] != IKE_PORT:  # _marked()
            data = NON_ESP_MARKER + data
        self._out.append(Transmit(data, local, remote, kind))

    def _may_resend(self, holder: IsakmpSa | QmExchange, now: float) -> bool:
        """A retransmitted request may get our cached answer again (``cached_answer_*``); else it is dropped."""
        b = self.beh
        if may_resend(holder, now, b.cached_answer_interval, b.cached_answer_limit):
            return True
        self._drop("resend_limited")
        return False

    def _cookie(self) -> bytes:
        while True:
            c = self.rng.randbytes(8)
            if c != ZERO_COOKIE and c not in self._sas:
                return c

    def _arm_retrans(self, holder: IsakmpSa | QmExchange, data: bytes, kind: str, now: float) -> None:
        holder.retrans = Retransmission(data, kind, self._rt, now, self.rng)

    def _negotiating_fresh(self) -> bool:
        return any(not sa.established and not sa.rekey for sa in self._sas.own.values())

    # ========================================================================================= receive

    def _receive(self, data: bytes, src: Address, dst: Address, now: float) -> None:
        if data == NAT_KEEPALIVE:
            # RFC 3948 §2.3: a NAT keepalive is not a liveness proof and gets no reply.
            self._count("nat_keepalive_received")
            return
        if self._marked(dst[1]):
            if len(data) < 4:
                raise DecodeError("truncated_marker")
            if data[:4] != NON_ESP_MARKER:
                raise DecodeError("esp_on_ike_socket")
            data = data[4:]
        # The checks of wire.header.parse_header(), without building the header object.
        if len(data) < HEADER_LEN:
            raise DecodeError("truncated_header", f"{len(data)} bytes")
        icky, rcky, np, ver, exch, flags, mid, length = HEADER.unpack_from(data)
        if ver >> 4 != 1:
            raise DecodeError("bad_version", f"0x{ver:02x}")
        if length != len(data):
            raise DecodeError("length_mismatch", f"header says {length}, datagram has {len(data)}")
        if ver != ISAKMP_VERSION:
            raise DecodeError("bad_version", f"0x{ver:02x}")  # minor version other than 0
        if exch == ExchangeType.ID_PROT:
            self._on_main_mode(icky, rcky, np, flags, data, src, dst, now)
            return
        sa = self._sas.get(icky)
        if exch == ExchangeType.INFORMATIONAL and not flags & Flags.ENCRYPTION:
            self._on_plain_info(sa, np, data, now)
            return
        if sa is None or sa.rcookie != rcky:
            raise DecodeError("unknown_spi")
        if sa.state is not MmState.ESTABLISHED:
            raise DecodeError("not_established")
        if not flags & Flags.ENCRYPTION:
            raise DecodeError("unencrypted")
        if exch == ExchangeType.INFORMATIONAL:
            self._on_info(sa, mid, data, src, now)
        elif exch == ExchangeType.QUICK_MODE:
            self._on_quick(sa, mid, data, src, now)
        else:
            raise DecodeError("unsupported_exchange", f"{exch}")

    def _decrypt(self, sa: IsakmpSa, data: bytes, iv: bytes) -> bytes:
        ct = data[HEADER_LEN:]
        if not ct or len(ct) % sa.block:
            raise DecodeError("bad_ciphertext_length", f"{len(ct)}")
        assert sa.cipher is not None
        return sa.cipher.decrypt(iv, ct)

    def _encrypt(self, sa: IsakmpSa, exch: int, mid: int, first_np: int, plain: bytes, iv: bytes) -> bytes:
        assert sa.cipher is not None
        padded = _pad(plain, sa.block)
        ct = sa.cipher.encrypt(iv, padded)
        hdr = HEADER.pack(
            sa.icookie, sa.rcookie, first_np, ISAKMP_VERSION, exch, Flags.ENCRYPTION, mid, HEADER_LEN + len(ct)
        )
        return hdr + ct

    # ====================================================================================== Main Mode

    def _vids(self) -> list[tuple[int, bytes]]:
        """Our vendor IDs as (payload type, body) for :func:`encode_raw_chain`."""
        out: list[tuple[int, bytes]] = []
        if self.beh.send_dpd_vendor_id:
            out.append((PayloadType.VENDOR_ID, DPD_VENDOR_ID))
        if self.config.nat_t:
            out.append((PayloadType.VENDOR_ID, NATT_RFC3947_VENDOR_ID))
        return out

    def _initiate_mm(self, now: float, *, rekey: bool) -> None:
        """Send MM1: HDR, SA, VID(DPD), VID(RFC 3947)."""
        if not self._p1.cands:
            return
        sa = IsakmpSa(self._cookie(), ZERO_COOKIE, True, self.local, self.remote)
        sa.rekey = rekey
        # strongSwan sends INITIAL-CONTACT in MM5 when it has no other IKE SA with the peer; the responder then
        # drops stale SAs from a previous life of this peer (crash and return).
        sa.initial_contact = not rekey and self._current is None
        sa.replaces_gen = self._current.gen if rekey and self._current is not None else -1
        sa.expire_at = now + HALF_OPEN_TIMEOUT + self._rt.total
        # Re-initiating (restart, rekey): offer what was negotiated last time first (strongSwan reuses the
        # selected proposal on rekey); the rest of the configured list follows.
        sa.sai_b = self._p1.offer_body(self.config.options.phase1_lifetime_seconds, self._last_p1)
        np, chain = encode_raw_chain([(PayloadType.SA, sa.sai_b), *self._vids()])
        msg = HEADER.pack(sa.icookie, ZERO_COOKIE, np, ISAKMP_VERSION, ExchangeType.ID_PROT, 0, 0, 28 + len(chain))
        msg += chain
        self._sas.add(sa.icookie, sa)
        self._arm_retrans(sa, msg, "main_mode_1", now)
        self._send(msg, "main_mode_1", sa.local, sa.remote)
        if rekey and self._current is not None:
            self._out.append(rekey_started(sa="ike", spi=self._current.spi_hex()))

    def _on_main_mode(
        self, icky: bytes, rcky: bytes, np: int, flags: int, data: bytes, src: Address, dst: Address, now: float
    ) -> None:
        sa = self._sas.get(icky)
        if sa is None:
            if rcky != ZERO_COOKIE:
                raise DecodeError("unknown_spi")
            self._on_mm1(icky, np, data, src, dst, now)
            return
        if not sa.initiator and data == sa.last_in and sa.last_out:
            # A retransmitted request: answer with the same bytes (RFC 2408 §5, no new state), within limits.
            if not self._may_resend(sa, now):
                return
            self._count("retransmit_answered")
            self._send(sa.last_out, sa.last_out_kind, sa.local, sa.remote)
            self._out.append(response_retransmitted(kind=sa.last_out_kind, message_id=0))
            return
        if sa.rcookie != rcky and not (sa.state == MmState.I1 and rcky != ZERO_COOKIE):
            raise DecodeError("unknown_spi")
        st = sa.state
        if st == MmState.I1:
            self._on_mm2(sa, rcky, np, data, now)
        elif st == MmState.R1:
            self._on_mm3(sa, np, data, src, dst, now)
        elif st == MmState.I2:
            self._on_mm4(sa, np, data, src, dst, now)
        elif st == MmState.R2:
            self._on_mm5(sa, flags, data, src, dst, now)
        elif st == MmState.I3:
            self._on_mm6(sa, flags, data, now)
        else:
            raise DecodeError("unexpected_message", "main mode on an established SA")

    def _on_mm1(self, icky: bytes, np: int, data: bytes, src: Address, dst: Address, now: float) -> None:
        # Half-open limits first (cheap, before parsing): a flood of MM1s costs a counter, not state.
        b = self.beh
        if self._sas.half_count() >= b.half_open_limit:
            raise DecodeError("half_open_limit")
        per_src = b.half_open_limit_per_source
        if per_src is not None and self._sas.half_count(src[0]) >= per_src:
            raise DecodeError("half_open_limit_per_source")
        raw, _ = split_chain(np, data[HEADER_LEN:])
        sa_body = b""
        selected: tuple[SaPayload, tuple[pr.P1Suite, int, Transform] | None, bytes] | None = None
        vids: list[bytes] = []
        for t, body in raw:
            if t == PayloadType.SA:
                # Parsed, verified and selected once per distinct offer (P1Policy.select).
                sel = self._p1.select(body)
                if selected is None:
                    selected, sa_body = sel, body
                continue
            p = parse_payload(t, body)
            if isinstance(p, VendorIdPayload):
                vids.append(p.data)
        if selected is None:
            raise DecodeError("missing_sa")
        _sa_p, chosen, reply_body = selected
        # A crossing fresh Main Mode of ours (both sides restarting): the lower initiator cookie wins, so both
        # sides make the same choice and exactly one ISAKMP SA survives.
        for mine in list(self._sas.own.values()):
            if mine.initiator and not mine.established and not mine.rekey:
                if mine.icookie < icky:
                    raise DecodeError("mm_collision")
                self._count("mm_collision_yielded")
                self._sas.remove(mine.icookie)
        rcky = self._cookie()
        if chosen is None:
            self._send_plain_notify(icky, rcky, NotifyType.NO_PROPOSAL_CHOSEN, src, dst)
            self._count("ike:no_proposal_chosen")
            self._out.append(negotiation_failed(exchange="main_mode", reason="no_proposal_chosen"))
            return
        suite, life, _transform = chosen
        sa = IsakmpSa(icky, rcky, False, dst, src)
        sa.replaces_gen = self._current.gen if self._current is not None else -1
        sa.suite = suite
        sa.lifetime = min(life, self.config.options.phase1_lifetime_seconds)
        sa.sai_b = sa_body
        sa.peer_dpd = DPD_VENDOR_ID in vids
        sa.peer_natt = NATT_RFC3947_VENDOR_ID in vids
        sa.expire_at = now + HALF_OPEN_TIMEOUT
        self._setup_prf(sa)
        # reply_body: our SA payload, the chosen transform inside the initiator's first proposal number.
        np2, chain = encode_raw_chain([(PayloadType.SA, reply_body), *self._vids()])
        msg = HEADER.pack(icky, rcky, np2, ISAKMP_VERSION, ExchangeType.ID_PROT, 0, 0, 28 + len(chain)) + chain
        self._sas.add(icky, sa, half_open_from=src[0])
        sa.last_in, sa.last_out, sa.last_out_kind = data, msg, "main_mode_2"
        self._send(msg, "main_mode_2", sa.local, sa.remote)

    def _setup_prf(self, sa: IsakmpSa) -> None:
        assert sa.suite is not None
        sa.prf = get_prf(sa.suite.hash)
        sa.hash_name = sa.suite.hash

    def _on_mm2(self, sa: IsakmpSa, rcky: bytes, np: int, data: bytes, now: float) -> None:
        raw, _ = split_chain(np, data[HEADER_LEN:])
        chosen: pr.P1Suite | None = None
        life = self.config.options.phase1_lifetime_seconds
        vids: list[bytes] = []
        for t, body in raw:
            if t == PayloadType.SA:
                got = self._p1.accept(body)  # parsed and checked once per distinct answer
                chosen, life = got[0], min(life, got[1])
                continue
            check_body(t, body)
            if t == PayloadType.VENDOR_ID:
                vids.append(body)
        if chosen is None:
            raise DecodeError("missing_sa")
        sa.rcookie = rcky
        self._sas.add_spi(rcky)
        sa.suite = chosen
        sa.lifetime = life
        sa.peer_dpd = DPD_VENDOR_ID in vids
        sa.peer_natt = NATT_RFC3947_VENDOR_ID in vids
        self._setup_prf(sa)
        sa.dh = get_group(chosen.group).generate(self.rng)
        sa.gxi = sa.dh.public
        sa.ni = self.rng.randbytes(NONCE_LEN)
        parts: list[tuple[int, bytes]] = [(PayloadType.KE, sa.gxi), (PayloadType.NONCE, sa.ni)]
        if self.config.nat_t and sa.peer_natt:
            parts += self._natd_parts(sa, self._natd_hash(sa, sa.local), self._natd_hash(sa, sa.remote))
        np3, chain = encode_raw_chain(parts)
        msg = HEADER.pack(sa.icookie, rcky, np3, ISAKMP_VERSION, ExchangeType.ID_PROT, 0, 0, 28 + len(chain)) + chain
        sa.state = MmState.I2
        self._arm_retrans(sa, msg, "main_mode_3", now)
        self._send(msg, "main_mode_3", sa.local, sa.remote)

    def _natd_hash(self, sa: IsakmpSa, addr: Address) -> bytes:
        # RFC 3947 §3.2: HASH = HASH(CKY-I | CKY-R | IP | Port), with the negotiated hash.
        return hash_digest(sa.hash_name, sa.icookie + sa.rcookie + _ip_bytes(addr[0]) + _PORT.pack(addr[1]))

    def _natd_parts(self, sa: IsakmpSa, h_local: bytes, h_remote: bytes) -> list[tuple[int, bytes]]:
        """Our two NAT-D payloads from the hashes of our and the peer's address (NAT-T in use on both sides)."""
        # First the peer's address (the destination), then ours. To force UDP encapsulation without a NAT,
        # send a hash that cannot match (what strongSwan does for encap=yes), so the peer floats too.
        if self.config.force_encap:
            h_local = hash_digest(sa.hash_name, self.rng.randbytes(16))
        return [(PayloadType.NAT_D, h_remote), (PayloadType.NAT_D, h_local)]

    def _check_natd(
        self, sa: IsakmpSa, natds: list[bytes], src: Address, dst: Address, hashes: tuple[bytes, bytes] | None = None
    ) -> None:
        """``hashes``: the NAT-D hashes of ``dst`` and ``src`` when the caller has them already."""
        if not (self.config.nat_t and sa.peer_natt) or not natds:
            return
        h_dst, h_src = hashes if hashes is not None else (self._natd_hash(sa, dst), self._natd_hash(sa, src))
        # RFC 3947 §3.2: the first NAT-D is our address as the peer sees it; the rest are the peer's.
        sa.nat_local = natds[0] != h_dst
        sa.nat_remote = h_src not in natds[1:]
        sa.natt = sa.nat_local or sa.nat_remote or self.config.force_encap

    def _parse_ke_nonce(self, raw: list[tuple[int, bytes]]) -> tuple[bytes, bytes, list[bytes], list[bytes]]:
        ke = nonce = b""
        natds: list[bytes] = []
        vids: list[bytes] = []
        for t, body in raw:
            check_body(t, body)  # as parse_payload() would, on the bodies we keep anyway
            if t == PayloadType.KE:
                ke = body
            elif t == PayloadType.NONCE:
                nonce = body
            elif t == PayloadType.NAT_D:
                natds.append(body)
            elif t == PayloadType.VENDOR_ID:
                vids.append(body)
        if not ke:
            raise DecodeError("missing_ke")
        if not nonce:
            raise DecodeError("missing_nonce")
        return ke, nonce, natds, vids

    def _derive(self, sa: IsakmpSa, gxy: bytes) -> None:
        """SKEYID chain and Ka (RFC 2409 §5, App. B); the MM5 IV = HASH(g^xi | g^xr)."""
        assert sa.prf is not None and sa.suite is not None
        prf = sa.prf
        sa.skeyid = _psk_mac(prf.name, self.config.psk)(sa.ni + sa.nr)  # km.skeyid_psk (RFC 2409 §5)
        d, a, e = km.skeyid_chain(prf, sa.skeyid, gxy, sa.icookie, sa.rcookie)
        sa.skeyid_d, sa.skeyid_a = d, a
        sa.ka = km.expand_ka(prf, e, sa.suite.enc_bits // 8)
        sa.cipher = AesCbc(sa.ka)
        sa.mac_a = prf.keyed(a)
        sa.iv = km.phase1_iv(sa.hash_name, sa.gxi, sa.gxr, sa.block)

    def _on_mm3(self, sa: IsakmpSa, np: int, data: bytes, src: Address, dst: Address, now: float) -> None:
        raw, _ = split_chain(np, data[HEADER_LEN:])
        ke, nonce, natds, _v = self._parse_ke_nonce(raw)
        assert sa.suite is not None
        sa.dh = get_group(sa.suite.group).generate(self.rng)
        gxy = sa.dh.compute(ke)  # DecodeError("invalid_ke") on a bad value
        sa.gxi, sa.gxr, sa.ni = ke, sa.dh.public, nonce
        sa.nr = self.rng.randbytes(NONCE_LEN)
        self._derive(sa, gxy)
        parts: list[tuple[int, bytes]] = [(PayloadType.KE, sa.gxr), (PayloadType.NONCE, sa.nr)]
        if self.config.nat_t and sa.peer_natt:
            # The hashes of our and the peer's address serve both the check and our own NAT-D payloads.
            h_dst, h_src = self._natd_hash(sa, dst), self._natd_hash(sa, src)
            self._check_natd(sa, natds, src, dst, (h_dst, h_src))
            parts += self._natd_parts(sa, h_dst, h_src)
        np4, chain = encode_raw_chain(parts)
        msg = HEADER.pack(sa.icookie, sa.rcookie, np4, ISAKMP_VERSION, ExchangeType.ID_PROT, 0, 0, 28 + len(chain))
        msg += chain
        sa.state = MmState.R2
        sa.last_in, sa.last_out, sa.last_out_kind = data, msg, "main_mode_4"
        self._send(msg, "main_mode_4", sa.local, sa.remote)

    def _float(self, sa: IsakmpSa) -> None:
        """RFC 3947 §4: after NAT-D, the initiator moves to port 4500 (charon floats to the peer's 4500 only when
        the peer used 500; real-peers.md §1.7)."""
        if sa.local[1] == IKE_PORT:
            sa.local = (sa.local[0], NATT_PORT)
        if sa.remote[1] == IKE_PORT:
            sa.remote = (sa.remote[0], NATT_PORT)

    def _on_mm4(self, sa: IsakmpSa, np: int, data: bytes, src: Address, dst: Address, now: float) -> None:
        raw, _ = split_chain(np, data[HEADER_LEN:])
        ke, nonce, natds, _v = self._parse_ke_nonce(raw)
        assert sa.dh is not None
        gxy = sa.dh.compute(ke)
        sa.gxr, sa.nr = ke, nonce
        self._derive(sa, gxy)
        self._check_natd(sa, natds, src, dst)
        if sa.natt:
            self._float(sa)
        idb = _id_body(self.config.local_id, sa.local)
        assert sa.prf is not None
        h = km.hash_i(sa.prf, sa.skeyid, sa.gxi, sa.gxr, sa.icookie, sa.rcookie, sa.sai_b, idb)
        parts: list[tuple[int, bytes]] = [(PayloadType.ID, idb), (PayloadType.HASH, h)]
        # INITIAL-CONTACT says "I hold no other SA with you": decided now, not at MM1, since the peer's own Main
        # Mode may have completed meanwhile (both sides restarting at once; found by the fault campaigns).
        sa.initial_contact = sa.initial_contact and self._current is None
        if sa.initial_contact:
            ic = NotifyPayload(NotifyType.INITIAL_CONTACT, ProtocolId.ISAKMP, sa.icookie + sa.rcookie)
            parts.append((PayloadType.NOTIFY, encode_body(ic)))
        np5, chain = encode_raw_chain(parts)
        msg = self._encrypt(sa, ExchangeType.ID_PROT, 0, np5, chain, sa.iv)
        sa.iv = msg[-sa.block :]
        sa.state = MmState.I3
        self._arm_retrans(sa, msg, "main_mode_5", now)
        self._send(msg, "main_mode_5", sa.local, sa.remote)

    def _parse_id_hash(self, sa: IsakmpSa, plain: bytes, np: int) -> tuple[IdPayload, bytes, bytes, bool]:
        try:
            raw, _ = split_chain(np, plain, allow_trailing=True)
        except DecodeError:
            # Garbage after decryption: almost always a different key, i.e. a wrong pre-shared key.
            raise DecodeError("decrypt_failed") from None
        id_p: IdPayload | None = None
        idb = h = b""
        ic = False
        for t, body in raw:
            if t == PayloadType.HASH:
                check_body(t, body)
                h = body
                continue
            p = parse_payload(t, body)
            if isinstance(p, IdPayload):
                id_p, idb = p, body
            elif isinstance(p, NotifyPayload) and p.notify_type == NotifyType.INITIAL_CONTACT:
                ic = True
        if id_p is None or not h:
            raise DecodeError("decrypt_failed", "no ID/HASH")
        return id_p, idb, h, ic

    def _on_mm5(self, sa: IsakmpSa, flags: int, data: bytes, src: Address, dst: Address, now: float) -> None:
        if not flags & Flags.ENCRYPTION:
            raise DecodeError("unencrypted")
        np = data[16]
        plain = self._decrypt(sa, data, sa.iv)
        id_p, idb, h, ic = self._parse_id_hash(sa, plain, np)
        assert sa.prf is not None
        if h != km.hash_i(sa.prf, sa.skeyid, sa.gxi, sa.gxr, sa.icookie, sa.rcookie, sa.sai_b, idb):
            raise DecodeError("bad_hash", "HASH_I (wrong pre-shared key?)")
        if self.config.remote_id is not None and not _id_matches(self.config.remote_id, id_p):
            raise DecodeError("id_mismatch")
        sa.iv = data[-sa.block :]
        # NAT-T: the initiator floated; answer where MM5 came from (RFC 3947 §4).
        floated = dst[1] != sa.local[1]
        sa.remote, sa.local = src, dst
        if floated:
            sa.natt = True
        myb = _id_body(self.config.local_id, sa.local)
        hr = km.hash_r(sa.prf, sa.skeyid, sa.gxi, sa.gxr, sa.icookie, sa.rcookie, sa.sai_b, myb)
        np6, chain = encode_raw_chain([(PayloadType.ID, myb), (PayloadType.HASH, hr)])
        msg = self._encrypt(sa, ExchangeType.ID_PROT, 0, np6, chain, sa.iv)
        sa.last_p1_block = msg[-sa.block :]
        sa.last_in, sa.last_out, sa.last_out_kind = data, msg, "main_mode_6"
        self._send(msg, "main_mode_6", sa.local, sa.remote)
        if ic:
            self._initial_contact(sa)
        self._ike_established(sa, now)

    def _on_mm6(self, sa: IsakmpSa, flags: int, data: bytes, now: float) -> None:
        if not flags & Flags.ENCRYPTION:
            raise DecodeError("unencrypted")
        np = data[16]
        plain = self._decrypt(sa, data, sa.iv)
        id_p, idb, h, _ic = self._parse_id_hash(sa, plain, np)
        assert sa.prf is not None
        if h != km.hash_r(sa.prf, sa.skeyid, sa.gxi, sa.gxr, sa.icookie, sa.rcookie, sa.sai_b, idb):
            raise DecodeError("bad_hash", "HASH_R")
        if self.config.remote_id is not None and not _id_matches(self.config.remote_id, id_p):
            raise DecodeError("id_mismatch")
        sa.last_p1_block = data[-sa.block :]
        self._ike_established(sa, now)

    def _initial_contact(self, keep: IsakmpSa) -> None:
        """RFC 2407 §4.6.3.3 INITIAL-CONTACT: the peer has no other SA with us; drop our stale ones silently."""
        for other in list(self._sas.own.values()):
            if other is not keep and other.established:
                self._sas.remove(other.icookie)
                self._count("initial_contact_deleted")
                self._out.append(ike_sa_replaced(spi=other.spi_hex(), reason="initial_contact"))
        if self._children:
            self._count("initial_contact_deleted", len(self._children))
            self._children.clear()
            self._life.state.cause("initial_contact")
        self._qms.clear()
        if self._current is not keep:
            self._current = None

    def _ike_established(self, sa: IsakmpSa, now: float) -> None:
        self._sas.promote(sa.icookie)  # authenticated: no longer half-open
        if not sa.initiator and sa.gen == 0 and sa.replaces_gen < 0:
            # The peer brought the tunnel up: a fresh Main Mode of ours that has not reached MM5 would only make
            # a second ISAKMP SA; it is abandoned (the peer's half-open state for it expires on its own).
            for mine in list(self._sas.own.values()):
                if mine.initiator and not mine.rekey and mine.state in (MmState.I1, MmState.I2):
                    self._sas.remove(mine.icookie)
                    self._count("negotiation_superseded")
        sa.state = MmState.ESTABLISHED
        sa.established_at = now
        sa.expire_at = now + sa.lifetime
        opts = self.config.options
        if self.beh.rekey_initiator:
            sa.rekey_at = now + rekey_delay(
                sa.lifetime, opts.rekey_margin_time_seconds, opts.rekey_fuzz_percentage, self.rng
            )
        # RFC 3706 §6.1: the first sequence number is random with the high bit clear.
        sa.dpd_seq = self.rng.getrandbits(32) & 0x7FFFFFFF
        self._prepare_dpd(sa)
        if sa.initiator:
            sa.retrans = None
        rekey = sa.rekey
        sa.gen = sa.replaces_gen + 1
        if sa.gen > 0:
            sa.low_nonce = min(sa.ni, sa.nr)  # kept for the collision rule (the nonces themselves are dropped)
        sa.forget_negotiation()
        if not sa.initiator:
            pass  # keep last_in/last_out: a retransmitted MM5 (MM6 lost) must get MM6 again
        assert sa.suite is not None
        self._last_p1 = sa.suite
        self._out.append(
            ike_sa_established(
                spi_i=sa.icookie.hex(),
                spi_r=sa.rcookie.hex(),
                version=1,
                proposal=sa.suite.name,
                initiator=sa.initiator,
                nat=sa.natt,
                local=f"{sa.local[0]}:{sa.local[1]}",
                remote=f"{sa.remote[0]}:{sa.remote[1]}",
            )
        )
        self._emit("sa_keys", ike_version=1, icookie=sa.icookie.hex(), rcookie=sa.rcookie.hex(), enc_key=sa.ka.hex())
        rival = self._rekey_rival(sa)
        if rival is not None:
            sa = self._resolve_rekey_collision(sa, rival, now)
            rekey = False  # the survivor's creator deletes the old SA (done in the resolution)
        old = self._current
        self._current = sa
        if old is not None and old is not sa:
            old.rekey_at = None
            self._out.append(rekey_done(sa="ike", old_spi=old.spi_hex(), new_spi=sa.spi_hex(), initiator=rekey))
            if rekey:
                self._delete_isakmp(old, now, send=True)
        # DPD runs only when both sides sent the RFC 3706 vendor ID (libreswan: "remote peer did not advertise").
        live = self._live
        if self.beh.dpd_enabled and self.beh.send_dpd_vendor_id and sa.peer_dpd:
            live.periodic = self._life.periodic(sa.natt)
            if old is None or not live.active:
                live.start(now)
            else:
                live.on_inbound(now)  # a new SA was just authenticated: the peer is alive
        else:
            live.stop()
        self._keepalive.start(now, sa.natt and sa.nat_local)
        if sa.initiator and (self._pending_child_rekey is not None or (not rekey and not self._children)):
            rk = self._pending_child_rekey
            self._pending_child_rekey = None
            self._initiate_qm(now, rk)

    def _rekey_rival(self, sa: IsakmpSa) -> IsakmpSa | None:
        """Another established ISAKMP SA that replaces the same one as ``sa``: both sides started a phase-1 rekey
        at once (RFC 2409 has no in-place rekey; each rekey is a fresh Main Mode, so a collision leaves two)."""
        if sa.gen == 0:
            return None
        for other in self._sas.own.values():
            if other is not sa and other.state is MmState.ESTABLISHED and other.gen == sa.gen:
                return other
        return None

    def _resolve_rekey_collision(self, sa: IsakmpSa, rival: IsakmpSa, now: float) -> IsakmpSa:
        """Both sides rekeyed phase 1 at once. RFC 2409 says nothing; without a rule each side deletes one of the
        two new SAs and the old one expires: a permanent outage. The shared rule (cgw_peer.lifecycle.rekey,
        RFC 7296 §2.8.1): the SA holding the lowest nonce is redundant and is deleted by its creator; the creator
        of the survivor deletes the old SA. Both sides see the same four nonces, so they agree without talking.
        Returns the survivor."""
        loser = redundant([(sa.low_nonce, sa.low_nonce, sa), (rival.low_nonce, rival.low_nonce, rival)])
        winner = rival if loser is sa else sa
        self._count("ike_rekey_collision")
        self._out.append(
            rekey_collision(
                sa="ike", kind="simultaneous_rekey", redundant=loser.spi_hex(), ours_redundant=loser.initiator
            )
        )
        if loser.initiator:
            self._delete_isakmp(loser, now, send=True)
        if winner.initiator:
            for old in [s for s in self._sas.own.values() if s.established and s.gen == winner.gen - 1]:
                if self._current is old:
                    self._current = winner
                self._delete_isakmp(old, now, send=True)
        return winner

    def _prepare_dpd(self, sa: IsakmpSa) -> None:
        """Precompute the constant parts of this SA's DPD messages (RFC 3706 §5.3 notify behind HASH(1))."""
        assert sa.prf is not None
        cookies = sa.icookie + sa.rcookie
        sa.iv_hash = getattr(hashlib, sa.hash_name)
        # dpd_notify() without the sequence number: generic header, DOI, protocol, SPI size, type, cookies.
        sa.dpd_req_prefix = _DPD_REQ_HDR + cookies
        sa.dpd_ack_prefix = _DPD_ACK_HDR + cookies
        plen = sa.prf.digest_size
        sa.dpd_hash_hdr = _HASH_HDR.pack(PayloadType.NOTIFY, 0, 4 + plen)
        used = 4 + plen + 32
        sa.dpd_pad = bytes(-used % sa.block)
        sa.dpd_ct_len = used + len(sa.dpd_pad)
        sa.dpd_len = _MID.pack(HEADER_LEN + sa.dpd_ct_len)
        sa.dpd_hl = 4 + plen
        sa.dpd_notify_hdr = sa.dpd_req_prefix[:10]
        sa.dpd_hdr_prefix = cookies + bytes(
            (PayloadType.HASH, ISAKMP_VERSION, ExchangeType.INFORMATIONAL, Flags.ENCRYPTION)
        )

    def _phase2_iv(self, sa: IsakmpSa, mid_packed: bytes) -> bytes:
        """RFC 2409 App. B: IV = HASH(last phase-1 CBC block | M-ID), first block (same as keymat_v1.phase2_iv)."""
        assert sa.iv_hash is not None
        digest: bytes = sa.iv_hash(sa.last_p1_block + mid_packed).digest()
        return digest[: sa.block]

    def _fast_dpd(self, data: bytes, src: Address, dst: Address, now: float) -> bool:
        """Handle a well-formed R-U-THERE / ACK without the generic parser; False hands the datagram over to
        the generic path (which also produces the precise drop reason for anything malformed).

        Checked here, on the bytes: header prefix (cookies, HASH first, version, Informational, encrypted),
        length, HASH payload header, notify header up to the SPI size, notify type, HASH(1) (RFC 2409 §5.7)."""
        if dst[1] != IKE_PORT or self.remote[1] != IKE_PORT:
            if data[:4] != NON_ESP_MARKER:
                return False
            data = data[4:]
        sa = self._sas.own.get(data[:8])  # DPD runs on established SAs: never half-open ones
        if sa is None:
            return False
        iv_hash = sa.iv_hash
        if iv_hash is None:
            return False  # set only once the SA is established (with mac_a and cipher)
        if len(data) != HEADER_LEN + sa.dpd_ct_len or data[:20] != sa.dpd_hdr_prefix or data[24:28] != sa.dpd_len:
            return False
        mac_a = sa.mac_a
        cipher = sa.cipher
        assert mac_a is not None and cipher is not None
        mp = data[20:24]
        plain = cipher.decrypt(iv_hash(sa.last_p1_block + mp).digest()[:16], data[HEADER_LEN:])
        hl = sa.dpd_hl  # the HASH payload: 4 + prf length
        notify = plain[hl : hl + 32]
        ntype = notify[10:12]
        if (
            plain[:4] != sa.dpd_hash_hdr
            or notify[:10] != sa.dpd_notify_hdr
            or (ntype != _R_U_THERE and ntype != _R_U_THERE_ACK)
            or mac_a(mp + notify) != plain[4:hl]
        ):
            return False
        # As _replayed(sa, mp, True), inlined on this per-probe path (no call unless it is a replay).
        dm = sa.dpd_mids
        if dm is None:
            if self._replayed(sa, mp, True):
                return True
        else:
            pm = sa.p2_mids
            if mp in dm or (pm is not None and mp in pm):
                self._replay_drop(True)
                return True
            ring = sa.dpd_ring
            assert ring is not None
            i = sa.dpd_ring_i
            old = ring[i]
            if old in dm:
                del dm[old]
            ring[i] = mp
            dm[mp] = None
            sa.dpd_ring_i = (i + 1) % DPD_MID_WINDOW
        seq = _SEQ.unpack_from(notify, 28)[0]
        fresh = self._on_r_u_there(sa, seq) if ntype == _R_U_THERE else self._on_dpd_ack(sa, seq)
        if not fresh:
            return True
        # As _authenticated(sa, now, src), inlined on this path: NAT remapping, then liveness.
        if sa.natt and src != sa.remote:
            sa.remote = src
            self._count("nat_mapping_changed")
        live = self._live
        if live.active:
            live.on_inbound(now)
        return True

    # ====================================================================================== Quick Mode

    def _new_mid(self) -> int:
        while True:
            mid = self.rng.getrandbits(32)
            if mid and mid not in self._qms:
                return mid

    def _new_spi(self) -> bytes:
        # SPIs 1-255 are reserved (RFC 4303 §2.1).
        return (self.rng.randrange(0x100, 0xFFFFFFFF)).to_bytes(4, "big")

    def _hash_payload(self, h: bytes, next_type: int) -> bytes:
        return _HASH_HDR.pack(next_type, 0, 4 + len(h)) + h

    def _initiate_qm(self, now: float, rekey_of: ChildSa | None) -> None:
        """QM1: HDR*, HASH(1), SA, Ni [, KE] , IDci, IDcr (RFC 2409 §5.5)."""
        sa = self._current
        if sa is None or not sa.established:
            return
        offer = self._p2.offer(self._last_p2)
        if not offer:
            return
        qm = QmExchange(sa, self._new_mid(), True)
        qm.rekey_of = rekey_of
        qm.offer = offer
        qm.spi_in = self._new_spi()
        qm.ni = self.rng.randbytes(NONCE_LEN)
        qm.encap = EncapMode.UDP_TUNNEL if sa.natt else EncapMode.TUNNEL
        lifetime = self.config.options.phase2_lifetime_seconds
        if rekey_of is not None and 0 < rekey_of.lifetime < lifetime:
            # The SA being replaced had a shorter lifetime the peer chose: offer that again. A peer such as charon
            # echoes whatever lifetime we offer but still expires the SA on its own shorter one.
            lifetime = max(1, int(rekey_of.lifetime))
        sa_body = self._p2.offer_body(self._last_p2, qm.spi_in, lifetime, qm.encap)
        parts: list[tuple[int, bytes]] = [(PayloadType.SA, sa_body), (PayloadType.NONCE, qm.ni)]
        group = offer[0].group
        if group:
            qm.dh = get_group(group).generate(self.rng)
            parts.append((PayloadType.KE, qm.dh.public))
        lts, rts = self.config.local_ts, self.config.remote_ts
        qm.id_ci = _ts_body(lts.cidr, lts.protocol, lts.port_low, lts.port_high)
        qm.id_cr = _ts_body(rts.cidr, rts.protocol, rts.port_low, rts.port_high)
        parts.append((PayloadType.ID, qm.id_ci))
        parts.append((PayloadType.ID, qm.id_cr))
        np, rest = encode_raw_chain(parts)
        assert sa.mac_a is not None
        mp = _MID.pack(qm.mid)
        h = sa.mac_a(mp + rest)
        plain = self._hash_payload(h, np) + rest
        msg = self._encrypt(sa, ExchangeType.QUICK_MODE, qm.mid, PayloadType.HASH, plain, self._phase2_iv(sa, mp))
        qm.iv = msg[-sa.block :]
        qm.expire_at = now + self._rt.total + QM_DONE_LINGER
        self._qms[qm.mid] = qm
        self._arm_retrans(qm, msg, "quick_mode_1", now)
        self._send(msg, "quick_mode_1", sa.local, sa.remote)
        if rekey_of is not None:
            self._out.append(rekey_started(sa="child", spi=rekey_of.spi_in.hex()))

    def _verify_hash_first(
        self, sa: IsakmpSa, plain: bytes, np: int, prefix: bytes
    ) -> tuple[list[tuple[int, bytes]], bytes]:
        """Split a protected phase-2 message: HASH first, then check prf(SKEYID_a, prefix | rest)."""
        raw, end = split_chain(np, plain, allow_trailing=True)
        if not raw or raw[0][0] != PayloadType.HASH:
            raise DecodeError("missing_hash")
        hlen = 4 + len(raw[0][1])
        rest = plain[hlen:end]
        assert sa.mac_a is not None
        if raw[0][1] != sa.mac_a(prefix + rest):
            raise DecodeError("bad_hash")
        return raw[1:], rest

    def _on_quick(self, sa: IsakmpSa, mid: int, data: bytes, src: Address, now: float) -> None:
        qm = self._qms.get(mid)
        np = data[16]
        if qm is None:
            self._on_qm1(sa, mid, np, data, now)
            return
        if qm.isakmp is not sa:
            raise DecodeError("unknown_message_id")
        if not qm.initiator:
            if data == qm.last_in:
                if not self._may_resend(qm, now):
                    return
                self._count("retransmit_answered")
                assert qm.retrans is not None
                self._send(qm.retrans.data, "quick_mode_2", sa.local, sa.remote)
                self._out.append(response_retransmitted(kind="quick_mode_2", message_id=qm.mid))
                return
            self._on_qm3(sa, qm, np, data, now)
        elif qm.done:
            if data == qm.last_in and qm.retrans is not None:
                # QM3 was lost: the responder retransmits QM2; send QM3 again.
                if not self._may_resend(qm, now):
                    return
                self._count("retransmit_answered")
                self._send(qm.retrans.data, "quick_mode_3", sa.local, sa.remote)
                self._out.append(response_retransmitted(kind="quick_mode_3", message_id=qm.mid))
                return
            raise DecodeError("unexpected_message")
        else:
            self._on_qm2(sa, qm, np, data, now)

    def _parse_qm(
        self, raw: list[tuple[int, bytes]], on_sa: Callable[[bytes], _T]
    ) -> tuple[_T, bytes, bytes, list[bytes]]:
        """The payloads after HASH of QM1 or QM2: (``on_sa`` of the SA payload body, nonce, KE data, ID bodies).
        ``on_sa`` is :meth:`P2Policy.select` (we respond) or :meth:`P2Policy.answer` (we initiated). Each payload
        is validated as :func:`parse_payload` would, in order."""
        sa_res: _T | None = None
        nonce = ke = b""
        ids: list[bytes] = []
        for t, body in raw:
            if t == PayloadType.SA:
                sa_res = on_sa(body)
                continue
            check_body(t, body)
            if t == PayloadType.NONCE:
                nonce = body
            elif t == PayloadType.KE:
                ke = body
            elif t == PayloadType.ID:
                ids.append(body)
        if sa_res is None:
            raise DecodeError("missing_sa")
        if not nonce:
            raise DecodeError("missing_nonce")
        if len(ids) not in (0, 2):
            raise DecodeError("bad_id_count")
        return sa_res, nonce, ke, ids

    def _on_qm1(self, sa: IsakmpSa, mid: int, np: int, data: bytes, now: float) -> None:
        mp = _MID.pack(mid)
        plain = self._decrypt(sa, data, self._phase2_iv(sa, mp))
        raw, _rest = self._verify_hash_first(sa, plain, np, mp)
        if self._replayed(sa, mp, False):
            return  # an old QM1 again: never a new Quick Mode, never liveness
        self._authenticated(sa, now)
        sel, ni, ke, ids = self._parse_qm(raw, self._p2.select)
        choice, peer_spi, reply_head, reply_tail = sel
        if choice is None:
            self._count("child:no_proposal_chosen")
            notify = NotifyPayload(NotifyType.NO_PROPOSAL_CHOSEN, ProtocolId.ESP, peer_spi)
            self._send_info(sa, [notify], "informational")
            self._out.append(negotiation_failed(exchange="quick_mode", reason="no_proposal_chosen"))
            return
        suite, life, encap = choice
        if suite.group and not ke:
            raise DecodeError("missing_ke", "PFS group chosen but no KE")
        qm = QmExchange(sa, mid, False)
        qm.suite = suite
        qm.lifetime = min(life, self.config.options.phase2_lifetime_seconds)
        qm.encap = encap
        qm.ni = ni
        qm.nr = self.rng.randbytes(NONCE_LEN)
        qm.spi_out = peer_spi
        qm.spi_in = self._new_spi()
        if ids:
            qm.id_ci, qm.id_cr = ids[0], ids[1]
        # Our SA payload: the chosen transform in the chosen proposal, with our inbound SPI.
        parts: list[tuple[int, bytes]] = [
            (PayloadType.SA, reply_head + qm.spi_in + reply_tail),
            (PayloadType.NONCE, qm.nr),
        ]
        if suite.group:
            qm.dh = get_group(suite.group).generate(self.rng)
            qm.gqm = qm.dh.compute(ke)
            parts.append((PayloadType.KE, qm.dh.public))
        # Echo the client IDs (RFC 2409 §5.5: the responder returns the identities it accepted).
        parts += [(PayloadType.ID, b) for b in ids]
        np2, rest = encode_raw_chain(parts)
        assert sa.mac_a is not None
        h = sa.mac_a(mp + ni + rest)
        plain2 = self._hash_payload(h, np2) + rest
        qm.iv = data[-sa.block :]
        msg = self._encrypt(sa, ExchangeType.QUICK_MODE, mid, PayloadType.HASH, plain2, qm.iv)
        qm.iv = msg[-sa.block :]
        qm.last_in = data
        qm.expire_at = now + HALF_OPEN_TIMEOUT
        self._qms[mid] = qm
        self._arm_retrans(qm, msg, "quick_mode_2", now)
        self._send(msg, "quick_mode_2", sa.local, sa.remote)

    def _child_keys(self, sa: IsakmpSa, qm: QmExchange) -> tuple[bytes, bytes]:
        assert qm.suite is not None and sa.prf is not None
        n = qm.suite.enc_key_len + qm.suite.integ_key_len
        ni, nr = qm.ni, qm.nr
        mac_d = sa.prf.keyed(sa.skeyid_d)  # one key schedule for both directions
        # RFC 2409 §5.5: "the SPI chosen by the destination of the SA is used to derive KEYMAT for that SA".
        k_in = km.qm_keymat(sa.prf, sa.skeyid_d, ProtocolId.ESP, qm.spi_in, ni, nr, n, qm.gqm, mac=mac_d)
        k_out = km.qm_keymat(sa.prf, sa.skeyid_d, ProtocolId.ESP, qm.spi_out, ni, nr, n, qm.gqm, mac=mac_d)
        return k_in, k_out

    def _on_qm2(self, sa: IsakmpSa, qm: QmExchange, np: int, data: bytes, now: float) -> None:
        plain = self._decrypt(sa, data, qm.iv)
        mp = _MID.pack(qm.mid)
        raw, _rest = self._verify_hash_first(sa, plain, np, mp + qm.ni)
        self._authenticated(sa, now)
        ans, nr, ke, ids = self._parse_qm(raw, self._p2.answer)
        n_props, n_trans, got, spi = ans
        if n_props != 1 or n_trans != 1:
            raise DecodeError("bad_proposal_choice")
        if got is None or got[0] not in qm.offer or len(spi) != 4:
            raise DecodeError("bad_proposal_choice")
        if ids:
            # RFC 2409 §5.5: the responder returns the client identities it accepted: ours, or narrower ones.
            if not (_ts_within(ids[0], qm.id_ci) and _ts_within(ids[1], qm.id_cr)):
                self._count("child:ts_unacceptable")
                del self._qms[qm.mid]
                notify = NotifyPayload(NotifyType.INVALID_ID_INFORMATION, ProtocolId.ESP, qm.spi_in)
                self._send_info(sa, [notify], "informational")
                self._out.append(negotiation_failed(exchange="quick_mode", reason="ts_unacceptable"))
                return
            qm.id_ci, qm.id_cr = ids[0], ids[1]
        qm.suite, life, qm.encap = got
        qm.lifetime = min(life, self.config.options.phase2_lifetime_seconds)
        qm.nr = nr
        qm.spi_out = spi
        if qm.suite.group:
            if not ke or qm.dh is None:
                raise DecodeError("missing_ke")
            qm.gqm = qm.dh.compute(ke)
        qm.iv = data[-sa.block :]
        assert sa.mac_a is not None
        h3 = sa.mac_a(b"\x00" + mp + qm.ni + qm.nr)  # HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b), §5.5
        msg = self._encrypt(sa, ExchangeType.QUICK_MODE, qm.mid, PayloadType.HASH, self._hash_payload(h3, 0), qm.iv)
        qm.done = True
        qm.last_in = data
        qm.retrans = None
        qm.expire_at = now + QM_DONE_LINGER
        self._send(msg, "quick_mode_3", sa.local, sa.remote)
        qm.retrans = cached(msg, "quick_mode_3")  # kept only to answer a retransmitted QM2
        self._install_child(sa, qm, now)

    def _on_qm3(self, sa: IsakmpSa, qm: QmExchange, np: int, data: bytes, now: float) -> None:
        plain = self._decrypt(sa, data, qm.iv)
        raw, _end = split_chain(np, plain, allow_trailing=True)
        if not raw or raw[0][0] != PayloadType.HASH:
            raise DecodeError("missing_hash")
        assert sa.mac_a is not None
        # HASH(3) = prf(SKEYID_a, 0 | M-ID | Ni_b | Nr_b) (RFC 2409 §5.5).
        if raw[0][1] != sa.mac_a(b"\x00" + _MID.pack(qm.mid) + qm.ni + qm.nr):
            raise DecodeError("bad_hash")
        self._authenticated(sa, now)
        del self._qms[qm.mid]
        self._install_child(sa, qm, now)

    def _install_child(self, sa: IsakmpSa, qm: QmExchange, now: float) -> None:
        assert qm.suite is not None
        k_in, k_out = self._child_keys(sa, qm)
        child = ChildSa(qm.spi_in, qm.spi_out, qm.suite, k_in, k_out, now, qm.lifetime, qm.encap)
        self._last_p2 = qm.suite
        qm.dh = None
        qm.gqm = None
        sa.last_in = sa.last_out = b""  # phase 2 ran: MM6 arrived, no MM5 retransmission to answer
        opts = self.config.options
        if self.beh.rekey_initiator:
            if not qm.initiator and qm.lifetime < opts.phase2_lifetime_seconds:
                # The peer created this SA with a shorter lifetime than ours: let the side with the shorter
                # lifetime drive the rekey, as two strongSwans do by each following its own schedule, and keep
                # only a backstop just before expiry. Rekeying the peer's short SA at once on our side races the
                # peer's own rekey (a charon with rekey_time=3s answers our Quick Mode with our lifetime, then
                # expires the SA on its own 3 s: nobody rekeys it).
                child.rekey_at = now + child.lifetime * PEER_SHORT_LIFETIME_BACKSTOP
            else:
                child.rekey_at = now + rekey_delay(
                    child.lifetime, opts.rekey_margin_time_seconds, opts.rekey_fuzz_percentage, self.rng
                )
        older = list(self._children)
        for c in older:
            c.rekey_at = None  # the newest pair is the one that gets rekeyed
        self._children.append(child)
        mine, theirs = (qm.id_ci, qm.id_cr) if qm.initiator else (qm.id_cr, qm.id_ci)
        if not mine or not theirs:  # no client identities exchanged: the SA covers the two peers' addresses
            mine, theirs = _host_id(sa.local[0]), _host_id(sa.remote[0])
        ek = qm.suite.enc_key_len
        self._out.append(
            child_sa_established(
                spi_in=child.spi_in.hex(),
                spi_out=child.spi_out.hex(),
                proposal=qm.suite.name,
                ts_local=[_id_text(mine)],
                ts_remote=[_id_text(theirs)],
                enc_in=k_in[:ek].hex(),
                integ_in=k_in[ek:].hex(),
                enc_out=k_out[:ek].hex(),
                integ_out=k_out[ek:].hex(),
                encap=qm.encap == EncapMode.UDP_TUNNEL,
            )
        )
        if qm.rekey_of is not None:
            old = qm.rekey_of
            if old in self._children:
                # Keep the old pair a little (overlap) and delete it afterwards: the peer may still be
                # finishing the exchange, and a Delete that overtakes QM3 would leave it with no SA at all
                # (strongSwan: charon.delete_rekeyed_delay).
                old.replaced = True
                old.expire_at = min(old.expire_at, now + REKEY_DELETE_DELAY)
            self._out.append(
                rekey_done(sa="child", old_spi=old.spi_in.hex(), new_spi=child.spi_in.hex(), initiator=True)
            )
        elif older:
            # The peer rekeyed the pair (its Quick Mode replaced the newest one we had).
            self._out.append(
                rekey_done(sa="child", old_spi=older[-1].spi_in.hex(), new_spi=child.spi_in.hex(), initiator=False)
            )
        self._refresh_status(now)

    # ==================================================================================== Informational

    def _send_info(self, sa: IsakmpSa, payloads: list[Payload], kind: str) -> None:
        """HDR*, HASH(1), N/D (RFC 2409 §5.7) with a fresh message ID and its own phase-2 IV."""
        mid = self._new_mid()
        np, rest = encode_chain(payloads)
        assert sa.mac_a is not None
        h = sa.mac_a(_MID.pack(mid) + rest)
        plain = self._hash_payload(h, np) + rest
        iv = km.phase2_iv(sa.hash_name, sa.last_p1_block, mid, sa.block)
        self._send(
            self._encrypt(sa, ExchangeType.INFORMATIONAL, mid, PayloadType.HASH, plain, iv), kind, sa.local, sa.remote
        )

    def _send_dpd(self, sa: IsakmpSa, ntype: int, seq: int, kind: str) -> None:
        """The DPD fast path: the 32-byte notify of RFC 3706 §5.3 behind HASH(1) (RFC 2409 §5.7), encrypted
        under a fresh message ID with its own phase-2 IV."""
        mac_a = sa.mac_a
        cipher = sa.cipher
        iv_hash = sa.iv_hash
        assert mac_a is not None and cipher is not None and iv_hash is not None
        # As _new_mid(): the same draws from the rng.
        rng, qms = self.rng, self._qms
        mid = rng.getrandbits(32)
        while not mid or mid in qms:
            mid = rng.getrandbits(32)
        mp = _MID.pack(mid)
        notify = (sa.dpd_req_prefix if ntype == _NT_R_U_THERE else sa.dpd_ack_prefix) + _SEQ.pack(seq)
        ct = cipher.encrypt(
            iv_hash(sa.last_p1_block + mp).digest()[:16], sa.dpd_hash_hdr + mac_a(mp + notify) + notify + sa.dpd_pad
        )
        local = sa.local
        if local[1] != IKE_PORT or self.remote[1] != IKE_PORT:  # _marked()
            self._out.append(
                Transmit(NON_ESP_MARKER + sa.dpd_hdr_prefix + mp + sa.dpd_len + ct, local, sa.remote, kind)
            )
        else:
            self._out.append(Transmit(sa.dpd_hdr_prefix + mp + sa.dpd_len + ct, local, sa.remote, kind))

    def _send_plain_notify(self, icky: bytes, rcky: bytes, ntype: int, src: Address, dst: Address) -> None:
        """Unprotected notify (before any key exists), e.g. NO_PROPOSAL_CHOSEN in answer to MM1."""
        np, chain = encode_chain([NotifyPayload(ntype, ProtocolId.ISAKMP, icky + rcky)])
        mid = self._new_mid()
        msg = HEADER.pack(icky, rcky, np, ISAKMP_VERSION, ExchangeType.INFORMATIONAL, 0, mid, 28 + len(chain))
        self._send(msg + chain, "informational", dst, src)

    def _on_plain_info(self, sa: IsakmpSa | None, np: int, data: bytes, now: float) -> None:
        # Unauthenticated notifies are believed only before any key exists, for a Main Mode we started
        # (RFC 3706 §5.2: DPD messages must be encrypted; never trust a plaintext DPD or Delete).
        if sa is None or not sa.initiator or sa.state != MmState.I1:
            raise DecodeError("unprotected_informational")
        for p in [parse_payload(t, b) for t, b in split_chain(np, data[HEADER_LEN:])[0]]:
            if isinstance(p, NotifyPayload) and p.notify_type < 16384:
                reason = _notify_name(p.notify_type)
                self._count("ike:" + reason)
                self._sas.remove(sa.icookie)
                self._emit("negotiation_failed", exchange="main_mode", reason=reason)
                return
        raise DecodeError("unprotected_informational")

    def _on_info(self, sa: IsakmpSa, mid: int, data: bytes, src: Address, now: float) -> None:
        iv = km.phase2_iv(sa.hash_name, sa.last_p1_block, mid, sa.block)
        plain = self._decrypt(sa, data, iv)
        mp = _MID.pack(mid)
        raw, _rest = self._verify_hash_first(sa, plain, data[16], mp)
        payloads = [parse_payload(t, b) for t, b in raw]
        if not payloads:
            raise DecodeError("empty_informational")
        dpd = all(
            isinstance(p, NotifyPayload) and p.notify_type in (NotifyType.R_U_THERE, NotifyType.R_U_THERE_ACK)
            for p in payloads
        )
        if self._replayed(sa, mp, dpd):
            return
        credit = True
        for p in payloads:
            if isinstance(p, NotifyPayload):
                if p.notify_type == NotifyType.R_U_THERE:
                    credit = self._on_r_u_there(sa, _SEQ.unpack(p.data)[0]) and credit
                elif p.notify_type == NotifyType.R_U_THERE_ACK:
                    credit = self._on_dpd_ack(sa, _SEQ.unpack(p.data)[0]) and credit
                elif p.notify_type < 16384:
                    self._on_error_notify(sa, p, now)
                else:
                    self._count("notify_ignored")
            elif isinstance(p, DeletePayload):
                self._on_delete(sa, p, now)
                if sa.icookie not in self._sas:
                    credit = False
        if credit:
            self._authenticated(sa, now, src)

    def _authenticated(self, sa: IsakmpSa, now: float, src: Address | None = None) -> None:
        """An authenticated IKE message arrived: liveness (RFC 3706 §5.4: traffic proves the peer alive). Any of
        our ISAKMP SAs counts: during a rekey overlap the peer may still be talking on the old one.

        With NAT-T, a protected message from a new address/port means the NAT mapping changed: answer there
        from now on (RFC 3947 §5.2 leaves this to implementations; strongSwan and libreswan update on any
        authenticated message). An unauthenticated one (a keepalive) never moves the peer."""
        if src is not None and sa.natt and src != sa.remote:
            sa.remote = src
            self._count("nat_mapping_changed")
        self._liveness(now)

    def _liveness(self, now: float) -> None:
        live = self._live
        if live.active:
            live.on_inbound(now)

    # ------------------------------------------------------------------------------------------- DPD

    def _on_r_u_there(self, sa: IsakmpSa, seq: int) -> bool:
        """Answer an authenticated R-U-THERE (already checked not to be a replayed message, see
        :meth:`_replayed`). Returns whether it is a proof of life (RFC 3706 §6): a newer sequence number, or the
        same one in a new exchange (a peer that reuses the number on retries: strongSwan, OpenBSD). An older
        number is answered per ``dup_answer_limit`` but earns nothing."""
        out = self._out
        out.append(Event("dpd_request_received", {"seq": seq}))
        beh = self.beh
        if not beh.send_dpd_vendor_id:
            self._count("dpd:request_without_vendor_id")
            return True
        last = sa.dpd_recv
        diff = None if last is None else (seq - last) & 0xFFFFFFFF
        fresh = True
        if diff is None or 0 < diff < 0x80000000:
            sa.dpd_recv = seq
            sa.dpd_dup = 0
        else:
            # RFC 3706 §6.2: a repeated or older sequence number. strongSwan answers anyway; libreswan (3) and
            # OpenBSD (5) stop answering after a few duplicates (Behaviour.dup_answer_limit).
            fresh = diff == 0
            self._count("dpd:duplicate_request" if fresh else "dpd:old_request")
            sa.dpd_dup += 1
            limit = beh.dup_answer_limit
            if limit is not None and sa.dpd_dup > limit:
                self._count("dpd:duplicate_not_answered")
                return fresh
        self._send_dpd(sa, _NT_R_U_THERE_ACK, seq, "dpd_ack")
        out.append(Event("dpd_ack_sent", {"seq": seq}))
        return fresh

    def _replay_drop(self, dpd: bool) -> None:
        self._count("replay:" + ("dpd" if dpd else "phase2"))
        self._drop("replayed")

    def _replayed(self, sa: IsakmpSa, mp: bytes, dpd: bool) -> bool:
        """Whether this authenticated phase-2 message (message ID ``mp``) was seen before on ``sa``: a replay or a
        network duplicate, never a new message (every IKEv1 Informational and Quick Mode has a fresh random
        message ID, RFC 2409 §5.7; peers repeat a probe in a new exchange, never bitwise). It is dropped: no
        answer, no liveness credit, no NAT address change (RFC 3947 §5.2). Otherwise it is remembered: the last
        ``DPD_MID_WINDOW`` DPD message IDs (older R-U-THEREs fail the sequence check anyway), every other one for
        the SA's lifetime (Quick Modes and Deletes are rare)."""
        dm = sa.dpd_mids
        pm = sa.p2_mids
        if (dm is not None and mp in dm) or (pm is not None and mp in pm):
            self._replay_drop(dpd)
            return True
        if dpd:
            if dm is None:
                dm = sa.dpd_mids = {}
                sa.dpd_ring = [b""] * DPD_MID_WINDOW
            # The window is a ring: the oldest ID leaves as the newest comes in (same code in _fast_dpd).
            ring = sa.dpd_ring
            assert ring is not None
            i = sa.dpd_ring_i
            dm.pop(ring[i], None)
            ring[i] = mp
            dm[mp] = None
            sa.dpd_ring_i = (i + 1) % DPD_MID_WINDOW
        else:
            if pm is None:
                pm = sa.p2_mids = []
            if len(pm) >= P2_MID_LIMIT:
                del pm[0]  # the oldest goes (an SA sees a few such exchanges an hour)
            pm.append(mp)
        return False

    def _on_dpd_ack(self, sa: IsakmpSa, seq: int) -> bool:
        """Returns whether the ACK earns liveness credit."""
        if sa.dpd_expect is not None and seq == sa.dpd_expect:
            sa.dpd_expect = None
            if self.beh.seq_on_retry == SeqOnRetry.REUSE:
                sa.dpd_seq = (seq + 1) & 0xFFFFFFFF  # strongSwan: next round uses the next number
            self._out.append(Event("dpd_ack_received", {"seq": seq, "valid": True}))
            return True
        # RFC 3706 §6.2: the initiator SHOULD reject an ACK whose sequence number does not match.
        self._count("dpd:wrong_seq_ack")
        self._out.append(Event("dpd_ack_received", {"seq": seq, "valid": False}))
        return self.beh.wrong_seq_ack_counts

    def _probe(self, now: float) -> None:
        sa = self._current
        live = self._live
        if sa is None:
            live.on_probe_skipped(now)
            return
        beh = self.beh
        if not beh.dpd_during_rekey and self._rekeying():
            self._count("dpd:probe_skipped_rekey")
            live.on_probe_skipped(now)
            return
        seq = sa.dpd_seq
        if beh.seq_on_retry == SeqOnRetry.INCREMENT:
            sa.dpd_seq = (seq + 1) & 0xFFFFFFFF
        sa.dpd_expect = seq
        self._send_dpd(sa, _NT_R_U_THERE, seq, "dpd_request")
        # As events.dpd_request_sent(), inlined on this per-probe path.
        self._out.append(Event("dpd_request_sent", {"attempt": live.probes + 1, "seq": seq}))
        live.on_probe_sent(now)

    def _rekeying(self) -> bool:
        return any(s.rekey and not s.established for s in self._sas.own.values()) or any(
            q.rekey_of is not None and not q.done for q in self._qms.values()
        )

    def _peer_dead(self, now: float) -> None:
        """The lifecycle's liveness model declared the peer dead: apply the DPDTimeoutAction it returns."""
        action = self._life.dpd_timeout(now, self._out)
        self._sa_at_dirty = True
        if action is DpdTimeoutAction.NONE:
            return  # keep SAs and status; probes continue (cgw_peer.lifecycle: reported once per silence)
        self._teardown(now, "dpd_timeout", send_deletes=self.beh.send_delete_on_clear)
        if action is DpdTimeoutAction.RESTART:
            self._life.schedule_restart(now, self._out)

    # ------------------------------------------------------------------------------ notify / delete

    def _on_error_notify(self, sa: IsakmpSa, p: NotifyPayload, now: float) -> None:
        reason = _notify_name(p.notify_type)
        self._count("notify:" + reason)
        for mid, qm in list(self._qms.items()):
            if qm.done or qm.isakmp is not sa:
                continue
            # Our offer refused (the SPI, when given, is our inbound one), or, as responder, our QM2 refused
            # by the initiator (it names its own inbound SPI: our outbound one): stop retransmitting.
            if (qm.initiator and (not p.spi or p.spi == qm.spi_in)) or (not qm.initiator and p.spi == qm.spi_out):
                del self._qms[mid]
                # A refusal is final: the same offer would get the same answer (only an unanswered negotiation is
                # retried, cgw_peer.lifecycle).
                self._out.append(negotiation_failed(exchange="quick_mode", reason=reason))
                break

    def _on_delete(self, sa: IsakmpSa, p: DeletePayload, now: float) -> None:
        if p.protocol == ProtocolId.ISAKMP:
            for spi in p.spis:
                target = self._sas.get(spi[:8])
                self._out.append(delete_received(protocol="ike", spi=spi.hex()))
                if target is None or target.rcookie != spi[8:]:
                    self._count("delete:unknown_spi")
                    continue
                self._log(LOG_DELETE_IKE_SA_FROM_CGW)
                self._delete_isakmp(target, now, send=False)
        elif p.protocol in (ProtocolId.ESP, ProtocolId.AH):
            for spi in p.spis:
                self._out.append(delete_received(protocol="esp", spi=spi.hex()))
                for c in list(self._children):
                    if spi in (c.spi_out, c.spi_in):
                        self._children.remove(c)
                        break
                else:
                    self._count("delete:unknown_spi")
            if not self._children:
                self._tunnel_down(now, "delete_received")

    def _delete_isakmp(self, sa: IsakmpSa, now: float, *, send: bool) -> None:
        if send and sa.established:
            d = DeletePayload(ProtocolId.ISAKMP, 16, (sa.icookie + sa.rcookie,))
            self._send_info(sa, [d], "delete")
            self._out.append(delete_sent(protocol="ike", spi=sa.spi_hex()))
        self._sas.remove(sa.icookie)
        for mid, qm in list(self._qms.items()):
            if qm.isakmp is sa:
                del self._qms[mid]
        if sa is self._current:
            rest = [s for s in self._sas.own.values() if s.established]
            if rest:
                self._current = max(rest, key=lambda s: s.established_at)
            else:
                # strongSwan deletes an IKEv1 IKE_SA together with its CHILD_SAs.
                self._current = None
                self._children.clear()
                self._live.stop()
                self._keepalive.stop()
                self._tunnel_down(now, "delete_received" if not send else "ike_deleted")

    def _delete_child(self, c: ChildSa, now: float, *, send: bool) -> None:
        if c in self._children:
            self._children.remove(c)
        sa = self._current
        if send and sa is not None:
            self._send_info(sa, [DeletePayload(ProtocolId.ESP, 4, (c.spi_in,))], "delete")
            self._out.append(delete_sent(protocol="esp", spi=c.spi_in.hex()))

    def _teardown(self, now: float, reason: str, *, send_deletes: bool) -> None:
        """Drop every SA (children first, as libreswan does on a DPD timeout)."""
        if send_deletes:
            for c in list(self._children):
                self._delete_child(c, now, send=True)
            for sa in list(self._sas.values()):
                if sa.established:
                    d = DeletePayload(ProtocolId.ISAKMP, 16, (sa.icookie + sa.rcookie,))
                    self._send_info(sa, [d], "delete")
                    self._out.append(delete_sent(protocol="ike", spi=sa.spi_hex()))
        self._children.clear()
        self._sas.clear()
        self._qms.clear()
        self._current = None
        self._live.stop()
        self._keepalive.stop()
        self._pending_child_rekey = None
        self._tunnel_down(now, reason)

    def _tunnel_down(self, now: float, reason: str) -> None:
        """Our SAs changed because of ``reason``: the lifecycle emits DOWN (once) if no SA pair is left."""
        self._life.state.cause(reason)
        self._refresh_status(now)

    # ========================================================================================== timers

    def _timers(self, now: float) -> None:
        if self._life.restart.due(now):
            if self._current is None and not self._negotiating_fresh():
                self._initiate_mm(now, rekey=False)
            elif self._current is not None and not self._children and not self._qms:
                self._initiate_qm(now, None)  # phase 1 is up, only Quick Mode failed: retry it
        sas = self._sas
        while sas.half:  # half-open responder SAs, oldest first (they expire in arrival order)
            first = sas.first_half()
            if first is None or first.expire_at is None or now < first.expire_at:
                break
            sas.remove(first.icookie)
            self._count("ike:half_open_expired")
        for sa in list(sas.own.values()):
            if sa.icookie not in sas.own:
                continue
            r = sa.retrans
            if r is not None and now >= r.due():
                self._retransmit(sa, r, now, "main_mode")
                continue
            if not sa.established and sa.expire_at is not None and now >= sa.expire_at:
                sas.remove(sa.icookie)
                self._count("ike:half_open_expired")
                continue
            if sa.established:
                if sa is self._current and sa.rekey_at is not None and now >= sa.rekey_at:
                    sa.rekey_at = None
                    self._initiate_mm(now, rekey=True)
                if sa.expire_at is not None and now >= sa.expire_at:
                    self._count("ike:expired")
                    self._out.append(ike_sa_expired(spi_i=sa.icookie.hex(), spi_r=sa.rcookie.hex()))
                    self._life.state.cause("expired")
                    self._delete_isakmp(sa, now, send=True)
        for mid, qm in list(self._qms.items()):
            r = qm.retrans
            if r is not None and now >= r.due():
                self._retransmit(qm, r, now, "quick_mode")
            elif now >= qm.expire_at:
                self._qms.pop(mid, None)
        for c in list(self._children):
            if c.rekey_at is not None and now >= c.rekey_at:
                c.rekey_at = None
                if self._current is not None:
                    self._initiate_qm(now, c)
                else:
                    self._pending_child_rekey = c
                    self._initiate_mm(now, rekey=False)
            if now >= c.expire_at and c in self._children:
                if c.replaced:
                    self._count("child:replaced_deleted")
                else:
                    self._count("child:expired")
                    self._out.append(child_sa_expired(spi_in=c.spi_in.hex(), spi_out=c.spi_out.hex()))
                self._delete_child(c, now, send=True)
                if not self._children:
                    self._tunnel_down(now, "expired")
        cur = self._current
        if self._keepalive.due(now) and cur is not None:
            # RFC 3948 §2.3: one 0xFF octet keeps our NAT mapping alive; it proves nothing and gets no answer.
            self._out.append(Transmit(NAT_KEEPALIVE, cur.local, cur.remote, "nat_keepalive"))
        self._dpd_timers(now)

    def _dpd_timers(self, now: float) -> None:
        live = self._live
        # Several decisions may be due at one instant (e.g. after a long gap); loop until idle.
        for _ in range(1000):
            if not live.active:
                break
            d = live.poll(now)
            if d == DEAD:
                self._peer_dead(now)
            elif d == PROBE:
                self._probe(now)
            else:
                break

    def _retransmit(self, holder: IsakmpSa | QmExchange, r: Retransmission, now: float, exchange: str) -> None:
        if not r.advance(now):
            holder.retrans = None
            self._give_up(holder, r, now, exchange)
            return
        self._count("retransmits")
        sa = holder if isinstance(holder, IsakmpSa) else holder.isakmp
        self._send(r.data, r.kind, sa.local, sa.remote)
        mid = 0 if isinstance(holder, IsakmpSa) else holder.mid
        self._out.append(request_retransmitted(kind=r.kind, retransmit=r.retransmits, message_id=mid))

    def _give_up(self, holder: IsakmpSa | QmExchange, r: Retransmission, now: float, exchange: str) -> None:
        self._out.append(negotiation_failed(exchange=exchange, reason="peer_not_responding", retransmits=r.retransmits))
        if isinstance(holder, IsakmpSa):
            self._sas.remove(holder.icookie)
            if holder.rekey:
                return
        else:
            self._qms.pop(holder.mid, None)
            if holder.rekey_of is not None or self._children:
                return
        self._life.negotiation_failed(now, self._out)

    # ========================================================================================== status

    def _refresh_status(self, now: float) -> None:
        cur = self._current
        mm_fresh = bool(self._sas.half)  # a responder Main Mode in progress
        mm_rekey = False
        for s in self._sas.own.values():
            if s.state is not MmState.ESTABLISHED:
                if s.rekey:
                    mm_rekey = True
                else:
                    mm_fresh = True
        if cur is not None:
            p1 = PhaseState.REKEYING if mm_rekey else PhaseState.ESTABLISHED
        elif mm_fresh or mm_rekey:
            p1 = PhaseState.NEGOTIATING
        else:
            p1 = PhaseState.DOWN
        qm_rekey = qm_fresh = False
        for q in self._qms.values():
            if not q.done:
                if q.rekey_of is not None:
                    qm_rekey = True
                else:
                    qm_fresh = True
        if self._children:
            p2 = PhaseState.REKEYING if qm_rekey else PhaseState.ESTABLISHED
        elif qm_fresh:
            p2 = PhaseState.NEGOTIATING
        else:
            p2 = PhaseState.DOWN
        self._life.settle(now, bool(self._children), p1, p2, "child_deleted", self._out)

    # ================================================================================ introspection

    @property
    def children(self) -> list[ChildSa]:
        """The installed IPsec SA pairs (newest last)."""
        return list(self._children)

    @property
    def current_isakmp(self) -> IsakmpSa | None:
        return self._current

    @property
    def liveness(self) -> Liveness:
        """The liveness monitor (for tests and tools)."""
        return self._live

    @property
    def lifecycle(self) -> Lifecycle:
        return self._life


_NOTIFY_NAMES: dict[int, str] = {n.value: n.name.lower() for n in NotifyType}


def _notify_name(t: int) -> str:
    return _NOTIFY_NAMES.get(t, f"notify_{t}")
