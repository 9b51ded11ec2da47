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
from tgw_dataplane import checks

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


ORGANIZATIONS_ARN_PREFIX = "arn:aws:organizations::"
"""A RAM principal that is an organization or OU ARN; the emulator does not model AWS Organizations, so such a
principal counts as every account."""


@dataclass(slots=True)
class RamShare:
    """An AWS RAM resource share: ``owner`` shares ``resources`` (TGW ids) with ``principals`` (account ids, or
    an organization / OU ARN, which counts as every account) in one ``region``.

    RAM is a Regional service: a share holds resources of its own Region only, and only the owner of a resource
    can share it (https://docs.aws.amazon.com/ram/latest/userguide/working-with-sharing-create.html;
    https://docs.aws.amazon.com/ram/latest/userguide/working-with-regional-vs-global.html)."""

    id: str
    region: str
    owner: str
    resources: list[str] = field(default_factory=list)
    principals: list[str] = field(default_factory=list)

    def shares_with(self, account: str) -> bool:
        return any(p == account or p.startswith(ORGANIZATIONS_ARN_PREFIX) for p in self.principals)


@dataclass(slots=True)
class Topology:
    """A whole topology: regions (AZ name -> AZ ID), VPCs, TGWs, prefix lists, GWLBs, RAM shares, settings."""

    regions: dict[str, dict[str, str]] = field(default_factory=dict)
    vpcs: dict[str, Vpc] = field(default_factory=dict)
    tgws: dict[str, TransitGateway] = field(default_factory=dict)
    prefix_lists: dict[str, list[IPNetwork]] = field(default_factory=dict)
    gwlbs: dict[str, Gwlb] = field(default_factory=dict)
    ram_shares: dict[str, RamShare] = field(default_factory=dict)
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
        self._check_unique_ids()
        self._check_regions_and_accounts()

    def _check_unique_ids(self) -> None:
        """Ids the dataplane looks nodes up by are unique across the topology: subnets, instances, their ENIs and
        GWLB endpoints (one namespace: a route target may name any of them), IGWs, TGW attachments and their
        ENIs."""
        seen: dict[str, str] = {}

        def claim(ident: str, what: str) -> None:
            other = seen.get(ident)
            if other is not None:
                raise ConfigError(f"{what}: id {ident} is also used by {other} (ids must be unique)")
            seen[ident] = what

        for v in self.vpcs.values():
            for sid in v.subnets:
                claim(sid, f"subnet {sid} (vpc {v.id})")
            if v.igw is not None:
                claim(v.igw, f"internet gateway of {v.id}")
        nodes: dict[str, str] = {}
        for v in self.vpcs.values():
            for i in v.instances.values():
                for n, what in ((i.id, f"instance {i.id}"), (i.eni, f"ENI {i.eni} of instance {i.id}")):
                    if n in nodes and not (n == i.id == i.eni):
                        raise ConfigError(f"{what}: id {n} is also used by {nodes[n]} (ids must be unique)")
                    nodes[n] = what
            for e in v.gwlb_endpoints:
                if e in nodes:
                    raise ConfigError(f"gwlb endpoint {e}: id {e} is also used by {nodes[e]} (ids must be unique)")
                nodes[e] = f"gwlb endpoint {e}"
        atts: dict[str, str] = {}
        for t in self.tgws.values():
            for aid, a in t.attachments.items():
                if aid in atts:
                    raise ConfigError(f"attachment {aid} of {t.id}: id also used on {atts[aid]} (ids must be unique)")
                atts[aid] = t.id
                if isinstance(a, VpcAttachment):
                    for sid, eni in a.enis.items():
                        if sid not in a.subnets:
                            raise ConfigError(f"attachment {aid}: enis names {sid}, which is not one of its subnets")
                        if eni in nodes:
                            raise ConfigError(f"attachment {aid}: ENI {eni} is also used by {nodes[eni]}")
                        nodes[eni] = f"ENI {eni} of attachment {aid}"

    def _check_regions_and_accounts(self) -> None:
        """AWS's multi-Region and multi-account rules (TOPOLOGY.md, "Regions and accounts"), each failure naming
        the construct that fits instead:

        * a TGW is a Regional resource: a VPC attaches only to a TGW of its own Region
          (https://docs.aws.amazon.com/vpc/latest/tgw/tgw-vpc-attachments.html), and Regions connect only
          through TGW peering attachments, which carry static routes only (tgw.md §1.7; the propagation check
          above); a VPC route can name only a TGW of the VPC's Region, a GWLB endpoint only a GWLB of its Region;
        * another account's VPC attaches only to a TGW its owner shared with that account through AWS RAM
          (https://docs.aws.amazon.com/vpc/latest/tgw/tgw-transit-gateways.html, "Sharing a transit gateway");
        * a RAM share lives in one Region and holds only resources of that Region that its owner owns
          (https://docs.aws.amazon.com/ram/latest/userguide/working-with-sharing-create.html).
        """
        for sh in self.ram_shares.values():
            where = f"ram share {sh.id}"
            if not sh.resources:
                raise ConfigError(f"{where}: resources is empty (the TGW ids it shares)")
            for r in sh.resources:
                t = self.tgws.get(r)
                if t is None:
                    raise ConfigError(f"{where}: resource {checks.show(r)} is not a transit gateway of the topology")
                if t.region != sh.region:
                    raise ConfigError(
                        f"{where}: {r} is in {t.region} but the share is in {sh.region}; a RAM share holds resources "
                        f"of its own Region only: share {r} with a resource share in {t.region}"
                    )
                if t.account != sh.owner:
                    raise ConfigError(
                        f"{where}: {r} belongs to account {t.account}, not to the share's owner {sh.owner}; only the "
                        f"owner of a resource can share it: create the share in account {t.account}"
                    )
        for t in self.tgws.values():
            for a in t.attachments.values():
                if not isinstance(a, VpcAttachment):
                    continue
                v = self.vpcs[a.vpc_id]
                if v.region != t.region:
                    raise ConfigError(
                        f"attachment {a.id}: VPC {v.id} is in {v.region} but the TGW {t.id} is in {t.region}; "
                        f"attach it to a TGW in {v.region} and peer the two TGWs (a peering attachment with static "
                        "routes)"
                    )
                if v.account != t.account and not any(
                    t.id in sh.resources and sh.region == t.region and sh.shares_with(v.account)
                    for sh in self.ram_shares.values()
                ):
                    raise ConfigError(
                        f"attachment {a.id}: VPC {v.id} belongs to account {v.account} but the TGW {t.id} to "
                        f"{t.account}, and no RAM share in {t.region} shares {t.id} with {v.account}; share it "
                        f"through AWS RAM (YAML: ram_shares: {{NAME: {{region: {t.region}, owner: '{t.account}', "
                        f"resources: [{t.id}], principals: ['{v.account}']}}}}; AWS JSON: the RAM resource share)"
                    )
        for v in self.vpcs.values():
            for rt in v.route_tables.values():
                for rr in rt.routes:
                    if rr.kind is VpcRouteTargetKind.TGW:
                        t = self.tgws[rr.target]
                        if t.region != v.region:
                            raise ConfigError(
                                f"route table {rt.id} (vpc {v.id}): route {rr.dest} -> {t.id}: the TGW is in "
                                f"{t.region}, the VPC in {v.region}; a VPC routes only to a TGW of its own Region: "
                                f"route to a TGW in {v.region} and peer it with {t.id}"
                            )
            for e in v.gwlb_endpoints.values():
                g = self.vpcs[self.gwlbs[e.service].vpc_id]
                if g.region != v.region:
                    raise ConfigError(
                        f"gwlb endpoint {e.id}: it is in {v.region} but its GWLB {e.service} in {g.region}; a GWLB "
                        f"endpoint reaches a GWLB of its own Region only: put a GWLB in {v.region}"
                    )


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

