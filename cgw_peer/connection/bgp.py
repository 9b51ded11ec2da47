"""One end of the BGP session that runs inside a VPN tunnel (sans-I/O), reduced to what routing over a Site-to-Site
VPN needs: a session that comes up, advertises prefixes, keeps alive and goes down.

AWS's facts (the configuration files AWS issues for a dynamic VPN, archived in ``awsdocs/amazon-vpc-network-
administrator-guide``): BGP runs "within the tunnel, between the inside IP addresses" (the /30 of
``TunnelInsideCidr``: AWS has the first usable address, the customer gateway the second); "Neighbor Hold Time :
30" (``GenericConfig.md``); the Cisco IOS file configures ``neighbor 169.254.255.1 timers 10 30 30`` (keepalive
10 s, hold 30 s: "The BGP timers are adjusted to provide more rapid detection of outages", ``Cisco.md``); AWS
"will announce prefixes ... based upon the prefix you assigned to the VPC". The Amazon side's ASN defaults to
64512 for a transit gateway, the customer's to 65000 (``CreateCustomerGateway`` ``BgpAsn``).

The model (RFC 4271, simplified; every timer a setting of :class:`BgpTimers`):

* Messages are real BGP-4 (RFC 4271 §4): OPEN (version 4, ASN, hold time, BGP identifier = the inside address),
  KEEPALIVE, UPDATE (ORIGIN IGP, AS_PATH of the sender's ASN, NEXT_HOP = the inside address, the prefixes as
  NLRI) and NOTIFICATION (Hold Timer Expired, code 4). They travel in TCP segments to/from port 179 inside IPv4
  packets between the inside addresses, so a capture decrypted with the ESP keys shows a BGP session. The TCP
  connection itself is not modelled (no handshake, no retransmission; sequence numbers only count octets):
  the tunnel either carries a message or loses it, and BGP's own timers recover.
* States: ``idle`` -> (transport up) send OPEN -> ``open_sent`` -> (OPEN received) send OPEN + KEEPALIVE ->
  ``open_confirm`` -> (KEEPALIVE received) ``established``: send UPDATE with our prefixes, then a KEEPALIVE every
  ``keepalive`` seconds. OPEN is repeated every ``connect_retry`` seconds until the peer answers. Without a TCP
  connection there is no telling whether our OPEN arrived, so an OPEN received outside ``open_confirm`` is
  answered with our OPEN again (in ``open_confirm`` with a KEEPALIVE only): the two ends converge whichever came
  up first and whatever was lost.
* The hold timer: in ``open_confirm`` and ``established``, a session that has received nothing from the peer
  for the negotiated hold time (the smaller of the two OPENs' values, RFC 4271 §4.2) sends a NOTIFICATION and
  goes down (``hold_timer_expired``). The peer's routes are withdrawn with it; this is how a dynamic VPN loses
  its routes when the tunnel stays up on paper but carries nothing (DPDTimeoutAction=none).
* The transport going down (no SA left) takes the session down at once (``tunnel_down``). A NOTIFICATION from
  the peer takes it down too (``notification_received``); an OPEN received while ``established`` means the peer
  started over (``peer_restarted``). After going down with the transport still up, OPEN is tried again after
  ``connect_retry``.

Events (:mod:`cgw_peer.events`): ``bgp_session_up``, ``bgp_session_down``, ``bgp_routes_received``.
"""

from __future__ import annotations

import ipaddress
import struct
import zlib
from dataclasses import dataclass

from cgw_peer.connection.packets import PROTO_TCP, ip_bytes, parse4, tcp4
from cgw_peer.errors import ConfigError
from emulator.actions import Event

__all__ = [
    "AMAZON_ASN",
    "BGP_PORT",
    "CUSTOMER_ASN",
    "BgpSpeaker",
    "BgpTimers",
    "decode_messages",
    "encode_keepalive",
    "encode_notification",
    "encode_open",
    "encode_update",
]

BGP_PORT = 179
AMAZON_ASN = 64512
"""Default Amazon-side ASN of a transit gateway."""
CUSTOMER_ASN = 65000
"""Default customer gateway ASN (``CreateCustomerGateway`` ``BgpAsn`` default)."""
AS_TRANS = 23456
"""RFC 6793: the 2-octet ASN written in OPEN for a 4-octet ASN (the real one would go in a capability)."""

_MARKER = b"\xff" * 16
_HDR = struct.Struct("!16sHB")
_OPEN = struct.Struct("!BHH4sB")
T_OPEN, T_UPDATE, T_NOTIFICATION, T_KEEPALIVE = 1, 2, 3, 4
_TCP_ACK_PSH = 0x18

