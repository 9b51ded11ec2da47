"""AWS API JSON import (tgw_dataplane.aws_import): the JSON is produced by boto3 against moto, so the import
reads what the AWS API returns. Where moto's answer differs from AWS's, the test completes it the way AWS
answers (shapes from botocore's EC2 service model) and says so next to the change.

Regenerate the checked-in fixture with ``python -m tests.tgw.test_aws_import`` (writes
fixtures/tgw/aws/seed-aws.json).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from emulator.cli import ConfigError
from tgw_dataplane.aws_import import accepter_side_id, load_aws_json
from tgw_dataplane.dataplane import Dataplane
from tgw_dataplane.model import (
    ApplianceKind,
    PeeringAttachment,
    RouteOrigin,
    VpcRouteTargetKind,
    load_topology,
)

ROOT = Path(__file__).resolve().parents[2]
SEED_YAML = ROOT / "fixtures" / "tgw" / "seed.yaml"
SEED_JSON = ROOT / "fixtures" / "tgw" / "aws" / "seed-aws.json"
REGION = "us-east-1"
PEER_REGION = "us-west-2"
AMI = "ami-12c6146b"  # one of moto's built-in AMIs

# ---- botocore's response shapes: every object we add or complete must fit them -----------------------------------


def _shape_members(shape_name: str) -> set[str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("ec2")
    return set(model.shape_for(shape_name).members)


def check_shape(obj: Mapping[str, Any], shape_name: str) -> None:
    extra = set(obj) - _shape_members(shape_name)
    assert not extra, f"{shape_name} has no member(s) {extra}"


# ---- collecting the JSON the way a user would (one call per top-level key, merged) -------------------------------


def _clean(resp: Any) -> Any:
    # boto3 returns datetimes; the CLI prints ISO strings. Round-trip through JSON to get exactly that.
    return json.loads(json.dumps(resp, default=lambda o: o.isoformat()))


def collect(ec2s: list[Any], vpc_ids: list[str], elbv2: Any | None = None) -> dict[str, Any]:
    """Merge the describe/get/search answers of every region's EC2 client into one object."""
    doc: dict[str, Any] = {
        k: []
        for k in (
            "TransitGateways",
            "TransitGatewayVpcAttachments",
            "TransitGatewayPeeringAttachments",
            "TransitGatewayRouteTables",
            "Vpcs",
            "Subnets",
            "RouteTables",
            "Reservations",
        )
    }
    doc["TransitGatewayRoutes"] = {}
    doc["TransitGatewayRouteTableAssociations"] = {}
    doc["TransitGatewayRouteTablePropagations"] = {}
    vpc_filter = [{"Name": "vpc-id", "Values": vpc_ids}]
    for ec2 in ec2s:
        region_vpcs = [v["VpcId"] for v in ec2.describe_vpcs()["Vpcs"] if v["VpcId"] in vpc_ids]
        if not region_vpcs:
            region_vpcs = ["vpc-none"]
        f = [{"Name": "vpc-id", "Values": region_vpcs}]
        doc["Vpcs"] += (
            _clean(ec2.describe_vpcs(VpcIds=[v for v in region_vpcs if v != "vpc-none"])["Vpcs"])
            if region_vpcs != ["vpc-none"]
            else []
        )
        doc["Subnets"] += _clean(ec2.describe_subnets(Filters=f)["Subnets"])
        doc["RouteTables"] += _clean(ec2.describe_route_tables(Filters=f)["RouteTables"])
        doc["Reservations"] += _clean(ec2.describe_instances(Filters=f)["Reservations"])
        doc["TransitGateways"] += _clean(ec2.describe_transit_gateways()["TransitGateways"])
        doc["TransitGatewayVpcAttachments"] += _clean(
            ec2.describe_transit_gateway_vpc_attachments()["TransitGatewayVpcAttachments"]
        )
        doc["TransitGatewayPeeringAttachments"] += _clean(
            ec2.describe_transit_gateway_peering_attachments()["TransitGatewayPeeringAttachments"]
        )
        for rt in _clean(ec2.describe_transit_gateway_route_tables()["TransitGatewayRouteTables"]):
            rid = rt["TransitGatewayRouteTableId"]
            doc["TransitGatewayRouteTables"].append(rt)
            doc["TransitGatewayRoutes"][rid] = _clean(
                ec2.search_transit_gateway_routes(
                    TransitGatewayRouteTableId=rid,
                    Filters=[{"Name": "state", "Values": ["active", "blackhole"]}],
                )["Routes"]
            )
            doc["TransitGatewayRouteTableAssociations"][rid] = _clean(
                ec2.get_transit_gateway_route_table_associations(TransitGatewayRouteTableId=rid)["Associations"]
            )
            doc["TransitGatewayRouteTablePropagations"][rid] = _clean(
                ec2.get_transit_gateway_route_table_propagations(TransitGatewayRouteTableId=rid)[
                    "TransitGatewayRouteTablePropagations"
                ]
            )
    del vpc_filter
    return doc