MAX_DOCUMENT_BYTES = 64 << 20
"""Largest topology file read (a topology of the AWS quotas' size is a few MB)."""


def load_topology(path: str | Path) -> Topology:
    """Load a YAML topology file (format: TOPOLOGY.md) and validate it."""
    import yaml

    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"topology {checks.show_path(path)}: {e.strerror or e}") from None
    if len(raw) > MAX_DOCUMENT_BYTES:
        raise ConfigError(f"topology {checks.show_path(path)}: larger than {MAX_DOCUMENT_BYTES >> 20} MB")
    try:
        data = yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise ConfigError(f"topology {checks.show_path(path)}: not valid YAML: {' '.join(str(e).split())}") from None
    except (ValueError, RecursionError) as e:  # e.g. bytes that are not UTF-8, nesting deeper than the parser goes
        raise ConfigError(f"topology {checks.show_path(path)}: not valid YAML ({type(e).__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(
            f"topology {checks.show_path(path)}: the top level must be a mapping (TOPOLOGY.md), "
            f"not {type(data).__name__}"
        )
    return topology_from_dict(data)


def _net(s: object, where: str) -> IPNetwork:
    return checks.network(s, where)


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
        f"route target {checks.show(target)}: expected local, blackhole, tgw-..., eni-..., i-..., gwlbe-..., "
        "vpce-... or igw-..."
    )


