"""Gateway Load Balancer (tgw.md §1.9, §1.15): flow table, stickiness, idle timeouts, failover, cross-zone.

A GWLB has one *node* per enabled AZ (one subnet each) and a target group of appliances (``gwlb-target``
instances). A GWLB endpoint (``gwlbe``/``vpce``) in some AZ is a VPC route target; it hands packets to the
GWLB node of its own AZ. The node looks the flow up in its flow table, picks a target for a new flow, and sends
the packet to the target inside GENEVE (:mod:`tgw_dataplane.geneve`). The target sends it back the same way,
and the node returns it to the endpoint named in the GENEVE option, which routes it on by its subnet's route
table.

Behaviour, with the documented attribute names (AWS spelling accepted in ``options``):

``stickiness.type`` (``5-tuple`` default; ``source_ip_dest_ip_proto`` = ``3-tuple``; ``source_ip_dest_ip`` =
``2-tuple``)
    The flow key. 5-tuple falls back to the 3-tuple for protocols without ports. All keys are symmetric, so
    both directions of a flow share one entry, coupled to one target ("maintains traffic symmetry by coupling
    each flow entry to one backend target appliance"). 2/3-tuple are refused when a TGW attachment of the
    GWLB's VPC or its endpoints' VPCs runs in appliance mode (GWLB-TG: "not supported when AWS Transit Gateway
    appliance mode is turned on").
``tcp.idle_timeout.seconds`` (350, 60..6000) and ``idle_timeout`` for other protocols (120)
    An entry idle for longer is removed; the next packet is a new flow (and may pick another target).
``send_tcp_reset.on_idle_timeout.enabled`` (false)
    When on, a non-SYN TCP packet with no entry is dropped and answered with a RST to its sender, and an entry
    whose idle timer expires (in :meth:`GatewayLoadBalancer.expire`) is answered with RSTs.
``target_failover.on_unhealthy`` / ``.on_deregistration`` (``no_rebalance`` default, or ``rebalance``; they
must be equal)
    ``no_rebalance`` keeps existing flows on a failed or draining target (dropped while it does not forward) and
    sends new flows to healthy targets; ``rebalance`` re-hashes existing flows of an unhealthy target at once
    (the health change given to the emulator *is* the detection) and those of a draining target after
    ``deregistration_delay.timeout_seconds`` (300).
``load_balancing.cross_zone.enabled`` (false)
    Off: a node only uses targets in its own AZ; when all of them are unhealthy it fails open and keeps sending to
    them (Fortinet's GWLB failover write-up, tgw.md §1.9). On: a node uses healthy targets of every AZ; when none
    is healthy anywhere it fails open over all targets.

Undocumented choices, as named settings (defaults in :class:`GwlbAttributes`): target selection is rendezvous
hashing of the symmetric flow key with a per-GWLB seed (``selection_seed``), so two nodes that see the same
candidates agree, but the flow tables are per node (per AZ): a flow whose two directions enter through
endpoints in different AZs gets two independent entries. The outer UDP source port is
``49152 + (flow hash & 0x3fff)`` (RFC 8926 §3.3); the GENEVE attachment-id option carries a 64-bit hash of the
endpoint id unless ``attachment_ids`` names one; the node address is the last usable address of its subnet
unless ``node_ips`` names one; RSTs on idle expiry go to ``reset_on_expiry`` = ``both`` endpoints.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from hashlib import blake2b
from typing import Any, Protocol

from emulator.errors import ConfigError
from tgw_dataplane import geneve
from tgw_dataplane.appliances import Router, StatefulFirewall
from tgw_dataplane.middlebox import HopContext, MiddleboxHost
from tgw_dataplane.model import Topology, VpcAttachment
from tgw_dataplane.packet import (
    PROTO_TCP,
    TCP_ACK,
    TCP_RST,
    TCP_SYN,
    Packet,
    flow_hash,
    flow_key,
    hrw_pick,
    parse,
    salt_of,
)


class Stickiness(StrEnum):
    """GWLB ``stickiness.type``; the emulator's short names, AWS's values accepted as aliases."""

    FIVE_TUPLE = "5-tuple"
    THREE_TUPLE = "3-tuple"
    TWO_TUPLE = "2-tuple"


_STICKINESS_ALIASES = {
    "source_ip_dest_ip_proto": Stickiness.THREE_TUPLE,
    "source_ip_dest_ip": Stickiness.TWO_TUPLE,
    "5_tuple": Stickiness.FIVE_TUPLE,
}


class TargetFailover(StrEnum):
    """GWLB ``target_failover.on_unhealthy`` / ``on_deregistration``."""

    NO_REBALANCE = "no_rebalance"
    REBALANCE = "rebalance"


class ResetRecipients(StrEnum):
    """Who gets a RST when an idle TCP entry expires (AWS: "the sender of traffic"; which one is [U])."""

    BOTH = "both"
    INITIATOR = "initiator"
    RESPONDER = "responder"


# Drop reasons (stable strings for counters and verdicts).
R_TARGET_UNREACHABLE = "gwlb_target_unreachable"
"""The flow's target does not forward (down); no_rebalance or fail-open keeps sending to it."""
R_NO_TARGETS = "gwlb_no_targets"
"""No registered target the node may use (e.g. none in its AZ with cross-zone off)."""
R_NO_FLOW_RESET = "gwlb_no_flow_reset"
"""Non-SYN TCP without a flow entry while send_tcp_reset.on_idle_timeout is on: dropped, RST sent."""
R_NO_NODE = "gwlb_no_node_in_az"
"""The endpoint's AZ has no GWLB node (the GWLB has no subnet there)."""
R_BAD_RETURN = "gwlb_bad_return"
"""What came back from the target is not GENEVE for a known endpoint of this GWLB."""
R_MTU_EXCEEDED = "gwlb_mtu_exceeded"
"""The inner packet is larger than the endpoint MTU (``mtu``, 8500)."""
R_TARGET_DROPPED = "gwlb_target_dropped"
"""Prefix: the target appliance itself dropped the packet (``gwlb_target_dropped:<reason>``)."""