def complete_like_aws(doc: dict[str, Any], static_targets: Mapping[tuple[str, str], str]) -> None:
    """Fill in what moto leaves out (each difference from AWS is explained inline).

    ``static_targets`` maps (route table, destination) of every static route we created to its attachment.
    """
    att_resource: dict[str, tuple[str, str]] = {}
    # moto also lists peering attachments in describe-transit-gateway-vpc-attachments (without VpcId); AWS lists
    # only VPC attachments there.
    doc["TransitGatewayVpcAttachments"] = [a for a in doc["TransitGatewayVpcAttachments"] if "VpcId" in a]
    for a in doc["TransitGatewayVpcAttachments"]:
        att_resource[a["TransitGatewayAttachmentId"]] = (a["VpcId"], "vpc")
    # moto lists VPC attachments in describe-transit-gateway-peering-attachments too (without
    # RequesterTgwInfo); AWS lists only peering attachments there.
    doc["TransitGatewayPeeringAttachments"] = [
        p for p in doc["TransitGatewayPeeringAttachments"] if "RequesterTgwInfo" in p
    ]
    for p in doc["TransitGatewayPeeringAttachments"]:
        att_resource[p["TransitGatewayAttachmentId"]] = (p["AccepterTgwInfo"]["TransitGatewayId"], "peering")
    for rid, routes in doc["TransitGatewayRoutes"].items():
        for r in routes:
            check_shape(r, "TransitGatewayRoute")
            if r["Type"] == "static" and r["State"] == "active" and not r.get("TransitGatewayAttachments"):
                # moto leaves a static route's TransitGatewayAttachments empty; AWS names the target attachment.
                aid = static_targets[(rid, r["DestinationCidrBlock"])]
                res, typ = att_resource[aid]
                r["TransitGatewayAttachments"] = [
                    {"ResourceId": res, "TransitGatewayAttachmentId": aid, "ResourceType": typ}
                ]
        # moto records propagations but installs no propagated routes; AWS shows each propagating VPC
        # attachment's CIDRs as Type "propagated" (unless a static route for the same CIDR hides it).
        shown = {r.get("DestinationCidrBlock") for r in routes}
        for p in doc["TransitGatewayRouteTablePropagations"][rid]:
            check_shape(p, "TransitGatewayRouteTablePropagation")
            if p["State"] != "enabled" or p["ResourceType"] != "vpc":
                continue
            vpc = next(v for v in doc["Vpcs"] if v["VpcId"] == p["ResourceId"])
            for assoc in vpc["CidrBlockAssociationSet"]:
                if assoc["CidrBlock"] in shown:
                    continue
                route = {
                    "DestinationCidrBlock": assoc["CidrBlock"],
                    "TransitGatewayAttachments": [
                        {
                            "ResourceId": p["ResourceId"],
                            "TransitGatewayAttachmentId": p["TransitGatewayAttachmentId"],
                            "ResourceType": "vpc",
                        }
                    ],
                    "Type": "propagated",
                    "State": "active",
                }
                check_shape(route, "TransitGatewayRoute")
                check_shape(route["TransitGatewayAttachments"][0], "TransitGatewayRouteAttachment")
                routes.append(route)


def _tag(key: str, value: str, rtype: str) -> list[dict[str, Any]]:
    return [{"ResourceType": rtype, "Tags": [{"Key": key, "Value": value}]}]


