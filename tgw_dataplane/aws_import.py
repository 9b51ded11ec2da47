"""Import a topology from what the AWS API returns (the JSON of the describe/get/search calls, merged).

Input: one JSON object whose top-level keys are the response keys of these calls (lists concatenated when the
calls are made in several regions):

=============================================  ==========================================================
key                                            call
=============================================  ==========================================================
``TransitGateways``                            ``ec2 describe-transit-gateways``
``TransitGatewayVpcAttachments``               ``ec2 describe-transit-gateway-vpc-attachments``
``TransitGatewayPeeringAttachments``           ``ec2 describe-transit-gateway-peering-attachments``
``TransitGatewayAttachments`` (optional)       ``ec2 describe-transit-gateway-attachments`` (VPN attachments)
``TransitGatewayRouteTables``                  ``ec2 describe-transit-gateway-route-tables``
``TransitGatewayRouteTableAssociations``       {route-table id: ``Associations`` of
                                               ``get-transit-gateway-route-table-associations``}
``TransitGatewayRouteTablePropagations``       {route-table id: ``TransitGatewayRouteTablePropagations`` of
                                               ``get-transit-gateway-route-table-propagations``}
``TransitGatewayRoutes``                       {route-table id: ``Routes`` of ``search-transit-gateway-routes``}
``Vpcs``, ``Subnets``, ``RouteTables``         ``ec2 describe-vpcs`` / ``describe-subnets`` / ``describe-route-tables``
``Reservations``                               ``ec2 describe-instances``
``InternetGateways`` (optional)                ``ec2 describe-internet-gateways``
``NetworkInterfaces`` (optional)               ``ec2 describe-network-interfaces`` (TGW ENI ids for flow logs)
``PrefixListEntries`` (optional)               {``pl-`` id: ``Entries`` of ``get-managed-prefix-list-entries``}
``LoadBalancers``, ``TargetGroups``            ``elbv2 describe-load-balancers`` / ``describe-target-groups``
``Listeners`` (optional)                       ``elbv2 describe-listeners``
``TargetHealthDescriptions``                   {target-group ARN: ``describe-target-health`` list}
``LoadBalancerAttributes``,                    {ARN: ``Attributes`` of ``describe-*-attributes``}
``TargetGroupAttributes``,
``ListenerAttributes`` (optional)
``VpcEndpoints``                               ``ec2 describe-vpc-endpoints`` (GatewayLoadBalancer endpoints)
``ServiceConfigurations``                      ``ec2 describe-vpc-endpoint-service-configurations``
``resourceShares`` (optional)                  ``ram get-resource-shares --resource-owner SELF``
``resources`` (optional)                       ``ram list-resources --resource-owner SELF``
``principals`` (optional)                      ``ram list-principals --resource-owner SELF``
=============================================  ==========================================================

An instance's role comes from its tag ``awsnetemu:appliance`` (``stateful-firewall``, ``router``,
``gwlb-target``; none: a host). A TGW's flow-hash seed may be pinned with the tag ``awsnetemu:seed`` (an
integer). Every reference is checked; an error names the object the way the JSON does, e.g.
``TransitGatewayVpcAttachments[2] (tgw-attach-...): SubnetIds references unknown subnet subnet-...``.

Mapping notes:

* A VPC route table's ``local`` routes for the VPC's own CIDRs are implicit in the model and dropped; a route
  in state ``blackhole`` becomes a blackhole route. Route targets other than local, IGW, TGW, ENI/instance and
  GWLB endpoint raise a ConfigError unless ``unsupported_targets="blackhole"``.
* Propagated TGW routes are derived by the dataplane from the propagations (as AWS does), so ``propagated``
  entries of ``search-transit-gateway-routes`` are not copied, except for VPN attachments, whose propagated
  (BGP) prefixes become the attachment's ``routes``.
* AWS gives a peering attachment one id on both TGWs; the model keys attachments globally, so the accepter's
  side is named ``<id>-accepter`` (:func:`accepter_side_id`), and the accepter's route tables refer to it.
* GWLBs (``Type: gateway``) keep their ``LoadBalancerName`` as id; their target group, listener and load
  balancer attributes become the plug-in's ``options`` (AWS attribute keys); cross-zone comes from
  ``load_balancing.cross_zone.enabled``.
* Regions and accounts: a TGW's Region is the fourth field of its ``TransitGatewayArn``, a VPC's that of its
  subnets (``SubnetArn``, else the AZ name); owners are the ``OwnerId`` fields (absent: ``111111111111``).
  A merged dump may span accounts and Regions; the model then applies AWS's rules (a VPC attaches only to a
  TGW of its Region, another account's VPC only to a TGW shared with it through RAM, a RAM share holds
  resources of its own Region), see ``Topology._check_regions_and_accounts``.
* RAM (the RAM API spells its keys in camelCase): a resource share (``resourceShares``, ``status`` other than
  ``DELETING``/``DELETED``/``FAILED``) is named by its ``resourceShareArn``, whose fourth field is its Region; its
  owner is ``owningAccountId``; its resources are the ``resources`` entries with its ``resourceShareArn`` whose
  ``arn`` is a transit gateway (other resource types are ignored; ``status`` ``AVAILABLE`` or absent); its
  principals are the ``principals`` entries' ``id`` (an account id, or an organization / OU ARN, which the
  emulator takes as every account).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from emulator.errors import ConfigError
from tgw_dataplane.checks import show_path
from tgw_dataplane.model import (
    DEFAULT_ACCOUNT,
    MAX_DOCUMENT_BYTES,
    SEED_LIMIT,
    ApplianceKind,
    Gwlb,
    GwlbEndpoint,
    Instance,
    IPNetwork,
    PeeringAttachment,
    RamShare,
    RouteOrigin,
    Subnet,
    TgwRoute,
    TgwRouteTable,
    Topology,
    TransitGateway,
    Vpc,
    VpcAttachment,
    VpcRoute,
    VpcRouteTable,
    VpnAttachment,
    VpnRoute,
    target_kind,
)

APPLIANCE_TAG = "awsnetemu:appliance"
SEED_TAG = "awsnetemu:seed"

_LIST_KEYS = (
    "TransitGateways",
    "TransitGatewayVpcAttachments",
    "TransitGatewayPeeringAttachments",
    "TransitGatewayAttachments",
    "TransitGatewayRouteTables",
    "Vpcs",
    "Subnets",
    "RouteTables",
    "Reservations",
    "InternetGateways",
    "NetworkInterfaces",
    "LoadBalancers",
    "TargetGroups",
    "Listeners",
    "VpcEndpoints",
    "ServiceConfigurations",
    "resourceShares",
    "resources",
    "principals",
)
_MAP_KEYS = (
    "TransitGatewayRoutes",
    "TransitGatewayRouteTableAssociations",
    "TransitGatewayRouteTablePropagations",
    "PrefixListEntries",
    "TargetHealthDescriptions",
    "LoadBalancerAttributes",
    "TargetGroupAttributes",
    "ListenerAttributes",
)
# Keys a merged dump may carry that the emulator does not need (boto3's metadata, pagination).
_IGNORED_KEYS = ("ResponseMetadata", "NextToken", "AdditionalRoutesAvailable")
_GONE = frozenset(("deleted", "deleting", "failed", "failing", "rejected", "rejecting"))
# Attachments that do not carry traffic yet (cross-account or peering requests not accepted, or rolled back).
_NOT_YET = frozenset(("pendingAcceptance", "initiatingRequest", "rollingBack"))
_REGION_RE = re.compile(r"^([a-z]{2}(?:-gov|-iso[a-z]*)?-[a-z]+-\d+)")
# GWLB attributes the plug-in understands (tgw_dataplane.gwlb.GwlbAttributes); others are ignored.
_GWLB_ATTRS = (
    "tcp.idle_timeout.seconds",
    "send_tcp_reset.on_idle_timeout.enabled",
    "target_failover.on_unhealthy",
    "target_failover.on_deregistration",
    "deregistration_delay.timeout_seconds",
)


def accepter_side_id(attachment_id: str) -> str:
    """The model id of a peering attachment on its accepter TGW (see the module docstring)."""
    return f"{attachment_id}-accepter"


def load_aws_json(src: str | Path | Mapping[str, Any], *, unsupported_targets: str = "error") -> Topology:
    """Build and validate a :class:`~tgw_dataplane.model.Topology` from merged AWS API JSON (a path or the
    parsed object). ``unsupported_targets``: ``error`` (default) or ``blackhole`` for VPC routes to NAT
    gateways, peering connections and other targets the emulator does not model."""
    if unsupported_targets not in ("error", "blackhole"):
        raise ConfigError(f"unsupported_targets: {unsupported_targets!r} is not one of error, blackhole")
    if isinstance(src, Mapping):
        doc: Mapping[str, Any] = src
    else:
        try:
            with open(src, "rb") as f:
                raw = f.read(MAX_DOCUMENT_BYTES + 1)
            if len(raw) > MAX_DOCUMENT_BYTES:
                raise ConfigError(f"AWS JSON {show_path(src)}: larger than {MAX_DOCUMENT_BYTES >> 20} MB")
            loaded = json.loads(raw)
        except OSError as e:
            raise ConfigError(f"AWS JSON {show_path(src)}: {e.strerror or e}") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"AWS JSON {show_path(src)}: not valid JSON: {e}") from None
        except (ValueError, RecursionError) as e:  # not UTF-8; nesting deeper than the parser goes
            raise ConfigError(f"AWS JSON {show_path(src)}: not valid JSON ({type(e).__name__})") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"AWS JSON {show_path(src)}: the top level must be an object")
        doc = loaded
    return _Importer(doc, unsupported_targets == "blackhole").run()


def _objs(o: Mapping[str, Any], key: str, where: str) -> list[Mapping[str, Any]]:
    """``o[key]`` as a list of objects (missing: empty); anything else is a ConfigError naming the field."""
    v = o.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, Mapping) for x in v):
        raise ConfigError(f"{where}: {key} must be a list of objects")
    return v


def _obj(o: Mapping[str, Any], key: str, where: str) -> Mapping[str, Any]:
    """``o[key]`` as an object (missing: empty)."""
    v = o.get(key)
    if v is None:
        return {}
    if not isinstance(v, Mapping):
        raise ConfigError(f"{where}: {key} must be an object")
    return v


def _strs(o: Mapping[str, Any], key: str, where: str) -> list[str]:
    """``o[key]`` as a list of strings (missing: empty)."""
    v = o.get(key)
    if v is None:
        return []
    if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
        raise ConfigError(f"{where}: {key} must be a list of strings")
    return v


def _state(o: Mapping[str, Any], where: str) -> str:
    """An object's ``State`` string ("" when absent)."""
    v = o.get("State", "")
    if not isinstance(v, str):
        raise ConfigError(f"{where}: State must be a string")
    return v