def _number(v: object, where: str, lo: float, hi: float) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float | str):
        raise ConfigError(f"{where}: must be a number in {lo:g}..{hi:g}")
    try:
        x = float(v)
    except ValueError:
        raise ConfigError(f"{where}: {v!r} is not a number ({lo:g}..{hi:g})") from None
    if not lo <= x <= hi:
        raise ConfigError(f"{where}: {v!r} is out of range {lo:g}..{hi:g}")
    return x


def _uint64(v: object, where: str) -> int:
    """An exact integer in 0..2**64-1 (not through float: 64-bit ids do not fit a double)."""
    try:
        x = int(v) if isinstance(v, int | str) and not isinstance(v, bool) else -1
    except ValueError:
        x = -1
    if not 0 <= x < 1 << 64:
        raise ConfigError(f"{where}: {v!r} is not an integer in 0..2**64-1")
    return x


def _boolean(v: object, where: str) -> bool:
    if isinstance(v, bool):
        return v
    if v in ("true", "false"):
        return v == "true"
    raise ConfigError(f"{where}: {v!r} is not one of true, false")


@dataclass(frozen=True, slots=True)
class GwlbAttributes:
    """The listener / target group / load balancer attributes that shape forwarding, plus named [U] settings."""

    stickiness: Stickiness = Stickiness.FIVE_TUPLE
    tcp_idle_timeout: float = 350.0
    idle_timeout: float = 120.0
    send_tcp_reset_on_idle_timeout: bool = False
    target_failover: TargetFailover = TargetFailover.NO_REBALANCE
    cross_zone: bool = False
    deregistration_delay: float = 300.0
    reset_on_expiry: ResetRecipients = ResetRecipients.BOTH
    selection_seed: bytes = b"awsnetemu-gwlb"
    node_ips: Mapping[str, str] = field(default_factory=dict)
    """subnet id -> GWLB node address (default: the last usable address of the subnet)."""
    attachment_ids: Mapping[str, int] = field(default_factory=dict)
    """endpoint id -> 64-bit value of GENEVE option 2 (default: a hash of the endpoint id)."""
    outer_ttl: int = 64
    mtu: int = 8500
    """Largest inner packet the endpoint takes (GWLB intro: MTU 8500; the 68 GENEVE bytes come on top, as AWS
    asks appliances to accept). Larger packets are dropped as ``gwlb_mtu_exceeded``, without ICMP."""

    # Option names accepted in ``options`` (AWS attribute key -> field), besides the field names themselves.
    _AWS_KEYS = {
        "stickiness.type": "stickiness",
        "tcp.idle_timeout.seconds": "tcp_idle_timeout",
        "send_tcp_reset.on_idle_timeout.enabled": "send_tcp_reset_on_idle_timeout",
        "target_failover.on_unhealthy": "target_failover",
        "target_failover.on_deregistration": "target_failover",
        "load_balancing.cross_zone.enabled": "cross_zone",
        "deregistration_delay.timeout_seconds": "deregistration_delay",
    }

    @classmethod
    def from_options(
        cls, options: Mapping[str, Any], *, cross_zone: bool = False, where: str = "gwlb"
    ) -> GwlbAttributes:
        """Parse a GWLB's ``options`` mapping (field names or AWS attribute keys); errors name the field."""
        known = set(cls.__dataclass_fields__) | set(cls._AWS_KEYS)
        extra = set(options) - known
        if extra:
            raise ConfigError(
                f"{where}.options: unknown key(s) {', '.join(sorted(extra))} (allowed: {', '.join(sorted(known))})"
            )
        kw: dict[str, Any] = {"cross_zone": cross_zone}
        failover: dict[str, TargetFailover] = {}
        for key, v in options.items():
            name = cls._AWS_KEYS.get(key, key)
            w = f"{where}.options.{key}"
            if name == "stickiness":
                s = _STICKINESS_ALIASES.get(str(v))
                if s is None:
                    try:
                        s = Stickiness(str(v))
                    except ValueError:
                        allowed = ", ".join([*(m.value for m in Stickiness), *_STICKINESS_ALIASES])
                        raise ConfigError(f"{w}: {v!r} is not one of {allowed}") from None
                kw[name] = s
            elif name == "tcp_idle_timeout":
                kw[name] = _number(v, w, 60, 6000)  # GWLB-L: 60-6000 s
            elif name in ("idle_timeout", "deregistration_delay"):
                kw[name] = _number(v, w, 0 if name == "deregistration_delay" else 1, 3600)
            elif name in ("send_tcp_reset_on_idle_timeout", "cross_zone"):
                kw[name] = _boolean(v, w)
            elif name == "target_failover":
                try:
                    failover[key] = TargetFailover(str(v))
                except ValueError:
                    raise ConfigError(f"{w}: {v!r} is not one of no_rebalance, rebalance") from None
            elif name == "reset_on_expiry":
                try:
                    kw[name] = ResetRecipients(str(v))
                except ValueError:
                    raise ConfigError(f"{w}: {v!r} is not one of both, initiator, responder") from None
            elif name == "selection_seed":
                kw[name] = str(v).encode()
            elif name == "node_ips":
                if not isinstance(v, Mapping):
                    raise ConfigError(f"{w}: expected a mapping subnet -> IPv4 address")
                kw[name] = {str(a): str(b) for a, b in v.items()}
            elif name == "attachment_ids":
                if not isinstance(v, Mapping):
                    raise ConfigError(f"{w}: expected a mapping endpoint -> 64-bit integer")
                kw[name] = {str(a): _uint64(b, f"{w}.{a}") for a, b in v.items()}
            elif name == "outer_ttl":
                kw[name] = int(_number(v, w, 1, 255))
            elif name == "mtu":
                kw[name] = int(_number(v, w, 576, 9001))
        if len(set(failover.values())) > 1:
            # GWLB-TG: on_unhealthy and on_deregistration "must be equal".
            raise ConfigError(
                f"{where}.options.target_failover.on_unhealthy: must equal target_failover.on_deregistration "
                f"({', '.join(f'{k}={v.value}' for k, v in sorted(failover.items()))})"
            )
        if failover:
            kw["target_failover"] = next(iter(failover.values()))
        return cls(**kw)