class SeedBuilder:
    """Builds fixtures/tgw/seed.yaml through the EC2 API; ``names`` maps the AWS ids to the YAML names."""

    def __init__(self, appliance_mode: bool = False) -> None:
        import boto3

        self.ec2 = boto3.client("ec2", region_name=REGION)
        self.names: dict[str, str] = {}
        self.static: dict[tuple[str, str], str] = {}
        self.vpc_ids: list[str] = []
        self.appliance_mode = appliance_mode

    def name(self, aws_id: str, yaml_name: str) -> str:
        self.names[aws_id] = yaml_name
        return aws_id

    def vpc(self, cidr: str, name: str) -> tuple[str, str]:
        v = self.ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
        self.vpc_ids.append(self.name(v, name))
        main = self.ec2.describe_route_tables(
            Filters=[{"Name": "vpc-id", "Values": [v]}, {"Name": "association.main", "Values": ["true"]}]
        )["RouteTables"][0]["RouteTableId"]
        return v, main

    def subnet(self, vpc: str, cidr: str, az: str, name: str, route_table: str | None = None) -> str:
        s = self.ec2.create_subnet(VpcId=vpc, CidrBlock=cidr, AvailabilityZone=az)["Subnet"]["SubnetId"]
        if route_table is not None:
            self.ec2.associate_route_table(RouteTableId=route_table, SubnetId=s)
        return self.name(s, name)

    def instance(self, subnet: str, ip: str, name: str, eni_name: str, role: str | None = None) -> tuple[str, str]:
        kw: dict[str, Any] = {}
        if role is not None:
            kw["TagSpecifications"] = _tag("awsnetemu:appliance", role, "instance")
        inst = self.ec2.run_instances(ImageId=AMI, MinCount=1, MaxCount=1, SubnetId=subnet, PrivateIpAddress=ip, **kw)[
            "Instances"
        ][0]
        eni = inst["NetworkInterfaces"][0]["NetworkInterfaceId"]
        return self.name(inst["InstanceId"], name), self.name(eni, eni_name)

    def build(self) -> dict[str, Any]:
        ec2 = self.ec2
        tgw = ec2.create_transit_gateway(
            Options={"DefaultRouteTableAssociation": "disable", "DefaultRouteTablePropagation": "disable"},
            TagSpecifications=_tag("awsnetemu:seed", "1", "transit-gateway"),
        )["TransitGateway"]["TransitGatewayId"]
        self.name(tgw, "tgw-1")
        # With default association and propagation disabled AWS creates no default route table; moto creates one
        # anyway, so delete it.
        for rt in ec2.describe_transit_gateway_route_tables()["TransitGatewayRouteTables"]:
            ec2.delete_transit_gateway_route_table(TransitGatewayRouteTableId=rt["TransitGatewayRouteTableId"])

        va, rtb_a = self.vpc("10.0.0.0/16", "vpc-a")
        self.name(rtb_a, "rtb-a")
        a1 = self.subnet(va, "10.0.1.0/24", "us-east-1a", "subnet-a1")
        a2 = self.subnet(va, "10.0.2.0/24", "us-east-1b", "subnet-a2")
        ec2.create_route(RouteTableId=rtb_a, DestinationCidrBlock="0.0.0.0/0", TransitGatewayId=tgw)
        self.instance(a1, "10.0.1.10", "i-a", "eni-a")

        vb, rtb_b = self.vpc("10.1.0.0/16", "vpc-b")
        self.name(rtb_b, "rtb-b")
        b1 = self.subnet(vb, "10.1.1.0/24", "us-east-1a", "subnet-b1")
        b2 = self.subnet(vb, "10.1.2.0/24", "us-east-1b", "subnet-b2")
        ec2.create_route(RouteTableId=rtb_b, DestinationCidrBlock="0.0.0.0/0", TransitGatewayId=tgw)
        self.instance(b2, "10.1.2.20", "i-b", "eni-b")

        vc, rtb_fw = self.vpc("10.2.0.0/16", "vpc-c")
        self.name(rtb_fw, "rtb-c-fw")
        rtb_t1 = self.name(ec2.create_route_table(VpcId=vc)["RouteTable"]["RouteTableId"], "rtb-c-tgw1")
        rtb_t2 = self.name(ec2.create_route_table(VpcId=vc)["RouteTable"]["RouteTableId"], "rtb-c-tgw2")
        t1 = self.subnet(vc, "10.2.0.0/28", "us-east-1a", "subnet-c-tgw1", rtb_t1)
        t2 = self.subnet(vc, "10.2.0.16/28", "us-east-1b", "subnet-c-tgw2", rtb_t2)
        fw1s = self.subnet(vc, "10.2.1.0/24", "us-east-1a", "subnet-c-fw1")  # main table: rtb-c-fw
        fw2s = self.subnet(vc, "10.2.2.0/24", "us-east-1b", "subnet-c-fw2")
        _i1, eni1 = self.instance(fw1s, "10.2.1.10", "i-fw1", "eni-fw1", "stateful-firewall")
        _i2, eni2 = self.instance(fw2s, "10.2.2.10", "i-fw2", "eni-fw2", "stateful-firewall")
        ec2.create_route(RouteTableId=rtb_t1, DestinationCidrBlock="0.0.0.0/0", NetworkInterfaceId=eni1)
        ec2.create_route(RouteTableId=rtb_t2, DestinationCidrBlock="0.0.0.0/0", NetworkInterfaceId=eni2)
        ec2.create_route(RouteTableId=rtb_fw, DestinationCidrBlock="0.0.0.0/0", TransitGatewayId=tgw)

        def attach(vpc: str, subnets: list[str], name: str, mode: str = "disable") -> str:
            a = ec2.create_transit_gateway_vpc_attachment(
                TransitGatewayId=tgw, VpcId=vpc, SubnetIds=subnets, Options={"ApplianceModeSupport": mode}
            )["TransitGatewayVpcAttachment"]["TransitGatewayAttachmentId"]
            return self.name(a, name)

        att_a = attach(va, [a1, a2], "tgw-attach-a")
        att_b = attach(vb, [b1, b2], "tgw-attach-b")
        att_c = attach(vc, [t1, t2], "tgw-attach-c", "enable" if self.appliance_mode else "disable")
        spoke = self.name(
            ec2.create_transit_gateway_route_table(TransitGatewayId=tgw)["TransitGatewayRouteTable"][
                "TransitGatewayRouteTableId"
            ],
            "tgw-rtb-spoke",
        )
        inspect = self.name(
            ec2.create_transit_gateway_route_table(TransitGatewayId=tgw)["TransitGatewayRouteTable"][
                "TransitGatewayRouteTableId"
            ],
            "tgw-rtb-inspect",
        )
        for att in (att_a, att_b):
            ec2.associate_transit_gateway_route_table(TransitGatewayRouteTableId=spoke, TransitGatewayAttachmentId=att)
        ec2.create_transit_gateway_route(
            DestinationCidrBlock="0.0.0.0/0", TransitGatewayRouteTableId=spoke, TransitGatewayAttachmentId=att_c
        )
        self.static[(spoke, "0.0.0.0/0")] = att_c
        ec2.associate_transit_gateway_route_table(TransitGatewayRouteTableId=inspect, TransitGatewayAttachmentId=att_c)
        for att in (att_a, att_b):
            ec2.enable_transit_gateway_route_table_propagation(
                TransitGatewayRouteTableId=inspect, TransitGatewayAttachmentId=att
            )
        doc = collect([ec2], self.vpc_ids)
        complete_like_aws(doc, self.static)
        # Accounts and AZ IDs: moto's account is 123456789012 and maps us-east-1a/b to its own AZ IDs; the YAML
        # uses the model's default account and use1-az1/az2.
        for s in doc["Subnets"]:
            self.names[s["AvailabilityZoneId"]] = {"us-east-1a": "use1-az1", "us-east-1b": "use1-az2"}[
                s["AvailabilityZone"]
            ]
        self.names[doc["Vpcs"][0]["OwnerId"]] = "111111111111"
        return doc


def rename(doc: Any, names: Mapping[str, str]) -> Any:
    """Replace every AWS id in ``doc`` by its YAML name (one pass, so swapped AZ IDs cannot collide)."""
    pattern = re.compile("|".join(re.escape(k) for k in sorted(names, key=len, reverse=True)))
    return json.loads(pattern.sub(lambda m: names[m.group(0)], json.dumps(doc)))


@pytest.fixture
def aws() -> Iterator[None]:
    from moto import mock_aws

    with mock_aws():
        yield


# ---- tests --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("appliance_mode", [False, True])
def test_seed_built_through_the_api_imports_as_the_yaml_seed(aws: None, appliance_mode: bool) -> None:
    b = SeedBuilder(appliance_mode)
    doc = b.build()
    topo = load_aws_json(rename(doc, b.names))
    want = load_topology(SEED_YAML)
    want.tgws["tgw-1"].attachments["tgw-attach-c"].appliance_mode = appliance_mode  # type: ignore[union-attr]
    # Exactly the same model, object for object (same ids after renaming, same order of routes and lists).
    assert topo == want


