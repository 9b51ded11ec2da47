"""The topology model: what the dataplane forwards over (tgw.md §1.1), plus the YAML loader.

These are configuration objects, built once (from YAML by :func:`topology_from_dict` / :func:`load_topology`,
or from the AWS API JSON by ``tgw_dataplane.aws_import``) and then compiled by
:class:`tgw_dataplane.dataplane.Dataplane` into per-packet lookup structures. Nothing here is on the
per-packet path. Runtime state (ENI/AZ health, VPN tunnel state, appliance-mode toggles, flow tables) lives
in the dataplane, not here.

Identifiers are AWS-style strings (``vpc-...``, ``subnet-...``, ``tgw-...``, ``tgw-attach-...``, ``i-...``,
``eni-...``, ``gwlbe-...``, ``igw-...``, ``pl-...``). :meth:`Topology.validate` checks every reference and
raises :class:`emulator.errors.ConfigError` naming the object and the field. The YAML format is documented in
``tgw_dataplane/TOPOLOGY.md``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from emulator.errors import ConfigError

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_ACCOUNT = "111111111111"


class ApplianceKind(StrEnum):
    """What an instance does with packets routed to it (tag ``awsnetemu:appliance`` in the AWS import)."""

    HOST = "host"  # an end host: packets addressed to it are delivered
    STATEFUL_FIREWALL = "stateful-firewall"  # connection tracking; drops state-less non-SYN TCP
    ROUTER = "router"  # stateless: forwards by its subnet's route table
    GWLB_TARGET = "gwlb-target"  # reached only through a GWLB (GENEVE); processing by the GWLB plug-in


class PinnedFlowPolicy(StrEnum):
    """What happens to an appliance-mode flow pinned to an ENI that fails (tgw.md §1.4, [U])."""

    REHASH = "rehash"  # move to a surviving ENI by HRW; other flows stay where they are
    BLACKHOLE = "blackhole"  # drop the flow's packets until it idles out, even if the ENI recovers
    KEEP_UNTIL_IDLE = "keep-until-idle"  # keep the pin: drop while the ENI is down, resume if it recovers


class RandomAzMode(StrEnum):
    """How the TGW picks "a random AZ" (tgw.md §1.3) when the ingress AZ is not usable at the egress."""

    FLOW_HASH = "flow-hash"  # stable per flow (symmetric flow hash over the healthy AZs)
    PACKET_RANDOM = "packet-random"  # per packet, from the injected random.Random


class VpcRouteTargetKind(StrEnum):
    """The target of a VPC route."""

    LOCAL = "local"
    TGW = "tgw"
    ENI = "eni"  # an appliance's ENI (``eni-...``) or instance (``i-...``)
    GWLB_ENDPOINT = "gwlbe"
    IGW = "igw"
    BLACKHOLE = "blackhole"


class AttachmentType(StrEnum):
    VPC = "vpc"
    PEERING = "peering"
    VPN = "vpn"


class RouteOrigin(StrEnum):
    """Where a TGW route came from; the order of :data:`ROUTE_PREFERENCE` breaks ties (tgw.md §1.2 step 3)."""

    STATIC = "static"
    PREFIX_LIST = "prefix-list"
    VPC = "vpc"  # propagated from a VPC attachment
    DXGW = "dxgw"
    CONNECT = "connect"
    VPN_OVER_DX = "vpn-over-dx"
    VPN = "vpn"  # propagated (BGP) from a VPN attachment
    VPN_CONCENTRATOR = "vpn-concentrator"
    PEERING = "peering"  # propagated over peering (Cloud WAN)


# HTW (current text): static > prefix-list > VPC > DXGW > Connect > VPN-over-DX > VPN > VPN Concentrator > peering.
ROUTE_PREFERENCE: dict[RouteOrigin, int] = {o: i for i, o in enumerate(RouteOrigin)}


@dataclass(slots=True)
class Settings:
    """Behaviours AWS does not document (tgw.md §6); every one is a named setting with a default."""

    ttl_decrement: bool = True
    """Decrement TTL / hop limit once per TGW hop (§1.2 step 9); expired packets count as ttl_expired."""
    appliance_tcp_idle_timeout: float = 350.0
    """Idle expiry of a pinned appliance-mode TCP flow, seconds (§1.4, aligned with GWLB/NFW)."""
    appliance_idle_timeout: float = 120.0
    """Idle expiry of a pinned appliance-mode non-TCP flow, seconds."""
    pinned_flow_on_failure: PinnedFlowPolicy = PinnedFlowPolicy.REHASH
    random_az: RandomAzMode = RandomAzMode.FLOW_HASH
    peering_arrival_az: RandomAzMode = RandomAzMode.FLOW_HASH
    """AZ used at the remote TGW for traffic that arrives over peering (§1.7, [U])."""
    subnet_scoped_forwarding: bool = False
    """China-partition doc (§1.3): only the attachment's own subnet reaches the TGW in an AZ. Off by default."""
    vpc_mtu: int = 8500
    peering_mtu: int = 8500
    vpn_mtu: int = 1500
    mss_clamp: bool = True
    """§1.11: "the transit gateway enforces MSS clamping": a TCP SYN (or SYN-ACK) whose MSS option exceeds the
    egress MTU - 40 (IPv4) / - 60 (IPv6) leaves the TGW with that value [U: exact value]."""
    firewall_tcp_idle_timeout: float = 350.0
    firewall_udp_idle_timeout: float = 120.0
    firewall_icmp_idle_timeout: float = 60.0
    max_hops: int = 64
    """Route Analyzer's MAX_HOPS_EXCEEDED bound (§1.14): a routing loop ends as a counted drop."""
    protocols: tuple[int, ...] = (1, 6, 17, 47, 50, 58)
    """IP protocols the parser accepts; others are dropped as unknown_protocol."""