class Target:
    """One registered target (a ``gwlb-target`` instance) and its health.

    ``healthy`` is what health checks say (selection uses it); ``forwards`` is whether the appliance really
    passes packets (a dead appliance is unhealthy and does not forward; a mis-configured health check can make
    a working one unhealthy). ``draining_since`` is set on deregistration.
    """

    __slots__ = ("az", "draining_since", "forwards", "healthy", "id", "index", "ip", "salt")

    def __init__(self, index: int, target_id: str, ip: int, az: str) -> None:
        self.index = index
        self.id = target_id
        self.ip = ip
        self.az = az
        self.salt = salt_of(target_id)
        self.healthy = True
        self.forwards = True
        self.draining_since: float | None = None


class FlowEntry:
    """One flow-table entry: the target it is coupled to, its cookie and idle bookkeeping.

    ``seq``/``ack`` hold the last sequence end / acknowledgment seen per direction (index 0: from the lower
    endpoint of the symmetric key, 1: from the higher), only tracked when RST-on-idle is on.
    """

    __slots__ = (
        "ack",
        "cookie",
        "endpoint",
        "entropy",
        "initiator_forward",
        "last",
        "seq",
        "target",
        "tcp",
        "timeout",
    )

    def __init__(self, target: Target, cookie: int, entropy: int, now: float, tcp: bool, timeout: float, fwd: bool):
        self.target = target
        self.cookie = cookie
        self.entropy = entropy
        self.last = now
        self.tcp = tcp
        self.timeout = timeout
        self.initiator_forward = fwd
        self.seq = [-1, -1]
        self.ack = [-1, -1]
        self.endpoint = ""
        """The GWLB endpoint that last sent a packet of this flow (where RSTs on idle expiry go back out)."""


@dataclass(slots=True)
class Decision:
    """The outcome of :meth:`GatewayLoadBalancer.select`: a target (and its entry), or a drop reason.

    ``resets`` holds RST packets the node sends back toward the endpoint (raw IP bytes).
    """

    target: Target | None
    entry: FlowEntry | None
    reason: str | None = None
    new_flow: bool = False
    fail_open: bool = False
    rebalanced: bool = False
    resets: list[bytes] = field(default_factory=list)


class GwlbNode:
    """The GWLB node in one AZ, with its own flow table (ordered by last use: least recently used first)."""

    __slots__ = ("az", "flows", "ip", "subnet")

    def __init__(self, az: str, subnet: str, ip: int) -> None:
        self.az = az
        self.subnet = subnet
        self.ip = ip
        # key -> entry; entries are moved to the end on use, so the front is the least recently used.
        self.flows: OrderedDict[int, FlowEntry] = OrderedDict()


_TCP_SEQ = struct.Struct("!II")