# Ranges of the numeric settings (TOPOLOGY.md). Timeouts: a second to a day (AWS's documented idle timeouts are
# 60-6000 s, GWLB-L); MTUs: IPv4's minimum (RFC 791) to the largest IP packet; hops: TTL's range (a routing
# loop with a larger bound would only take longer to end).
_SETTING_RANGES: dict[str, tuple[float, float]] = {
    "appliance_tcp_idle_timeout": (1, 86400),
    "appliance_idle_timeout": (1, 86400),
    "firewall_tcp_idle_timeout": (1, 86400),
    "firewall_udp_idle_timeout": (1, 86400),
    "firewall_icmp_idle_timeout": (1, 86400),
    "vpc_mtu": (68, 65535),
    "peering_mtu": (68, 65535),
    "vpn_mtu": (68, 65535),
    "max_hops": (1, 255),
}


def _settings(d: Mapping[str, Any]) -> Settings:
    s = Settings()
    checks.keys(d, Settings.__dataclass_fields__, "settings")
    for k, v in d.items():
        where = f"settings.{k}"
        if k == "pinned_flow_on_failure":
            s.pinned_flow_on_failure = checks.choice(PinnedFlowPolicy, v, where)
        elif k in ("random_az", "peering_arrival_az"):
            setattr(s, k, checks.choice(RandomAzMode, v, where))
        elif k == "protocols":
            s.protocols = tuple(
                checks.integer(x, f"{where}[{i}]", 0, 255) for i, x in enumerate(checks.sequence(v, where))
            )
        elif k in ("ttl_decrement", "subnet_scoped_forwarding", "mss_clamp"):
            setattr(s, k, checks.boolean(v, where))
        else:
            lo, hi = _SETTING_RANGES[k]
            if isinstance(getattr(s, k), int):
                setattr(s, k, checks.integer(v, where, int(lo), int(hi)))
            else:
                setattr(s, k, checks.number(v, where, lo, hi))
    return s


_TOP_KEYS = ("settings", "regions", "prefix_lists", "vpcs", "transit_gateways", "gwlbs", "ram_shares")