@dataclass(slots=True)
class VpcRoute:
    """One VPC route. ``dest`` is a CIDR; ``target`` an id (``local``, ``tgw-``, ``eni-``/``i-``, ``gwlbe-``/
    ``vpce-``, ``igw-``) or ``blackhole``."""

    dest: IPNetwork
    target: str
    kind: VpcRouteTargetKind


@dataclass(slots=True)
class VpcRouteTable:
    id: str
    vpc_id: str
    routes: list[VpcRoute] = field(default_factory=list)


@dataclass(slots=True)
class Subnet:
    id: str
    vpc_id: str
    cidr: IPNetwork
    az: str
    """AZ name (``us-east-1a``); names are per account, so flow logs use ``az_id``."""
    az_id: str
    """AZ ID (``use1-az1``), the same in every account."""
    route_table: str
    cidr_v6: IPNetwork | None = None


@dataclass(slots=True)
class Instance:
    """An EC2 instance with one ENI: an end host or an appliance."""

    id: str
    vpc_id: str
    subnet: str
    ip: str
    kind: ApplianceKind = ApplianceKind.HOST
    eni: str = ""
    """ENI id (default ``eni-`` + the instance id's suffix)."""
    ipv6: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    """Free-form settings handed to the appliance plug-in (:mod:`tgw_dataplane.middlebox`)."""


@dataclass(slots=True)
class GwlbEndpoint:
    """A Gateway Load Balancer endpoint (``gwlbe-``/``vpce-``) in a subnet; it sends to ``service`` (a GWLB)."""

    id: str
    vpc_id: str
    subnet: str
    service: str


@dataclass(slots=True)
class Gwlb:
    """A Gateway Load Balancer: one node per enabled subnet (AZ), a target group of ``gwlb-target`` instances.
    The processing is a plug-in (``tgw_dataplane.gwlb``); ``options`` carries its attributes
    (stickiness, idle timeouts, target failover...) unparsed."""

    id: str
    vpc_id: str
    subnets: list[str]
    targets: list[str]
    cross_zone: bool = False
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class Vpc:
    id: str
    region: str
    cidrs: list[IPNetwork]
    account: str = DEFAULT_ACCOUNT
    subnets: dict[str, Subnet] = field(default_factory=dict)
    route_tables: dict[str, VpcRouteTable] = field(default_factory=dict)
    instances: dict[str, Instance] = field(default_factory=dict)
    gwlb_endpoints: dict[str, GwlbEndpoint] = field(default_factory=dict)
    igw: str | None = None
    edge_route_table: str | None = None
    """Route table associated with the IGW (ingress routing); None: traffic from the IGW uses local routes."""