def test_raw_moto_ids_import(aws: None) -> None:
    b = SeedBuilder()
    doc = b.build()
    topo = load_aws_json(doc)
    by_name = {v: k for k, v in b.names.items()}
    tgw = topo.tgws[by_name["tgw-1"]]
    assert tgw.seed == 1 and tgw.region == REGION
    inst = topo.instances()
    assert inst[by_name["i-fw1"]].kind is ApplianceKind.STATEFUL_FIREWALL
    assert inst[by_name["i-a"]].kind is ApplianceKind.HOST
    assert inst[by_name["i-fw1"]].eni == by_name["eni-fw1"]
    vc = topo.vpcs[by_name["vpc-c"]]
    (r,) = vc.route_tables[by_name["rtb-c-tgw1"]].routes
    assert (str(r.dest), r.target, r.kind) == ("0.0.0.0/0", by_name["eni-fw1"], VpcRouteTargetKind.ENI)
    assert vc.subnets[by_name["subnet-c-fw1"]].route_table == by_name["rtb-c-fw"]  # via the main table
    assert topo.regions[REGION] == {s.az: s.az_id for v in topo.vpcs.values() for s in v.subnets.values()}
    spoke = tgw.route_tables[by_name["tgw-rtb-spoke"]]
    assert [(str(x.dest), x.attachment, x.origin) for x in spoke.routes] == [
        ("0.0.0.0/0", by_name["tgw-attach-c"], RouteOrigin.STATIC)
    ]
    # Propagated routes are derived from the propagations, not copied.
    inspect = tgw.route_tables[by_name["tgw-rtb-inspect"]]
    assert inspect.routes == [] and inspect.propagations == [by_name["tgw-attach-a"], by_name["tgw-attach-b"]]


def test_checked_in_fixture_is_current(aws: None) -> None:
    """fixtures/tgw/aws/seed-aws.json is what the builder produces (modulo the random ids moto draws)."""
    saved = json.loads(SEED_JSON.read_text())
    topo = load_aws_json(SEED_JSON)
    assert load_aws_json(saved) == topo
    b = SeedBuilder()
    fresh = load_aws_json(rename(b.build(), b.names))
    saved_names = json.loads((SEED_JSON.parent / "seed-aws.names.json").read_text())
    assert load_aws_json(rename(saved, saved_names)) == fresh


# ---- errors name the object ----------------------------------------------------------------------------------------


_SEED_TEXT: list[str] = []


def _seed_doc() -> dict[str, Any]:
    if not _SEED_TEXT:
        _SEED_TEXT.append(SEED_JSON.read_text())
    return json.loads(_SEED_TEXT[0])


def _live_tables(d: dict[str, Any]) -> list[str]:
    """TGW route tables not deleted (moto keeps the deleted default table listed, as AWS does for a while)."""
    return [t["TransitGatewayRouteTableId"] for t in d["TransitGatewayRouteTables"] if t["State"] != "deleted"]


def _static(d: dict[str, Any]) -> dict[str, Any]:
    """The seed's one static TGW route (0.0.0.0/0 in the spoke table)."""
    return next(r for rs in d["TransitGatewayRoutes"].values() for r in rs if r["Type"] == "static")