def topology_from_dict(d: Mapping[str, Any]) -> Topology:
    """Build and validate a :class:`Topology` from the parsed YAML (see TOPOLOGY.md). Every value is checked for
    type and range (:mod:`tgw_dataplane.checks`); any problem is a ConfigError naming the field."""
    d = checks.mapping(d, "topology", optional=False)
    checks.keys(d, _TOP_KEYS, "topology")
    topo = Topology(settings=_settings(checks.mapping(d.get("settings"), "settings")))
    for r, azs in checks.mapping(d.get("regions"), "regions").items():
        w = f"regions.{r}"
        region = checks.mapping(azs, w, optional=False)
        checks.keys(region, ("azs",), w)
        azmap = checks.mapping(region.get("azs"), f"{w}.azs", optional=False)
        if not azmap:
            raise ConfigError(f"{w}.azs: no AZs (a mapping AZ name -> AZ ID)")
        topo.regions[r] = {k: checks.ident(v, f"{w}.azs.{k}") for k, v in azmap.items()}
        ids = list(topo.regions[r].values())
        if len(set(ids)) != len(ids):
            raise ConfigError(f"{w}.azs: two AZ names map to one AZ ID ({', '.join(ids)})")
    for pl, body in checks.mapping(d.get("prefix_lists"), "prefix_lists").items():
        w = f"prefix_lists.{pl}"
        cidrs: object = body
        if isinstance(body, dict):
            checks.keys(body, ("cidrs",), w)
            cidrs, w = body.get("cidrs"), f"{w}.cidrs"
        topo.prefix_lists[pl] = [_net(c, f"{w}[{i}]") for i, c in enumerate(checks.sequence(cidrs, w, optional=False))]
    for vid, vd in checks.mapping(d.get("vpcs"), "vpcs").items():
        topo.vpcs[vid] = _vpc(topo, vid, checks.mapping(vd, f"vpcs.{vid}", optional=False))
    for gid, gd in checks.mapping(d.get("gwlbs"), "gwlbs").items():
        w = f"gwlbs.{gid}"
        gd = checks.mapping(gd, w, optional=False)
        checks.keys(gd, {"vpc", "subnets", "targets", "cross_zone", "options"}, w)
        topo.gwlbs[gid] = Gwlb(
            id=gid,
            vpc_id=checks.ident(gd.get("vpc"), f"{w}.vpc"),
            subnets=checks.idents(gd.get("subnets"), f"{w}.subnets"),
            targets=checks.idents(gd.get("targets"), f"{w}.targets"),
            cross_zone=checks.boolean(gd.get("cross_zone", False), f"{w}.cross_zone"),
            options=checks.mapping(gd.get("options"), f"{w}.options"),
        )
    for tid, td in checks.mapping(d.get("transit_gateways"), "transit_gateways").items():
        topo.tgws[tid] = _tgw(tid, checks.mapping(td, f"transit_gateways.{tid}", optional=False))
    for sid, sd in checks.mapping(d.get("ram_shares"), "ram_shares").items():
        topo.ram_shares[sid] = _ram_share(sid, checks.mapping(sd, f"ram_shares.{sid}", optional=False))
    topo.validate()
    return topo