@dataclass(slots=True)
class TgwRoute:
    """A TGW route: a CIDR (or a prefix-list reference) to an attachment, or a blackhole."""

    dest: IPNetwork | None
    attachment: str | None
    blackhole: bool = False
    origin: RouteOrigin = RouteOrigin.STATIC
    prefix_list: str | None = None
    as_path_len: int = 0
    med: int | None = None


@dataclass(slots=True)
class TgwRouteTable:
    id: str
    tgw_id: str
    associations: list[str] = field(default_factory=list)
    propagations: list[str] = field(default_factory=list)
    routes: list[TgwRoute] = field(default_factory=list)
    """Static, blackhole and prefix-list routes (propagated routes are derived from ``propagations``)."""


@dataclass(slots=True)
class VpcAttachment:
    id: str
    tgw_id: str
    vpc_id: str
    subnets: list[str]
    """Exactly one subnet per enabled AZ (§1.3)."""
    appliance_mode: bool = False
    enis: dict[str, str] = field(default_factory=dict)
    """subnet id -> the TGW's ENI id in it (default ``eni-<attachment suffix>-<az id>``)."""
    type: AttachmentType = AttachmentType.VPC


@dataclass(slots=True)
class PeeringAttachment:
    """A TGW peering attachment (static routes only, §1.7). ``peer`` is the attachment id on the other TGW."""

    id: str
    tgw_id: str
    peer: str
    type: AttachmentType = AttachmentType.PEERING


@dataclass(slots=True)
class VpnRoute:
    dest: IPNetwork
    as_path_len: int = 1
    med: int = 100  # HTW: routes without a MED get 100 on VPN


@dataclass(slots=True)
class VpnAttachment:
    """A Site-to-Site VPN attachment. ``routes`` are BGP-learned (propagated while a tunnel is up)."""

    id: str
    tgw_id: str
    tunnels: list[str] = field(default_factory=lambda: ["tunnel1", "tunnel2"])
    routes: list[VpnRoute] = field(default_factory=list)
    tunnels_up: bool = True
    """Initial state of every tunnel (the IKE side calls ``Dataplane.set_tunnel_state``)."""
    type: AttachmentType = AttachmentType.VPN


Attachment = VpcAttachment | PeeringAttachment | VpnAttachment


@dataclass(slots=True)
class TransitGateway:
    id: str
    region: str
    account: str = DEFAULT_ACCOUNT
    seed: int | None = None
    """Flow-hash seed; default derived from the id, so each TGW keeps its own affinity (§1.6)."""
    route_tables: dict[str, TgwRouteTable] = field(default_factory=dict)
    attachments: dict[str, Attachment] = field(default_factory=dict)
    vpn_ecmp: bool = True


