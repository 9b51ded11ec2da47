"""Bad packets are counted drops with typed reasons (never exceptions); bad topologies are ConfigErrors naming
the object (HELPERS.md design rules)."""

from __future__ import annotations

import copy
import struct
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from emulator.cli import ConfigError
from tests.tgw.conftest import FIXTURES
from tgw_dataplane.craft import build, checksum
from tgw_dataplane.dataplane import Dataplane
from tgw_dataplane.model import Topology, topology_from_dict
from tgw_dataplane.packet import PROTO_ICMP, PROTO_TCP, PROTO_UDP, Packet, parse

SYN = build("10.0.1.10", "10.1.2.20", PROTO_TCP, 40000, 443)


def _with_v4_header(pkt: bytes, **changes: int) -> bytes:
    b = bytearray(pkt)
    if "ihl" in changes:
        b[0] = 0x40 | changes["ihl"]
    if "frag" in changes:
        struct.pack_into("!H", b, 6, changes["frag"])
    if "proto" in changes:
        b[9] = changes["proto"]
    if "total" in changes:
        struct.pack_into("!H", b, 2, changes["total"])
    struct.pack_into("!H", b, 10, 0)
    struct.pack_into("!H", b, 10, checksum(bytes(b[:20])))
    return bytes(b)


def _options(pkt: bytes) -> bytes:
    # one NOP-padded 4-byte option word (RFC 791 §3.1): IHL 6
    hdr = bytearray(pkt[:20]) + b"\x01\x01\x01\x00"
    hdr[0] = 0x46
    struct.pack_into("!H", hdr, 2, len(pkt) + 4)
    return bytes(hdr) + pkt[20:]


CASES = [
    (b"", "truncated"),
    (SYN[:19], "truncated"),
    (SYN[:30], "truncated"),  # IPv4 total length says 40
    (SYN[:20] + SYN[20:30], "truncated"),
    (_with_v4_header(SYN, total=10), "malformed"),
    (b"\x50" + SYN[1:], "malformed"),  # version 5
    (_with_v4_header(SYN, ihl=4), "malformed"),
    (_options(SYN), "ip_options"),
    (_with_v4_header(SYN, frag=0x2000), "fragment"),  # MF
    (_with_v4_header(SYN, frag=0x0010), "fragment"),  # offset
    (_with_v4_header(SYN, proto=132), "unknown_protocol"),  # SCTP: not in settings.protocols
    (build("2001:db8::1", "2001:db8::2", 0, payload=b"\0" * 8)[:40] + b"\0" * 8, "ipv6_extension_header"),
    (build("2001:db8::1", "2001:db8::2", 44, payload=b"\0" * 8), "fragment"),
    (build("10.0.1.10", "10.1.2.20", PROTO_UDP, 1, 2)[:24], "truncated"),
    (build("10.0.1.10", "10.1.2.20", PROTO_ICMP)[:24], "truncated"),
]


@pytest.mark.parametrize(("data", "reason"), CASES)
def test_bad_packets_are_counted_drops(seed: Topology, data: bytes, reason: str) -> None:
    dp = Dataplane(seed)
    r = dp.send(data, "i-a", 0.0, trace=True)
    assert (r.verdict, r.reason) == ("dropped", reason)
    assert dp.drops == {reason: 1}


def test_unknown_source_is_a_drop(seed: Topology) -> None:
    dp = Dataplane(seed)
    assert dp.send(SYN, "i-nope", 0.0).reason == "unknown_source"


@given(st.binary(max_size=120))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    r = parse(data)
    assert isinstance(r, Packet | str)


@given(st.binary(min_size=0, max_size=60))
def test_arbitrary_payload_after_valid_header_never_raises(tail: bytes) -> None:
    dp = _DP
    r = dp.send(SYN[:20] + tail, "i-a", 0.0)
    assert r.verdict in ("delivered", "dropped")