def _vpc(topo: Topology, vid: str, vd: Mapping[str, Any]) -> Vpc:
    w = f"vpcs.{vid}"
    checks.keys(
        vd,
        (
            "region",
            "account",
            "cidrs",
            "igw",
            "edge_route_table",
            "route_tables",
            "subnets",
            "instances",
            "gwlb_endpoints",
        ),
        w,
    )
    if "region" not in vd:
        raise ConfigError(f"{w}.region: required")
    region = checks.ident(vd["region"], f"{w}.region")
    cidrs = checks.sequence(vd.get("cidrs"), f"{w}.cidrs", optional=False)
    if not cidrs:
        raise ConfigError(f"{w}.cidrs: required, a non-empty list of CIDRs")
    v = Vpc(
        id=vid,
        region=region,
        cidrs=[_net(c, f"{w}.cidrs[{i}]") for i, c in enumerate(cidrs)],
        account=_account(vd.get("account", DEFAULT_ACCOUNT), f"{w}.account"),
        igw=checks.ident(vd["igw"], f"{w}.igw") if vd.get("igw") is not None else None,
        edge_route_table=(
            checks.ident(vd["edge_route_table"], f"{w}.edge_route_table")
            if vd.get("edge_route_table") is not None
            else None
        ),
    )
    if v.igw is not None and not v.igw.startswith("igw-"):
        raise ConfigError(f"{w}.igw: {checks.show(v.igw)} is not an internet gateway id (igw-...)")
    for rid, rd in checks.mapping(vd.get("route_tables"), f"{w}.route_tables").items():
        rw = f"{w}.route_tables.{rid}"
        if isinstance(rd, dict):
            checks.keys(rd, ("routes",), rw)
            routes_in, lw = rd.get("routes"), f"{rw}.routes"
        else:
            routes_in, lw = rd, rw
        rt = VpcRouteTable(id=rid, vpc_id=vid)
        for i, r in enumerate(checks.sequence(routes_in, lw)):
            ew = f"{lw}[{i}]"
            r = checks.mapping(r, ew, optional=False)
            checks.keys(r, ("dest", "target"), ew)
            if "dest" not in r or "target" not in r:
                raise ConfigError(f"{ew}: expected {{dest: CIDR, target: ID}}")
            tgt = checks.ident(r["target"], f"{ew}.target")
            try:
                kind = target_kind(tgt)
            except ConfigError as e:
                raise ConfigError(f"{ew}.target: {e}") from None
            rt.routes.append(VpcRoute(_net(r["dest"], f"{ew}.dest"), tgt, kind))
        v.route_tables[rid] = rt
    azmap = topo.regions.get(region)
    if azmap is None:
        raise ConfigError(f"{w}.region: {checks.show(region)} is not in regions ({', '.join(topo.regions) or 'none'})")
    for sid, sd in checks.mapping(vd.get("subnets"), f"{w}.subnets").items():
        sw = f"{w}.subnets.{sid}"
        sd = checks.mapping(sd, sw, optional=False)
        checks.keys(sd, ("cidr", "az", "route_table", "cidr_v6"), sw)
        az = sd.get("az")
        if not isinstance(az, str) or az not in azmap:
            raise ConfigError(f"{sw}.az: {checks.show(az)} is not an AZ of {region} ({', '.join(azmap)})")
        if "route_table" not in sd:
            raise ConfigError(f"{sw}.route_table: required")
        if "cidr" not in sd:
            raise ConfigError(f"{sw}.cidr: required")
        v.subnets[sid] = Subnet(
            id=sid,
            vpc_id=vid,
            cidr=_net(sd["cidr"], f"{sw}.cidr"),
            az=az,
            az_id=azmap[az],
            route_table=checks.ident(sd["route_table"], f"{sw}.route_table"),
            cidr_v6=_net(sd["cidr_v6"], f"{sw}.cidr_v6") if sd.get("cidr_v6") is not None else None,
        )
    for iid, idd in checks.mapping(vd.get("instances"), f"{w}.instances").items():
        iw = f"{w}.instances.{iid}"
        idd = checks.mapping(idd, iw, optional=False)
        checks.keys(idd, ("subnet", "ip", "ipv6", "kind", "eni", "options"), iw)
        if "ip" not in idd or "subnet" not in idd:
            raise ConfigError(f"{iw}: subnet and ip are required")
        v.instances[iid] = Instance(
            id=iid,
            vpc_id=vid,
            subnet=checks.ident(idd["subnet"], f"{iw}.subnet"),
            ip=checks.address(idd["ip"], f"{iw}.ip", 4),
            kind=checks.choice(ApplianceKind, idd.get("kind", "host"), f"{iw}.kind"),
            eni=checks.ident(idd["eni"], f"{iw}.eni")
            if idd.get("eni") is not None
            else "eni-" + iid.removeprefix("i-"),
            ipv6=checks.address(idd["ipv6"], f"{iw}.ipv6", 6) if idd.get("ipv6") is not None else None,
            options=checks.mapping(idd.get("options"), f"{iw}.options"),
        )
    for eid, ed in checks.mapping(vd.get("gwlb_endpoints"), f"{w}.gwlb_endpoints").items():
        ew = f"{w}.gwlb_endpoints.{eid}"
        ed = checks.mapping(ed, ew, optional=False)
        checks.keys(ed, ("subnet", "service"), ew)
        v.gwlb_endpoints[eid] = GwlbEndpoint(
            eid, vid, checks.ident(ed.get("subnet"), f"{ew}.subnet"), checks.ident(ed.get("service"), f"{ew}.service")
        )
    return v


