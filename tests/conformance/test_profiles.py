"""Profiles: AWS's defaults, a YAML file of tunnel options, and the JSON ``aws ec2 describe-vpn-connections``
prints. The describe JSON is produced by boto3 against moto, then completed where moto differs from AWS (each
difference is named next to the change; the shapes are checked against botocore's EC2 service model)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from cgw_peer.config import DpdTimeoutAction, IkeVersion, StartupAction
from emulator.conformance.profile import default_profile, load_profile, profile_from_describe
from emulator.conformance.session import make_timers
from emulator.errors import ConfigError

REGION = "us-east-1"

TUNNEL_1 = {
    "TunnelInsideCidr": "169.254.10.0/30",
    "PreSharedKey": "tunnel.one.key_123",
    "DPDTimeoutSeconds": 30,
    "DPDTimeoutAction": "restart",
    "StartupAction": "start",
    "IKEVersions": [{"Value": "ikev2"}],
    "Phase1EncryptionAlgorithms": [{"Value": "AES256"}],
    "Phase1IntegrityAlgorithms": [{"Value": "SHA2-256"}],
    "Phase1DHGroupNumbers": [{"Value": 14}, {"Value": 20}],
    "Phase2EncryptionAlgorithms": [{"Value": "AES256-GCM-16"}],
    "Phase2DHGroupNumbers": [{"Value": 14}],
    "Phase1LifetimeSeconds": 14400,
    "Phase2LifetimeSeconds": 1800,
    "RekeyMarginTimeSeconds": 300,
    "RekeyFuzzPercentage": 50,
}
TUNNEL_2 = {"TunnelInsideCidr": "169.254.11.0/30", "PreSharedKey": "tunnel.two.key_456", "DPDTimeoutSeconds": 45}

# VpnTunnelOptionsSpecification (what create-vpn-connection takes) -> TunnelOption (what describe returns):
# the describe shape spells some names differently.
_DESCRIBE_NAMES = {"DPDTimeoutSeconds": "DpdTimeoutSeconds", "DPDTimeoutAction": "DpdTimeoutAction",
                   "IKEVersions": "IkeVersions"}  # fmt: skip


def _shape(name: str) -> set[str]:
    import botocore.session

    model = botocore.session.get_session().get_service_model("ec2")
    return set(model.shape_for(name).members)


def described_connection() -> dict[str, Any]:
    """describe-vpn-connections for a connection created with TUNNEL_1 / TUNNEL_2, as AWS answers it."""
    import boto3
    from moto import mock_aws

    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        cgw = ec2.create_customer_gateway(Type="ipsec.1", PublicIp="198.51.100.7", BgpAsn=65000)["CustomerGateway"]
        vgw = ec2.create_vpn_gateway(Type="ipsec.1")["VpnGateway"]
        options = {
            "StaticRoutesOnly": True,
            "LocalIpv4NetworkCidr": "10.2.0.0/16",
            "RemoteIpv4NetworkCidr": "10.1.0.0/16",
            "TunnelOptions": [TUNNEL_1, TUNNEL_2],
        }
        ec2.create_vpn_connection(
            Type="ipsec.1",
            CustomerGatewayId=cgw["CustomerGatewayId"],
            VpnGatewayId=vgw["VpnGatewayId"],
            Options=options,
        )
        doc = json.loads(json.dumps(ec2.describe_vpn_connections(), default=str))
    doc.pop("ResponseMetadata", None)
    conn = doc["VpnConnections"][0]
    # moto: describe-vpn-connections returns no Options at all (the create call's Options are dropped); AWS
    # returns the connection options with one TunnelOption per tunnel, in the TunnelOption spelling.
    assert "Options" not in conn, "moto now returns Options: drop this completion"
    tunnels = []
    for i, spec in enumerate((TUNNEL_1, TUNNEL_2)):
        t: dict[str, Any] = {"OutsideIpAddress": f"52.0.0.{10 + i}"}
        for k, v in spec.items():
            t[_DESCRIBE_NAMES.get(k, k)] = v
        # AWS also reports the effective values of options left at their defaults, and the log options.
        t.setdefault("LogOptions", {"CloudWatchLogOptions": {"LogEnabled": False}})
        t.setdefault("EnableTunnelLifecycleControl", False)
        assert not set(t) - _shape("TunnelOption"), set(t) - _shape("TunnelOption")
        tunnels.append(t)
    conn["Options"] = {
        "EnableAcceleration": False,
        "StaticRoutesOnly": True,
        "LocalIpv4NetworkCidr": options["LocalIpv4NetworkCidr"],
        "RemoteIpv4NetworkCidr": options["RemoteIpv4NetworkCidr"],
        "OutsideIpAddressType": "PublicIpv4",
        "TunnelInsideIpVersion": "ipv4",
        "TunnelOptions": tunnels,
    }
    assert not set(conn["Options"]) - _shape("VpnConnectionOptions")
    # moto: no VgwTelemetry; AWS lists one per tunnel (status of each outside address).
    assert "VgwTelemetry" not in conn, "moto now returns VgwTelemetry: drop this completion"
    conn["VgwTelemetry"] = [
        {"OutsideIpAddress": t["OutsideIpAddress"], "Status": "DOWN", "StatusMessage": "", "AcceptedRouteCount": 0}
        for t in tunnels
    ]
    assert not set(conn) - _shape("VpnConnection")
    return dict(doc)


@pytest.fixture(scope="module")
def describe_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("aws") / "describe-vpn-connections.json"
    path.write_text(json.dumps(described_connection(), indent=1))
    return path


def test_defaults_are_aws_defaults() -> None:
    p = default_profile()
    o = p.options
    assert o.dpd_timeout_seconds == 40 and o.dpd_timeout_action is DpdTimeoutAction.CLEAR
    assert o.startup_action is StartupAction.ADD and set(o.ike_versions) == {IkeVersion.IKEV1, IkeVersion.IKEV2}
    assert (p.aws_cidr, p.customer_cidr) == ("0.0.0.0/0", "0.0.0.0/0")
    assert make_timers(p, fast=False).aws_dpd_timeout == 40
    assert make_timers(p, fast=True).aws_dpd_timeout == 6


def test_describe_json_tunnel_1(describe_json: Path) -> None:
    p = load_profile(str(describe_json), tunnel=1)
    o = p.options
    assert o.dpd_timeout_seconds == 30 and o.dpd_timeout_action is DpdTimeoutAction.RESTART
    assert o.startup_action is StartupAction.START and o.ike_versions == (IkeVersion.IKEV2,)
    assert o.phase1_encryption_algorithms == ("AES256",) and o.phase1_dh_group_numbers == (14, 20)
    assert o.phase2_encryption_algorithms == ("AES256-GCM-16",)
    assert (o.phase1_lifetime_seconds, o.phase2_lifetime_seconds) == (14400, 1800)
    assert (o.rekey_margin_time_seconds, o.rekey_fuzz_percentage) == (300, 50)
    assert p.psk == "tunnel.one.key_123" and p.outside_ip == "52.0.0.10"
    assert (p.customer_cidr, p.aws_cidr) == ("10.2.0.0/16", "10.1.0.0/16")
    assert make_timers(p, fast=False).lifetime_window == 600  # 2 x RekeyMarginTimeSeconds
    assert "PreSharedKey" not in json.dumps(p.to_json()).replace('"PreSharedKey": "(set)"', "")


def test_describe_json_tunnel_2(describe_json: Path) -> None:
    p = load_profile(str(describe_json), tunnel=2)
    assert p.options.dpd_timeout_seconds == 45 and p.psk == "tunnel.two.key_456"
    assert p.options.startup_action is StartupAction.ADD  # left at AWS's default


def test_describe_json_selection_errors(describe_json: Path) -> None:
    doc = json.loads(describe_json.read_text())
    two = {"VpnConnections": doc["VpnConnections"] * 2}
    two["VpnConnections"][1] = {**two["VpnConnections"][1], "VpnConnectionId": "vpn-other"}
    with pytest.raises(ConfigError, match="vpn-connection-id"):
        profile_from_describe(two)
    assert profile_from_describe(two, connection_id="vpn-other").options.dpd_timeout_seconds == 30
    with pytest.raises(ConfigError, match="vpn-connection-id: vpn-nope"):
        profile_from_describe(two, connection_id="vpn-nope")
    one: Mapping[str, Any] = doc["VpnConnections"][0]
    with pytest.raises(ConfigError, match="tunnel: must be 1 or 2"):
        profile_from_describe(one, tunnel=3)
    bad = json.loads(json.dumps(one))
    bad["Options"]["TunnelOptions"][0]["Phase1AdditionalKeyExchanges"] = [{"Value": "ML-KEM-768"}]
    with pytest.raises(ConfigError, match="Phase1AdditionalKeyExchanges"):
        profile_from_describe(bad)


def test_yaml_tunnel_options(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(
        "DPDTimeoutSeconds: 40\nIKEVersions: [ikev2]\nPhase1EncryptionAlgorithms: [AES256]\n"
        "LocalIpv4NetworkCidr: 10.2.0.0/24\nRemoteIpv4NetworkCidr: 10.1.0.0/24\n"
    )
    p = load_profile(str(f))
    assert p.options.ike_versions == (IkeVersion.IKEV2,) and p.options.phase1_encryption_algorithms == ("AES256",)
    assert (p.customer_cidr, p.aws_cidr) == ("10.2.0.0/24", "10.1.0.0/24")


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("DpdTimeoutSecs: 30\n", "DpdTimeoutSecs"),
        ("DPDTimeoutSeconds: 10\n", "DPDTimeoutSeconds"),
        ("Phase1EncryptionAlgorithms: [3DES]\n", "Phase1EncryptionAlgorithms"),
        ("LocalIpv4NetworkCidr: nonsense\n", "LocalIpv4NetworkCidr"),
        ("- a list\n", "mapping"),
    ],
)
def test_bad_profiles_name_the_key(tmp_path: Path, text: str, field: str) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=field):
        load_profile(str(f))