class GatewayLoadBalancer:
    """The pure GWLB state machine: nodes per AZ, targets, flow tables. No I/O; time comes in as ``now``.

    ``targets`` is ``[(target id, IPv4 address, AZ name)]``; ``nodes`` is ``[(AZ name, subnet id, node IPv4)]``.
    The ``rng`` draws flow cookies.
    """

    def __init__(
        self,
        gwlb_id: str,
        attrs: GwlbAttributes,
        targets: list[tuple[str, str, str]],
        nodes: list[tuple[str, str, str]],
        rng: random.Random,
    ) -> None:
        self.id = gwlb_id
        self.attrs = attrs
        self.rng = rng
        self.targets = [Target(i, t, int(ipaddress.IPv4Address(ip)), az) for i, (t, ip, az) in enumerate(targets)]
        self.by_id = {t.id: t for t in self.targets}
        self.nodes = {az: GwlbNode(az, subnet, int(ipaddress.IPv4Address(ip))) for az, subnet, ip in nodes}
        self.counters: dict[str, int] = {}
        self._tcp_timeout = attrs.tcp_idle_timeout
        self._timeout = attrs.idle_timeout
        self._track_seq = attrs.send_tcp_reset_on_idle_timeout
        self._rebalance = attrs.target_failover is TargetFailover.REBALANCE

    # -- control plane --------------------------------------------------------------------------------------
    def set_target_health(self, target_id: str, healthy: bool, *, forwards: bool | None = None) -> None:
        """Health-check result for a target; ``forwards`` (default: same as ``healthy``) is whether it passes
        packets."""
        t = self.by_id[target_id]
        t.healthy = healthy
        t.forwards = healthy if forwards is None else forwards

    def deregister_target(self, target_id: str, now: float) -> None:
        """Start draining a target: no new flows; existing ones per ``target_failover``."""
        self.by_id[target_id].draining_since = now

    def flow_count(self) -> int:
        return sum(len(n.flows) for n in self.nodes.values())

    # -- data plane ------------------------------------------------------------------------------------------
    def key_of(self, pkt: Packet) -> int:
        """The symmetric flow key for this GWLB's stickiness type."""
        s = self.attrs.stickiness
        if s is Stickiness.FIVE_TUPLE:
            return pkt.key
        proto = pkt.proto if s is Stickiness.THREE_TUPLE else 0
        # flow_key zeroes ports of non-TCP/UDP; for 3/2-tuple we drop them for every protocol.
        return flow_key(pkt.version, proto, pkt.src, pkt.dst, 0, 0)

    def _usable(self, t: Target, now: float) -> bool:
        return t.healthy and t.draining_since is None

    def _candidates(self, az: str, now: float) -> tuple[list[Target], bool]:
        """(candidates, fail_open) for a new flow at the node in ``az``."""
        scope = self.targets if self.attrs.cross_zone else [t for t in self.targets if t.az == az]
        healthy = [t for t in scope if self._usable(t, now)]
        if healthy:
            return healthy, False
        # All targets in scope unhealthy: the node fails open and keeps sending to them (tgw.md §1.9).
        registered = [
            t for t in scope if t.draining_since is None or now - t.draining_since < self.attrs.deregistration_delay
        ]
        return registered, bool(registered)

    def target_for(self, key: int, az: str, now: float) -> Target | None:
        """The target a new flow with symmetric key ``key`` would get at the node in ``az`` now (no entry is
        made). ``key`` is :meth:`key_of` of one of its packets."""
        return self._pick(key, az, now)[0]

    def _pick(self, key: int, az: str, now: float) -> tuple[Target | None, bool, int]:
        cands, fail_open = self._candidates(az, now)
        h = flow_hash(key, self.attrs.selection_seed)
        if not cands:
            return None, False, h
        return cands[hrw_pick(h, [t.salt for t in cands])], fail_open, h

    def _count(self, reason: str) -> None:
        self.counters[reason] = self.counters.get(reason, 0) + 1

    def select(self, az: str, pkt: Packet, now: float) -> Decision:
        """Look up / create the flow entry for ``pkt`` at the node in ``az`` and choose its target."""
        node = self.nodes.get(az)
        if node is None:
            self._count(R_NO_NODE)
            return Decision(None, None, R_NO_NODE)
        key = self.key_of(pkt)
        flows = node.flows
        entry = flows.get(key)
        if entry is not None and now - entry.last > entry.timeout:
            # Idle expiry (GWLB-L): the entry is gone; this packet is treated as the first of a new flow.
            del flows[key]
            entry = None
        is_tcp = pkt.proto == PROTO_TCP
        if entry is None:
            if is_tcp and self._track_seq and not pkt.flags & TCP_SYN and not pkt.flags & TCP_RST:
                # send_tcp_reset.on_idle_timeout: a non-SYN TCP packet for a flow not in the table gets a RST
                # back to its sender and creates no entry (GWLB-L).
                self._count(R_NO_FLOW_RESET)
                return Decision(None, None, R_NO_FLOW_RESET, resets=[_reset_for(pkt)])
            target, fail_open, h = self._pick(key, az, now)
            if target is None:
                self._count(R_NO_TARGETS)
                return Decision(None, None, R_NO_TARGETS)
            timeout = self._tcp_timeout if is_tcp else self._timeout
            entry = FlowEntry(target, self.rng.getrandbits(32), h, now, is_tcp, timeout, pkt.forward)
            flows[key] = entry
            d = Decision(target, entry, new_flow=True, fail_open=fail_open)
        else:
            flows.move_to_end(key)
            entry.last = now
            d = Decision(entry.target, entry)
            t = entry.target
            if self._rebalance and (
                not t.healthy
                or (t.draining_since is not None and now - t.draining_since >= self.attrs.deregistration_delay)
            ):
                # target_failover = rebalance: re-hash the existing flow over the current candidates.
                nt, fail_open, _h = self._pick(key, az, now)
                if nt is not None and nt is not t:
                    entry.target = nt
                    d.target = nt
                    d.rebalanced = True
                    d.fail_open = fail_open
        if self._track_seq and is_tcp:
            _track(entry, pkt)
        assert d.target is not None
        if not d.target.forwards:
            self._count(R_TARGET_UNREACHABLE)
            d.reason = R_TARGET_UNREACHABLE
        return d

    def next_deadline(self) -> float | None:
        """Earliest idle expiry over all nodes. Tables are in last-use order, so the scan stops at the first entry
        that was used after the best deadline found minus the shortest timeout."""
        best: float | None = None
        shortest = min(self._tcp_timeout, self._timeout)
        for node in self.nodes.values():
            for e in node.flows.values():
                if best is not None and e.last + shortest >= best:
                    break
                d = e.last + e.timeout
                if best is None or d < best:
                    best = d
        return best

    def expire(self, now: float) -> list[bytes]:
        """Remove entries idle for longer than their timeout; return the RSTs to send (RST-on-idle only)."""
        return [r for _ep, r in self.expire_entries(now)[1]]

    def expire_entries(self, now: float) -> tuple[int, list[tuple[str, bytes]]]:
        """Remove entries idle for longer than their timeout. Returns (entries removed, [(endpoint id, RST)]):
        the RSTs to send (RST-on-idle only), each with the endpoint the flow last came through ("" if unknown).

        Scans each table from its least recently used end and stops at the first entry used within the shortest
        timeout (every later one was used even more recently)."""
        resets: list[tuple[str, bytes]] = []
        removed = 0
        shortest = min(self._tcp_timeout, self._timeout)
        for node in self.nodes.values():
            dead = []
            for k, e in node.flows.items():
                if now - e.last <= shortest:
                    break
                if now - e.last > e.timeout:
                    dead.append(k)
            removed += len(dead)
            for k in dead:
                e = node.flows.pop(k)
                self._count("gwlb_idle_expired")
                if self._track_seq and e.tcp:
                    resets.extend((e.endpoint, r) for r in _expiry_resets(k, e, self.attrs.reset_on_expiry))
        return removed, resets

    # -- GENEVE to and from targets -------------------------------------------------------------------------
    def to_target(self, node_az: str, d: Decision, inner: bytes, endpoint_id: int, attachment_id: int) -> bytes:
        """The outer IPv4/UDP/GENEVE packet the node sends to the target for this decision."""
        assert d.target is not None and d.entry is not None
        meta = geneve.GwlbMetadata(endpoint_id, attachment_id, d.entry.cookie)
        return geneve.encapsulate_ipv4(
            inner,
            meta,
            self.nodes[node_az].ip,
            d.target.ip,
            geneve.geneve_source_port(d.entry.entropy),
            ttl=self.attrs.outer_ttl,
        )