SEED_LIMIT = 1 << 128
"""A TGW flow-hash seed is an integer in ``[0, SEED_LIMIT)`` (the dataplane keys its hash with 16 bytes)."""


def _seed(v: object, where: str) -> int | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise ConfigError(f"{where}: {checks.show(v)} is not an integer")
    try:
        seed = int(v)
    except ValueError:
        raise ConfigError(f"{where}: {checks.show(v)} is not an integer") from None
    if not 0 <= seed < SEED_LIMIT:
        raise ConfigError(f"{where}: {seed} is out of range (0 .. 2**128-1)")
    return seed


def _account(v: object, where: str) -> str:
    """An AWS account id: 12 digits (YAML may read them as an integer; leading zeros must then be quoted)."""
    a = checks.ident(v, where)
    if not (len(a) == 12 and a.isdigit()):
        raise ConfigError(f"{where}: {checks.show(v)} is not an AWS account id (12 digits, quoted if it starts with 0)")
    return a


def _tgw(tid: str, td: Mapping[str, Any]) -> TransitGateway:
    w = f"transit_gateways.{tid}"
    checks.keys(td, ("region", "account", "seed", "vpn_ecmp", "route_tables", "attachments"), w)
    if "region" not in td:
        raise ConfigError(f"{w}.region: required")
    t = TransitGateway(
        id=tid,
        region=checks.ident(td["region"], f"{w}.region"),
        account=_account(td.get("account", DEFAULT_ACCOUNT), f"{w}.account"),
        seed=_seed(td.get("seed"), f"{w}.seed"),
        vpn_ecmp=checks.boolean(td.get("vpn_ecmp", True), f"{w}.vpn_ecmp"),
    )
    for aid, ad in checks.mapping(td.get("attachments"), f"{w}.attachments").items():
        aw = f"{w}.attachments.{aid}"
        ad = checks.mapping(ad, aw, optional=False)
        typ = checks.choice(AttachmentType, ad.get("type", "vpc"), f"{aw}.type")
        if typ is AttachmentType.VPC:
            checks.keys(ad, ("type", "vpc", "subnets", "appliance_mode", "enis"), aw)
            subnets = checks.idents(ad.get("subnets"), f"{aw}.subnets")
            if not subnets:
                raise ConfigError(f"{aw}.subnets: required, one subnet per enabled AZ")
            enis = checks.mapping(ad.get("enis"), f"{aw}.enis")
            t.attachments[aid] = VpcAttachment(
                id=aid,
                tgw_id=tid,
                vpc_id=checks.ident(ad.get("vpc"), f"{aw}.vpc"),
                subnets=subnets,
                appliance_mode=_appliance_mode(ad.get("appliance_mode", False), f"{aw}.appliance_mode"),
                enis={k: checks.ident(v, f"{aw}.enis.{k}") for k, v in enis.items()},
            )
        elif typ is AttachmentType.PEERING:
            checks.keys(ad, ("type", "peer"), aw)
            if "peer" not in ad:
                raise ConfigError(f"{aw}.peer: required (the attachment id on the other TGW)")
            t.attachments[aid] = PeeringAttachment(id=aid, tgw_id=tid, peer=checks.ident(ad["peer"], f"{aw}.peer"))
        else:
            checks.keys(ad, ("type", "tunnels", "routes", "tunnels_up"), aw)
            routes = []
            for i, r in enumerate(checks.sequence(ad.get("routes"), f"{aw}.routes")):
                rw = f"{aw}.routes[{i}]"
                if isinstance(r, str):
                    r = {"dest": r}
                r = checks.mapping(r, rw, optional=False)
                checks.keys(r, ("dest", "as_path_len", "med"), rw)
                routes.append(
                    VpnRoute(
                        _net(r.get("dest"), f"{rw}.dest"),
                        checks.integer(r.get("as_path_len", 1), f"{rw}.as_path_len", 0, 255),
                        checks.integer(r.get("med", 100), f"{rw}.med", 0, 2**32 - 1),
                    )
                )
            tunnels = checks.idents(ad.get("tunnels", ["tunnel1", "tunnel2"]), f"{aw}.tunnels")
            if not tunnels or len(set(tunnels)) != len(tunnels):
                raise ConfigError(f"{aw}.tunnels: {checks.show(tunnels)} is not a list of distinct tunnel names")
            t.attachments[aid] = VpnAttachment(
                id=aid,
                tgw_id=tid,
                tunnels=tunnels,
                routes=routes,
                tunnels_up=checks.boolean(ad.get("tunnels_up", True), f"{aw}.tunnels_up"),
            )
    for rid, rd in checks.mapping(td.get("route_tables"), f"{w}.route_tables").items():
        rw = f"{w}.route_tables.{rid}"
        rd = checks.mapping(rd, rw)
        checks.keys(rd, ("associations", "propagations", "routes"), rw)
        rt = TgwRouteTable(
            id=rid,
            tgw_id=tid,
            associations=checks.idents(rd.get("associations"), f"{rw}.associations"),
            propagations=checks.idents(rd.get("propagations"), f"{rw}.propagations"),
        )
        for i, r in enumerate(checks.sequence(rd.get("routes"), f"{rw}.routes")):
            ew = f"{rw}.routes[{i}]"
            r = checks.mapping(r, ew, optional=False)
            checks.keys(r, ("dest", "prefix_list", "attachment", "blackhole"), ew)
            if ("dest" in r) == ("prefix_list" in r):
                raise ConfigError(f"{ew}: give exactly one of dest or prefix_list")
            bh = checks.boolean(r.get("blackhole", False), f"{ew}.blackhole")
            att = checks.ident(r["attachment"], f"{ew}.attachment") if r.get("attachment") is not None else None
            if bh == (att is not None):
                raise ConfigError(f"{ew}: give exactly one of attachment or blackhole: true")
            pl = checks.ident(r["prefix_list"], f"{ew}.prefix_list") if "prefix_list" in r else None
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