IDLE = "idle"
OPEN_SENT = "open_sent"
OPEN_CONFIRM = "open_confirm"
ESTABLISHED = "established"


@dataclass(frozen=True, slots=True)
class BgpTimers:
    """BGP timers (seconds). ``hold_time``: AWS's 30 s. ``keepalive``: 10 s, one third of the hold time (AWS's
    Cisco example ``timers 10 30 30``; RFC 4271 §10 suggests the same ratio). ``connect_retry``: how often an
    OPEN is repeated while the peer does not answer; RFC 4271 §10 suggests 120 s, which would keep a recovered
    tunnel without routes for up to two minutes. 5 s is the emulator's default **[U]**: AWS does not say how
    soon its side retries."""

    hold_time: float = 30.0
    keepalive: float = 10.0
    connect_retry: float = 5.0

    def __post_init__(self) -> None:
        if not (self.hold_time == 0 or self.hold_time >= 3):
            raise ConfigError("bgp.hold_time", f"0 or at least 3 seconds (RFC 4271 §4.2), got {self.hold_time!r}")
        if not self.keepalive > 0 or not self.connect_retry > 0:
            raise ConfigError("bgp", "keepalive and connect_retry must be > 0 seconds")


def _msg(kind: int, body: bytes = b"") -> bytes:
    return _HDR.pack(_MARKER, 19 + len(body), kind) + body


def encode_open(asn: int, hold_time: int, router_id: str) -> bytes:
    """An OPEN message (RFC 4271 §4.2) without optional parameters."""
    return _msg(T_OPEN, _OPEN.pack(4, asn if asn <= 0xFFFF else AS_TRANS, hold_time, ip_bytes(router_id), 0))


def encode_keepalive() -> bytes:
    """A KEEPALIVE message: the header alone (RFC 4271 §4.4)."""
    return _msg(T_KEEPALIVE)


def encode_notification(code: int, subcode: int = 0) -> bytes:
    """A NOTIFICATION message (RFC 4271 §4.5); code 4 is Hold Timer Expired."""
    return _msg(T_NOTIFICATION, bytes((code, subcode)))


def encode_update(asn: int, next_hop: str, prefixes: list[str]) -> bytes:
    """An UPDATE advertising ``prefixes`` (IPv4 NLRI) with ORIGIN IGP, AS_PATH (one AS_SEQUENCE of ``asn``, as
    2 octets: the session has not negotiated 4-octet ASNs) and NEXT_HOP (RFC 4271 §4.3, §5.1)."""
    as2 = asn if asn <= 0xFFFF else AS_TRANS
    attrs = bytes((0x40, 1, 1, 0))  # ORIGIN: well-known transitive, IGP
    attrs += bytes((0x40, 2, 4, 2, 1)) + as2.to_bytes(2, "big")  # AS_PATH: AS_SEQUENCE of one AS
    attrs += bytes((0x40, 3, 4)) + ip_bytes(next_hop)  # NEXT_HOP
    nlri = b""
    for p in prefixes:
        net = ipaddress.IPv4Network(p)
        nbytes = (net.prefixlen + 7) // 8
        nlri += bytes((net.prefixlen,)) + net.network_address.packed[:nbytes]
    return _msg(T_UPDATE, struct.pack("!H", 0) + struct.pack("!H", len(attrs)) + attrs + nlri)


def decode_messages(data: bytes) -> list[tuple[int, bytes]] | None:
    """The BGP messages in ``data`` as ``(type, body)``; None when something does not parse (wrong marker,
    a length out of 19..4096, a message cut off)."""
    out: list[tuple[int, bytes]] = []
    off = 0
    n = len(data)
    while off < n:
        if n - off < 19:
            return None
        marker, length, kind = _HDR.unpack_from(data, off)
        if marker != _MARKER or not 19 <= length <= 4096 or off + length > n:
            return None
        out.append((kind, data[off + 19 : off + length]))
        off += length
    return out


def _nlri(body: bytes) -> list[str] | None:
    """The advertised prefixes of an UPDATE body (None: malformed)."""
    if len(body) < 4:
        return None
    wlen = int.from_bytes(body[:2], "big")
    if 2 + wlen + 2 > len(body):
        return None
    alen = int.from_bytes(body[2 + wlen : 4 + wlen], "big")
    off = 4 + wlen + alen
    if off > len(body):
        return None
    out: list[str] = []
    while off < len(body):
        plen = body[off]
        nbytes = (plen + 7) // 8
        if plen > 32 or off + 1 + nbytes > len(body):
            return None
        addr = body[off + 1 : off + 1 + nbytes] + bytes(4 - nbytes)
        try:
            out.append(str(ipaddress.IPv4Network((addr, plen), strict=False)))
        except ValueError:
            return None
        off += 1 + nbytes
    return out


