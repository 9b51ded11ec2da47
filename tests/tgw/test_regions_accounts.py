"""AWS's multi-Region and multi-account rules (issue 15, TOPOLOGY.md "Regions and accounts"), in YAML and in AWS
API JSON: a VPC attaches only to a TGW of its own Region; another account's VPC only to a TGW shared with that
account through RAM; a RAM share holds resources of its own Region (owned by its owner); Regions meet only
through peering attachments with static routes. Each broken rule is a ConfigError naming the attachment (or
share, or route) and the construct that fits instead."""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from emulator.errors import ConfigError
from tests.tgw.conftest import FIXTURES
from tgw_dataplane.aws_import import load_aws_json
from tgw_dataplane.craft import parse_flow
from tgw_dataplane.dataplane import Dataplane
from tgw_dataplane.model import topology_from_dict

MULTI = yaml.safe_load((FIXTURES / "story_multi_account.yaml").read_text())
SEED_JSON = json.loads((FIXTURES / "aws" / "seed-aws.json").read_text())
OTHER = "222222222222"


def _yaml(edit: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    d = copy.deepcopy(MULTI)
    edit(d)
    return d


def test_multi_account_multi_region_topology_forwards_across_the_peering() -> None:
    dp = Dataplane(topology_from_dict(MULTI), flow_logs=True)
    f = parse_flow("tcp 10.1.1.10:40000 > 10.2.1.10:443")
    fwd = dp.send(f.request(), "i-app", 0.0, trace=True)
    rev = dp.send(f.reply(), "i-eu", 0.1, trace=True)
    assert (fwd.verdict, fwd.node, rev.verdict, rev.node) == ("delivered", "i-eu", "delivered", "i-app")
    assert fwd.hops is not None and [h["node"] for h in fwd.hops if h["kind"] == "tgw"] == ["tgw-hub", "tgw-eu"]
    assert dp.flow_logs is not None
    recs = dp.flow_logs.records()
    # The VPC owners' accounts appear in the flow logs of the TGW owner's account.
    ingress = [r for r in recs if r["tgw-attachment-id"] == "tgw-attach-app" and r["flow-direction"] == "ingress"]
    assert ingress and {(r["account-id"], r["tgw-src-vpc-account-id"], r["region"]) for r in ingress} == {
        ("111111111111", OTHER, "us-east-1")
    }
    assert {r["region"] for r in recs if r["tgw-id"] == "tgw-eu"} == {"eu-west-1"}


CASES_YAML: list[tuple[str, Callable[[dict[str, Any]], None], list[str]]] = [
    (
        "vpc in another region",
        lambda d: d["transit_gateways"]["tgw-eu"]["attachments"].update(
            {"tgw-attach-x": {"vpc": "vpc-shared", "subnets": ["subnet-s1"]}}
        ),
        [
            "attachment tgw-attach-x: VPC vpc-shared is in us-east-1 but the TGW tgw-eu is in eu-west-1",
            "attach it to a TGW in us-east-1 and peer the two TGWs",
        ],
    ),
    (
        "another account without RAM",
        lambda d: d["ram_shares"].pop("share-hub"),
        [
            "attachment tgw-attach-app: VPC vpc-app belongs to account 222222222222 but the TGW tgw-hub to "
            "111111111111, and no RAM share in us-east-1 shares tgw-hub with 222222222222",
            "ram_shares:",
        ],
    ),
    (
        "share not naming the account",
        lambda d: d["ram_shares"]["share-hub"].update(principals=["444444444444"]),
        ["attachment tgw-attach-app", "no RAM share in us-east-1 shares tgw-hub with 222222222222"],
    ),
    (
        "share crossing a region",
        lambda d: d["ram_shares"]["share-hub"].update(resources=["tgw-hub", "tgw-eu"]),
        [
            "ram share share-hub: tgw-eu is in eu-west-1 but the share is in us-east-1",
            "share tgw-eu with a resource share in eu-west-1",
        ],
    ),
    (
        "share in the wrong region",
        lambda d: d["ram_shares"]["share-hub"].update(region="eu-west-1"),
        ["ram share share-hub: tgw-hub is in us-east-1 but the share is in eu-west-1"],
    ),
    (
        "share by a non-owner",
        lambda d: d["ram_shares"]["share-hub"].update(owner=OTHER),
        ["ram share share-hub: tgw-hub belongs to account 111111111111, not to the share's owner 222222222222"],
    ),
    (
        "share of something that is not a TGW",
        lambda d: d["ram_shares"]["share-hub"].update(resources=["vpc-app"]),
        ["ram share share-hub: resource vpc-app is not a transit gateway"],
    ),
    (
        "vpc route to a TGW of another region",
        lambda d: d["vpcs"]["vpc-app"]["route_tables"]["rtb-app"].update(
            routes=[{"dest": "10.2.0.0/16", "target": "tgw-eu"}]
        ),
        [
            "route table rtb-app (vpc vpc-app): route 10.2.0.0/16 -> tgw-eu: the TGW is in eu-west-1",
            "route to a TGW in us-east-1 and peer it with tgw-eu",
        ],
    ),
    (
        "peering propagating",
        lambda d: d["transit_gateways"]["tgw-hub"]["route_tables"]["tgw-rtb-hub"]["propagations"].append(
            "tgw-attach-hub-peer"
        ),
        ["tgw-attach-hub-peer cannot propagate (static only)"],
    ),
    (
        "principal that is neither",
        lambda d: d["ram_shares"]["share-hub"].update(principals=["everyone"]),
        ["ram_shares.share-hub.principals[0]: everyone is not an AWS account id (12 digits) or an organization"],
    ),
    (
        "account id that is not one",
        lambda d: d["vpcs"]["vpc-app"].update(account="2222"),
        ["vpcs.vpc-app.account: 2222 is not an AWS account id"],
    ),
]


@pytest.mark.parametrize(("what", "edit", "messages"), CASES_YAML, ids=[c[0] for c in CASES_YAML])
def test_yaml_rules(what: str, edit: Callable[[dict[str, Any]], None], messages: list[str]) -> None:
    with pytest.raises(ConfigError) as ei:
        topology_from_dict(_yaml(edit))
    for m in messages:
        assert m in str(ei.value)
    assert "\n" not in str(ei.value)


def test_yaml_organization_principal_shares_with_every_account() -> None:
    d = _yaml(
        lambda d: d["ram_shares"]["share-hub"].update(principals=["arn:aws:organizations::111111111111:ou/o-1/ou-2"])
    )
    topology_from_dict(d)


def test_yaml_same_account_needs_no_share() -> None:
    d = _yaml(
        lambda d: (
            d.pop("ram_shares"),
            d["vpcs"]["vpc-app"].update(account="111111111111"),
            d["vpcs"]["vpc-eu"].update(account="111111111111"),
        )
    )
    topology_from_dict(d)


def test_gwlb_endpoint_in_another_region_is_refused() -> None:
    d = yaml.safe_load((FIXTURES / "gwlb-story12.yaml").read_text())
    d["regions"]["eu-west-1"] = {"azs": {"eu-west-1a": "euw1-az1"}}
    d["vpcs"]["vpc-far"] = {
        "region": "eu-west-1",
        "cidrs": ["10.99.0.0/16"],
        "route_tables": {"rtb-far": {"routes": []}},
        "subnets": {"subnet-far": {"cidr": "10.99.1.0/24", "az": "eu-west-1a", "route_table": "rtb-far"}},
        "gwlb_endpoints": {"vpce-0f0f0f0f0f0f0f0f0": {"subnet": "subnet-far", "service": next(iter(d["gwlbs"]))}},
    }
    with pytest.raises(ConfigError, match=r"gwlb endpoint vpce-0f0f0f0f0f0f0f0f0: it is in eu-west-1 but its GWLB"):
        topology_from_dict(d)


# -- AWS API JSON ------------------------------------------------------------------------------------------------


def _vpc_of_attachment(doc: dict[str, Any], i: int) -> str:
    return str(doc["TransitGatewayVpcAttachments"][i]["VpcId"])


def _tgw(doc: dict[str, Any]) -> dict[str, Any]:
    t: dict[str, Any] = doc["TransitGateways"][0]
    return t


def _share(
    doc: dict[str, Any], *, region: str = "us-east-1", principal: str = OTHER, tgw_arn: str | None = None
) -> None:
    arn = f"arn:aws:ram:{region}:123456789012:resource-share/11111111-2222-3333-4444-555555555555"
    doc["resourceShares"] = [
        {"resourceShareArn": arn, "name": "tgw-share", "owningAccountId": "123456789012", "status": "ACTIVE"}
    ]
    doc["resources"] = [
        {
            "arn": tgw_arn or _tgw(doc)["TransitGatewayArn"],
            "type": "ec2:TransitGateway",
            "resourceShareArn": arn,
            "status": "AVAILABLE",
        },
        {"arn": "arn:aws:ec2:us-east-1:123456789012:subnet/subnet-1", "type": "ec2:Subnet", "resourceShareArn": arn},
    ]
    doc["principals"] = [{"id": principal, "resourceShareArn": arn, "external": False}]


def _other_owner(doc: dict[str, Any]) -> str:
    """Give the VPC of the first VPC attachment to another account; returns the attachment id."""
    vid = _vpc_of_attachment(doc, 0)
    next(v for v in doc["Vpcs"] if v["VpcId"] == vid)["OwnerId"] = OTHER
    return str(doc["TransitGatewayVpcAttachments"][0]["TransitGatewayAttachmentId"])


def test_json_cross_account_attachment_needs_a_ram_share() -> None:
    doc = copy.deepcopy(SEED_JSON)
    att = _other_owner(doc)
    with pytest.raises(ConfigError) as ei:
        load_aws_json(doc)
    assert f"attachment {att}: VPC" in str(ei.value) and f"belongs to account {OTHER}" in str(ei.value)
    assert "no RAM share in us-east-1" in str(ei.value)
    _share(doc)
    topo = load_aws_json(doc)
    (share,) = topo.ram_shares.values()
    assert (share.region, share.owner, share.resources, share.principals) == (
        "us-east-1",
        "123456789012",
        [_tgw(doc)["TransitGatewayId"]],
        [OTHER],
    )


def test_json_share_with_another_principal_does_not_count() -> None:
    doc = copy.deepcopy(SEED_JSON)
    _other_owner(doc)
    _share(doc, principal="444444444444")
    with pytest.raises(ConfigError, match="no RAM share in us-east-1 shares"):
        load_aws_json(doc)


def test_json_share_in_another_region_is_refused() -> None:
    doc = copy.deepcopy(SEED_JSON)
    _other_owner(doc)
    _share(doc, region="eu-west-1")
    with pytest.raises(
        ConfigError, match=r"ram share arn:aws:ram:eu-west-1:.*is in us-east-1 but the share is in eu-west-1"
    ):
        load_aws_json(doc)


def test_json_share_naming_an_unknown_tgw() -> None:
    doc = copy.deepcopy(SEED_JSON)
    _share(doc, tgw_arn="arn:aws:ec2:us-east-1:123456789012:transit-gateway/tgw-0000000000000000f")
    with pytest.raises(ConfigError, match=r"resources\[0\].*unknown transit gateway tgw-0000000000000000f"):
        load_aws_json(doc)


def test_json_vpc_in_another_region_than_its_tgw() -> None:
    """Move the subnets of one attached VPC to eu-west-1 (their ARNs and AZs): its attachment is refused."""
    doc = copy.deepcopy(SEED_JSON)
    vid = _vpc_of_attachment(doc, 1)
    att = doc["TransitGatewayVpcAttachments"][1]["TransitGatewayAttachmentId"]
    for s in doc["Subnets"]:
        if s["VpcId"] == vid:
            s["SubnetArn"] = s["SubnetArn"].replace("us-east-1", "eu-west-1")
            s["AvailabilityZone"] = s["AvailabilityZone"].replace("us-east-1", "eu-west-1")
            s["AvailabilityZoneId"] = s["AvailabilityZoneId"].replace("use1", "euw1")
    with pytest.raises(ConfigError) as ei:
        load_aws_json(doc)
    msg = str(ei.value)
    assert f"attachment {att}: VPC {vid} is in eu-west-1 but the TGW" in msg and "is in us-east-1" in msg
    assert "attach it to a TGW in eu-west-1 and peer the two TGWs" in msg


def test_every_fixture_still_loads() -> None:
    """The new fields default so that every existing topology stays valid."""
    from tgw_dataplane.loader import load_any

    files = sorted(FIXTURES.glob("*.yaml")) + sorted((FIXTURES / "aws").glob("seed-aws.json"))
    assert len(files) >= 14
    for p in files:
        Dataplane(load_any(p))
