"""The packet-level Transit Gateway dataplane (sans-I/O: ``now`` comes in, randomness is injected).

:class:`Dataplane` compiles a :class:`~tgw_dataplane.model.Topology` into lookup structures and walks each
packet hop by hop:

* inside a VPC, the current node (the sending host, a TGW attachment ENI, an appliance, a GWLB endpoint)
  looks the destination up in its subnet's route table (LPM): ``local`` delivers to the instance owning the
  address, an ENI/instance or GWLB endpoint hands the packet to that node's middlebox plug-in, a TGW target
  enters the TGW through the attachment's ENI in the subnet's AZ (tgw.md §1.3: none there means
  ``no_attachment_subnet_in_az``), an IGW leaves to the internet;
* at a TGW (tgw.md §1.2): the ingress attachment's associated route table, longest prefix, AWS's tie-break
  order, blackhole, MTU (§1.11: silent drop), TTL (§1.2 step 9, a setting), then the egress: a VPC attachment
  picks its ENI by AZ affinity (stay in the ingress AZ, else a "random" healthy AZ, §1.3/§1.4) or, with
  appliance mode, by a symmetric flow hash over healthy ENIs with rendezvous hashing, pinned in a per-TGW flow
  table with idle expiry (§1.4); a peering attachment continues at the peer TGW (arrival AZ per setting, §1.7);
  a VPN attachment delivers if a tunnel is up.

Each TGW hop decides again from its own ingress AZ. Every drop is counted under a reason (``drops``); bad
packets never raise. Optional outputs: a path trace per packet, per-hop captures (a callback), TGW flow logs.
"""

from __future__ import annotations

import ipaddress
import random
from collections import deque
from collections.abc import Callable, Mapping
from enum import StrEnum
from hashlib import blake2b
from typing import Any, NamedTuple

from emulator.errors import ConfigError
from tgw_dataplane.capture import HopCaptures
from tgw_dataplane.flowlogs import FlowLogs
from tgw_dataplane.lpm import Lpm
from tgw_dataplane.middlebox import HopContext, Middlebox, MiddleboxFactory, MiddleboxHost
from tgw_dataplane.model import (
    ROUTE_PREFERENCE,
    ApplianceKind,
    Instance,
    PeeringAttachment,
    PinnedFlowPolicy,
    RandomAzMode,
    RouteOrigin,
    Settings,
    Subnet,
    Topology,
    TransitGateway,
    VpcAttachment,
    VpcRouteTable,
    VpcRouteTargetKind,
    VpnAttachment,
)
from tgw_dataplane.packet import (
    _TTL_PROTO_CSUM,
    PROTO_TCP,
    TCP_SYN,
    Packet,
    clamp_mss,
    flow_hash,
    hrw_pick,
    key_proto,
    parse,
    salt_of,
)
from tgw_dataplane.registry import MIDDLEBOXES


class DropReason(StrEnum):
    """Why a packet was dropped (Route Analyzer / flow-log names where they exist, tgw.md §1.13/§1.14)."""

    NO_ROUTE = "no_route"
    BLACKHOLE = "blackhole"
    MTU_EXCEEDED = "mtu_exceeded"
    TTL_EXPIRED = "ttl_expired"
    NO_ASSOCIATION = "no_association"
    NO_TGW_ATTACHMENT = "no_tgw_attachment"
    NO_ATTACHMENT_SUBNET_IN_AZ = "no_attachment_subnet_in_az"
    APPLIANCE_NO_STATE = "appliance_no_state"
    AZ_FAILED = "az_failed"
    ENI_FAILED = "eni_failed"
    INSTANCE_FAILED = "instance_failed"
    NO_HEALTHY_ENI = "no_healthy_eni"
    PINNED_FLOW_BLACKHOLED = "pinned_flow_blackholed"
    VPN_TUNNEL_DOWN = "vpn_tunnel_down"
    DESTINATION_UNREACHABLE = "destination_unreachable"
    MAX_HOPS_EXCEEDED = "max_hops_exceeded"
    UNKNOWN_SOURCE = "unknown_source"
    NO_MIDDLEBOX = "no_middlebox"
    TRUNCATED = "truncated"
    MALFORMED = "malformed"
    IP_OPTIONS = "ip_options"
    FRAGMENT = "fragment"
    IPV6_EXTENSION_HEADER = "ipv6_extension_header"
    UNKNOWN_PROTOCOL = "unknown_protocol"
    EMIT_LIMIT = "emit_limit"
    """More packets emitted by middleboxes in reaction to one packet than ``_MAX_EMIT_CHAIN`` (a loop)."""


DELIVERED = "delivered"
DROPPED = "dropped"

# VPC route kinds as small ints (compared on the hot path).
_K_LOCAL, _K_TGW, _K_ENI, _K_GWLBE, _K_IGW, _K_BLACKHOLE = range(6)
_KIND_CODE = {
    VpcRouteTargetKind.LOCAL: _K_LOCAL,
    VpcRouteTargetKind.TGW: _K_TGW,
    VpcRouteTargetKind.ENI: _K_ENI,
    VpcRouteTargetKind.GWLB_ENDPOINT: _K_GWLBE,
    VpcRouteTargetKind.IGW: _K_IGW,
    VpcRouteTargetKind.BLACKHOLE: _K_BLACKHOLE,
}
_A_VPC, _A_PEERING, _A_VPN = range(3)
_BH_IDX = 0xFFF  # flow-table ENI index meaning "pinned flow blackholed"


class Result(NamedTuple):
    """The outcome of one packet: ``verdict`` (``delivered``/``dropped``), ``reason`` (drop reason or ""),
    ``node`` (where it ended), ``hops`` (list of dicts when tracing, else None), ``packet`` (the parsed packet
    with its final TTL, or None if it did not parse).

    A named tuple (immutable; fields read by C-level getters): the per-packet fast path builds it with
    ``tuple.__new__`` directly, about a third of the cost of a class with an ``__init__``."""

    verdict: str
    reason: str
    node: str
    hops: list[dict[str, Any]] | None
    packet: Packet | None

    def to_json(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "reason": self.reason or None, "node": self.node, "hops": self.hops}

    def __repr__(self) -> str:
        return f"Result({self.verdict!r}, {self.reason!r}, {self.node!r})"


_tnew = tuple.__new__  # Result(...) without the generated __new__'s Python frame (hot path only)


# ---------------------------------------------------------------------------------------------------------
# Compiled runtime objects (slotted; built once)
# ---------------------------------------------------------------------------------------------------------


class _Route:
    """A compiled VPC route: kind code, target object, text for traces."""

    __slots__ = ("kind", "target", "text")

    def __init__(self, kind: int, target: Any, text: str) -> None:
        self.kind = kind
        self.target = target
        self.text = text


_S_DROP, _S_DELIVER, _S_TGW, _S_MB, _S_IGW = range(5)
_CACHE_MAX = 1 << 16


class _Step:
    """The static outcome of a VPC route lookup at one place for one destination."""

    __slots__ = ("eni", "kind", "node", "reason", "text")

    def __init__(self, kind: int, node: _Node | None, eni: _Eni | None, reason: str, text: str) -> None:
        self.kind = kind
        self.node = node
        self.eni = eni
        self.reason = reason
        self.text = text


class _TStep:
    """The static outcome of a TGW lookup for one ingress point and destination: a drop reason, or the egress
    attachment, the MTU to enforce and the same-AZ egress ENI (AZ affinity candidate)."""

    __slots__ = ("aff", "bgp", "group", "mtu", "out", "reason", "table", "text")

    def __init__(self, reason: str, out: _Att | None, text: str, table: str | None, mtu: int, aff: _Eni | None) -> None:
        self.reason = reason
        self.out = out
        self.text = text
        self.table = table
        self.mtu = mtu
        self.aff = aff
        self.bgp = False
        """The route is BGP-learned from a VPN attachment (ECMP over its tunnels applies, §1.10)."""
        self.group: tuple[tuple[_Att, ...], list[int]] | None = None
        """VPN ECMP over several attachments: (the attachments, their HRW salts)."""


_OP_PIN, _OP_MB, _OP_CAP, _OP_MTU, _OP_END, _OP_CAPL = range(6)
_UNCACHEABLE = (-1,)