class BgpSpeaker:
    """One end of a tunnel's BGP session (see the module docstring).

    ``local_ip``/``peer_ip``: the inside addresses. ``active``: this end uses an ephemeral TCP port and the peer
    port 179 (the customer gateway, by convention here); the other end the reverse. ``prefixes``: what this end
    advertises. Driven by :meth:`transport_up` / :meth:`transport_down` (the tunnel's SA came / went),
    :meth:`receive` (an inner packet addressed to ``local_ip``), :meth:`handle_timer`; each returns
    ``(packets to send through the tunnel, events)``."""

    def __init__(
        self,
        *,
        local_ip: str,
        peer_ip: str,
        local_asn: int,
        peer_asn: int,
        prefixes: list[str],
        active: bool,
        timers: BgpTimers | None = None,
    ) -> None:
        self.local_ip = local_ip
        self.peer_ip = peer_ip
        self.local_asn = local_asn
        self.peer_asn = peer_asn
        self.prefixes = list(prefixes)
        self.timers = timers or BgpTimers()
        self.state = IDLE
        self.transport = False
        self.received_prefixes: list[str] = []
        """What the peer advertised in this session (empty while it is not established)."""
        self.hold_time = self.timers.hold_time
        """The negotiated hold time (the smaller of the two OPENs')."""
        self.counters: dict[str, int] = {}
        self._src = ip_bytes(local_ip)
        self._dst = ip_bytes(peer_ip)
        # The active end's ephemeral port, the same number at both ends (named after the active -> passive pair).
        pair = f"{local_ip}>{peer_ip}" if active else f"{peer_ip}>{local_ip}"
        eph = 49152 + zlib.crc32(pair.encode()) % 16384
        self._sport, self._dport = (eph, BGP_PORT) if active else (BGP_PORT, eph)
        self._seq = zlib.crc32(self._src + self._dst)
        self._ack = zlib.crc32(self._dst + self._src)
        self._ident = 0
        self._retry_at: float | None = None
        self._keepalive_at: float | None = None
        self._hold_at: float | None = None

    # -- state ------------------------------------------------------------------------------------------------

    @property
    def local_packed(self) -> bytes:
        """``local_ip`` as four octets (the destination of the packets this speaker receives)."""
        return self._src

    @property
    def established(self) -> bool:
        return self.state == ESTABLISHED

    @property
    def routes_usable(self) -> bool:
        """Established, and the peer advertised at least one prefix."""
        return self.state == ESTABLISHED and bool(self.received_prefixes)

    def next_deadline(self) -> float | None:
        ts = [t for t in (self._retry_at, self._keepalive_at, self._hold_at) if t is not None]
        return min(ts) if ts else None

    # -- inputs -----------------------------------------------------------------------------------------------

    def transport_up(self, now: float) -> tuple[list[bytes], list[Event]]:
        """The tunnel can carry packets: open the session."""
        if self.transport:
            return [], []
        self.transport = True
        if self.state == IDLE:
            return [self._open(now)], []
        return [], []

    def transport_down(self, now: float) -> tuple[list[bytes], list[Event]]:
        """The tunnel lost its SAs: the session goes down now, nothing is retried until it is back."""
        self.transport = False
        events = self._down("tunnel_down") if self.state != IDLE else []
        self.state = IDLE
        self._retry_at = self._keepalive_at = self._hold_at = None
        return [], events

    def receive(self, packet: bytes, now: float) -> tuple[list[bytes], list[Event]]:
        """An inner packet for ``local_ip``: TCP port 179 from the peer carries BGP; anything else is ignored
        (counted ``ignored``). Malformed BGP is counted ``malformed`` and dropped."""
        ip = parse4(packet)
        if ip is None or ip.proto != PROTO_TCP or ip.src != self._dst or ip.end - ip.start < 20:
            return self._count("ignored")
        seg = packet[ip.start : ip.end]
        sport, dport = struct.unpack_from("!HH", seg)
        if sport != self._dport or dport != self._sport:
            return self._count("ignored")
        data = seg[(seg[12] >> 4) * 4 :]
        msgs = decode_messages(data)
        if msgs is None:
            return self._count("malformed")
        self._ack = (int.from_bytes(seg[4:8], "big") + len(data)) & 0xFFFFFFFF
        out: list[bytes] = []
        events: list[Event] = []
        for kind, body in msgs:
            o, e = self._message(kind, body, now)
            out += o
            events += e
        return out, events

    def handle_timer(self, now: float) -> tuple[list[bytes], list[Event]]:
        out: list[bytes] = []
        events: list[Event] = []
        if self._hold_at is not None and now >= self._hold_at:
            # RFC 4271 §6.5: Hold Timer Expired, a NOTIFICATION, and the session is closed.
            out.append(self._packet(encode_notification(4)))
            events += self._down("hold_timer_expired")
            self._reset(now)
            return out, events
        if self._keepalive_at is not None and now >= self._keepalive_at:
            out.append(self._packet(encode_keepalive()))
            self._keepalive_at = now + self._keepalive_delay()
        if self._retry_at is not None and now >= self._retry_at:
            if self.transport and self.state in (IDLE, OPEN_SENT):
                out.append(self._open(now))
            else:
                self._retry_at = None
        return out, events

    # -- internals --------------------------------------------------------------------------------------------

    def _message(self, kind: int, body: bytes, now: float) -> tuple[list[bytes], list[Event]]:
        out: list[bytes] = []
        events: list[Event] = []
        if kind == T_OPEN:
            if len(body) < _OPEN.size or body[0] != 4:
                return self._count("bad_open")
            _v, _asn, hold, _rid, _opt = _OPEN.unpack_from(body)
            if self.state == ESTABLISHED:
                events += self._down("peer_restarted")
            if self.state != OPEN_CONFIRM:
                # Our OPEN may never have reached the peer (sent before its side was up): each OPEN we answer
                # in another state gets ours again, so both ends see one. In OpenConfirm we have done so already.
                out.append(self._packet(encode_open(self.local_asn, int(self.timers.hold_time), self.local_ip)))
            self.hold_time = min(self.timers.hold_time, float(hold))
            out.append(self._packet(encode_keepalive()))
            self.state = OPEN_CONFIRM
            self._retry_at = None
            self._arm_hold(now)
        elif kind == T_KEEPALIVE:
            if self.state == OPEN_CONFIRM:
                self.state = ESTABLISHED
                self.received_prefixes = []
                events.append(Event("bgp_session_up", {"hold_time": self.hold_time, "peer_asn": self.peer_asn}))
                if self.prefixes:
                    out.append(self._packet(encode_update(self.local_asn, self.local_ip, self.prefixes)))
                self._keepalive_at = now + self._keepalive_delay()
            if self.state in (OPEN_CONFIRM, ESTABLISHED):
                self._arm_hold(now)
        elif kind == T_UPDATE:
            if self.state != ESTABLISHED:
                return self._count("update_not_established")
            got = _nlri(body)
            if got is None:
                return self._count("bad_update")
            self._arm_hold(now)
            if got:
                self.received_prefixes = sorted(set(self.received_prefixes) | set(got))
                events.append(Event("bgp_routes_received", {"prefixes": got}))
        elif kind == T_NOTIFICATION:
            if self.state != IDLE:
                events += self._down("notification_received")
            self._reset(now)
        else:
            return self._count("unknown_message")
        return out, events

    def _keepalive_delay(self) -> float:
        # A keepalive at least every third of the negotiated hold time (RFC 4271 §4.4).
        return min(self.timers.keepalive, self.hold_time / 3) if self.hold_time else self.timers.keepalive

    def _arm_hold(self, now: float) -> None:
        self._hold_at = now + self.hold_time if self.hold_time else None

    def _reset(self, now: float) -> None:
        self.state = IDLE
        self._keepalive_at = self._hold_at = None
        self._retry_at = now + self.timers.connect_retry if self.transport else None

    def _down(self, reason: str) -> list[Event]:
        was = self.state == ESTABLISHED
        self.received_prefixes = []
        return [Event("bgp_session_down", {"reason": reason})] if was else []

    def _open(self, now: float) -> bytes:
        self.state = OPEN_SENT
        self._retry_at = now + self.timers.connect_retry
        return self._packet(encode_open(self.local_asn, int(self.timers.hold_time), self.local_ip))

    def _packet(self, payload: bytes) -> bytes:
        self._ident = (self._ident + 1) & 0xFFFF
        pkt = tcp4(
            self._src, self._dst, self._sport, self._dport, self._seq, self._ack, _TCP_ACK_PSH, payload,
            ident=self._ident, ttl=255,
        )  # fmt: skip
        self._seq = (self._seq + len(payload)) & 0xFFFFFFFF
        return pkt

    def _count(self, what: str) -> tuple[list[bytes], list[Event]]:
        self.counters[what] = self.counters.get(what, 0) + 1
        return [], []