def _device_index(eni: Mapping[str, Any], where: str) -> int:
    v = _obj(eni, "Attachment", where).get("DeviceIndex", 0)
    return v if isinstance(v, int) and not isinstance(v, bool) else 0


def _tags(obj: Mapping[str, Any], where: str) -> dict[str, str]:
    return {str(t.get("Key")): str(t.get("Value")) for t in _objs(obj, "Tags", where)}


def _region_of(arn: object, az: object = None) -> str | None:
    if isinstance(arn, str) and arn.startswith("arn:"):
        parts = arn.split(":")
        if len(parts) > 3 and parts[3]:
            return parts[3]
    if isinstance(az, str):
        m = _REGION_RE.match(az)
        if m:
            return m.group(1)
    return None


class _Importer:
    def __init__(self, doc: Mapping[str, Any], blackhole_unsupported: bool) -> None:
        self.doc = doc
        self.blackhole_unsupported = blackhole_unsupported
        self.topo = Topology()
        unknown = set(doc) - set(_LIST_KEYS) - set(_MAP_KEYS) - set(_IGNORED_KEYS)
        if unknown:
            raise ConfigError(
                f"AWS JSON: unknown top-level key(s) {', '.join(sorted(unknown))} "
                f"(known: {', '.join(sorted(_LIST_KEYS + _MAP_KEYS))})"
            )
        for k in _LIST_KEYS:
            if not isinstance(doc.get(k, []), list):
                raise ConfigError(f"{k}: must be a list (the call's response list)")
        for k in _MAP_KEYS:
            if not isinstance(doc.get(k, {}), Mapping):
                raise ConfigError(f"{k}: must be an object from id to that call's list")
        self.where = "AWS JSON"
        """The object being read, for errors the explicit checks do not name."""
        self.subnet_vpc: dict[str, str] = {}
        self.eni_owner: dict[str, Instance] = {}
        self.instances: dict[str, Instance] = {}
        self.gwlbe: dict[str, GwlbEndpoint] = {}
        # per TGW: AWS attachment id -> model attachment id (differs only for a peering accepter side)
        self.att_ids: dict[str, dict[str, str]] = {}

    # -- helpers ------------------------------------------------------------------------------------------
    def items(self, key: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """(where-prefix, object) for every object of a list key; non-objects are errors."""
        for i, o in enumerate(self.doc.get(key) or []):
            if not isinstance(o, Mapping):
                raise ConfigError(f"{key}[{i}]: must be an object")
            self.where = f"{key}[{i}]"
            yield self.where, o

    @staticmethod
    def need(o: Mapping[str, Any], field: str, where: str) -> str:
        v = o.get(field)
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{where}: {field} is missing")
        return v

    @staticmethod
    def net(v: object, where: str) -> IPNetwork:
        try:
            return ipaddress.ip_network(str(v), strict=True)
        except ValueError as e:
            raise ConfigError(f"{where}: {v!r} is not a CIDR ({e})") from None

    @staticmethod
    def address(v: str, where: str) -> str:
        try:
            return str(ipaddress.ip_address(v))
        except ValueError:
            raise ConfigError(f"{where}: {v!r} is not an IP address") from None

    def per_table(self, key: str, rt_id: str, where: str) -> list[Mapping[str, Any]]:
        m = self.doc.get(key)
        if not isinstance(m, Mapping) or rt_id not in m:
            raise ConfigError(f"{where}: {key} has no entry for {rt_id} (give that call's list for every route table)")
        lst = m[rt_id]
        if not isinstance(lst, list) or not all(isinstance(x, Mapping) for x in lst):
            raise ConfigError(f"{key}.{rt_id}: must be a list of objects")
        return lst

    # -- passes ---------------------------------------------------------------------------------------------
    def run(self) -> Topology:
        try:
            return self._run()
        except ConfigError:
            raise
        except (TypeError, AttributeError, KeyError, IndexError, ValueError) as e:
            # A value of the wrong type deep inside an object the explicit checks do not cover: still a
            # configuration error, named by the last object being read.
            raise ConfigError(f"{self.where}: malformed value ({type(e).__name__}: {e})") from None

    def _run(self) -> Topology:
        self.subnets_and_regions()
        self.vpcs()
        self.route_tables()
        self.igws()
        self.instances_()
        self.gwlbs()
        self.route_targets()
        self.tgws()
        self.tgw_attachments()
        self.tgw_route_tables()
        self.ram_shares()
        self.topo.validate()
        return self.topo

    def subnets_and_regions(self) -> None:
        self.raw_subnets: dict[str, tuple[str, Mapping[str, Any], str]] = {}
        for where, s in self.items("Subnets"):
            sid = self.need(s, "SubnetId", where)
            where = f"{where} ({sid})"
            az = self.need(s, "AvailabilityZone", where)
            az_id = self.need(s, "AvailabilityZoneId", where)
            region = _region_of(s.get("SubnetArn"), az)
            if region is None:
                raise ConfigError(f"{where}: cannot tell the region of AvailabilityZone {az!r}")
            azs = self.topo.regions.setdefault(region, {})
            if azs.get(az, az_id) != az_id:
                raise ConfigError(f"{where}: AvailabilityZone {az} has AvailabilityZoneId {az_id}, elsewhere {azs[az]}")
            azs[az] = az_id
            if sid in self.raw_subnets:
                raise ConfigError(f"{where}: SubnetId {sid} appears twice")
            self.raw_subnets[sid] = (where, s, region)
            self.subnet_vpc[sid] = self.need(s, "VpcId", where)

    def vpcs(self) -> None:
        regions_of_vpc: dict[str, set[str]] = {}
        for _w, s, region in self.raw_subnets.values():
            regions_of_vpc.setdefault(str(s.get("VpcId")), set()).add(region)
        for where, v in self.items("Vpcs"):
            vid = self.need(v, "VpcId", where)
            where = f"{where} ({vid})"
            if vid in self.topo.vpcs:
                raise ConfigError(f"{where}: VpcId {vid} appears twice")
            regions = regions_of_vpc.get(vid, set())
            if len(regions) > 1:
                raise ConfigError(f"{where}: subnets in several regions ({', '.join(sorted(regions))})")
            if not regions and len(self.topo.regions) == 1:
                regions = set(self.topo.regions)
            if not regions:
                raise ConfigError(f"{where}: has no subnets, so its region is unknown")
            cidrs: list[IPNetwork] = []
            for a in _objs(v, "CidrBlockAssociationSet", where) or [{"CidrBlock": v.get("CidrBlock")}]:
                state = _obj(a, "CidrBlockState", where).get("State", "associated")
                if state == "associated" and a.get("CidrBlock"):
                    cidrs.append(self.net(a["CidrBlock"], f"{where}: CidrBlockAssociationSet"))
            for a in _objs(v, "Ipv6CidrBlockAssociationSet", where):
                state = _obj(a, "Ipv6CidrBlockState", where).get("State", "associated")
                if state == "associated" and a.get("Ipv6CidrBlock"):
                    cidrs.append(self.net(a["Ipv6CidrBlock"], f"{where}: Ipv6CidrBlockAssociationSet"))
            if not cidrs:
                raise ConfigError(f"{where}: no associated CIDR block")
            self.topo.vpcs[vid] = Vpc(
                id=vid, region=next(iter(regions)), cidrs=cidrs, account=str(v.get("OwnerId") or DEFAULT_ACCOUNT)
            )
        for sid, (where, _s, _r) in self.raw_subnets.items():
            if self.subnet_vpc[sid] not in self.topo.vpcs:
                raise ConfigError(f"{where}: VpcId references unknown VPC {self.subnet_vpc[sid]}")

    def route_tables(self) -> None:
        main: dict[str, str] = {}
        explicit: dict[str, str] = {}
        self.raw_routes: list[tuple[str, Vpc, VpcRouteTable, list[Mapping[str, Any]]]] = []
        for where, rt in self.items("RouteTables"):
            rid = self.need(rt, "RouteTableId", where)
            where = f"{where} ({rid})"
            vid = self.need(rt, "VpcId", where)
            v = self.topo.vpcs.get(vid)
            if v is None:
                raise ConfigError(f"{where}: VpcId references unknown VPC {vid}")
            table = VpcRouteTable(id=rid, vpc_id=vid)
            v.route_tables[rid] = table
            for j, a in enumerate(_objs(rt, "Associations", where)):
                if _obj(a, "AssociationState", where).get("State", "associated") != "associated":
                    continue
                if a.get("Main"):
                    main[vid] = rid
                elif a.get("SubnetId"):
                    sid = str(a["SubnetId"])
                    if self.subnet_vpc.get(sid) != vid:
                        raise ConfigError(f"{where}: Associations[{j}] references unknown subnet {sid} in {vid}")
                    explicit[sid] = rid
                elif a.get("GatewayId"):
                    gw = str(a["GatewayId"])
                    if gw.startswith("igw-"):  # edge association (ingress routing)
                        v.edge_route_table = rid
                        v.igw = v.igw or gw
            self.raw_routes.append((where, v, table, _objs(rt, "Routes", where)))
        for sid, (swhere, s, _region) in self.raw_subnets.items():
            vid = self.subnet_vpc[sid]
            srt = explicit.get(sid) or main.get(vid)
            if srt is None:
                raise ConfigError(f"{swhere}: no route table (no explicit association and no main table in {vid})")
            v = self.topo.vpcs[vid]
            cidr_v6 = None
            for a in _objs(s, "Ipv6CidrBlockAssociationSet", swhere):
                if _obj(a, "Ipv6CidrBlockState", swhere).get("State", "associated") == "associated":
                    cidr_v6 = self.net(a.get("Ipv6CidrBlock"), f"{swhere}: Ipv6CidrBlockAssociationSet")
            v.subnets[sid] = Subnet(
                id=sid,
                vpc_id=vid,
                cidr=self.net(self.need(s, "CidrBlock", swhere), f"{swhere}: CidrBlock"),
                az=str(s["AvailabilityZone"]),
                az_id=str(s["AvailabilityZoneId"]),
                route_table=srt,
                cidr_v6=cidr_v6,
            )

    def igws(self) -> None:
        for where, g in self.items("InternetGateways"):
            gid = self.need(g, "InternetGatewayId", where)
            for a in _objs(g, "Attachments", where):
                vid = str(a.get("VpcId"))
                if a.get("State", "available") in ("available", "attached") and vid in self.topo.vpcs:
                    self.topo.vpcs[vid].igw = gid

    def instances_(self) -> None:
        for i, r in self.items("Reservations"):
            for j, inst in enumerate(_objs(r, "Instances", i)):
                where = f"{i}.Instances[{j}]"
                iid = self.need(inst, "InstanceId", where)
                where = f"{where} ({iid})"
                if _obj(inst, "State", where).get("Name") in ("terminated", "shutting-down"):
                    continue
                sid = self.need(inst, "SubnetId", where)
                vid = self.subnet_vpc.get(sid)
                if vid is None:
                    raise ConfigError(f"{where}: SubnetId references unknown subnet {sid}")
                role = _tags(inst, where).get(APPLIANCE_TAG, "host")
                try:
                    kind = ApplianceKind(role)
                except ValueError:
                    allowed = ", ".join(k.value for k in ApplianceKind if k is not ApplianceKind.HOST)
                    raise ConfigError(f"{where}: tag {APPLIANCE_TAG}={role!r} is not one of {allowed}") from None
                enis = sorted(
                    _objs(inst, "NetworkInterfaces", where),
                    key=lambda n: _device_index(n, where),
                )
                eni = str(enis[0].get("NetworkInterfaceId")) if enis else "eni-" + iid.removeprefix("i-")
                ipv6 = None
                if enis:
                    v6 = [a.get("Ipv6Address") for a in _objs(enis[0], "Ipv6Addresses", where) if a.get("Ipv6Address")]
                    ipv6 = self.address(str(v6[0]), f"{where}: Ipv6Addresses") if v6 else None
                obj = Instance(
                    id=iid,
                    vpc_id=vid,
                    subnet=sid,
                    ip=self.address(self.need(inst, "PrivateIpAddress", where), f"{where}: PrivateIpAddress"),
                    kind=kind,
                    eni=eni,
                    ipv6=ipv6,
                )
                self.topo.vpcs[vid].instances[iid] = obj
                self.instances[iid] = obj
                for n in enis:
                    self.eni_owner[str(n.get("NetworkInterfaceId"))] = obj

    def route_targets(self) -> None:
        for where, v, table, routes in self.raw_routes:
            for j, r in enumerate(routes):
                w = self.where = f"{where}: Routes[{j}]"
                if r.get("DestinationPrefixListId"):
                    pl = str(r["DestinationPrefixListId"])
                    dests = self.prefix_list(pl, w)
                else:
                    d = r.get("DestinationCidrBlock") or r.get("DestinationIpv6CidrBlock")
                    if not d:
                        raise ConfigError(f"{w}: no destination")
                    dests = [self.net(d, w)]
                target = self.vpc_target(r, v, w)
                if target is None:
                    continue
                for dest in dests:
                    if target == "local" and dest in v.cidrs:
                        continue  # implicit in the model
                    table.routes.append(VpcRoute(dest, target, target_kind(target)))

    def vpc_target(self, r: Mapping[str, Any], v: Vpc, w: str) -> str | None:
        if r.get("State") == "blackhole":
            return "blackhole"
        eni = r.get("NetworkInterfaceId")
        if eni:
            owner = self.eni_owner.get(str(eni))
            if owner is None:
                raise ConfigError(f"{w}: NetworkInterfaceId references unknown ENI {eni} (no instance has it)")
            return owner.eni if owner.eni == eni else owner.id
        if r.get("InstanceId"):
            iid = str(r["InstanceId"])
            if iid not in self.instances:
                raise ConfigError(f"{w}: InstanceId references unknown instance {iid}")
            return iid
        if r.get("TransitGatewayId"):
            return str(r["TransitGatewayId"])
        gw = r.get("GatewayId") or r.get("VpcEndpointId")
        if gw == "local":
            return "local"
        if isinstance(gw, str) and gw.startswith("igw-"):
            v.igw = v.igw or gw
            return gw
        if isinstance(gw, str) and gw.startswith("vpce-"):
            if gw not in self.gwlbe:
                raise ConfigError(f"{w}: GatewayId references unknown GWLB endpoint {gw} (not in VpcEndpoints)")
            return gw
        other = next(
            (f"{k} {r[k]}" for k in sorted(r) if k.endswith(("Id", "Arn")) and not k.startswith("Destination")), None
        )
        if self.blackhole_unsupported:
            return "blackhole"
        raise ConfigError(
            f"{w}: target {other or 'none'} is not supported (local, igw-, tgw-, eni-/i-, GWLB vpce- only; "
            "load with unsupported_targets='blackhole' to drop such traffic)"
        )

    def prefix_list(self, pl: str, where: str) -> list[IPNetwork]:
        entries = _obj(self.doc, "PrefixListEntries", "AWS JSON").get(pl)
        if not isinstance(entries, list) or not all(isinstance(e, Mapping) for e in entries):
            raise ConfigError(f"{where}: prefix list {pl} has no entry (a list of objects) in PrefixListEntries")
        if pl not in self.topo.prefix_lists:
            self.topo.prefix_lists[pl] = [self.net(e.get("Cidr"), f"PrefixListEntries.{pl}") for e in entries]
        return self.topo.prefix_lists[pl]

    def gwlbs(self) -> None:
        tg_of_lb: dict[str, list[Mapping[str, Any]]] = {}
        for _w, tg in self.items("TargetGroups"):
            for lb_arn in _strs(tg, "LoadBalancerArns", _w):
                tg_of_lb.setdefault(str(lb_arn), []).append(tg)
        tgs = {str(tg.get("TargetGroupArn")): tg for _w, tg in self.items("TargetGroups")}
        listener_of_lb: dict[str, Mapping[str, Any]] = {}
        for _w, li in self.items("Listeners"):
            lb_arn = str(li.get("LoadBalancerArn"))
            listener_of_lb[lb_arn] = li
            for a in _objs(li, "DefaultActions", _w):
                fwd = tgs.get(str(a.get("TargetGroupArn")))
                if a.get("Type") == "forward" and fwd is not None and fwd not in tg_of_lb.get(lb_arn, []):
                    tg_of_lb.setdefault(lb_arn, []).append(fwd)
        by_arn: dict[str, str] = {}
        for where, lb in self.items("LoadBalancers"):
            if lb.get("Type") != "gateway":
                continue
            name = self.need(lb, "LoadBalancerName", where)
            arn = self.need(lb, "LoadBalancerArn", where)
            where = f"{where} ({name})"
            vid = self.need(lb, "VpcId", where)
            if vid not in self.topo.vpcs:
                raise ConfigError(f"{where}: VpcId references unknown VPC {vid}")
            subnets = []
            for k, az in enumerate(_objs(lb, "AvailabilityZones", where)):
                sid = str(az.get("SubnetId"))
                if self.subnet_vpc.get(sid) != vid:
                    raise ConfigError(f"{where}: AvailabilityZones[{k}] references unknown subnet {sid} in {vid}")
                subnets.append(sid)
            groups = tg_of_lb.get(arn, [])
            if len(groups) != 1:
                raise ConfigError(f"{where}: needs exactly one target group (found {len(groups)})")
            tg = groups[0]
            tg_arn = str(tg.get("TargetGroupArn"))
            health = _obj(self.doc, "TargetHealthDescriptions", "AWS JSON").get(tg_arn)
            if not isinstance(health, list) or not all(isinstance(h, Mapping) for h in health):
                raise ConfigError(f"{where}: TargetHealthDescriptions has no entry for target group {tg_arn}")
            targets = []
            for k, h in enumerate(health):
                tid = str(_obj(h, "Target", f"TargetHealthDescriptions.{tg_arn}[{k}]").get("Id"))
                inst = self.instances.get(tid)
                if inst is None:
                    raise ConfigError(
                        f"TargetHealthDescriptions.{tg_arn}[{k}]: Target.Id references unknown instance {tid}"
                    )
                if inst.kind is not ApplianceKind.GWLB_TARGET:
                    raise ConfigError(
                        f"TargetHealthDescriptions.{tg_arn}[{k}]: instance {tid} lacks tag {APPLIANCE_TAG}=gwlb-target"
                    )
                targets.append(tid)
            options: dict[str, Any] = {}
            attrs = {**self.attrs("TargetGroupAttributes", tg_arn)}
            if arn in listener_of_lb:
                attrs.update(self.attrs("ListenerAttributes", str(listener_of_lb[arn].get("ListenerArn"))))
            lb_attrs = self.attrs("LoadBalancerAttributes", arn)
            for key in _GWLB_ATTRS:
                if key in attrs:
                    options[key] = attrs[key]
            if attrs.get("stickiness.enabled") == "true" and attrs.get("stickiness.type"):
                options["stickiness.type"] = attrs["stickiness.type"]
            cross = attrs.get("load_balancing.cross_zone.enabled", "use_load_balancer_configuration")
            if cross == "use_load_balancer_configuration":
                cross = lb_attrs.get("load_balancing.cross_zone.enabled", "false")
            self.topo.gwlbs[name] = Gwlb(
                id=name, vpc_id=vid, subnets=subnets, targets=targets, cross_zone=cross == "true", options=options
            )
            by_arn[arn] = name
        service_lb: dict[str, str] = {}
        for _w, sc in self.items("ServiceConfigurations"):
            for lb_arn in _strs(sc, "GatewayLoadBalancerArns", _w):
                if str(lb_arn) in by_arn:
                    service_lb[str(sc.get("ServiceName"))] = by_arn[str(lb_arn)]
        for where, ep in self.items("VpcEndpoints"):
            if ep.get("VpcEndpointType") != "GatewayLoadBalancer" or _state(ep, where) in _GONE:
                continue
            eid = self.need(ep, "VpcEndpointId", where)
            where = f"{where} ({eid})"
            vid = self.need(ep, "VpcId", where)
            if vid not in self.topo.vpcs:
                raise ConfigError(f"{where}: VpcId references unknown VPC {vid}")
            sids = _strs(ep, "SubnetIds", where)
            if len(sids) != 1 or self.subnet_vpc.get(str(sids[0])) != vid:
                raise ConfigError(f"{where}: SubnetIds must name exactly one subnet of {vid} (got {sids})")
            svc = service_lb.get(str(ep.get("ServiceName")))
            if svc is None:
                raise ConfigError(
                    f"{where}: ServiceName {ep.get('ServiceName')} is not the service of a known GWLB "
                    "(ServiceConfigurations/LoadBalancers)"
                )
            e = GwlbEndpoint(eid, vid, str(sids[0]), svc)
            self.topo.vpcs[vid].gwlb_endpoints[eid] = e
            self.gwlbe[eid] = e

    def attrs(self, key: str, arn: str) -> dict[str, str]:
        lst = _obj(self.doc, key, "AWS JSON").get(arn) or []
        if not isinstance(lst, list) or not all(isinstance(a, Mapping) for a in lst):
            raise ConfigError(f"{key}.{arn}: must be a list of {{Key, Value}} objects")
        return {str(a.get("Key")): str(a.get("Value")) for a in lst}

    def tgws(self) -> None:
        for where, t in self.items("TransitGateways"):
            tid = self.need(t, "TransitGatewayId", where)
            where = f"{where} ({tid})"
            if _state(t, where) in _GONE:
                continue
            if tid in self.topo.tgws:
                raise ConfigError(f"{where}: TransitGatewayId {tid} appears twice")
            region = _region_of(t.get("TransitGatewayArn"))
            if region is None:
                raise ConfigError(f"{where}: TransitGatewayArn is missing, so its region is unknown")
            if region not in self.topo.regions:
                raise ConfigError(f"{where}: region {region} has no subnets in Subnets, so its AZs are unknown")
            seed_tag = _tags(t, where).get(SEED_TAG)
            try:
                seed = int(seed_tag) if seed_tag is not None else None
            except ValueError:
                raise ConfigError(f"{where}: tag {SEED_TAG}={seed_tag!r} is not an integer") from None
            if seed is not None and not 0 <= seed < SEED_LIMIT:
                raise ConfigError(f"{where}: tag {SEED_TAG}={seed_tag!r} is out of range (0 .. 2**128-1)")
            opts = _obj(t, "Options", where)
            self.topo.tgws[tid] = TransitGateway(
                id=tid,
                region=region,
                account=str(t.get("OwnerId") or DEFAULT_ACCOUNT),
                seed=seed,
                vpn_ecmp=opts.get("VpnEcmpSupport", "enable") == "enable",
            )
            self.att_ids[tid] = {}

    def tgw_of(self, tid: object, where: str, field: str) -> TransitGateway:
        t = self.topo.tgws.get(str(tid))
        if t is None:
            raise ConfigError(f"{where}: {field} references unknown transit gateway {tid}")
        return t

    def tgw_attachments(self) -> None:
        tgw_enis: dict[tuple[str, str], str] = {}
        for _w, n in self.items("NetworkInterfaces"):
            if n.get("InterfaceType") == "transit_gateway":
                m = re.search(r"tgw-attach-[0-9a-z]+", str(n.get("Description", "")))
                if m:
                    tgw_enis[(m.group(0), str(n.get("SubnetId")))] = str(n.get("NetworkInterfaceId"))
        for where, a in self.items("TransitGatewayVpcAttachments"):
            aid = self.need(a, "TransitGatewayAttachmentId", where)
            where = f"{where} ({aid})"
            if _state(a, where) in _GONE | _NOT_YET:
                continue
            t = self.tgw_of(a.get("TransitGatewayId"), where, "TransitGatewayId")
            vid = self.need(a, "VpcId", where)
            if vid not in self.topo.vpcs:
                raise ConfigError(f"{where}: VpcId references unknown VPC {vid}")
            sids = _strs(a, "SubnetIds", where)
            for sid in sids:
                if sid not in self.subnet_vpc:
                    raise ConfigError(f"{where}: SubnetIds references unknown subnet {sid}")
                if self.subnet_vpc[sid] != vid:
                    raise ConfigError(f"{where}: SubnetIds names {sid}, which is in {self.subnet_vpc[sid]}, not {vid}")
            mode = _obj(a, "Options", where).get("ApplianceModeSupport", "disable")
            if mode not in ("enable", "disable"):
                raise ConfigError(f"{where}: Options.ApplianceModeSupport {mode!r} is not one of enable, disable")
            enis = {sid: tgw_enis[(aid, sid)] for sid in sids if (aid, sid) in tgw_enis}
            t.attachments[aid] = VpcAttachment(
                id=aid, tgw_id=t.id, vpc_id=vid, subnets=sids, appliance_mode=mode == "enable", enis=enis
            )
            self.att_ids[t.id][aid] = aid
        seen: dict[str, Mapping[str, Any]] = {}
        for where, p in self.items("TransitGatewayPeeringAttachments"):
            aid = self.need(p, "TransitGatewayAttachmentId", where)
            where = f"{where} ({aid})"
            if _state(p, where) in _GONE | _NOT_YET:
                continue
            if aid in seen:  # the same attachment listed from both regions
                continue
            seen[aid] = p
            req, acc = p.get("RequesterTgwInfo"), p.get("AccepterTgwInfo")
            if not isinstance(req, Mapping) or not isinstance(acc, Mapping):
                raise ConfigError(f"{where}: RequesterTgwInfo and AccepterTgwInfo are required")
            t1 = self.tgw_of(req.get("TransitGatewayId"), where, "RequesterTgwInfo.TransitGatewayId")
            t2 = self.tgw_of(acc.get("TransitGatewayId"), where, "AccepterTgwInfo.TransitGatewayId")
            side2 = accepter_side_id(aid)
            t1.attachments[aid] = PeeringAttachment(id=aid, tgw_id=t1.id, peer=side2)
            t2.attachments[side2] = PeeringAttachment(id=side2, tgw_id=t2.id, peer=aid)
            self.att_ids[t1.id][aid] = aid
            self.att_ids[t2.id][aid] = side2
        for where, a in self.items("TransitGatewayAttachments"):
            if a.get("ResourceType") != "vpn" or _state(a, where) in _GONE | _NOT_YET:
                continue
            aid = self.need(a, "TransitGatewayAttachmentId", where)
            where = f"{where} ({aid})"
            t = self.tgw_of(a.get("TransitGatewayId"), where, "TransitGatewayId")
            t.attachments[aid] = VpnAttachment(id=aid, tgw_id=t.id)
            self.att_ids[t.id][aid] = aid

    def local_att(self, t: TransitGateway, aid: object, where: str) -> str:
        m = self.att_ids[t.id].get(str(aid))
        if m is None:
            raise ConfigError(f"{where}: references unknown attachment {aid} of {t.id}")
        return m

    def tgw_route_tables(self) -> None:
        for where, rt in self.items("TransitGatewayRouteTables"):
            rid = self.need(rt, "TransitGatewayRouteTableId", where)
            where = f"{where} ({rid})"
            if _state(rt, where) in _GONE:
                continue
            t = self.tgw_of(rt.get("TransitGatewayId"), where, "TransitGatewayId")
            table = TgwRouteTable(id=rid, tgw_id=t.id)
            t.route_tables[rid] = table
            for k, a in enumerate(self.per_table("TransitGatewayRouteTableAssociations", rid, where)):
                if a.get("State", "associated") == "associated":
                    w = f"TransitGatewayRouteTableAssociations.{rid}[{k}]"
                    table.associations.append(self.local_att(t, a.get("TransitGatewayAttachmentId"), w))
            for k, a in enumerate(self.per_table("TransitGatewayRouteTablePropagations", rid, where)):
                if a.get("State", "enabled") == "enabled":
                    w = f"TransitGatewayRouteTablePropagations.{rid}[{k}]"
                    table.propagations.append(self.local_att(t, a.get("TransitGatewayAttachmentId"), w))
            for k, r in enumerate(self.per_table("TransitGatewayRoutes", rid, where)):
                self.tgw_route(t, table, r, f"TransitGatewayRoutes.{rid}[{k}]")

    def tgw_route(self, t: TransitGateway, table: TgwRouteTable, r: Mapping[str, Any], w: str) -> None:
        self.where = w
        state = r.get("State", "active")
        if state in ("deleted", "deleting", "pending"):
            return
        pl = r.get("PrefixListId")
        dest = None if pl else self.net(r.get("DestinationCidrBlock"), f"{w}: DestinationCidrBlock")
        w = f"{w} ({pl or dest})"
        atts = _objs(r, "TransitGatewayAttachments", w)
        if r.get("Type") == "propagated":
            for a in atts:
                local = self.local_att(t, a.get("TransitGatewayAttachmentId"), f"{w}: TransitGatewayAttachments")
                att = t.attachments[local]
                if isinstance(att, VpnAttachment) and dest is not None and all(x.dest != dest for x in att.routes):
                    att.routes.append(VpnRoute(dest))
            return
        if state == "blackhole":
            if pl:
                self.prefix_list(str(pl), w)
            table.routes.append(
                TgwRoute(
                    dest=dest,
                    attachment=None,
                    blackhole=True,
                    prefix_list=str(pl) if pl else None,
                    origin=RouteOrigin.PREFIX_LIST if pl else RouteOrigin.STATIC,
                )
            )
            return
        if len(atts) != 1:
            raise ConfigError(
                f"{w}: a static route needs exactly one entry in TransitGatewayAttachments (found {len(atts)})"
            )
        local = self.local_att(t, atts[0].get("TransitGatewayAttachmentId"), f"{w}: TransitGatewayAttachments")
        if pl:
            self.prefix_list(str(pl), w)
        table.routes.append(
            TgwRoute(
                dest=dest,
                attachment=local,
                prefix_list=str(pl) if pl else None,
                origin=RouteOrigin.PREFIX_LIST if pl else RouteOrigin.STATIC,
            )
        )

    def ram_shares(self) -> None:
        shares: dict[str, RamShare] = {}
        for where, sh in self.items("resourceShares"):
            arn = self.need(sh, "resourceShareArn", where)
            where = f"{where} ({arn})"
            if sh.get("status", "ACTIVE") in ("DELETING", "DELETED", "FAILED"):
                continue
            region = _region_of(arn)
            if region is None:
                raise ConfigError(f"{where}: resourceShareArn is not an ARN with a Region")
            owner = self.need(sh, "owningAccountId", where)
            if arn in shares:
                raise ConfigError(f"{where}: resourceShareArn {arn} appears twice")
            shares[arn] = self.topo.ram_shares[arn] = RamShare(id=arn, region=region, owner=owner)
        for where, r in self.items("resources"):
            share = shares.get(str(r.get("resourceShareArn")))
            if share is None or r.get("status", "AVAILABLE") != "AVAILABLE":
                continue
            arn = self.need(r, "arn", where)
            m = re.fullmatch(r"arn:[^:]+:ec2:([^:]*):([^:]*):transit-gateway/(tgw-[0-9a-zA-Z]+)", arn)
            if m is None:
                continue  # a resource of another type (subnets, prefix lists, ...): not modelled
            if m.group(3) not in self.topo.tgws:
                raise ConfigError(f"{where} ({arn}): arn references unknown transit gateway {m.group(3)}")
            share.resources.append(m.group(3))
        for where, pr in self.items("principals"):
            share = shares.get(str(pr.get("resourceShareArn")))
            if share is not None:
                share.principals.append(self.need(pr, "id", where))
        for share in shares.values():
            if not share.resources:  # a share of other resource types only
                del self.topo.ram_shares[share.id]