def _ram_share(sid: str, sd: Mapping[str, Any]) -> RamShare:
    w = f"ram_shares.{sid}"
    checks.keys(sd, ("region", "owner", "resources", "principals"), w)
    for k in ("region", "owner", "resources", "principals"):
        if k not in sd:
            raise ConfigError(f"{w}.{k}: required")
    return RamShare(
        id=sid,
        region=checks.ident(sd["region"], f"{w}.region"),
        owner=_account(sd["owner"], f"{w}.owner"),
        resources=checks.idents(sd["resources"], f"{w}.resources"),
        principals=[
            _principal(p, f"{w}.principals[{i}]")
            for i, p in enumerate(checks.sequence(sd["principals"], f"{w}.principals"))
        ],
    )


def _principal(v: object, where: str) -> str:
    """A RAM principal: an account id, or an organization / OU ARN (taken as every account)."""
    if isinstance(v, str) and v.startswith(ORGANIZATIONS_ARN_PREFIX):
        return checks.ident(v, where)
    try:
        return _account(v, where)
    except ConfigError:
        raise ConfigError(
            f"{where}: {checks.show(v)} is not an AWS account id (12 digits) or an organization / OU ARN "
            f"({ORGANIZATIONS_ARN_PREFIX}...)"
        ) from None


def _appliance_mode(v: object, where: str) -> bool:
    # Accept the AWS API spelling (ApplianceModeSupport: enable | disable) as well as YAML booleans.
    if isinstance(v, bool):
        return v
    if v in ("enable", "disable"):
        return v == "enable"
    raise ConfigError(f"{where}: {checks.show(v)} is not one of true, false, enable, disable")