@dataclass(slots=True)
class Topology:
    """A whole topology: regions (AZ name -> AZ ID), VPCs, TGWs, prefix lists, GWLBs, settings."""

    regions: dict[str, dict[str, str]] = field(default_factory=dict)
    vpcs: dict[str, Vpc] = field(default_factory=dict)
    tgws: dict[str, TransitGateway] = field(default_factory=dict)
    prefix_lists: dict[str, list[IPNetwork]] = field(default_factory=dict)
    gwlbs: dict[str, Gwlb] = field(default_factory=dict)
    settings: Settings = field(default_factory=Settings)

    # -- lookups used by the loader, the validator and the dataplane ------------------------------------
    def subnet(self, subnet_id: str) -> Subnet:
        for v in self.vpcs.values():
            s = v.subnets.get(subnet_id)
            if s is not None:
                return s
        raise ConfigError(f"subnet {subnet_id!r} does not exist")

    def instances(self) -> dict[str, Instance]:
        return {i.id: i for v in self.vpcs.values() for i in v.instances.values()}

    def attachments(self) -> dict[str, Attachment]:
        return {a.id: a for t in self.tgws.values() for a in t.attachments.values()}

    def gwlb_endpoints(self) -> dict[str, GwlbEndpoint]:
        return {e.id: e for v in self.vpcs.values() for e in v.gwlb_endpoints.values()}

    def validate(self) -> None:
        """Check every reference; raise ConfigError naming the object that references what does not exist."""
        subnets = {s.id: s for v in self.vpcs.values() for s in v.subnets.values()}
        instances = self.instances()
        enis = {i.eni: i for i in instances.values()}
        atts = self.attachments()
        gwlbes = self.gwlb_endpoints()
        for r, azs in self.regions.items():
            if not azs:
                raise ConfigError(f"regions.{r}: no AZs")
        for v in self.vpcs.values():
            if v.region not in self.regions:
                raise ConfigError(f"vpc {v.id}: region {v.region!r} is not in regions")
            for s in v.subnets.values():
                if s.route_table not in v.route_tables:
                    raise ConfigError(f"subnet {s.id}: route_table {s.route_table!r} does not exist in {v.id}")
                if not any(_within(s.cidr, c) for c in v.cidrs):
                    raise ConfigError(f"subnet {s.id}: cidr {s.cidr} is not inside the CIDRs of {v.id}")
            if v.edge_route_table is not None and v.edge_route_table not in v.route_tables:
                raise ConfigError(f"vpc {v.id}: edge_route_table {v.edge_route_table!r} does not exist")
            for rt in v.route_tables.values():
                for rr in rt.routes:
                    _check_vpc_target(self, v, rt, rr, enis, instances, gwlbes)
            for i in v.instances.values():
                if i.subnet not in v.subnets:
                    raise ConfigError(f"instance {i.id}: subnet {i.subnet!r} does not exist in {v.id}")
                if ipaddress.ip_address(i.ip) not in v.subnets[i.subnet].cidr:
                    raise ConfigError(f"instance {i.id}: ip {i.ip} is not in subnet {i.subnet}")
            for e in v.gwlb_endpoints.values():
                if e.subnet not in v.subnets:
                    raise ConfigError(f"gwlb endpoint {e.id}: subnet {e.subnet!r} does not exist in {v.id}")
                if e.service not in self.gwlbs:
                    raise ConfigError(f"gwlb endpoint {e.id}: service {e.service!r} (a GWLB) does not exist")
        for g in self.gwlbs.values():
            if g.vpc_id not in self.vpcs:
                raise ConfigError(f"gwlb {g.id}: vpc {g.vpc_id!r} does not exist")
            for sid in g.subnets:
                if sid not in subnets:
                    raise ConfigError(f"gwlb {g.id}: subnet {sid!r} does not exist")
            for tid in g.targets:
                if tid not in instances:
                    raise ConfigError(f"gwlb {g.id}: target {tid!r} does not exist")
                if instances[tid].kind is not ApplianceKind.GWLB_TARGET:
                    raise ConfigError(f"gwlb {g.id}: target {tid!r} has kind {instances[tid].kind}, not gwlb-target")
        for t in self.tgws.values():
            if t.region not in self.regions:
                raise ConfigError(f"transit gateway {t.id}: region {t.region!r} is not in regions")
            if t.seed is not None and not 0 <= t.seed < SEED_LIMIT:
                raise ConfigError(f"transit gateway {t.id}: seed {t.seed} is out of range (0 .. 2**128-1)")
            for a in t.attachments.values():
                if isinstance(a, VpcAttachment):
                    if a.vpc_id not in self.vpcs:
                        raise ConfigError(f"attachment {a.id}: vpc {a.vpc_id!r} does not exist")
                    seen: dict[str, str] = {}
                    for sid in a.subnets:
                        sub = self.vpcs[a.vpc_id].subnets.get(sid)
                        if sub is None:
                            raise ConfigError(f"attachment {a.id}: subnet {sid!r} does not exist in {a.vpc_id}")
                        if sub.az in seen:
                            raise ConfigError(
                                f"attachment {a.id}: subnets {seen[sub.az]} and {sid} are both in {sub.az} "
                                "(exactly one subnet per AZ)"
                            )
                        seen[sub.az] = sid
                elif isinstance(a, PeeringAttachment):
                    peer = atts.get(a.peer)
                    if not isinstance(peer, PeeringAttachment):
                        raise ConfigError(f"attachment {a.id}: peer {a.peer!r} is not a peering attachment")
                    if peer.peer != a.id:
                        raise ConfigError(f"attachment {a.id}: peer {a.peer} names {peer.peer!r} as its peer")
            assoc: dict[str, str] = {}
            for trt in t.route_tables.values():
                for aid in trt.associations + trt.propagations:
                    if aid not in t.attachments:
                        raise ConfigError(f"tgw route table {trt.id}: attachment {aid!r} does not exist on {t.id}")
                for aid in trt.associations:
                    if aid in assoc:
                        raise ConfigError(
                            f"attachment {aid}: associated with both {assoc[aid]} and {trt.id} (exactly one)"
                        )
                    assoc[aid] = trt.id
                for pid in trt.propagations:
                    if isinstance(t.attachments[pid], PeeringAttachment):
                        raise ConfigError(f"tgw route table {trt.id}: peering {pid} cannot propagate (static only)")
                for tr in trt.routes:
                    if tr.attachment is not None and tr.attachment not in t.attachments:
                        raise ConfigError(
                            f"tgw route table {trt.id}: route {tr.dest or tr.prefix_list} targets "
                            f"attachment {tr.attachment!r} which does not exist on {t.id}"
                        )
                    if tr.prefix_list is not None and tr.prefix_list not in self.prefix_lists:
                        raise ConfigError(f"tgw route table {trt.id}: prefix list {tr.prefix_list!r} does not exist")