def target_reflect(frame: bytes, inner: bytes | None = None) -> bytes:
    """What a GWLB target sends back: the same GENEVE options and (possibly rewritten) inner packet, with the
    outer addresses swapped (GWLBTUN replies to the node that sent the packet, from the same port pair)."""
    hdr, meta, orig = geneve.decapsulate_ipv4(frame)
    return geneve.encapsulate_ipv4(orig if inner is None else inner, meta, hdr.dst, hdr.src, hdr.src_port)


# ---- TCP RST synthesis (RFC 9293 §3.10.7.1, "reset generation") ---------------------------------------------

_TCP_HDR = struct.Struct("!HHIIBBHHH")
_V4_HDR = struct.Struct("!BBHHHBBHII")
_V6_HDR = struct.Struct("!IHBB")


def _fold(s: int) -> int:
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _words(x: int, n: int) -> int:
    s = 0
    for _ in range(n):
        s += x & 0xFFFF
        x >>= 16
    return s


def tcp_rst(version: int, src: int, dst: int, sport: int, dport: int, seq: int, ack: int, with_ack: bool) -> bytes:
    """A TCP RST (IPv4 or IPv6, addresses as ints) with valid checksums."""
    flags = TCP_RST | (TCP_ACK if with_ack else 0)
    nwords = 2 if version == 4 else 8
    pseudo = _words(src, nwords) + _words(dst, nwords) + PROTO_TCP + 20
    tcp0 = _TCP_HDR.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 0, 0, 0)
    s = pseudo + sum(struct.unpack("!10H", tcp0))
    csum = ~_fold(s) & 0xFFFF
    tcp = tcp0[:16] + struct.pack("!H", csum) + tcp0[18:]
    if version == 4:
        h0 = _V4_HDR.pack(0x45, 0, 40, 0, 0x4000, 64, PROTO_TCP, 0, src, dst)
        hc = ~_fold(sum(struct.unpack("!10H", h0))) & 0xFFFF
        return h0[:10] + struct.pack("!H", hc) + h0[12:] + tcp
    return _V6_HDR.pack(6 << 28, 20, PROTO_TCP, 64) + src.to_bytes(16, "big") + dst.to_bytes(16, "big") + tcp


def _tcp_fields(pkt: Packet) -> tuple[int, int, int]:
    """(seq, ack, segment length incl. SYN/FIN) of a parsed TCP packet (no IP options/extension headers)."""
    off = 20 if pkt.version == 4 else 40
    seq, ack = _TCP_SEQ.unpack_from(pkt.data, off + 4)
    doff = (pkt.data[off + 12] >> 4) * 4
    seglen = pkt.length - off - doff + (1 if pkt.flags & TCP_SYN else 0) + (1 if pkt.flags & 0x01 else 0)
    return seq, ack, seglen


def _reset_for(pkt: Packet) -> bytes:
    """RST answering ``pkt`` to its sender, per RFC 9293 §3.10.7.1."""
    seq, ack, seglen = _tcp_fields(pkt)
    if pkt.flags & TCP_ACK:
        return tcp_rst(pkt.version, pkt.dst, pkt.src, pkt.dport, pkt.sport, ack, 0, False)
    return tcp_rst(pkt.version, pkt.dst, pkt.src, pkt.dport, pkt.sport, 0, seq + seglen, True)


def _track(e: FlowEntry, pkt: Packet) -> None:
    seq, ack, seglen = _tcp_fields(pkt)
    i = 0 if pkt.forward else 1
    e.seq[i] = (seq + seglen) & 0xFFFFFFFF
    if pkt.flags & TCP_ACK:
        e.ack[i] = ack