def _raw() -> dict[str, Any]:
    with open(FIXTURES / "seed.yaml") as f:
        d: dict[str, Any] = yaml.safe_load(f)
    return d


_DP = Dataplane(topology_from_dict(_raw()))


def _mutate(path: list[Any], value: Any) -> dict[str, Any]:
    d = copy.deepcopy(_raw())
    cur = d
    for k in path[:-1]:
        cur = cur[k]
    cur[path[-1]] = value
    return d


@pytest.mark.parametrize(
    ("path", "value", "names"),
    [
        (["vpcs", "vpc-a", "subnets", "subnet-a1", "route_table"], "rtb-missing", ["subnet-a1", "rtb-missing"]),
        (["vpcs", "vpc-a", "route_tables", "rtb-a", "routes"], [{"dest": "0.0.0.0/0", "target": "tgw-9"}], ["tgw-9"]),
        (
            ["vpcs", "vpc-c", "route_tables", "rtb-c-tgw1", "routes"],
            [{"dest": "0.0.0.0/0", "target": "eni-x"}],
            ["eni-x"],
        ),
        (["vpcs", "vpc-a", "route_tables", "rtb-a", "routes"], [{"dest": "0.0.0.0/0", "target": "nat-1"}], ["nat-1"]),
        (["vpcs", "vpc-a", "instances", "i-a", "subnet"], "subnet-zz", ["i-a", "subnet-zz"]),
        (["vpcs", "vpc-a", "instances", "i-a", "ip"], "10.9.9.9", ["i-a", "10.9.9.9"]),
        (["vpcs", "vpc-a", "instances", "i-a", "kind"], "toaster", ["toaster", "stateful-firewall"]),
        (["vpcs", "vpc-a", "subnets", "subnet-a1", "az"], "us-east-1z", ["us-east-1z"]),
        (["transit_gateways", "tgw-1", "attachments", "tgw-attach-a", "vpc"], "vpc-zz", ["tgw-attach-a", "vpc-zz"]),
        (
            ["transit_gateways", "tgw-1", "attachments", "tgw-attach-a", "subnets"],
            ["subnet-a1", "subnet-b1"],
            ["tgw-attach-a", "subnet-b1"],
        ),
        (
            ["transit_gateways", "tgw-1", "route_tables", "tgw-rtb-spoke", "associations"],
            ["tgw-attach-q"],
            ["tgw-rtb-spoke", "tgw-attach-q"],
        ),
        (
            ["transit_gateways", "tgw-1", "route_tables", "tgw-rtb-spoke", "routes"],
            [{"dest": "0.0.0.0/0", "attachment": "tgw-attach-q"}],
            ["tgw-attach-q"],
        ),
        (
            ["transit_gateways", "tgw-1", "route_tables", "tgw-rtb-spoke", "routes"],
            [{"prefix_list": "pl-none", "attachment": "tgw-attach-c"}],
            ["pl-none"],
        ),
        (
            ["transit_gateways", "tgw-1", "route_tables", "tgw-rtb-inspect", "associations"],
            ["tgw-attach-a"],
            ["tgw-attach-a", "tgw-rtb-spoke", "tgw-rtb-inspect"],
        ),
        (["settings"], {"pinned_flow_on_failure": "panic"}, ["panic", "rehash", "keep-until-idle"]),
        (["settings"], {"bogus": 1}, ["bogus"]),
        (["transit_gateways", "tgw-1", "attachments", "tgw-attach-c", "appliance_mode"], "enabled", ["enabled"]),
        (["vpcs", "vpc-a", "cidrs"], ["10.0.0.0/33"], ["10.0.0.0/33"]),
    ],
)
def test_config_errors_name_the_object(path: list[Any], value: Any, names: list[str]) -> None:
    with pytest.raises(ConfigError) as ei:
        topology_from_dict(_mutate(path, value))
    for n in names:
        assert n in str(ei.value)