def _within(a: IPNetwork, b: IPNetwork) -> bool:
    return a.version == b.version and a.subnet_of(b)  # type: ignore[arg-type]


def _check_vpc_target(
    topo: Topology,
    v: Vpc,
    rt: VpcRouteTable,
    rr: VpcRoute,
    enis: Mapping[str, Instance],
    instances: Mapping[str, Instance],
    gwlbes: Mapping[str, GwlbEndpoint],
) -> None:
    where = f"route table {rt.id} (vpc {v.id}): route {rr.dest} -> {rr.target}"
    k = rr.kind
    if k is VpcRouteTargetKind.TGW:
        if rr.target not in topo.tgws:
            raise ConfigError(f"{where}: transit gateway {rr.target!r} does not exist")
    elif k is VpcRouteTargetKind.ENI:
        inst = enis.get(rr.target) or instances.get(rr.target)
        if inst is None:
            raise ConfigError(f"{where}: ENI/instance {rr.target!r} does not exist")
        if inst.vpc_id != v.id:
            raise ConfigError(f"{where}: {rr.target} is in {inst.vpc_id}, not {v.id}")
    elif k is VpcRouteTargetKind.GWLB_ENDPOINT:
        e = gwlbes.get(rr.target)
        if e is None or e.vpc_id != v.id:
            raise ConfigError(f"{where}: GWLB endpoint {rr.target!r} does not exist in {v.id}")
    elif k is VpcRouteTargetKind.IGW and rr.target != v.igw:
        raise ConfigError(f"{where}: internet gateway {rr.target!r} is not attached to {v.id} (igw: {v.igw})")


# ---------------------------------------------------------------------------------------------------------
# YAML / dict loader
# ---------------------------------------------------------------------------------------------------------


def load_topology(path: str | Path) -> Topology:
    """Load a YAML topology file (format: TOPOLOGY.md) and validate it."""
    import yaml

    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"topology {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"topology {path}: not valid YAML: {e}") from e
    if not isinstance(data, dict):
        raise ConfigError(f"topology {path}: the top level must be a mapping")
    return topology_from_dict(data)


def _net(s: object, where: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(str(s), strict=True)
    except ValueError as e:
        raise ConfigError(f"{where}: {s!r} is not a CIDR ({e})") from e


def _map(d: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    v = d.get(key) or {}
    if not isinstance(v, dict):
        raise ConfigError(f"{where}.{key}: must be a mapping")
    return v


def _enum(cls: type[StrEnum], v: object, where: str) -> Any:
    try:
        return cls(str(v))
    except ValueError:
        allowed = ", ".join(m.value for m in cls)
        raise ConfigError(f"{where}: {v!r} is not one of {allowed}") from None


def _check_keys(d: Mapping[str, Any], allowed: set[str], where: str) -> None:
    extra = set(d) - allowed
    if extra:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(extra))} (allowed: {', '.join(sorted(allowed))})")