def _expiry_resets(key: int, e: FlowEntry, who: ResetRecipients) -> list[bytes]:
    # Unpack the symmetric key (packet.flow_key layout): lo endpoint, hi endpoint, their ports.
    if key >> 300:
        version, proto = 6, (key >> 288) & 0xFF
        lo, hi = (key >> 160) & ((1 << 128) - 1), (key >> 32) & ((1 << 128) - 1)
    else:
        version, proto = 4, (key >> 96) & 0xFF
        lo, hi = (key >> 64) & 0xFFFFFFFF, (key >> 32) & 0xFFFFFFFF
    lp, hp = (key >> 16) & 0xFFFF, key & 0xFFFF
    if proto != PROTO_TCP:
        return []
    out: list[bytes] = []
    # Endpoint 0 (lo) and 1 (hi). The initiator is the sender of the first packet.
    init = 0 if e.initiator_forward else 1
    wanted = {ResetRecipients.BOTH: (0, 1), ResetRecipients.INITIATOR: (init,), ResetRecipients.RESPONDER: (1 - init,)}[
        who
    ]
    ends = ((lo, lp), (hi, hp))
    for i in wanted:
        (dst, dport), (src, sport) = ends[i], ends[1 - i]
        # A RST to endpoint i is acceptable at seq = the last ACK it sent (its RCV.NXT), RFC 9293 §3.10.7.3.
        if e.ack[i] >= 0:
            out.append(tcp_rst(version, src, dst, sport, dport, e.ack[i], 0, False))
        elif e.seq[1 - i] >= 0:
            out.append(tcp_rst(version, src, dst, sport, dport, e.seq[1 - i], 0, False))
    return out


def endpoint_number(endpoint_id: str) -> int:
    """GENEVE option 1 for an endpoint id: the ``vpce-`` hex value, or a 64-bit hash of any other id."""
    try:
        return geneve.vpce_id_to_int(endpoint_id)
    except ValueError:
        return int.from_bytes(blake2b(endpoint_id.encode(), digest_size=8, person=b"gwlbe-id").digest(), "big")


def attachment_number(endpoint_id: str, attrs: GwlbAttributes) -> int:
    """GENEVE option 2 for an endpoint (named in ``attachment_ids`` or a 64-bit hash, see module docstring)."""
    v = attrs.attachment_ids.get(endpoint_id)
    if v is not None:
        return v
    return int.from_bytes(blake2b(endpoint_id.encode(), digest_size=8, person=b"gwlb-att").digest(), "big")


def check_appliance_mode(topo: Topology, gwlb_id: str, attrs: GwlbAttributes) -> None:
    """Refuse 2/3-tuple stickiness when a TGW attachment of the GWLB's VPC (or an endpoint's VPC) uses appliance
    mode (GWLB-TG, Flow stickiness). Raises ConfigError naming the field and the attachment."""
    if attrs.stickiness is Stickiness.FIVE_TUPLE:
        return
    g = topo.gwlbs[gwlb_id]
    vpcs = {g.vpc_id} | {e.vpc_id for e in topo.gwlb_endpoints().values() if e.service == gwlb_id}
    for t in topo.tgws.values():
        for a in t.attachments.values():
            if isinstance(a, VpcAttachment) and a.vpc_id in vpcs and a.appliance_mode:
                raise ConfigError(
                    f"gwlbs.{gwlb_id}.options.stickiness: {attrs.stickiness.value} is not supported when Transit "
                    f"Gateway appliance mode is on (attachment {a.id} of {a.vpc_id}); use 5-tuple"
                )


# ---------------------------------------------------------------------------------------------------------------
# Dataplane plug-in: ``gwlb-endpoint`` and ``gwlb-target`` middleboxes (tgw_dataplane.middlebox)
# ---------------------------------------------------------------------------------------------------------------

R_TARGET_NOT_GENEVE = "gwlb_target_not_geneve"
"""A plain (not GENEVE) packet was routed straight to a GWLB target; targets only take GENEVE from a GWLB."""

STATE_KEY = "gwlb"
"""Key of this plug-in's per-dataplane state in :attr:`MiddleboxHost.state`: GWLB id -> GatewayLoadBalancer,
created on first use (by the first endpoint's factory or :func:`gwlb_of`)."""


class HasMiddleboxHost(Protocol):
    """Anything that owns a :class:`MiddleboxHost` (the ``Dataplane``)."""

    @property
    def middlebox_host(self) -> MiddleboxHost: ...


def _host(dp: MiddleboxHost | HasMiddleboxHost) -> MiddleboxHost:
    return dp if isinstance(dp, MiddleboxHost) else dp.middlebox_host


def _instances(host: MiddleboxHost) -> dict[str, GatewayLoadBalancer]:
    per_dp: dict[str, GatewayLoadBalancer] | None = host.state.get(STATE_KEY)
    if per_dp is None:
        per_dp = host.state[STATE_KEY] = {}
    return per_dp