class _Plan:
    """A flow plan: what remains dynamic on a path already walked for one flow and direction from one source.

    Like an Open vSwitch megaflow: the slow path (:meth:`Dataplane._walk`) records, in order, the appliance-mode
    pins it used (flow table, ENI index), the middleboxes the packet passed (and the TTL decrement at each), the
    capture points, the TGW hops' MTUs and the final node. Later packets of the flow replay only that: the pins
    are checked (present, same ENI, not idle) and refreshed, every middlebox still processes the packet (so
    firewall state is real), captures are written, TTL and MTU are checked against the recorded limits.
    A plan is valid for one generation: any change of health, appliance mode, tunnel state or routes bumps it.
    Only delivered walks without flow logs or tracing are recorded; anything unusual falls back to the slow path.
    Plans hold no per-flow state, so flows whose walks recorded the same steps share one plan object
    (:meth:`Dataplane._intern_plan`).
    """

    __slots__ = ("cap", "fast", "gen", "mtu", "node", "ops", "pin1", "pins", "segs", "simple", "syn_slow", "ttl_dec")

    def __init__(self, gen: int, cap: bool, rec: list[Any], node: str, ttl_dec: int, mss_clamp: bool) -> None:
        self.gen = gen
        self.cap = cap
        self.node = node
        self.ttl_dec = ttl_dec
        self.mtu = min((op[1] for op in rec if op[0] == _OP_MTU), default=1 << 30)
        # A TCP SYN / SYN-ACK with options on a path through a TGW may need its MSS clamped (§1.11): such
        # packets take the slow path (one or two per flow), which rewrites them at the right hop.
        self.syn_slow = mss_clamp and self.mtu < (1 << 30)
        self.pins = tuple((op[1], op[2], op[3]) for op in rec if op[0] == _OP_PIN)
        # The common case, one pin: checked without a loop.
        self.pin1: tuple[dict[int, int], int, int] | None = self.pins[0] if len(self.pins) == 1 else None
        self.ops = tuple(op for op in rec if op[0] in (_OP_PIN, _OP_MB, _OP_CAP, _OP_CAPL))
        kinds = [op[0] for op in self.ops]
        # simple: no captures and every pin before every middlebox -> (process, ctx, ttl_dec, node id) per
        # middlebox (bound methods resolved once, not per packet)
        self.simple: tuple[tuple[Any, HopContext, int, str], ...] | None = None
        if all(k in (_OP_PIN, _OP_MB) for k in kinds) and kinds == sorted(kinds):
            self.simple = tuple(_mb_step(op[1], op[2]) for op in self.ops if op[0] == _OP_MB)
        # fast: the commonest simple shape, one pin then one middlebox, replayed inline by Dataplane.send as
        # (flows, ENI index, idle ms, process, ctx, TTL decrement at the middlebox, its node id)
        self.fast: tuple[Any, ...] | None = None
        if self.simple is not None and self.pin1 is not None and len(self.simple) == 1:
            self.fast = self.pin1 + self.simple[0]
        # segs: direct captures, pins and middleboxes only -> ((capture groups, pins, middlebox step), ...),
        # each segment ending at a middlebox step (or None at the end of the path). A capture group is
        # (ttl_dec, (piece lists, ...)): the captures of one segment with the same TTL share one frame; groups
        # are in path order, and the TTL decrement only grows along the path, so every node's records keep
        # their order.
        self.segs: tuple[tuple[Any, ...], ...] | None = None
        if self.simple is None and all(k in (_OP_PIN, _OP_MB, _OP_CAPL) for k in kinds):
            segs: list[tuple[Any, ...]] = []
            caps: list[tuple[Any, int]] = []
            pins: list[tuple[Any, int]] = []
            for op in self.ops:
                if op[0] == _OP_CAPL:
                    caps.append((op[1], op[2]))
                elif op[0] == _OP_PIN:
                    pins.append((op[1], op[2]))
                else:
                    segs.append((_cap_groups(caps), tuple(pins), _mb_step(op[1], op[2])))
                    caps, pins = [], []
            segs.append((_cap_groups(caps), tuple(pins), None))
            self.segs = tuple(segs)


def _mb_step(n: _Node, dec: int) -> tuple[Any, HopContext, int, str]:
    assert n.mb is not None and n.ctx is not None
    return (n.mb.process, n.ctx, dec, n.id)


def _cap_groups(caps: list[tuple[list[bytes], int]]) -> tuple[tuple[int, tuple[list[bytes], ...]], ...]:
    groups: list[tuple[int, list[list[bytes]]]] = []
    for pieces, dec in caps:
        if groups and groups[-1][0] == dec:
            groups[-1][1].append(pieces)
        else:
            groups.append((dec, [pieces]))
    return tuple((dec, tuple(lists)) for dec, lists in groups)


class _Place:
    """Where a packet is routed from inside a VPC: a subnet's route table (or the IGW edge table)."""

    __slots__ = ("az", "az_id", "id", "lpm4", "lpm6", "rtb", "steps", "vpc")

    def __init__(self, pid: str, vpc: _Vpc, az: str, az_id: str, rtb: str) -> None:
        self.id = pid
        self.vpc = vpc
        self.az = az
        self.az_id = az_id
        self.rtb = rtb
        self.lpm4: Lpm[_Route] = Lpm(32)
        self.lpm6: Lpm[_Route] = Lpm(128)
        self.steps: dict[int, _Step] = {}


class _Vpc:
    __slots__ = ("account", "atts", "hosts", "id", "igw_place", "region")

    def __init__(self, vid: str, region: str, account: str) -> None:
        self.id = vid
        self.region = region
        self.account = account
        self.hosts: dict[int, _Node] = {}  # address int -> instance owning it
        self.atts: dict[str, _Att] = {}  # tgw id -> this VPC's attachment to it
        self.igw_place: _Place | None = None


class _Node:
    """An instance (host or appliance) or a GWLB endpoint."""

    __slots__ = ("addrs", "ctx", "eni", "id", "is_host", "kind", "mb", "place", "plans", "up")

    def __init__(self, nid: str, kind: str, eni: str, place: _Place) -> None:
        self.id = nid
        self.kind = kind
        self.eni = eni
        self.place = place
        self.is_host = kind == ApplianceKind.HOST
        self.mb: Middlebox | None = None
        self.ctx: HopContext | None = None
        self.up = True
        self.addrs: list[int] = []
        self.plans: dict[int, _Plan] = {}  # flow plans of packets this node sends


class _Eni:
    """A TGW attachment ENI in one subnet (AZ)."""

    __slots__ = ("att", "az", "az_id", "id", "idx", "place", "salt", "subnet_id", "tcache", "up")

    def __init__(self, eid: str, att: _Att, idx: int, place: _Place, subnet_id: str) -> None:
        self.id = eid
        self.att = att
        self.idx = idx
        self.place = place
        self.subnet_id = subnet_id
        self.az = place.az
        self.az_id = place.az_id
        self.salt = salt_of(eid)
        self.up = True
        self.tcache: dict[int, _TStep] = {}  # TGW lookups of packets entering through this ENI


class _TgwTable:
    __slots__ = ("id", "lpm4", "lpm6")

    def __init__(self, rid: str) -> None:
        self.id = rid
        self.lpm4: Lpm[_TgwRoute] = Lpm(32)
        self.lpm6: Lpm[_TgwRoute] = Lpm(128)


class _TgwRoute:
    __slots__ = ("att", "bgp", "group", "text")

    def __init__(self, att: _Att | None, text: str, bgp: bool = False) -> None:
        self.att = att  # None: blackhole
        self.text = text
        self.bgp = bgp  # propagated from a VPN attachment (BGP)
        self.group: tuple[tuple[_Att, ...], list[int]] | None = None  # VPN ECMP over attachments


class _Tgw:
    __slots__ = ("account", "id", "region", "seed", "tables", "vpn_ecmp")

    def __init__(self, t: TransitGateway) -> None:
        self.id = t.id
        self.region = t.region
        self.account = t.account
        self.vpn_ecmp = t.vpn_ecmp
        seed = t.seed if t.seed is not None else int.from_bytes(blake2b(t.id.encode(), digest_size=8).digest())
        self.seed = seed.to_bytes(16, "big", signed=False)
        self.tables: dict[str, _TgwTable] = {}


class _Att:
    __slots__ = (
        "appliance_mode",
        "by_az_id",
        "enis",
        "flows",
        "healthy",
        "healthy_salts",
        "id",
        "mtu",
        "peer",
        "table",
        "tcache",
        "tgw",
        "tunnels",
        "type",
        "vpc",
    )

    def __init__(self, aid: str, tgw: _Tgw, typ: int, mtu: int) -> None:
        self.id = aid
        self.tgw = tgw
        self.type = typ
        self.mtu = mtu
        self.vpc: _Vpc | None = None
        self.enis: list[_Eni] = []
        self.by_az_id: dict[str, _Eni] = {}
        self.healthy: list[_Eni] = []
        self.healthy_salts: list[int] = []
        self.appliance_mode = False
        self.flows: dict[int, int] = {}  # canonical flow key -> (last_seen_ms << 12) | ENI index
        self.table: _TgwTable | None = None
        self.peer: _Att | None = None
        self.tunnels: dict[str, bool] = {}
        self.tcache: dict[int, _TStep] = {}  # TGW lookups of packets arriving without an ENI (peering, VPN)