def target_kind(target: str) -> VpcRouteTargetKind:
    """Classify a VPC route target id by its prefix."""
    if target == "local":
        return VpcRouteTargetKind.LOCAL
    if target == "blackhole":
        return VpcRouteTargetKind.BLACKHOLE
    if target.startswith("tgw-"):
        return VpcRouteTargetKind.TGW
    if target.startswith(("eni-", "i-")):
        return VpcRouteTargetKind.ENI
    if target.startswith(("gwlbe-", "vpce-")):
        return VpcRouteTargetKind.GWLB_ENDPOINT
    if target.startswith("igw-"):
        return VpcRouteTargetKind.IGW
    raise ConfigError(
        f"route target {target!r}: expected local, blackhole, tgw-..., eni-..., i-..., gwlbe-..., vpce-... or igw-..."
    )


def _settings(d: Mapping[str, Any]) -> Settings:
    s = Settings()
    _check_keys(d, set(Settings.__dataclass_fields__), "settings")
    for k, v in d.items():
        where = f"settings.{k}"
        if k == "pinned_flow_on_failure":
            s.pinned_flow_on_failure = _enum(PinnedFlowPolicy, v, where)
        elif k in ("random_az", "peering_arrival_az"):
            setattr(s, k, _enum(RandomAzMode, v, where))
        elif k == "protocols":
            s.protocols = tuple(int(x) for x in v)
        elif k in ("ttl_decrement", "subnet_scoped_forwarding", "mss_clamp"):
            if not isinstance(v, bool):
                raise ConfigError(f"{where}: must be true or false")
            setattr(s, k, v)
        else:
            if not isinstance(v, int | float) or isinstance(v, bool) or v <= 0:
                raise ConfigError(f"{where}: must be a positive number")
            setattr(s, k, type(getattr(s, k))(v))
    return s


def topology_from_dict(d: Mapping[str, Any]) -> Topology:
    """Build and validate a :class:`Topology` from the parsed YAML (see TOPOLOGY.md)."""
    _check_keys(d, {"settings", "regions", "prefix_lists", "vpcs", "transit_gateways", "gwlbs"}, "topology")
    topo = Topology(settings=_settings(_map(d, "settings", "topology")))
    for r, azs in _map(d, "regions", "topology").items():
        if not isinstance(azs, dict) or not isinstance(azs.get("azs"), dict):
            raise ConfigError(f"regions.{r}: expected {{azs: {{az-name: az-id, ...}}}}")
        topo.regions[r] = {str(k): str(v) for k, v in azs["azs"].items()}
    for pl, body in _map(d, "prefix_lists", "topology").items():
        cidrs = body.get("cidrs") if isinstance(body, dict) else body
        if not isinstance(cidrs, list):
            raise ConfigError(f"prefix_lists.{pl}: expected a list of CIDRs (or {{cidrs: [...]}})")
        topo.prefix_lists[pl] = [_net(c, f"prefix_lists.{pl}") for c in cidrs]
    for vid, vd in _map(d, "vpcs", "topology").items():
        topo.vpcs[vid] = _vpc(topo, vid, vd)
    for gid, gd in _map(d, "gwlbs", "topology").items():
        w = f"gwlbs.{gid}"
        _check_keys(gd, {"vpc", "subnets", "targets", "cross_zone", "options"}, w)
        topo.gwlbs[gid] = Gwlb(
            id=gid,
            vpc_id=str(gd.get("vpc", "")),
            subnets=[str(x) for x in gd.get("subnets", [])],
            targets=[str(x) for x in gd.get("targets", [])],
            cross_zone=bool(gd.get("cross_zone", False)),
            options=dict(gd.get("options") or {}),
        )
    for tid, td in _map(d, "transit_gateways", "topology").items():
        topo.tgws[tid] = _tgw(topo, tid, td)
    topo.validate()
    return topo