def _last_usable(cidr: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    if cidr.version != 4 or cidr.num_addresses < 4:
        raise ConfigError(f"subnet {cidr}: a GWLB node needs an IPv4 subnet")
    return str(cidr.broadcast_address - 1)


def gwlb_of(dp: MiddleboxHost | HasMiddleboxHost, gwlb_id: str) -> GatewayLoadBalancer:
    """The run-time GWLB object of ``gwlb_id`` in this dataplane (flow tables, target health, counters); ``dp``
    is the ``Dataplane`` or its :class:`MiddleboxHost`. The object lives in the host's plug-in state, so it
    goes away with its dataplane.

    Use it to change target health (:meth:`GatewayLoadBalancer.set_target_health`), deregister targets, expire
    idle flows and read ``counters``. Raises ConfigError naming the field for a bad GWLB configuration.
    """
    host = _host(dp)
    per_dp = _instances(host)
    g = per_dp.get(gwlb_id)
    if g is not None:
        return g
    topo = host.topology
    m = topo.gwlbs.get(gwlb_id)
    if m is None:
        raise ConfigError(f"gwlb {gwlb_id!r} does not exist")
    where = f"gwlbs.{gwlb_id}"
    attrs = GwlbAttributes.from_options(m.options, cross_zone=m.cross_zone, where=where)
    check_appliance_mode(topo, gwlb_id, attrs)
    nodes: list[tuple[str, str, str]] = []
    for sid in m.subnets:
        s = topo.subnet(sid)
        if any(n[0] == s.az for n in nodes):
            raise ConfigError(f"{where}.subnets: two subnets in {s.az} (one GWLB node per AZ)")
        ip = attrs.node_ips.get(sid) or _last_usable(s.cidr)
        try:
            if ipaddress.ip_address(ip) not in s.cidr:
                raise ValueError
        except ValueError:
            raise ConfigError(f"{where}.options.node_ips.{sid}: {ip!r} is not an address of {s.cidr}") from None
        nodes.append((s.az, sid, ip))
    instances = topo.instances()
    targets = []
    for tid in m.targets:
        inst = instances[tid]
        targets.append((tid, inst.ip, topo.subnet(inst.subnet).az))
    g = GatewayLoadBalancer(gwlb_id, attrs, targets, nodes, random.Random(host.rng.getrandbits(64)))
    per_dp[gwlb_id] = g
    return g


def expire_gwlbs(dp: MiddleboxHost | HasMiddleboxHost, now: float) -> list[bytes]:
    """Idle expiry for every GWLB of ``dp``. RST-on-idle resets are sent: each goes out of the endpoint the flow
    last came through (captured there) and is forwarded to its host by the dataplane (``Dataplane.emitted``
    holds the outcomes). Returns the RSTs. ``Dataplane.expire_flows``/``expire`` call this (through the
    endpoints' ``expire``)."""
    host = _host(dp)
    out: list[bytes] = []
    for g in list(_instances(host).values()):
        out.extend(_expire_and_send(host, g, now)[1])
    host.forward_emitted()
    return out


def _expire_and_send(host: MiddleboxHost, g: GatewayLoadBalancer, now: float) -> tuple[int, list[bytes]]:
    removed, resets = g.expire_entries(now)
    for ep, rst in resets:
        if ep:
            host.capture(ep, rst, now)
            host.emit(ep, rst, now)
    return removed, [r for _ep, r in resets]


class GwlbTargetAppliance:
    """A GWLB target (``gwlb-target`` instance): takes GENEVE from the GWLB, inspects the inner packet and
    returns it the same way.

    Inspection per ``options.inspect``: ``stateful-firewall`` (default; the built-in connection tracker, so a
    flow moved to a target that never saw its SYN is dropped, as with real firewalls) or ``router`` (pass all).
    """

    def __init__(self, host: MiddleboxHost, node: str) -> None:
        topo = host.topology
        inst = topo.instances()[node]
        where = f"instance {node}.options"
        extra = set(inst.options) - {"inspect"}
        if extra:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(extra))} (allowed: inspect)")
        mode = str(inst.options.get("inspect", "stateful-firewall"))
        s = host.settings
        self.engine: StatefulFirewall | Router
        if mode == "stateful-firewall":
            self.engine = StatefulFirewall(
                node, s.firewall_tcp_idle_timeout, s.firewall_udp_idle_timeout, s.firewall_icmp_idle_timeout
            )
        elif mode == "router":
            self.engine = Router(node)
        else:
            raise ConfigError(f"{where}.inspect: {mode!r} is not one of stateful-firewall, router")
        sub = topo.subnet(inst.subnet)
        self.node = node
        self.eni = inst.eni
        self.az = sub.az
        self.az_id = sub.az_id
        self.ctx = HopContext(host, node, "gwlb-target", inst.vpc_id, sub.id, sub.az, sub.az_id)
        self.protocols = frozenset(s.protocols)
        self.drops: dict[str, int] = {}

    def process(self, pkt: Packet, ctx: HopContext, now: float) -> str | None:
        """A packet routed straight to the target (not through its GWLB): dropped."""
        self.drops[R_TARGET_NOT_GENEVE] = self.drops.get(R_TARGET_NOT_GENEVE, 0) + 1
        return R_TARGET_NOT_GENEVE

    def handle_geneve(self, frame: bytes, now: float) -> bytes | str:
        """One GENEVE packet from the GWLB: the GENEVE packet sent back, or a drop reason."""
        try:
            _hdr, _meta, inner = geneve.decapsulate_ipv4(frame)
        except geneve.GeneveDecodeError as e:
            reason = e.reason.value
            self.drops[reason] = self.drops.get(reason, 0) + 1
            return reason
        p = parse(inner, self.protocols)
        if isinstance(p, str):
            self.drops[p] = self.drops.get(p, 0) + 1
            return p
        v = self.engine.process(p, self.ctx, now)
        if v is not None:
            self.drops[v] = self.drops.get(v, 0) + 1
            return v
        return target_reflect(frame)