def _mutate(f: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    doc = copy.deepcopy(_seed_doc())
    f(doc)
    return doc


def test_error_unknown_subnet_in_vpc_attachment() -> None:
    def f(d: dict[str, Any]) -> None:
        d["TransitGatewayVpcAttachments"][2]["SubnetIds"][0] = "subnet-0123456789abcdef0"

    doc = _mutate(f)
    aid = doc["TransitGatewayVpcAttachments"][2]["TransitGatewayAttachmentId"]
    with pytest.raises(ConfigError) as ei:
        load_aws_json(doc)
    assert str(ei.value) == (
        f"TransitGatewayVpcAttachments[2] ({aid}): SubnetIds references unknown subnet subnet-0123456789abcdef0"
    )


@pytest.mark.parametrize(
    ("mutate", "expect"),
    [
        (
            lambda d: d["Reservations"][0]["Instances"][0].update(SubnetId="subnet-00"),
            r"Reservations\[0\]\.Instances\[0\] \(i-[0-9a-f]+\): SubnetId references unknown subnet subnet-00",
        ),
        (
            lambda d: d["Reservations"][2]["Instances"][0]["Tags"][0].update(Value="nat"),
            r"tag awsnetemu:appliance='nat' is not one of stateful-firewall, router, gwlb-target",
        ),
        (
            lambda d: d["RouteTables"][0]["Routes"].append(
                {"DestinationCidrBlock": "0.0.0.0/0", "NatGatewayId": "nat-1", "State": "active"}
            ),
            r"RouteTables\[0\] \(rtb-[0-9a-f]+\): Routes\[\d\]: target NatGatewayId nat-1 is not supported",
        ),
        (
            lambda d: d["RouteTables"][0]["Routes"].append(
                {"DestinationCidrBlock": "10.9.0.0/16", "NetworkInterfaceId": "eni-00", "State": "active"}
            ),
            r"NetworkInterfaceId references unknown ENI eni-00",
        ),
        (
            lambda d: d["TransitGatewayRouteTableAssociations"].pop(_live_tables(d)[0]),
            r"TransitGatewayRouteTables\[\d\] \(tgw-rtb-[0-9a-f]+\): "
            r"TransitGatewayRouteTableAssociations has no entry for tgw-rtb-",
        ),
        (
            lambda d: _static(d).update(TransitGatewayAttachments=[]),
            r"TransitGatewayRoutes\.tgw-rtb-[0-9a-f]+\[0\] \(0\.0\.0\.0/0\): "
            r"a static route needs exactly one entry in TransitGatewayAttachments",
        ),
        (
            lambda d: _static(d)["TransitGatewayAttachments"][0].update(TransitGatewayAttachmentId="tgw-attach-00"),
            r"references unknown attachment tgw-attach-00 of tgw-",
        ),
        (
            lambda d: d["TransitGatewayVpcAttachments"][0].update(TransitGatewayId="tgw-00"),
            r"TransitGatewayVpcAttachments\[0\] \(tgw-attach-[0-9a-f]+\): "
            r"TransitGatewayId references unknown transit gateway tgw-00",
        ),
        (
            lambda d: d["TransitGatewayVpcAttachments"][0]["Options"].update(ApplianceModeSupport="disabled"),
            r"Options\.ApplianceModeSupport 'disabled' is not one of enable, disable",
        ),
        (
            lambda d: d["Subnets"][0].update(VpcId="vpc-00"),
            r"Subnets\[0\] \(subnet-[0-9a-f]+\): VpcId references unknown VPC vpc-00",
        ),
        (lambda d: d.update(Bogus=[]), r"unknown top-level key\(s\) Bogus"),
        (lambda d: d.update(Vpcs={}), r"Vpcs: must be a list"),
        (
            lambda d: d["TransitGateways"][0]["Tags"].__setitem__(0, {"Key": "awsnetemu:seed", "Value": "x"}),
            r"tag awsnetemu:seed='x' is not an integer",
        ),
    ],
)
def test_errors_name_the_object(mutate: Callable[[dict[str, Any]], None], expect: str) -> None:
    with pytest.raises(ConfigError, match=expect):
        load_aws_json(_mutate(mutate))


def test_unsupported_targets_can_be_blackholed() -> None:
    doc = _mutate(
        lambda d: d["RouteTables"][0]["Routes"].append(
            {"DestinationCidrBlock": "192.168.0.0/16", "NatGatewayId": "nat-1", "State": "active"}
        )
    )
    topo = load_aws_json(doc, unsupported_targets="blackhole")
    rt_id = doc["RouteTables"][0]["RouteTableId"]
    routes = [r for v in topo.vpcs.values() for t in v.route_tables.values() if t.id == rt_id for r in t.routes]
    assert routes[-1].kind is VpcRouteTargetKind.BLACKHOLE


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid JSON"):
        p = tmp_path / "x.json"
        p.write_text("{")
        load_aws_json(p)
    with pytest.raises(ConfigError, match="No such file"):
        load_aws_json(tmp_path / "missing.json")


# ---- peering across regions -----------------------------------------------------------------------------------------


def test_peering_across_regions(aws: None) -> None:
    import boto3

    east = boto3.client("ec2", region_name=REGION)
    west = boto3.client("ec2", region_name=PEER_REGION)
    vpcs = []
    tgws = []
    atts = []
    for ec2, cidr, az in ((east, "10.0.0.0/16", "us-east-1a"), (west, "10.50.0.0/16", "us-west-2a")):
        t = ec2.create_transit_gateway(
            Options={"DefaultRouteTableAssociation": "disable", "DefaultRouteTablePropagation": "disable"}
        )["TransitGateway"]["TransitGatewayId"]
        for rt in ec2.describe_transit_gateway_route_tables()["TransitGatewayRouteTables"]:
            # moto creates a default table even with the defaults disabled (AWS does not).
            ec2.delete_transit_gateway_route_table(TransitGatewayRouteTableId=rt["TransitGatewayRouteTableId"])
        v = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
        s = ec2.create_subnet(VpcId=v, CidrBlock=cidr.replace("0.0/16", "1.0/24"), AvailabilityZone=az)["Subnet"]
        ec2.run_instances(
            ImageId=AMI, MinCount=1, MaxCount=1, SubnetId=s["SubnetId"], PrivateIpAddress=cidr.replace("0.0/16", "1.10")
        )
        main = ec2.describe_route_tables(Filters=[{"Name": "vpc-id", "Values": [v]}])["RouteTables"][0]
        ec2.create_route(RouteTableId=main["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", TransitGatewayId=t)
        a = ec2.create_transit_gateway_vpc_attachment(TransitGatewayId=t, VpcId=v, SubnetIds=[s["SubnetId"]])[
            "TransitGatewayVpcAttachment"
        ]["TransitGatewayAttachmentId"]
        vpcs.append(v)
        tgws.append(t)
        atts.append(a)
    peer = east.create_transit_gateway_peering_attachment(
        TransitGatewayId=tgws[0], PeerTransitGatewayId=tgws[1], PeerAccountId="123456789012", PeerRegion=PEER_REGION
    )["TransitGatewayPeeringAttachment"]["TransitGatewayAttachmentId"]
    west.accept_transit_gateway_peering_attachment(TransitGatewayAttachmentId=peer)
    static: dict[tuple[str, str], str] = {}
    for ec2, t, local, remote_cidr in (
        (east, tgws[0], atts[0], "10.50.0.0/16"),
        (west, tgws[1], atts[1], "10.0.0.0/16"),
    ):
        rt = ec2.create_transit_gateway_route_table(TransitGatewayId=t)["TransitGatewayRouteTable"][
            "TransitGatewayRouteTableId"
        ]
        for att in (local, peer):
            ec2.associate_transit_gateway_route_table(TransitGatewayRouteTableId=rt, TransitGatewayAttachmentId=att)
        ec2.enable_transit_gateway_route_table_propagation(
            TransitGatewayRouteTableId=rt, TransitGatewayAttachmentId=local
        )
        ec2.create_transit_gateway_route(
            DestinationCidrBlock=remote_cidr, TransitGatewayRouteTableId=rt, TransitGatewayAttachmentId=peer
        )
        static[(rt, remote_cidr)] = peer
    doc = collect([east, west], vpcs)
    # The same peering attachment is listed from both regions (as AWS does); the import keeps one.
    assert sum(p.get("TransitGatewayAttachmentId") == peer for p in doc["TransitGatewayPeeringAttachments"]) == 2
    complete_like_aws(doc, static)
    topo = load_aws_json(doc)
    e, w = topo.tgws[tgws[0]], topo.tgws[tgws[1]]
    assert (e.region, w.region) == (REGION, PEER_REGION)
    pe, pw = e.attachments[peer], w.attachments[accepter_side_id(peer)]
    assert isinstance(pe, PeeringAttachment) and isinstance(pw, PeeringAttachment)
    assert (pe.peer, pw.peer) == (pw.id, pe.id)
    (w_rt,) = w.route_tables.values()
    assert w_rt.associations == [atts[1], pw.id]
    assert [(str(r.dest), r.attachment) for r in w_rt.routes] == [("10.0.0.0/16", pw.id)]
    assert set(topo.regions) == {REGION, PEER_REGION}


# ---- regenerate the checked-in fixture ------------------------------------------------------------------------------


def write_fixture() -> None:
    from moto import mock_aws

    with mock_aws():
        b = SeedBuilder()
        doc = b.build()
    SEED_JSON.parent.mkdir(parents=True, exist_ok=True)
    SEED_JSON.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    (SEED_JSON.parent / "seed-aws.names.json").write_text(json.dumps(b.names, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    write_fixture()


# ---- behaviour: the imported seed forwards exactly like the YAML seed ------------------------------------------------


def _trace(topo: Any, appliance_mode: bool) -> dict[str, Any]:
    from tgw_dataplane.craft import parse_flow
    from tgw_dataplane.dataplane import Dataplane

    dp = Dataplane(topo, flow_logs=True)
    ids = {i.ip: i.id for i in topo.instances().values()}
    f = parse_flow("tcp 10.0.1.10:40000 > 10.1.2.20:443")
    fwd = dp.send(f.request(), ids["10.0.1.10"], 0.0, trace=True)
    rev = dp.send(f.reply(), ids["10.1.2.20"], 0.01, trace=True)
    assert dp.flow_logs is not None
    return {
        "forward": fwd.to_json(),
        "reverse": rev.to_json(),
        "drops": dp.drops,
        "flow_logs": [{k: v for k, v in r.items() if k not in ("start", "end")} for r in dp.flow_logs.records()],
    }


def _suffix_names(names: Mapping[str, str]) -> dict[str, str]:
    """Rename map that also covers ids derived from other ids (the model names a TGW ENI
    ``eni-<attachment suffix>-<az id>``): map each AWS id's hex suffix to the YAML suffix."""
    out = dict(names)
    for aws_id, yaml_id in names.items():
        if "-" in aws_id and aws_id.rsplit("-", 1)[0] == yaml_id.rsplit("-", 1)[0] and aws_id.startswith("tgw-attach"):
            out[aws_id.rsplit("-", 1)[1]] = yaml_id.rsplit("-", 1)[1]
    return out


@pytest.mark.parametrize("appliance_mode", [False, True])
def test_imported_seed_behaves_like_the_yaml_seed(aws: None, appliance_mode: bool) -> None:
    b = SeedBuilder(appliance_mode)
    doc = b.build()
    want = load_topology(SEED_YAML)
    want.tgws["tgw-1"].attachments["tgw-attach-c"].appliance_mode = appliance_mode  # type: ignore[union-attr]
    expected = _trace(want, appliance_mode)
    assert expected["forward"]["verdict"] == "delivered"
    assert expected["reverse"]["verdict"] == ("delivered" if appliance_mode else "dropped")
    # Renamed to the YAML ids: identical verdicts, hops, drop counters and flow-log records.
    assert _trace(load_aws_json(rename(doc, b.names)), appliance_mode) == expected
    # With moto's own ids: the same verdicts; with appliance mode off (AZ affinity, no hashing) also the same hops
    # once the ids are mapped back. With it on, the hash salts are the ENI ids, so which firewall a flow lands on
    # may differ, but both directions must still share it.
    raw = _trace(load_aws_json(doc), appliance_mode)
    for d in ("forward", "reverse"):
        assert (raw[d]["verdict"], raw[d]["reason"]) == (expected[d]["verdict"], expected[d]["reason"])
    if not appliance_mode:
        assert rename(raw, _suffix_names(b.names)) == expected
    else:
        fws = [[h["node"] for h in raw[d]["hops"] if h["kind"] == "stateful-firewall"] for d in ("forward", "reverse")]
        assert len(fws[0]) == 1 and fws[0] == fws[1]
    assert raw["drops"] == expected["drops"]


def test_seed_fixture_json_traces_like_the_yaml() -> None:
    names = json.loads((SEED_JSON.parent / "seed-aws.names.json").read_text())
    expected = _trace(load_topology(SEED_YAML), False)
    got = _trace(load_aws_json(SEED_JSON), False)
    assert rename(got, _suffix_names(names)) == expected


# ---- a GWLB topology (fixtures/tgw/gwlb-story12.yaml) built through EC2 + ELBv2 ------------------------------------

STORY12_YAML = ROOT / "fixtures" / "tgw" / "gwlb-story12.yaml"


class Story12Builder(SeedBuilder):
    """Builds gwlb-story12.yaml: spokes A/B, a security VPC with a GWLB (targets per AZ) and endpoints per AZ."""

    def build(self) -> dict[str, Any]:
        import boto3

        ec2 = self.ec2
        elb = boto3.client("elbv2", region_name=REGION)
        tgw = ec2.create_transit_gateway(
            Options={"DefaultRouteTableAssociation": "disable", "DefaultRouteTablePropagation": "disable"},
            TagSpecifications=_tag("awsnetemu:seed", "1", "transit-gateway"),
        )["TransitGateway"]["TransitGatewayId"]
        self.name(tgw, "tgw-1")
        for rt in ec2.describe_transit_gateway_route_tables()["TransitGatewayRouteTables"]:
            ec2.delete_transit_gateway_route_table(TransitGatewayRouteTableId=rt["TransitGatewayRouteTableId"])
        spokes = []
        for letter, cidr, host_az, host_ip in (("a", "10.0", "1", "10.0.1.10"), ("b", "10.1", "2", "10.1.2.20")):
            v, rt = self.vpc(f"{cidr}.0.0/16", f"vpc-{letter}")
            self.name(rt, f"rtb-{letter}")
            s1 = self.subnet(v, f"{cidr}.1.0/24", "us-east-1a", f"subnet-{letter}1")
            s2 = self.subnet(v, f"{cidr}.2.0/24", "us-east-1b", f"subnet-{letter}2")
            ec2.create_route(RouteTableId=rt, DestinationCidrBlock="0.0.0.0/0", TransitGatewayId=tgw)
            self.instance(s1 if host_az == "1" else s2, host_ip, f"i-{letter}", f"eni-{letter}")
            spokes.append((v, [s1, s2]))
        vs, rt_app = self.vpc("10.3.0.0/16", "vpc-sec")
        self.name(rt_app, "rtb-sec-app")
        rt_ta = self.name(ec2.create_route_table(VpcId=vs)["RouteTable"]["RouteTableId"], "rtb-sec-tgw-a")
        rt_tb = self.name(ec2.create_route_table(VpcId=vs)["RouteTable"]["RouteTableId"], "rtb-sec-tgw-b")
        rt_ge = self.name(ec2.create_route_table(VpcId=vs)["RouteTable"]["RouteTableId"], "rtb-sec-gwlbe")
        ta = self.subnet(vs, "10.3.0.0/28", "us-east-1a", "subnet-sec-tgw-a", rt_ta)
        tb = self.subnet(vs, "10.3.0.16/28", "us-east-1b", "subnet-sec-tgw-b", rt_tb)
        ga = self.subnet(vs, "10.3.1.0/24", "us-east-1a", "subnet-sec-gwlbe-a", rt_ge)
        gb = self.subnet(vs, "10.3.2.0/24", "us-east-1b", "subnet-sec-gwlbe-b", rt_ge)
        aa = self.subnet(vs, "10.3.10.0/24", "us-east-1a", "subnet-sec-app-a")
        ab = self.subnet(vs, "10.3.11.0/24", "us-east-1b", "subnet-sec-app-b")
        targets = []
        for name, sub, ip in (
            ("i-fw-a1", aa, "10.3.10.11"),
            ("i-fw-a2", aa, "10.3.10.12"),
            ("i-fw-b1", ab, "10.3.11.11"),
            ("i-fw-b2", ab, "10.3.11.12"),
        ):
            iid, _eni = self.instance(sub, ip, name, "eni-" + name.removeprefix("i-"), "gwlb-target")
            targets.append(iid)
        lb = elb.create_load_balancer(Name="gwlb-1", Type="gateway", Subnets=[aa, ab])["LoadBalancers"][0]
        tg = elb.create_target_group(Name="fw", Protocol="GENEVE", Port=6081, VpcId=vs, TargetType="instance")[
            "TargetGroups"
        ][0]
        elb.modify_target_group_attributes(
            TargetGroupArn=tg["TargetGroupArn"],
            Attributes=[
                {"Key": "target_failover.on_unhealthy", "Value": "no_rebalance"},
                {"Key": "target_failover.on_deregistration", "Value": "no_rebalance"},
            ],
        )
        elb.register_targets(TargetGroupArn=tg["TargetGroupArn"], Targets=[{"Id": t} for t in targets])
        listener = elb.create_listener(
            LoadBalancerArn=lb["LoadBalancerArn"],
            DefaultActions=[{"Type": "forward", "TargetGroupArn": tg["TargetGroupArn"]}],
        )["Listeners"][0]
        svc = ec2.create_vpc_endpoint_service_configuration(
            GatewayLoadBalancerArns=[lb["LoadBalancerArn"]], AcceptanceRequired=False
        )["ServiceConfiguration"]
        endpoints = {}
        for letter, sub, yaml_id in (("a", ga, "vpce-0a1a1a1a1a1a1a1a1"), ("b", gb, "vpce-0b2b2b2b2b2b2b2b2")):
            e = ec2.create_vpc_endpoint(
                VpcEndpointType="GatewayLoadBalancer", VpcId=vs, ServiceName=svc["ServiceName"], SubnetIds=[sub]
            )["VpcEndpoint"]["VpcEndpointId"]
            endpoints[letter] = self.name(e, yaml_id)
        ec2.create_route(RouteTableId=rt_ta, DestinationCidrBlock="0.0.0.0/0", VpcEndpointId=endpoints["a"])
        ec2.create_route(RouteTableId=rt_tb, DestinationCidrBlock="0.0.0.0/0", VpcEndpointId=endpoints["b"])
        ec2.create_route(RouteTableId=rt_ge, DestinationCidrBlock="0.0.0.0/0", TransitGatewayId=tgw)

        def attach(vpc: str, subnets: list[str], name: str, mode: str) -> str:
            a = ec2.create_transit_gateway_vpc_attachment(
                TransitGatewayId=tgw, VpcId=vpc, SubnetIds=subnets, Options={"ApplianceModeSupport": mode}
            )["TransitGatewayVpcAttachment"]["TransitGatewayAttachmentId"]
            return self.name(a, name)

        att_a = attach(spokes[0][0], spokes[0][1], "tgw-attach-a", "disable")
        att_b = attach(spokes[1][0], spokes[1][1], "tgw-attach-b", "disable")
        att_s = attach(vs, [ta, tb], "tgw-attach-sec", "enable")
        rts = {}
        for n in ("tgw-rtb-spoke", "tgw-rtb-sec"):
            rts[n] = self.name(
                ec2.create_transit_gateway_route_table(TransitGatewayId=tgw)["TransitGatewayRouteTable"][
                    "TransitGatewayRouteTableId"
                ],
                n,
            )
        for att in (att_a, att_b):
            ec2.associate_transit_gateway_route_table(
                TransitGatewayRouteTableId=rts["tgw-rtb-spoke"], TransitGatewayAttachmentId=att
            )
        ec2.create_transit_gateway_route(
            DestinationCidrBlock="0.0.0.0/0",
            TransitGatewayRouteTableId=rts["tgw-rtb-spoke"],
            TransitGatewayAttachmentId=att_s,
        )
        self.static[(rts["tgw-rtb-spoke"], "0.0.0.0/0")] = att_s
        ec2.associate_transit_gateway_route_table(
            TransitGatewayRouteTableId=rts["tgw-rtb-sec"], TransitGatewayAttachmentId=att_s
        )
        for att in (att_a, att_b):
            ec2.enable_transit_gateway_route_table_propagation(
                TransitGatewayRouteTableId=rts["tgw-rtb-sec"], TransitGatewayAttachmentId=att
            )
        doc = collect([ec2], self.vpc_ids)
        complete_like_aws(doc, self.static)
        doc["LoadBalancers"] = _clean(elb.describe_load_balancers()["LoadBalancers"])
        doc["TargetGroups"] = _clean(elb.describe_target_groups()["TargetGroups"])
        doc["Listeners"] = _clean(elb.describe_listeners(LoadBalancerArn=lb["LoadBalancerArn"])["Listeners"])
        doc["TargetHealthDescriptions"] = {
            tg["TargetGroupArn"]: _clean(
                elb.describe_target_health(TargetGroupArn=tg["TargetGroupArn"])["TargetHealthDescriptions"]
            )
        }
        doc["TargetGroupAttributes"] = {
            tg["TargetGroupArn"]: elb.describe_target_group_attributes(TargetGroupArn=tg["TargetGroupArn"])[
                "Attributes"
            ]
        }
        doc["LoadBalancerAttributes"] = {
            lb["LoadBalancerArn"]: elb.describe_load_balancer_attributes(LoadBalancerArn=lb["LoadBalancerArn"])[
                "Attributes"
            ]
        }
        doc["ListenerAttributes"] = {
            listener["ListenerArn"]: elb.describe_listener_attributes(ListenerArn=listener["ListenerArn"])["Attributes"]
        }
        doc["VpcEndpoints"] = _clean(ec2.describe_vpc_endpoints()["VpcEndpoints"])
        doc["ServiceConfigurations"] = _clean(
            ec2.describe_vpc_endpoint_service_configurations()["ServiceConfigurations"]
        )
        for s in doc["Subnets"]:
            self.names[s["AvailabilityZoneId"]] = {"us-east-1a": "use1-az1", "us-east-1b": "use1-az2"}[
                s["AvailabilityZone"]
            ]
        self.names[doc["Vpcs"][0]["OwnerId"]] = "111111111111"
        return doc


def test_gwlb_topology_built_through_the_api_imports_as_the_yaml(aws: None) -> None:
    from tgw_dataplane.gwlb import GwlbAttributes

    b = Story12Builder()
    doc = b.build()
    topo = load_aws_json(rename(doc, b.names))
    want = load_topology(STORY12_YAML)
    g, w = topo.gwlbs["gwlb-1"], want.gwlbs["gwlb-1"]
    # The options come from the AWS attribute lists (plus defaults AWS reports, e.g. the deregistration delay and
    # the listener's TCP idle timeout); they must mean the same attributes as the YAML's.
    assert g.options["target_failover.on_unhealthy"] == "no_rebalance"
    assert GwlbAttributes.from_options(g.options, cross_zone=g.cross_zone) == GwlbAttributes.from_options(
        w.options, cross_zone=w.cross_zone
    )
    g.options = dict(w.options)
    assert topo == want
    # And it forwards the same: one flow through the GWLB, both directions via one target.
    assert _trace_gwlb(topo) == _trace_gwlb(want)


def _trace_gwlb(topo: Any) -> list[Any]:
    from tgw_dataplane.craft import parse_flow
    from tgw_dataplane.dataplane import Dataplane

    dp = Dataplane(topo)
    f = parse_flow("tcp 10.0.1.10:40000 > 10.1.2.20:443")
    out = [dp.send(f.request(), "i-a", 0.0, trace=True).to_json(), dp.send(f.reply(), "i-b", 0.1, trace=True).to_json()]
    assert [o["verdict"] for o in out] == ["delivered", "delivered"]
    return out


def test_cli_traces_the_aws_json_fixture(capsys: pytest.CaptureFixture[str]) -> None:
    from emulator.cli import main

    rc = main(["tgw", "trace", str(SEED_JSON), "--flow", "tcp 10.0.1.10:40000 > 10.1.2.20:443", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0
    assert out["forward"]["verdict"] == "delivered"
    assert (out["reverse"]["verdict"], out["reverse"]["reason"]) == ("dropped", "appliance_no_state")


# ---- robustness: any damage to the JSON gives a ConfigError (or a valid topology), never another exception --------


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, (*prefix, i))
    return out


_SEED_PATHS: list[tuple[Any, ...]] = []


def _seed_paths() -> list[tuple[Any, ...]]:
    if not _SEED_PATHS:
        _SEED_PATHS.extend(p for p in _paths(_seed_doc()) if p)
    return _SEED_PATHS


_JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 5),
    st.text(max_size=8),
    st.sampled_from(["10.0.0.0/33", "subnet-x", "vpc-x", "tgw-x", "enable", "blackhole", "propagated", "static"]),
    # Containers are built fresh for every draw: st.just() would hand out one shared object, which the damage
    # loop below then mutates (a later path can lead into it), so the data drawn by one example would depend on
    # the examples before it. Hypothesis reports such history-dependent tests as flaky.
    st.builds(list),
    st.builds(dict),
    st.builds(lambda: [1, "x", None]),
)


@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_damaged_json_raises_only_config_error(data: st.DataObject) -> None:
    doc = _seed_doc()
    paths = _seed_paths()
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(paths))
        parent = doc
        try:
            for k in path[:-1]:
                parent = parent[k]
            if data.draw(st.booleans()) and isinstance(parent, dict):
                del parent[path[-1]]
            else:
                parent[path[-1]] = data.draw(_JUNK)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed or replaced this path
    try:
        topo = load_aws_json(doc)
    except ConfigError as e:
        assert str(e)  # a message (naming the object) and nothing but ConfigError
    else:
        topo.validate()  # what loads is a consistent model
        Dataplane(topo)  # ... and compiles


@pytest.mark.parametrize("value", ["-1", str(1 << 128)])
def test_seed_tag_out_of_range_is_a_config_error(value: str) -> None:
    doc = _mutate(lambda d: d["TransitGateways"][0]["Tags"].__setitem__(0, {"Key": "awsnetemu:seed", "Value": value}))
    with pytest.raises(ConfigError, match=r"TransitGateways\[0\] \(tgw-.*tag awsnetemu:seed=.* out of range"):
        load_aws_json(doc)


@pytest.mark.parametrize("value", [-1, 1 << 128, "x", True, [1]])
def test_yaml_seed_must_be_an_integer_in_range(value: Any) -> None:
    import yaml

    from tgw_dataplane.model import topology_from_dict

    d = yaml.safe_load(SEED_YAML.read_text())
    next(iter(d["transit_gateways"].values()))["seed"] = value
    with pytest.raises(ConfigError, match=r"transit_gateways\.tgw-1\.seed: "):
        topology_from_dict(d)