def _vpc(topo: Topology, vid: str, vd: Mapping[str, Any]) -> Vpc:
    w = f"vpcs.{vid}"
    _check_keys(
        vd,
        {
            "region",
            "account",
            "cidrs",
            "igw",
            "edge_route_table",
            "route_tables",
            "subnets",
            "instances",
            "gwlb_endpoints",
        },
        w,
    )
    if "region" not in vd:
        raise ConfigError(f"{w}.region: required")
    cidrs = vd.get("cidrs")
    if not isinstance(cidrs, list) or not cidrs:
        raise ConfigError(f"{w}.cidrs: required, a non-empty list of CIDRs")
    region = str(vd["region"])
    v = Vpc(
        id=vid,
        region=region,
        cidrs=[_net(c, f"{w}.cidrs") for c in cidrs],
        account=str(vd.get("account", DEFAULT_ACCOUNT)),
        igw=str(vd["igw"]) if vd.get("igw") else None,
        edge_route_table=str(vd["edge_route_table"]) if vd.get("edge_route_table") else None,
    )
    for rid, rd in _map(vd, "route_tables", w).items():
        rw = f"{w}.route_tables.{rid}"
        routes_in = rd.get("routes", []) if isinstance(rd, dict) else rd
        rt = VpcRouteTable(id=rid, vpc_id=vid)
        for i, r in enumerate(routes_in or []):
            if not isinstance(r, dict) or "dest" not in r or "target" not in r:
                raise ConfigError(f"{rw}.routes[{i}]: expected {{dest: CIDR, target: ID}}")
            tgt = str(r["target"])
            try:
                kind = target_kind(tgt)
            except ConfigError as e:
                raise ConfigError(f"{rw}.routes[{i}]: {e}") from None
            rt.routes.append(VpcRoute(_net(r["dest"], f"{rw}.routes[{i}].dest"), tgt, kind))
        v.route_tables[rid] = rt
    azmap = topo.regions.get(region)
    if azmap is None:
        raise ConfigError(f"{w}.region: {region!r} is not in regions")
    for sid, sd in _map(vd, "subnets", w).items():
        sw = f"{w}.subnets.{sid}"
        _check_keys(sd, {"cidr", "az", "route_table", "cidr_v6"}, sw)
        az = str(sd.get("az", ""))
        if az not in azmap:
            raise ConfigError(f"{sw}.az: {az!r} is not an AZ of {region} ({', '.join(azmap)})")
        if "route_table" not in sd:
            raise ConfigError(f"{sw}.route_table: required")
        v.subnets[sid] = Subnet(
            id=sid,
            vpc_id=vid,
            cidr=_net(sd.get("cidr"), f"{sw}.cidr"),
            az=az,
            az_id=azmap[az],
            route_table=str(sd["route_table"]),
            cidr_v6=_net(sd["cidr_v6"], f"{sw}.cidr_v6") if sd.get("cidr_v6") else None,
        )
    for iid, idd in _map(vd, "instances", w).items():
        iw = f"{w}.instances.{iid}"
        _check_keys(idd, {"subnet", "ip", "ipv6", "kind", "eni", "options"}, iw)
        if "ip" not in idd or "subnet" not in idd:
            raise ConfigError(f"{iw}: subnet and ip are required")
        v.instances[iid] = Instance(
            id=iid,
            vpc_id=vid,
            subnet=str(idd["subnet"]),
            ip=str(idd["ip"]),
            kind=_enum(ApplianceKind, idd.get("kind", "host"), f"{iw}.kind"),
            eni=str(idd.get("eni") or "eni-" + iid.removeprefix("i-")),
            ipv6=str(idd["ipv6"]) if idd.get("ipv6") else None,
            options=dict(idd.get("options") or {}),
        )
    for eid, ed in _map(vd, "gwlb_endpoints", w).items():
        ew = f"{w}.gwlb_endpoints.{eid}"
        _check_keys(ed, {"subnet", "service"}, ew)
        v.gwlb_endpoints[eid] = GwlbEndpoint(eid, vid, str(ed.get("subnet", "")), str(ed.get("service", "")))
    return v


SEED_LIMIT = 1 << 128
"""A TGW flow-hash seed is an integer in ``[0, SEED_LIMIT)`` (the dataplane keys its hash with 16 bytes)."""


def _seed(v: object, where: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise ConfigError(f"{where}: {v!r} is not an integer")
    try:
        seed = int(v)
    except ValueError:
        raise ConfigError(f"{where}: {v!r} is not an integer") from None
    if not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"{where}: {seed} is out of range (0 .. 2**128-1)")
    return seed