CaptureSink = Callable[[str, float, bytes], None]
EMITTED_KEPT = 1024
"""How many outcomes of emitted/injected packets :attr:`Dataplane.emitted` keeps."""
_MAX_EMIT_CHAIN = 1024  # packets forwarded per drain; an emission loop between middleboxes stops there


class Dataplane:
    """Forward packets through a topology. Sans-I/O: every entry point takes ``now``; ``rng`` is injected.

    Main entry point: :meth:`send` ``(data, source, now, trace=False) -> Result`` where ``source`` is an
    instance id (``i-...``), an IGW id, or a VPN attachment id. Run-time changes: :meth:`set_az_health`,
    :meth:`set_eni_health`, :meth:`set_appliance_mode`, :meth:`set_tunnel_state`. Outputs: ``drops`` (reason
    -> count), ``delivered``, ``flow_logs`` (when enabled), per-hop captures through ``capture_sink``,
    :attr:`stats` (counters and flow-plan cache figures).

    Middleboxes are built from ``middleboxes`` (kind -> factory; default
    :data:`tgw_dataplane.registry.MIDDLEBOXES`) and see the dataplane only through :attr:`middlebox_host`.
    """

    def __init__(
        self,
        topology: Topology,
        *,
        rng: random.Random | None = None,
        flow_logs: bool = False,
        capture_sink: CaptureSink | None = None,
        flow_cache: bool = True,
        middleboxes: Mapping[str, MiddleboxFactory] | None = None,
    ) -> None:
        self.topology = topology
        self.settings: Settings = topology.settings
        self.rng = rng if rng is not None else random.Random(0)
        self.drops: dict[str, int] = {}
        self.delivered = 0
        self.flow_logs: FlowLogs | None = FlowLogs() if flow_logs else None
        self.capture_sink = capture_sink
        self.flow_cache = flow_cache
        """Replay flow plans (:class:`_Plan`) for packets of flows already walked; off: always the slow path."""
        self._hops: list[dict[str, Any]] | None = None
        self._protocols = frozenset(self.settings.protocols)
        s = self.settings
        self._tcp_idle_ms = int(s.appliance_tcp_idle_timeout * 1000)
        self._idle_ms = int(s.appliance_idle_timeout * 1000)
        self._gen = 0
        self._plan_pool: dict[tuple[Any, ...], _Plan] = {}  # see _intern_plan
        self._plan_pool_gen = 0
        self._rec: list[Any] | None = None
        self._max_hops = s.max_hops
        self._ttl_decrement = s.ttl_decrement
        self._mss_clamp = s.mss_clamp
        self.mss_clamped = 0
        """TCP SYN / SYN-ACK packets whose MSS option a TGW lowered (tgw.md §1.11)."""
        self._policy = s.pinned_flow_on_failure
        self._vpcs: dict[str, _Vpc] = {}
        self._places: dict[str, _Place] = {}
        self._nodes: dict[str, _Node] = {}  # instance ids, ENI ids and GWLB endpoint ids -> node
        self._tgws: dict[str, _Tgw] = {}
        self._atts: dict[str, _Att] = {}
        self._enis: dict[str, _Eni] = {}
        self._az_down: set[str] = set()
        self._sources: dict[str, tuple[str, Any]] = {}
        self._instances: dict[str, _Node] = {}
        self._emitq: list[tuple[str, bytes, float]] = []
        self.emitted: deque[Result] = deque(maxlen=EMITTED_KEPT)
        """Outcomes of packets emitted by middleboxes (``HopContext.emit``) or injected, newest last."""
        self._slow_walks = 0
        self._factories = MIDDLEBOXES if middleboxes is None else middleboxes
        self._host = MiddleboxHost(
            topology,
            self.settings,
            self.rng,
            node_up=self.node_up,
            middlebox=self.middlebox,
            capture=self.capture,
            add_hop=self.add_hop,
            emit=self.queue_emit,
            forward_emitted=self.forward_emitted,
        )
        self._compile()

    @property
    def middlebox_host(self) -> MiddleboxHost:
        """What the middleboxes of this dataplane see of it (:class:`~tgw_dataplane.middlebox.MiddleboxHost`),
        including their per-dataplane plug-in state."""
        return self._host

    @property
    def tracing(self) -> bool:
        """True while the packet being forwarded is traced."""
        return self._host.tracing

    @property
    def stats(self) -> dict[str, int]:
        """Counters (a fresh dict): ``delivered``, ``dropped`` (all reasons), ``mss_clamped``, ``slow_walks``
        (packets given to :meth:`send` that took the full walk instead of a flow plan), ``flow_plans`` (flow
        plans held, one per flow, direction and source) and ``distinct_plans`` (plan objects behind them:
        flows on the same path share one, see ``_Plan``)."""
        plans = [p for n in self._instances.values() for p in n.plans.values()]
        return {
            "delivered": self.delivered,
            "dropped": sum(self.drops.values()),
            "mss_clamped": self.mss_clamped,
            "slow_walks": self._slow_walks,
            "flow_plans": len(plans),
            "distinct_plans": len({id(p) for p in plans}),
        }

    # ------------------------------------------------------------------------------------------------------
    # compile
    # ------------------------------------------------------------------------------------------------------
    def _compile(self) -> None:
        topo = self.topology
        for t in topo.tgws.values():
            self._tgws[t.id] = _Tgw(t)
        for v in topo.vpcs.values():
            cv = self._vpcs[v.id] = _Vpc(v.id, v.region, v.account)
            for s in v.subnets.values():
                self._places[s.id] = _Place(s.id, cv, s.az, s.az_id, s.route_table)
            if v.igw is not None:
                p = _Place(v.igw, cv, "", "", v.edge_route_table or "")
                cv.igw_place = p
                self._sources[v.igw] = ("igw", p)
        # instances and GWLB endpoints
        for v in topo.vpcs.values():
            cv = self._vpcs[v.id]
            for i in v.instances.values():
                n = _Node(i.id, i.kind.value, i.eni, self._places[i.subnet])
                for a in (i.ip, i.ipv6):
                    if a:
                        ai = int(ipaddress.ip_address(a))
                        if ai in cv.hosts:
                            raise ConfigError(f"instance {i.id}: address {a} is also used by {cv.hosts[ai].id}")
                        cv.hosts[ai] = n
                        n.addrs.append(ai)
                self._nodes[i.id] = n
                self._nodes[i.eni] = n
                self._sources[i.id] = ("instance", n)
                self._instances[i.id] = n
            for ge in v.gwlb_endpoints.values():
                self._nodes[ge.id] = _Node(ge.id, "gwlb-endpoint", ge.id, self._places[ge.subnet])
        self._compile_attachments()
        # middleboxes (after every node exists, so a plug-in may look others up)
        for nid, n in list(self._nodes.items()):
            if n.is_host or n.mb is not None or nid != n.id:
                continue
            f = self._factories.get(n.kind)
            if f is not None:
                pl = n.place
                n.ctx = HopContext(self._host, n.id, n.kind, pl.vpc.id, pl.id, pl.az, pl.az_id)
                n.mb = f(self._host, n.id)
        # VPC route tables
        for v in topo.vpcs.values():
            for sid, sub in v.subnets.items():
                self._compile_vpc_rt(self._places[sid], v.route_tables[sub.route_table], v.cidrs)
            ip = self._vpcs[v.id].igw_place
            if ip is not None:
                rt = v.route_tables.get(v.edge_route_table or "", VpcRouteTable("", v.id))
                self._compile_vpc_rt(ip, rt, v.cidrs)
        self._compile_tgw_tables()

    def _compile_attachments(self) -> None:
        topo = self.topology
        s = self.settings
        for t in topo.tgws.values():
            ct = self._tgws[t.id]
            for a in t.attachments.values():
                if isinstance(a, VpcAttachment):
                    ca = _Att(a.id, ct, _A_VPC, s.vpc_mtu)
                    ca.vpc = self._vpcs[a.vpc_id]
                    ca.appliance_mode = a.appliance_mode
                    if t.id in ca.vpc.atts:
                        raise ConfigError(
                            f"attachment {a.id}: {a.vpc_id} already has attachment {ca.vpc.atts[t.id].id} "
                            f"to {t.id} (one per TGW and VPC)"
                        )
                    ca.vpc.atts[t.id] = ca
                    for idx, sid in enumerate(a.subnets):
                        pl = self._places[sid]
                        eid = a.enis.get(sid) or f"eni-{a.id.removeprefix('tgw-attach-')}-{pl.az_id}"
                        eni = _Eni(eid, ca, idx, pl, sid)
                        ca.enis.append(eni)
                        ca.by_az_id[pl.az_id] = eni
                        self._enis[eid] = eni
                elif isinstance(a, PeeringAttachment):
                    ca = _Att(a.id, ct, _A_PEERING, s.peering_mtu)
                else:
                    ca = _Att(a.id, ct, _A_VPN, s.vpn_mtu)
                    ca.tunnels = {tn: a.tunnels_up for tn in a.tunnels}
                    self._sources[a.id] = ("vpn", ca)
                self._atts[a.id] = ca
                self._refresh_att(ca)
        for t in topo.tgws.values():
            for a in t.attachments.values():
                if isinstance(a, PeeringAttachment):
                    self._atts[a.id].peer = self._atts[a.peer]

    def _compile_vpc_rt(self, place: _Place, rt: VpcRouteTable, cidrs: list[Any]) -> None:
        place.lpm4 = Lpm(32)
        place.lpm6 = Lpm(128)
        for c in cidrs:
            lpm = place.lpm4 if c.version == 4 else place.lpm6
            lpm.insert(int(c.network_address), c.prefixlen, _Route(_K_LOCAL, None, f"{c} -> local"))
        for r in rt.routes:
            k = _KIND_CODE[r.kind]
            tgt: Any = None
            if k == _K_TGW:
                tgt = self._tgws[r.target]
            elif k in (_K_ENI, _K_GWLBE):
                tgt = self._nodes[r.target]
            lpm = place.lpm4 if r.dest.version == 4 else place.lpm6
            lpm.insert(int(r.dest.network_address), r.dest.prefixlen, _Route(k, tgt, f"{r.dest} -> {r.target}"))

    def _compile_tgw_tables(self) -> None:
        """(Re)build every TGW route table: static, prefix-list and propagated routes with the tie-break."""
        topo = self.topology
        for t in topo.tgws.values():
            ct = self._tgws[t.id]
            ct.tables = {}
            for rt in t.route_tables.values():
                table = ct.tables[rt.id] = _TgwTable(rt.id)
                cands: dict[Any, list[tuple[tuple[int, int, int, str], _TgwRoute]]] = {}
                add = _adder(cands)

                for r in rt.routes:
                    nets = [r.dest] if r.dest is not None else topo.prefix_lists[r.prefix_list or ""]
                    att = self._atts[r.attachment] if r.attachment else None
                    tgt = r.attachment or "blackhole"
                    for n in nets:
                        add(
                            n,
                            (ROUTE_PREFERENCE[r.origin], 0, 0, tgt),
                            _TgwRoute(att, f"{n} -> {tgt} ({r.origin.value})"),
                        )
                propagated_vpc: list[Any] = []
                for pid in rt.propagations:
                    ca = self._atts[pid]
                    a = t.attachments[pid]
                    if isinstance(a, VpcAttachment):
                        for c in topo.vpcs[a.vpc_id].cidrs:
                            # VPCATT: a CIDR identical to or overlapping one already propagated is not propagated.
                            if any(c.version == o.version and c.overlaps(o) for o in propagated_vpc):
                                continue
                            propagated_vpc.append(c)
                            add(
                                c,
                                (ROUTE_PREFERENCE[RouteOrigin.VPC], 0, 0, pid),
                                _TgwRoute(ca, f"{c} -> {pid} (propagated vpc)"),
                            )
                    elif isinstance(a, VpnAttachment) and any(ca.tunnels.values()):
                        for vr in a.routes:
                            add(
                                vr.dest,
                                (ROUTE_PREFERENCE[RouteOrigin.VPN], vr.as_path_len, vr.med, pid),
                                _TgwRoute(ca, f"{vr.dest} -> {pid} (propagated vpn)", bgp=True),
                            )
                for net, lst in cands.items():
                    lst.sort(key=lambda x: x[0])
                    best_rank, best = lst[0]
                    if best.bgp and ct.vpn_ecmp:
                        # §1.10: with VpnEcmpSupport, equal BGP routes from several VPN attachments share the
                        # traffic per flow (static VPN routes never do). Equal: same origin, AS path and MED.
                        equal = [r for rank, r in lst if r.bgp and rank[:3] == best_rank[:3] and r.att is not None]
                        if len(equal) > 1:
                            atts = tuple(r.att for r in equal if r.att is not None)
                            best = _TgwRoute(
                                best.att,
                                f"{net} -> {', '.join(a.id for a in atts)} (propagated vpn, ECMP)",
                                bgp=True,
                            )
                            best.group = (atts, [salt_of(a.id) for a in atts])
                    lpm = table.lpm4 if net.version == 4 else table.lpm6
                    lpm.insert(int(net.network_address), net.prefixlen, best)
                for aid in rt.associations:
                    self._atts[aid].table = table
        self._clear_caches()

    def _refresh_att(self, ca: _Att) -> None:
        ca.healthy = [e for e in ca.enis if e.up and e.az_id not in self._az_down]
        ca.healthy_salts = [e.salt for e in ca.healthy]

    # ------------------------------------------------------------------------------------------------------
    # run-time changes
    # ------------------------------------------------------------------------------------------------------
    def set_az_health(self, az_id: str, healthy: bool) -> None:
        """Fail or restore an AZ (by AZ ID): its TGW attachment ENIs and its instances stop forwarding."""
        self._gen += 1
        if healthy:
            self._az_down.discard(az_id)
        else:
            self._az_down.add(az_id)
        for n in self._nodes.values():
            if n.place.az_id == az_id:
                n.up = healthy
        for e in self._enis.values():
            if e.az_id == az_id:
                e.up = healthy
        for ca in self._atts.values():
            self._refresh_att(ca)

    def set_eni_health(self, eni_id: str, healthy: bool) -> None:
        """Fail or restore one TGW attachment ENI, or an instance/appliance (by instance or ENI id)."""
        self._gen += 1
        e = self._enis.get(eni_id)
        if e is not None:
            e.up = healthy
            self._refresh_att(e.att)
            return
        n = self._nodes.get(eni_id)
        if n is None:
            raise ConfigError(f"set_eni_health: no ENI or instance {eni_id!r}")
        n.up = healthy

    def set_appliance_mode(self, attachment_id: str, enabled: bool) -> None:
        """Toggle ApplianceModeSupport on a live VPC attachment. APP: this "might affect that attachment's
        current route"; existing pins are dropped, so every flow is re-evaluated on its next packet."""
        self._gen += 1
        ca = self._att(attachment_id)
        if ca.type != _A_VPC:
            raise ConfigError(f"attachment {attachment_id}: appliance mode exists only on VPC attachments")
        ca.appliance_mode = enabled
        ca.flows.clear()

    def set_tunnel_state(self, attachment_id: str, tunnel: str, up: bool) -> None:
        """Set a VPN tunnel up or down. Propagated (BGP) routes of the attachment are present while at least
        one tunnel is up; route tables are recompiled when that changes."""
        self._gen += 1
        ca = self._att(attachment_id)
        if ca.type != _A_VPN:
            raise ConfigError(f"attachment {attachment_id}: not a VPN attachment")
        if tunnel not in ca.tunnels:
            raise ConfigError(f"attachment {attachment_id}: no tunnel {tunnel!r} ({', '.join(ca.tunnels)})")
        before = any(ca.tunnels.values())
        ca.tunnels[tunnel] = up
        if any(ca.tunnels.values()) != before:
            self._compile_tgw_tables()

    def expire_flows(self, now: float) -> int:
        """Expire idle state: appliance-mode pins (lookups also ignore expired ones), and every middlebox that has
        ``expire(now)`` (the firewall's conntrack, GWLB flow tables, whose RST-on-idle resets are forwarded to
        the hosts). Returns how many appliance-mode pins were removed (see :meth:`expire` for the total)."""
        return self._expire(now)[0]

    def expire(self, now: float) -> int:
        """Like :meth:`expire_flows`; returns how many entries were removed in all (pins and middlebox state)."""
        pins, other = self._expire(now)
        return pins + other

    def _expire(self, now: float) -> tuple[int, int]:
        now_ms = int(now * 1000)
        n = 0
        for ca in self._atts.values():
            dead = [
                k
                for k, v in ca.flows.items()
                if now_ms - (v >> 12) > (self._tcp_idle_ms if key_proto(k) == PROTO_TCP else self._idle_ms)
            ]
            for k in dead:
                del ca.flows[k]
            n += len(dead)
        m = 0
        seen: set[int] = set()
        for node in self._nodes.values():
            mb = node.mb
            if mb is not None and id(mb) not in seen:
                seen.add(id(mb))
                exp = getattr(mb, "expire", None)
                if callable(exp):
                    r = exp(now)
                    m += r if isinstance(r, int) else 0
        if self._emitq:
            self._drain()
        return n, m

    # ------------------------------------------------------------------------------------------------------
    # packets sent by nodes themselves (middlebox emissions, injections)
    # ------------------------------------------------------------------------------------------------------
    def node_up(self, node_id: str) -> bool:
        """Whether a node forwards: an instance (by instance or ENI id), a GWLB endpoint or a TGW attachment ENI.
        False after ``set_eni_health(..., False)`` or while its AZ is failed. Unknown ids raise ConfigError."""
        n = self._nodes.get(node_id)
        if n is not None:
            return n.up
        e = self._enis.get(node_id)
        if e is not None:
            return e.up
        raise ConfigError(f"node_up: no instance, ENI or GWLB endpoint {node_id!r}")

    def inject(self, node_id: str, data: bytes, now: float, trace: bool = False) -> Result:
        """Forward ``data`` (raw IPv4/IPv6) as sent by the node ``node_id`` itself (an instance, its ENI, or a
        GWLB endpoint): routed from the node's subnet by its route table, without passing the node's own
        middlebox. For tools and for middleboxes outside packet processing (e.g. expiry); while a packet is
        being processed, a middlebox uses ``HopContext.emit`` instead. The outcome is returned and also kept
        in :attr:`emitted`. A node that is down drops it (``instance_failed``)."""
        n = self._nodes.get(node_id)
        if n is None:
            raise ConfigError(f"inject: no instance, ENI or GWLB endpoint {node_id!r}")
        res = self._inject(n, data, now, trace)
        if self._emitq:
            self._drain()
        return res

    def queue_emit(self, node_id: str, data: bytes, now: float) -> None:
        """Queue a packet emitted by a middlebox (see ``HopContext.emit``); forwarded after the current packet."""
        self._emitq.append((node_id, data, now))

    def forward_emitted(self) -> None:
        """Forward the packets queued by :meth:`queue_emit` now (``send``, ``inject`` and ``expire_flows`` do this
        themselves; a plug-in that queues outside them calls it)."""
        if self._emitq:
            self._drain()

    def _inject(self, n: _Node, data: bytes, now: float, trace: bool) -> Result:
        hops: list[dict[str, Any]] | None = [] if trace else None
        self._hops = hops
        self._host.tracing = trace
        p = parse(data, self._protocols)
        if isinstance(p, str):
            res = self._drop(p, n.id, None)
        elif not n.up:
            res = self._drop(DropReason.INSTANCE_FAILED, n.id, p)
        else:
            res = self._walk(p, n.place, n.id, n.kind, n.eni, "", now)
        self.emitted.append(res)
        return res

    def _drain(self) -> None:
        """Forward queued emissions (they may queue more; bounded by _MAX_EMIT_CHAIN per drain)."""
        q = self._emitq
        budget = _MAX_EMIT_CHAIN
        while q and budget > 0:
            budget -= 1
            node_id, data, now = q.pop(0)
            n = self._nodes.get(node_id)
            if n is None:
                self.emitted.append(self._drop(DropReason.UNKNOWN_SOURCE, node_id, None))
                continue
            self._inject(n, data, now, False)
        if q:
            self.drops[DropReason.EMIT_LIMIT] = self.drops.get(DropReason.EMIT_LIMIT, 0) + len(q)
            q.clear()

    def _att(self, aid: str) -> _Att:
        ca = self._atts.get(aid)
        if ca is None:
            raise ConfigError(f"attachment {aid!r} does not exist")
        return ca

    def middlebox(self, node_id: str) -> Middlebox | None:
        """The plug-in object of a node (instance, ENI or GWLB endpoint id), if it has one."""
        n = self._nodes.get(node_id)
        return None if n is None else n.mb

    def middleboxes(self) -> dict[str, Middlebox]:
        """Every node that has a plug-in: instance or GWLB endpoint id -> its middlebox."""
        return {nid: n.mb for nid, n in self._nodes.items() if n.mb is not None and nid == n.id}

    def flow_table(self, attachment_id: str) -> dict[int, int]:
        """The appliance-mode flow table of an attachment: canonical key -> (last_seen_ms << 12) | ENI index."""
        return self._att(attachment_id).flows

    def attachment_enis(self, attachment_id: str) -> list[str]:
        return [e.id for e in self._att(attachment_id).enis]

    def source_ids(self) -> list[str]:
        """The ids :meth:`send` takes as a source: instances, internet gateways and VPN attachments."""
        return list(self._sources)

    def source_for_ip(self, addr: str) -> str:
        """The id of the instance that owns ``addr`` (unique across VPCs), for CLI/pcap replay."""
        a = int(ipaddress.ip_address(addr))
        found = [n.id for v in self._vpcs.values() for k, n in v.hosts.items() if k == a]
        if len(found) != 1:
            raise ConfigError(
                f"address {addr}: {'no instance' if not found else 'several instances (' + ', '.join(found) + ')'}"
                " owns it; name the source explicitly"
            )
        return found[0]

    # ------------------------------------------------------------------------------------------------------
    # hooks for middleboxes
    # ------------------------------------------------------------------------------------------------------
    def add_hop(self, node: str, kind: str, fields: dict[str, Any]) -> None:
        if self._hops is not None:
            h: dict[str, Any] = {"node": node, "kind": kind}
            h.update(fields)
            self._hops.append(h)

    def capture(self, node: str, frame: bytes, now: float) -> None:
        if self.capture_sink is not None:
            self.capture_sink(node, now, frame)

    def _drop(self, reason: str, node: str, pkt: Packet | None) -> Result:
        self.drops[reason] = self.drops.get(reason, 0) + 1
        hops = self._hops
        if hops is not None:
            hops.append({"node": node, "kind": "drop", "reason": reason})
        return Result(DROPPED, reason, node, hops, pkt)

    # ------------------------------------------------------------------------------------------------------
    # the per-packet path
    # ------------------------------------------------------------------------------------------------------
    def send(self, data: bytes, source: str, now: float, trace: bool = False) -> Result:
        """Forward one packet sent by ``source`` (instance id, IGW id, or VPN attachment id) at ``now``."""
        p = parse(data, self._protocols)
        if not trace and p.__class__ is Packet and self.flow_cache and self.flow_logs is None:
            # Flow plan cache (see _Plan): replay the dynamic steps of a path already walked for this flow.
            node = self._instances.get(source)
            if node is not None:
                key = p.key
                plan = node.plans.get((key << 1) | p.forward)
                if (
                    plan is not None
                    and plan.gen == self._gen
                    and plan.cap == (self.capture_sink is not None)
                    and node.up
                    and not (p.flags & TCP_SYN and plan.syn_slow and p.data[32 if p.version == 4 else 52] > 0x50)
                ):
                    f = plan.fast
                    if f is not None and p.length <= plan.mtu and p.ttl > plan.ttl_dec:
                        # _run_plan's simple shape inlined (one pin, one middlebox): the same checks and steps.
                        flows = f[0]
                        now_ms = int(now * 1000)
                        v = flows.get(key)
                        if v is not None and (v & 0xFFF) == f[1] and now_ms - (v >> 12) <= f[2]:
                            flows[key] = (now_ms << 12) | f[1]
                            ttl0 = p.ttl
                            p.ttl = ttl0 - f[5]
                            verdict = f[3](p, f[4], now)
                            if verdict is None:
                                p.ttl = ttl0 - plan.ttl_dec
                                self.delivered += 1
                                res = _tnew(Result, (DELIVERED, "", plan.node, None, p))
                            else:
                                res = self._drop(verdict, f[6], p)
                            if self._emitq:
                                self._drain()
                            return res
                    rp = self._run_plan(plan, p, now)
                    if rp is not None:
                        if self._emitq:
                            self._drain()
                        return rp
        res = self._send_walk(p, data, source, now, trace)
        if self._emitq:
            self._drain()
        return res

    def _send_walk(self, p: Packet | str, data: bytes, source: str, now: float, trace: bool) -> Result:
        cap = self.capture_sink
        src = self._sources.get(source)
        hops: list[dict[str, Any]] | None = [] if trace else None
        self._hops = hops
        self._host.tracing = trace
        self._slow_walks += 1
        if isinstance(p, str):
            return self._drop(p, source, None)
        pkt: Packet = p
        if src is None:
            return self._drop(DropReason.UNKNOWN_SOURCE, source, pkt)
        what, obj = src
        if what == "instance":
            node = obj
            assert node is not None
            if not node.up:
                return self._drop(DropReason.INSTANCE_FAILED, node.id, pkt)
            if hops is not None or self.flow_logs is not None or not self.flow_cache:
                if cap is not None:
                    cap(node.id, now, data)
                return self._walk(pkt, node.place, node.id, node.kind, node.eni, "", now)
            fk = (pkt.key << 1) | pkt.forward
            plans = node.plans
            rec: list[Any] = []
            self._rec = rec
            if cap is not None:
                cap(node.id, now, data)
                rec.append((_OP_CAP, node.id, 0))
            try:
                res = self._walk(pkt, node.place, node.id, node.kind, node.eni, "", now)
            finally:
                self._rec = None
            if res.verdict == DELIVERED and rec[-1] is not _UNCACHEABLE:
                if len(plans) >= _CACHE_MAX:
                    plans.clear()
                if isinstance(cap, HopCaptures):
                    rec = [(_OP_CAPL, cap.pieces(op[1]), op[2]) if op[0] == _OP_CAP else op for op in rec]
                plans[fk] = self._intern_plan(rec, cap is not None, res.node, pkt.ttl0 - pkt.ttl)
            return res
        if what == "igw":
            place: _Place = obj
            if cap is not None:
                cap(place.id, now, data)
            return self._walk(pkt, place, place.id, "igw", "", "", now)
        # VPN: the packet arrives at the TGW on the VPN attachment.
        ca: _Att = obj
        if not any(ca.tunnels.values()):
            return self._drop(DropReason.VPN_TUNNEL_DOWN, ca.id, pkt)
        if hops is not None:
            hops.append({"node": ca.id, "kind": "vpn-attachment", "attachment": ca.id})
        if cap is not None:
            cap(ca.id, now, data)
        r = self._tgw(pkt, ca, None, now)
        if isinstance(r, Result):
            return r
        e: _Eni = r
        return self._walk(pkt, e.place, e.id, "tgw-attachment-eni", e.id, e.att.id, now)

    def _intern_plan(self, rec: list[Any], cap: bool, node: str, ttl_dec: int) -> _Plan:
        """The plan for a recorded walk, shared by every flow whose walk recorded the same steps (same path,
        same ENIs): thousands of flows then replay a handful of plan objects, which stay in the CPU caches,
        instead of one object graph each. Flow tables and capture lists are keyed by identity (the pool keeps
        them alive, so an id is never reused while its entry exists); the pool is emptied with each generation.
        """
        pool = self._plan_pool
        if self._plan_pool_gen != self._gen or len(pool) >= _CACHE_MAX:
            pool.clear()
            self._plan_pool_gen = self._gen
        sig = (cap, node, ttl_dec, tuple(tuple(id(x) if x.__class__ in (dict, list) else x for x in op) for op in rec))
        try:
            plan = pool.get(sig)
        except TypeError:  # a step holding something unhashable (none does today): keep the plan to this flow
            return _Plan(self._gen, cap, rec, node, ttl_dec, self._mss_clamp)
        if plan is None:
            plan = pool[sig] = _Plan(self._gen, cap, rec, node, ttl_dec, self._mss_clamp)
        return plan

    def _run_plan(self, plan: _Plan, pkt: Packet, now: float) -> Result | None:
        """Replay a flow plan: validate, then run the dynamic steps in order. None: take the slow path."""
        if pkt.length > plan.mtu or pkt.ttl <= plan.ttl_dec:
            return None  # the slow path drops it at the right hop (mtu_exceeded / ttl_expired)
        key = pkt.key
        now_ms = int(now * 1000)
        pin1 = plan.pin1
        if pin1 is not None:
            v = pin1[0].get(key)
            if v is None or (v & 0xFFF) != pin1[1] or now_ms - (v >> 12) > pin1[2]:
                return None  # pin expired or moved: re-decide on the slow path
        else:
            for flows, idx, idle in plan.pins:
                v = flows.get(key)
                if v is None or (v & 0xFFF) != idx or now_ms - (v >> 12) > idle:
                    return None
        ttl0 = pkt.ttl
        simple = plan.simple
        if simple is not None:
            # Common shape without captures: pins, then middleboxes (no per-op dispatch).
            if pin1 is not None:
                pin1[0][key] = (now_ms << 12) | pin1[1]
            else:
                for flows, idx, _idle in plan.pins:
                    flows[key] = (now_ms << 12) | idx
            for process, ctx, d, nid in simple:
                pkt.ttl = ttl0 - d
                verdict = process(pkt, ctx, now)
                if verdict is not None:
                    return self._drop(verdict, nid, pkt)
            pkt.ttl = ttl0 - plan.ttl_dec
            self.delivered += 1
            return _tnew(Result, (DELIVERED, "", plan.node, None, pkt))
        segs = plan.segs
        if segs is not None:
            # HopCaptures without generic sinks: segments of (captures, pins, then one middlebox). A record is
            # appended as one pair of pieces, shared by every node of its group. With the TTL unchanged that is
            # (record header, packet). With the TTL lowered by d (IPv4) it is (record header + the first 12
            # header bytes with the new TTL and checksum, the rest of the packet): the rest is copied once per
            # packet and shared by all its TTLs, instead of one whole frame per TTL (capture.py reads both).
            hdr = self.capture_sink.header(now, pkt.length)  # type: ignore[union-attr]
            data = pkt.data
            v4 = pkt.version == 4
            last_d = 0
            pair = (hdr, data)
            hcn = proto = 0
            head = tail = b""
            for groups, pins, step in segs:
                for d, lists in groups:
                    if d != last_d:
                        if not v4:
                            pkt.ttl = ttl0 - d
                            pair = (hdr, pkt.wire())
                        else:
                            # Packet.wire()'s IPv4 rewrite (same bytes): the TTL drops by d (the plan check
                            # guarantees ttl0 > d); RFC 1624 eqn. 3 with ~m + m' = 0xFFFF - (d << 8).
                            if not tail:
                                head = hdr + data[:8]
                                tail = data[12:]
                                hcn = ((data[10] << 8) | data[11]) ^ 0xFFFF
                                proto = pkt.proto
                            c = hcn + 0xFFFF - (d << 8)
                            c = (c & 0xFFFF) + (c >> 16)
                            pair = (head + _TTL_PROTO_CSUM.pack(ttl0 - d, proto, c ^ 0xFFFF), tail)
                        last_d = d
                    for pieces in lists:
                        pieces += pair
                for flows, idx in pins:
                    flows[key] = (now_ms << 12) | idx
                if step is not None:
                    pkt.ttl = ttl0 - step[2]
                    verdict = step[0](pkt, step[1], now)
                    if verdict is not None:
                        return self._drop(verdict, step[3], pkt)
            pkt.ttl = ttl0 - plan.ttl_dec
            self.delivered += 1
            return _tnew(Result, (DELIVERED, "", plan.node, None, pkt))
        dec = 0
        frame = pkt.data
        hdr = b""
        for op in plan.ops:
            k = op[0]
            if k == _OP_CAPL:  # HopCaptures: append header and frame to the node's pieces directly
                if not hdr:
                    hdr = self.capture_sink.header(now, pkt.length)  # type: ignore[union-attr]
                if op[2] != dec:
                    dec = op[2]
                    pkt.ttl = ttl0 - dec
                    frame = pkt.wire()
                op[1].extend((hdr, frame))
            elif k == _OP_PIN:
                op[1][key] = (now_ms << 12) | op[2]
            elif k == _OP_MB:
                n: _Node = op[1]
                pkt.ttl = ttl0 - op[2]
                verdict = n.mb.process(pkt, n.ctx, now)  # type: ignore[union-attr,arg-type]
                if verdict is not None:
                    return self._drop(verdict, n.id, pkt)
            else:
                pkt.ttl = ttl0 - op[2]
                self.capture_sink(op[1], now, pkt.wire())  # type: ignore[misc]
        pkt.ttl = ttl0 - plan.ttl_dec
        self.delivered += 1
        return _tnew(Result, (DELIVERED, "", plan.node, None, pkt))

    # Static outcomes of route lookups are cached per place / per TGW ingress point and destination address
    # (cleared when routes change); health, appliance mode, pins and firewall state are read per packet.
    def _resolve(self, place: _Place, dst: int, version: int) -> _Step:
        r = (place.lpm4 if version == 4 else place.lpm6).lookup_uncached(dst)
        if r is None:
            st = _Step(_S_DROP, None, None, DropReason.NO_ROUTE, "")
        else:
            k = r.kind
            text = r.text
            if k == _K_LOCAL:
                h = place.vpc.hosts.get(dst)
                if h is None:
                    st = _Step(_S_DROP, None, None, DropReason.DESTINATION_UNREACHABLE, text)
                else:
                    st = _Step(_S_DELIVER, h, None, "", text)
            elif k == _K_TGW:
                ca = place.vpc.atts.get(r.target.id)
                e = ca.by_az_id.get(place.az_id) if ca is not None else None
                if ca is None:
                    st = _Step(_S_DROP, None, None, DropReason.NO_TGW_ATTACHMENT, text)
                elif e is None:
                    # HTW/VPCATT (§1.3): resources in an AZ without an attachment subnet cannot reach the TGW.
                    st = _Step(_S_DROP, None, None, DropReason.NO_ATTACHMENT_SUBNET_IN_AZ, text)
                elif self.settings.subnet_scoped_forwarding and e.subnet_id != place.id:
                    st = _Step(_S_DROP, None, None, DropReason.NO_ATTACHMENT_SUBNET_IN_AZ, text)
                else:
                    st = _Step(_S_TGW, None, e, "", text)
            elif k in (_K_ENI, _K_GWLBE):
                n: _Node = r.target
                st = _Step(_S_DELIVER if dst in n.addrs else _S_MB, n, None, "", text)
            elif k == _K_IGW:
                st = _Step(_S_IGW, None, None, "", text)
            else:
                st = _Step(_S_DROP, None, None, DropReason.BLACKHOLE, text)
        c = place.steps
        if len(c) >= _CACHE_MAX:
            c.clear()
        c[dst] = st
        return st

    def _resolve_tgw(self, ca: _Att, in_eni: _Eni | None, dst: int, version: int) -> _TStep:
        table = ca.table
        if table is None:
            ts = _TStep(DropReason.NO_ASSOCIATION, None, "", None, 0, None)
        else:
            r = (table.lpm4 if version == 4 else table.lpm6).lookup_uncached(dst)
            if r is None:
                ts = _TStep(DropReason.NO_ROUTE, None, "", table.id, 0, None)
            elif r.att is None:
                ts = _TStep(DropReason.BLACKHOLE, None, r.text, table.id, 0, None)
            else:
                out = r.att
                aff = out.by_az_id.get(in_eni.az_id) if in_eni is not None else None
                ts = _TStep("", out, r.text, table.id, min(ca.mtu, out.mtu), aff)
                ts.bgp = r.bgp
                ts.group = r.group
        c = in_eni.tcache if in_eni is not None else ca.tcache
        if len(c) >= _CACHE_MAX:
            c.clear()
        c[dst] = ts
        return ts

    def _clear_caches(self) -> None:
        self._gen += 1
        for pl in self._places.values():
            pl.steps.clear()
        for v in self._vpcs.values():
            if v.igw_place is not None:
                v.igw_place.steps.clear()
        for e in self._enis.values():
            e.tcache.clear()
        for a in self._atts.values():
            a.tcache.clear()

    def _walk(self, pkt: Packet, place: _Place, node: str, kind: str, eni: str, att: str, now: float) -> Result:
        """Route inside VPCs (and through TGWs) until the packet is delivered or dropped."""
        hops = self._hops
        cap = self.capture_sink
        rec = self._rec
        dst = pkt.dst
        n = 0
        max_hops = self._max_hops
        while True:
            n += 1
            if n > max_hops:
                return self._drop(DropReason.MAX_HOPS_EXCEEDED, node, pkt)
            st = place.steps.get(dst)
            if st is None:
                st = self._resolve(place, dst, pkt.version)
            if hops is not None:
                hops.append(
                    {
                        "node": node,
                        "kind": kind,
                        "az": place.az or None,
                        "az_id": place.az_id or None,
                        "vpc": place.vpc.id,
                        "subnet": place.id,
                        "attachment": att or None,
                        "eni": eni or None,
                        "route_table": place.rtb or None,
                        "route": st.text or None,
                    }
                )
            k = st.kind
            if k == _S_TGW:
                e: _Eni = st.eni  # type: ignore[assignment]
                if not e.up:
                    return self._drop(
                        DropReason.AZ_FAILED if e.az_id in self._az_down else DropReason.ENI_FAILED, e.id, pkt
                    )
                res = self._tgw(pkt, e.att, e, now)
                if isinstance(res, Result):
                    return res
                e = res
                place = e.place
                node = eni = e.id
                kind = "tgw-attachment-eni"
                att = e.att.id
                if cap is not None:
                    cap(node, now, pkt.wire())
                    if rec is not None:
                        rec.append((_OP_CAP, node, pkt.ttl0 - pkt.ttl))
                continue
            if k == _S_MB:
                mbn: _Node = st.node  # type: ignore[assignment]
                if not mbn.up:
                    return self._drop(
                        DropReason.AZ_FAILED if mbn.place.az_id in self._az_down else DropReason.INSTANCE_FAILED,
                        mbn.id,
                        pkt,
                    )
                if cap is not None:
                    cap(mbn.id, now, pkt.wire())
                    if rec is not None:
                        rec.append((_OP_CAP, mbn.id, pkt.ttl0 - pkt.ttl))
                mb = mbn.mb
                if mb is None:
                    # A route to a plain host ENI: the host does not forward (source/dest check).
                    return self._drop(
                        DropReason.DESTINATION_UNREACHABLE if mbn.is_host else DropReason.NO_MIDDLEBOX, mbn.id, pkt
                    )
                verdict = mb.process(pkt, mbn.ctx, now)  # type: ignore[arg-type]
                if verdict is not None:
                    if hops is not None:
                        hops.append(self._hop_of(mbn))
                    return self._drop(verdict, mbn.id, pkt)
                if rec is not None:
                    # A plug-in may declare itself unfit for replay (e.g. it rewrites or re-routes packets).
                    rec.append((_OP_MB, mbn, pkt.ttl0 - pkt.ttl) if getattr(mb, "replayable", True) else _UNCACHEABLE)
                place = mbn.place
                node = mbn.id
                kind = mbn.kind
                eni = mbn.eni
                att = ""
                continue
            if k == _S_DELIVER:
                return self._arrive(pkt, st.node, now)  # type: ignore[arg-type]
            if k == _S_IGW:
                if rec is not None:
                    rec.append(_UNCACHEABLE)  # rare path; keep the plan format small
                self.delivered += 1
                if hops is not None:
                    hops.append({"node": place.vpc.id + "/igw", "kind": "igw", "verdict": DELIVERED})
                return Result(DELIVERED, "", "internet", hops, pkt)
            return self._drop(st.reason, node, pkt)

    def _hop_of(self, n: _Node) -> dict[str, Any]:
        p = n.place
        return {"node": n.id, "kind": n.kind, "az": p.az, "az_id": p.az_id, "vpc": p.vpc.id, "eni": n.eni}

    def _arrive(self, pkt: Packet, h: _Node, now: float) -> Result:
        if not h.up:
            return self._drop(DropReason.INSTANCE_FAILED, h.id, pkt)
        self.delivered += 1
        hops = self._hops
        if hops is not None:
            d = self._hop_of(h)
            d["verdict"] = DELIVERED
            hops.append(d)
        if self.capture_sink is not None:
            self.capture_sink(h.id, now, pkt.wire())
            if self._rec is not None:
                self._rec.append((_OP_CAP, h.id, pkt.ttl0 - pkt.ttl))
        if self._rec is not None:
            self._rec.append((_OP_END,))
        return Result(DELIVERED, "", h.id, hops, pkt)

    def _tgw(self, pkt: Packet, ca: _Att, in_eni: _Eni | None, now: float) -> _Eni | Result:
        """One or more TGW hops (peering continues at the peer). Returns the egress ENI, or a terminal Result."""
        hops = self._hops
        fl = self.flow_logs
        cap = self.capture_sink
        dst = pkt.dst
        while True:
            ts = (in_eni.tcache if in_eni is not None else ca.tcache).get(dst)
            if ts is None:
                ts = self._resolve_tgw(ca, in_eni, dst, pkt.version)
            hop: dict[str, Any] | None = None
            if hops is not None:
                hop = {
                    "node": ca.tgw.id,
                    "kind": "tgw",
                    "az": in_eni.az if in_eni else None,
                    "az_id": in_eni.az_id if in_eni else None,
                    "attachment": ca.id,
                    "eni": in_eni.id if in_eni else None,
                    "route_table": ts.table,
                    "route": ts.text or None,
                }
                hops.append(hop)
            rec = self._rec
            if cap is not None:
                name = f"{ca.tgw.id}.{ca.id}"  # one capture per TGW ingress attachment
                cap(name, now, pkt.wire())
                if rec is not None:
                    rec.append((_OP_CAP, name, pkt.ttl0 - pkt.ttl))
            if ts.reason:
                return self._tgw_drop(pkt, ca, in_eni, ts.reason, now)
            # Q-A: packets larger than the MTU are dropped silently (no ICMP "fragmentation needed").
            if pkt.length > ts.mtu:
                return self._tgw_drop(pkt, ca, in_eni, DropReason.MTU_EXCEEDED, now)
            if self._ttl_decrement:
                if pkt.ttl <= 1:
                    return self._tgw_drop(pkt, ca, in_eni, DropReason.TTL_EXPIRED, now)
                pkt.ttl -= 1
            if pkt.flags & TCP_SYN and self._mss_clamp:
                # §1.11: the TGW clamps the MSS of SYNs (and SYN-ACKs) to what the egress MTU carries.
                ch = clamp_mss(pkt, ts.mtu - (40 if pkt.version == 4 else 60))
                if ch is not None:
                    self.mss_clamped += 1
                    if hop is not None:
                        hop["mss_clamped"] = list(ch)
            out: _Att = ts.out  # type: ignore[assignment]
            typ = out.type
            if rec is not None:
                rec.append((_OP_MTU, ts.mtu))
            if typ == _A_VPC:
                e: _Eni | str | None
                if out.appliance_mode:
                    e = self._pick_appliance(pkt, out, now)
                    if rec is not None and not isinstance(e, str):
                        idle = self._tcp_idle_ms if pkt.proto == PROTO_TCP else self._idle_ms
                        rec.append((_OP_PIN, out.flows, e.idx, idle))
                else:
                    e = ts.aff
                    if e is None or not e.up:
                        e = self._pick_affinity(pkt, out, in_eni)
                if isinstance(e, str):
                    return self._tgw_drop(pkt, ca, in_eni, e, now, out)
                if hop is not None:
                    hop["egress_attachment"] = out.id
                    hop["egress_eni"] = e.id
                    hop["egress_az"] = e.az
                    hop["egress_az_id"] = e.az_id
                    hop["appliance_mode"] = out.appliance_mode
                if fl is not None:
                    fl.record(pkt, ca, in_eni, out, e, now, "")
                return e
            if typ == _A_PEERING:
                if rec is not None and self.settings.peering_arrival_az is RandomAzMode.PACKET_RANDOM:
                    rec.append(_UNCACHEABLE)
                if hop is not None:
                    hop["egress_attachment"] = out.id
                if fl is not None:
                    fl.record(pkt, ca, in_eni, out, None, now, "")
                ca = out.peer  # type: ignore[assignment]
                in_eni = None  # §1.7: the arrival AZ at the remote TGW is chosen at its egress (a setting)
                continue
            # VPN
            if ts.group is not None:
                out, tunnel = self._pick_vpn_ecmp(pkt, ca, ts)
            else:
                tunnel = self._pick_tunnel(pkt, ca, ts, out)
            if tunnel is None:
                return self._tgw_drop(pkt, ca, in_eni, DropReason.VPN_TUNNEL_DOWN, now, out)
            if hop is not None:
                hop["egress_attachment"] = out.id
                hop["egress_tunnel"] = tunnel
            if fl is not None:
                fl.record(pkt, ca, in_eni, out, None, now, "")
            if rec is not None:
                rec.append(_UNCACHEABLE)
            self.delivered += 1
            if hops is not None:
                hops.append({"node": out.id, "kind": "vpn-attachment", "tunnel": tunnel, "verdict": DELIVERED})
            if cap is not None:
                cap(out.id, now, pkt.wire())
            return Result(DELIVERED, "", out.id, hops, pkt)

    def _pick_tunnel(self, pkt: Packet, ca: _Att, ts: _TStep, out: _Att, h: int | None = None) -> str | None:
        """The tunnel of VPN attachment ``out`` that carries this packet (None: every tunnel is down). With
        VpnEcmpSupport and a BGP route, flows share the up tunnels by the TGW's symmetric flow hash (§1.10;
        ``h`` when the caller has it already); otherwise the first up tunnel in the attachment's order carries
        everything (active/passive: AWS's "internal metrics" [U])."""
        up = [t for t, ok in out.tunnels.items() if ok]
        if not up:
            return None
        if len(up) == 1 or not (ts.bgp and ca.tgw.vpn_ecmp):
            return up[0]
        if h is None:
            h = flow_hash(pkt.key, ca.tgw.seed)
        return up[hrw_pick(h, [salt_of(out.id + "/" + t) for t in up])]

    def _pick_vpn_ecmp(self, pkt: Packet, ca: _Att, ts: _TStep) -> tuple[_Att, str | None]:
        """VPN ECMP over attachments (§1.10): rendezvous hashing of the flow over the group's attachments that
        have a tunnel up (a group is rebuilt when an attachment's last tunnel goes down), then its tunnel."""
        atts, salts = ts.group  # type: ignore[misc]
        h = flow_hash(pkt.key, ca.tgw.seed)
        live = [i for i, a in enumerate(atts) if any(a.tunnels.values())]
        if not live:
            return atts[0], None
        out = atts[live[hrw_pick(h, [salts[i] for i in live])]]
        return out, self._pick_tunnel(pkt, ca, ts, out, h)

    def _tgw_drop(
        self, pkt: Packet, ca: _Att, in_eni: _Eni | None, reason: str, now: float, out: _Att | None = None
    ) -> Result:
        if self.flow_logs is not None:
            self.flow_logs.record(pkt, ca, in_eni, out, None, now, reason)
        return self._drop(reason, ca.tgw.id, pkt)

    def _pick_affinity(self, pkt: Packet, out: _Att, in_eni: _Eni | None) -> _Eni | str:
        """AZ affinity (§1.3/§1.4): the egress ENI in the ingress AZ; else a "random" healthy AZ."""
        if in_eni is not None:
            e = out.by_az_id.get(in_eni.az_id)
            if e is not None and e.up:
                return e
        healthy = out.healthy
        if not healthy:
            return DropReason.AZ_FAILED if self._az_down else DropReason.NO_HEALTHY_ENI
        mode = self.settings.random_az if in_eni is not None else self.settings.peering_arrival_az
        if mode is RandomAzMode.FLOW_HASH:
            return healthy[hrw_pick(flow_hash(pkt.key, out.tgw.seed), out.healthy_salts)]
        if self._rec is not None:
            self._rec.append(_UNCACHEABLE)
        return healthy[self.rng.randrange(len(healthy))]

    def _pick_appliance(self, pkt: Packet, out: _Att, now: float) -> _Eni | str:
        """Appliance mode (APP, §1.4): symmetric flow hash over healthy ENIs (HRW), pinned with idle expiry."""
        key = pkt.key
        flows = out.flows
        now_ms = int(now * 1000)
        v = flows.get(key)
        if v is not None:
            idle = self._tcp_idle_ms if pkt.proto == PROTO_TCP else self._idle_ms
            if now_ms - (v >> 12) <= idle:
                idx = v & 0xFFF
                if idx == _BH_IDX:
                    flows[key] = (now_ms << 12) | _BH_IDX
                    return DropReason.PINNED_FLOW_BLACKHOLED
                e = out.enis[idx]
                if e.up:
                    flows[key] = (now_ms << 12) | idx
                    return e
                pol = self._policy
                if pol is PinnedFlowPolicy.BLACKHOLE:
                    flows[key] = (now_ms << 12) | _BH_IDX
                    return DropReason.PINNED_FLOW_BLACKHOLED
                if pol is PinnedFlowPolicy.KEEP_UNTIL_IDLE:
                    flows[key] = (now_ms << 12) | idx
                    return DropReason.AZ_FAILED if e.az_id in self._az_down else DropReason.ENI_FAILED
                # REHASH: fall through to a fresh pick among the survivors.
        healthy = out.healthy
        if not healthy:
            return DropReason.AZ_FAILED if self._az_down else DropReason.NO_HEALTHY_ENI
        e = healthy[hrw_pick(flow_hash(key, out.tgw.seed), out.healthy_salts)]
        flows[key] = (now_ms << 12) | e.idx
        return e

    # ------------------------------------------------------------------------------------------------------
    # conveniences for tests and tools
    # ------------------------------------------------------------------------------------------------------
    def pick_appliance_eni(self, attachment_id: str, pkt: Packet, now: float = 0.0) -> str:
        """The ENI id appliance mode would pick for ``pkt`` (pins the flow like a real packet would)."""
        r = self._pick_appliance(pkt, self._att(attachment_id), now)
        return r if isinstance(r, str) else r.id


def _adder(
    cands: dict[Any, list[tuple[tuple[int, int, int, str], _TgwRoute]]],
) -> Callable[[Any, tuple[int, int, int, str], _TgwRoute], None]:
    def add(net: Any, rank: tuple[int, int, int, str], route: _TgwRoute) -> None:
        cands.setdefault(net, []).append((rank, route))

    return add


def subnet_of(topology: Topology, instance: Instance) -> Subnet:
    return topology.vpcs[instance.vpc_id].subnets[instance.subnet]