class GwlbEndpointBox:
    """A GWLB endpoint as a VPC route target: hands the packet to the GWLB node of its AZ, which sends it to a
    target in GENEVE and gets it back; on PASS the dataplane routes it on by the endpoint subnet's route table.

    Trace hops: ``gwlb`` (node, AZ, target, cookie, new flow / fail-open / rebalanced) and ``gwlb-target``.
    Captures: the GENEVE frames both ways under the GWLB node (``<gwlb>/<az>``) and the target; RSTs under the
    endpoint.
    """

    def __init__(self, host: MiddleboxHost, node: str) -> None:
        topo = host.topology
        e = topo.gwlb_endpoints()[node]
        self.gwlb = gwlb_of(host, e.service)
        sub = topo.subnet(e.subnet)
        if sub.az not in self.gwlb.nodes:
            raise ConfigError(
                f"gwlb endpoint {node}: its subnet {e.subnet} is in {sub.az}, where {e.service} has no subnet "
                f"(GWLB subnets: {', '.join(n.subnet for n in self.gwlb.nodes.values())})"
            )
        self.host = host
        self.id = node
        self.az = sub.az
        self.node_name = f"{e.service}/{sub.az}"
        self.endpoint_num = endpoint_number(node)
        self.attachment_num = attachment_number(node, self.gwlb.attrs)
        self.resets: list[bytes] = []
        """RSTs the GWLB sent back through this endpoint for packets without a flow entry (also emitted into the
        VPC: the dataplane forwards them to their hosts, see ``Dataplane.emitted``)."""
        self._targets: dict[str, GwlbTargetAppliance] = {}

    def expire(self, now: float) -> int:
        """Idle expiry of this endpoint's GWLB (called by ``Dataplane.expire_flows``; the GWLB is shared by its
        endpoints, so later calls at the same ``now`` find nothing). RSTs on idle are sent, see
        :func:`expire_gwlbs`. Returns the number of flow entries removed."""
        return _expire_and_send(self.host, self.gwlb, now)[0]

    def _target(self, tid: str) -> GwlbTargetAppliance | None:
        t = self._targets.get(tid)
        if t is None:
            mb = self.host.middlebox(tid)
            if not isinstance(mb, GwlbTargetAppliance):
                return None
            self._targets[tid] = t = mb
        return t

    def process(self, pkt: Packet, ctx: HopContext, now: float) -> str | None:
        g = self.gwlb
        az = self.az
        if pkt.length > g.attrs.mtu:
            g._count(R_MTU_EXCEEDED)
            return R_MTU_EXCEEDED
        d = g.select(az, pkt, now)
        tracing = ctx.tracing
        if d.entry is not None:
            d.entry.endpoint = self.id
        if d.resets:
            self.resets.extend(d.resets)
            for r in d.resets:
                ctx.capture(self.id, r, now)
                ctx.emit(r, now)  # routed from the endpoint's subnet back to the sender
        tgt = d.target
        if tracing:
            node = g.nodes[az]
            ctx.hop(
                self.node_name,
                "gwlb",
                az=az,
                az_id=ctx.az_id,
                gwlb=g.id,
                node_ip=str(ipaddress.IPv4Address(node.ip)),
                target=tgt.id if tgt is not None else None,
                target_az=tgt.az if tgt is not None else None,
                flow_cookie=f"{d.entry.cookie:#010x}" if d.entry is not None else None,
                new_flow=d.new_flow,
                fail_open=d.fail_open,
                rebalanced=d.rebalanced,
                resets=len(d.resets) or None,
            )
        if tgt is None:
            return d.reason
        frame = g.to_target(az, d, pkt.wire(), self.endpoint_num, self.attachment_num)
        ctx.capture(self.node_name, frame, now)
        if d.reason is None and not self.host.node_up(tgt.id):
            # The instance failed in the dataplane (set_eni_health / set_az_health) but health checks have not
            # noticed yet (GWLB health is set separately, via gwlb_of(...).set_target_health).
            d.reason = R_TARGET_UNREACHABLE
            g._count(R_TARGET_UNREACHABLE)
        if d.reason is not None:
            # The node still sends the GENEVE packet (fail-open / no_rebalance); the dead target never answers.
            if tracing:
                ctx.hop(tgt.id, "gwlb-target", az=tgt.az, encapsulation="geneve", verdict="no answer", reason=d.reason)
            return d.reason
        ctx.capture(tgt.id, frame, now)
        box = self._target(tgt.id)
        if box is None:
            return R_BAD_RETURN
        back = box.handle_geneve(frame, now)
        if tracing:
            ctx.hop(
                tgt.id,
                "gwlb-target",
                az=box.az,
                az_id=box.az_id,
                eni=box.eni,
                encapsulation="geneve",
                verdict="dropped" if isinstance(back, str) else "returned",
                reason=back if isinstance(back, str) else None,
            )
        if isinstance(back, str):
            return f"{R_TARGET_DROPPED}:{back}"
        ctx.capture(tgt.id, back, now)
        ctx.capture(self.node_name, back, now)
        try:
            hdr, meta, inner = geneve.decapsulate_ipv4(back)
        except geneve.GeneveDecodeError:
            return R_BAD_RETURN
        # The node hands the packet back to the endpoint named in option 1; it must be this endpoint and the
        # packet must be the one sent (the emulator does not model appliances that rewrite packets).
        if meta.endpoint_id != self.endpoint_num or hdr.dst != g.nodes[az].ip or inner != pkt.wire():
            return R_BAD_RETURN
        return None


def endpoint_factory(host: MiddleboxHost, node: str) -> GwlbEndpointBox:
    """The ``gwlb-endpoint`` kind (a GWLB endpoint as a VPC route target)."""
    return GwlbEndpointBox(host, node)


def target_factory(host: MiddleboxHost, node: str) -> GwlbTargetAppliance:
    """The ``gwlb-target`` kind (an instance registered with a GWLB)."""
    return GwlbTargetAppliance(host, node)