def _tgw(topo: Topology, tid: str, td: Mapping[str, Any]) -> TransitGateway:
    w = f"transit_gateways.{tid}"
    _check_keys(td, {"region", "account", "seed", "vpn_ecmp", "route_tables", "attachments"}, w)
    if "region" not in td:
        raise ConfigError(f"{w}.region: required")
    t = TransitGateway(
        id=tid,
        region=str(td["region"]),
        account=str(td.get("account", DEFAULT_ACCOUNT)),
        seed=_seed(td.get("seed"), f"{w}.seed"),
        vpn_ecmp=bool(td.get("vpn_ecmp", True)),
    )
    for aid, ad in _map(td, "attachments", w).items():
        aw = f"{w}.attachments.{aid}"
        typ = _enum(AttachmentType, ad.get("type", "vpc"), f"{aw}.type")
        if typ is AttachmentType.VPC:
            _check_keys(ad, {"type", "vpc", "subnets", "appliance_mode", "enis"}, aw)
            subnets = [str(s) for s in ad.get("subnets", [])]
            if not subnets:
                raise ConfigError(f"{aw}.subnets: required, one subnet per enabled AZ")
            t.attachments[aid] = VpcAttachment(
                id=aid,
                tgw_id=tid,
                vpc_id=str(ad.get("vpc", "")),
                subnets=subnets,
                appliance_mode=_appliance_mode(ad.get("appliance_mode", False), f"{aw}.appliance_mode"),
                enis={str(k): str(v) for k, v in (ad.get("enis") or {}).items()},
            )
        elif typ is AttachmentType.PEERING:
            _check_keys(ad, {"type", "peer"}, aw)
            if "peer" not in ad:
                raise ConfigError(f"{aw}.peer: required (the attachment id on the other TGW)")
            t.attachments[aid] = PeeringAttachment(id=aid, tgw_id=tid, peer=str(ad["peer"]))
        else:
            _check_keys(ad, {"type", "tunnels", "routes", "tunnels_up"}, aw)
            routes = []
            for i, r in enumerate(ad.get("routes", []) or []):
                rw = f"{aw}.routes[{i}]"
                if isinstance(r, str):
                    r = {"dest": r}
                routes.append(VpnRoute(_net(r.get("dest"), rw), int(r.get("as_path_len", 1)), int(r.get("med", 100))))
            t.attachments[aid] = VpnAttachment(
                id=aid,
                tgw_id=tid,
                tunnels=[str(x) for x in ad.get("tunnels", ["tunnel1", "tunnel2"])],
                routes=routes,
                tunnels_up=bool(ad.get("tunnels_up", True)),
            )
    for rid, rd in _map(td, "route_tables", w).items():
        rw = f"{w}.route_tables.{rid}"
        _check_keys(rd, {"associations", "propagations", "routes"}, rw)
        rt = TgwRouteTable(
            id=rid,
            tgw_id=tid,
            associations=[str(x) for x in rd.get("associations", []) or []],
            propagations=[str(x) for x in rd.get("propagations", []) or []],
        )
        for i, r in enumerate(rd.get("routes", []) or []):
            ew = f"{rw}.routes[{i}]"
            if not isinstance(r, dict):
                raise ConfigError(f"{ew}: expected a mapping")
            _check_keys(r, {"dest", "prefix_list", "attachment", "blackhole"}, ew)
            if ("dest" in r) == ("prefix_list" in r):
                raise ConfigError(f"{ew}: give exactly one of dest or prefix_list")
            bh = bool(r.get("blackhole", False))
            att = str(r["attachment"]) if r.get("attachment") else None
            if bh == (att is not None):
                raise ConfigError(f"{ew}: give exactly one of attachment or blackhole: true")
            pl = str(r["prefix_list"]) if "prefix_list" in r else None
            rt.routes.append(
                TgwRoute(
                    dest=_net(r["dest"], f"{ew}.dest") if "dest" in r else None,
                    attachment=att,
                    blackhole=bh,
                    origin=RouteOrigin.PREFIX_LIST if pl else RouteOrigin.STATIC,
                    prefix_list=pl,
                )
            )
        t.route_tables[rid] = rt
    return t


def _appliance_mode(v: object, where: str) -> bool:
    # Accept the AWS API spelling (ApplianceModeSupport: enable | disable) as well as YAML booleans.
    if isinstance(v, bool):
        return v
    if v in ("enable", "disable"):
        return v == "enable"
    raise ConfigError(f"{where}: {v!r} is not one of true, false, enable, disable")
