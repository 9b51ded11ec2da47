"""LPM against a brute-force oracle (``ipaddress``), and the TGW route tie-break order (tgw.md §1.2)."""

from __future__ import annotations

import ipaddress
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tgw_dataplane.craft import build
from tgw_dataplane.dataplane import Dataplane
from tgw_dataplane.lpm import Lpm
from tgw_dataplane.model import topology_from_dict
from tgw_dataplane.packet import PROTO_TCP

routes4 = st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), max_size=40)
routes6 = st.lists(st.tuples(st.integers(0, 2**128 - 1), st.integers(0, 128)), max_size=40)


def _check(bits: int, routes: list[tuple[int, int]], addrs: list[int]) -> None:
    lpm: Lpm[str] = Lpm(bits)
    nets = {}
    for addr, plen in routes:
        net = addr >> (bits - plen) << (bits - plen)
        nets[(net, plen)] = f"{net}/{plen}"
        lpm.insert(net, plen, f"{net}/{plen}")
    for a in addrs:
        best = None
        for (net, plen), v in nets.items():
            if a >> (bits - plen) == net >> (bits - plen) and (best is None or plen > best[0]):
                best = (plen, v)
        expect = best[1] if best else None
        assert lpm.lookup_uncached(a) == expect
        assert lpm.lookup(a) == expect
        assert lpm.lookup(a) == expect  # cached


@given(routes4, st.lists(st.integers(0, 2**32 - 1), max_size=20))
def test_lpm_v4_matches_oracle(routes: list[tuple[int, int]], addrs: list[int]) -> None:
    # also probe inside every route so that matches are common
    _check(32, routes, addrs + [a for a, _ in routes])


@given(routes6, st.lists(st.integers(0, 2**128 - 1), max_size=20))
def test_lpm_v6_matches_oracle(routes: list[tuple[int, int]], addrs: list[int]) -> None:
    _check(128, routes, addrs + [a for a, _ in routes])


# Routes packed into one /14 (IPv4) or /46 (IPv6) with lengths around the bands of Lpm (split, mid - 8, mid):
# overlapping prefixes of every band in the same blocks, inserted in any order.
clustered4 = st.lists(
    st.tuples(st.integers(0x0A000000, 0x0A03FFFF), st.sampled_from([8, 14, 15, 16, 17, 20, 23, 24, 25, 28, 32])),
    max_size=40,
)
_B6 = 0x2001_0DB8 << 96
clustered6 = st.lists(
    st.tuples(
        st.integers(_B6, _B6 + (1 << 82) - 1), st.sampled_from([16, 32, 33, 46, 55, 56, 57, 63, 64, 65, 96, 128])
    ),
    max_size=40,
)


@given(clustered4, st.lists(st.integers(0x0A000000, 0x0A03FFFF), max_size=30))
def test_lpm_v4_clustered_matches_oracle(routes: list[tuple[int, int]], addrs: list[int]) -> None:
    _check(32, routes, addrs + [a for a, _ in routes])


@given(clustered6, st.lists(st.integers(_B6, _B6 + (1 << 82) - 1), max_size=30))
def test_lpm_v6_clustered_matches_oracle(routes: list[tuple[int, int]], addrs: list[int]) -> None:
    _check(128, routes, addrs + [a for a, _ in routes])


def test_insert_after_lookup_invalidates() -> None:
    lpm: Lpm[str] = Lpm(32)
    lpm.insert(0, 0, "default")
    a = int(ipaddress.IPv4Address("10.1.2.3"))
    assert lpm.lookup(a) == "default"
    lpm.insert(int(ipaddress.IPv4Address("10.0.0.0")), 8, "ten")
    assert lpm.lookup(a) == "ten"
    lpm.insert(int(ipaddress.IPv4Address("10.1.2.0")), 24, "leaf")
    assert lpm.lookup(a) == "leaf"


def _tie_topology(extra_routes: list[dict[str, Any]], vpn_routes: list[Any]) -> dict[str, Any]:
    return {
        "regions": {"r": {"azs": {"r-a": "r-az1"}}},
        "vpcs": {
            "vpc-a": {
                "region": "r",
                "cidrs": ["10.0.0.0/16"],
                "route_tables": {"rtb-a": {"routes": [{"dest": "0.0.0.0/0", "target": "tgw-1"}]}},
                "subnets": {"subnet-a": {"cidr": "10.0.1.0/24", "az": "r-a", "route_table": "rtb-a"}},
                "instances": {"i-a": {"subnet": "subnet-a", "ip": "10.0.1.10"}},
            },
            "vpc-x": {
                "region": "r",
                "cidrs": ["172.16.0.0/16"],
                "route_tables": {"rtb-x": {"routes": []}},
                "subnets": {"subnet-x": {"cidr": "172.16.1.0/24", "az": "r-a", "route_table": "rtb-x"}},
                "instances": {"i-x": {"subnet": "subnet-x", "ip": "172.16.1.10"}},
            },
        },
        "prefix_lists": {"pl-1": ["172.16.0.0/16"]},
        "transit_gateways": {
            "tgw-1": {
                "region": "r",
                "attachments": {
                    "tgw-attach-a": {"vpc": "vpc-a", "subnets": ["subnet-a"]},
                    "tgw-attach-x": {"vpc": "vpc-x", "subnets": ["subnet-x"]},
                    "tgw-attach-v1": {"type": "vpn", "routes": vpn_routes},
                    "tgw-attach-v2": {"type": "vpn", "routes": [{"dest": "172.16.0.0/16", "as_path_len": 3}]},
                },
                "route_tables": {
                    "rt": {
                        "associations": ["tgw-attach-a", "tgw-attach-x", "tgw-attach-v1", "tgw-attach-v2"],
                        "propagations": ["tgw-attach-x", "tgw-attach-v1", "tgw-attach-v2"],
                        "routes": extra_routes,
                    }
                },
            }
        },
    }


def _route_to_172(d: dict[str, Any]) -> tuple[str, str]:
    dp = Dataplane(topology_from_dict(d))
    r = dp.send(build("10.0.1.10", "172.16.1.10", PROTO_TCP, 1, 2), "i-a", 0.0, trace=True)
    hop = next(h for h in r.hops or [] if h["kind"] == "tgw")
    return hop["route"], r.node


def test_tie_break_static_over_prefix_list_over_vpc_over_vpn() -> None:
    vpn = [{"dest": "172.16.0.0/16", "as_path_len": 1}]
    static = [{"dest": "172.16.0.0/16", "attachment": "tgw-attach-v2"}]
    pl = [{"prefix_list": "pl-1", "attachment": "tgw-attach-v1"}]
    assert _route_to_172(_tie_topology(static + pl, vpn)) == (
        "172.16.0.0/16 -> tgw-attach-v2 (static)",
        "tgw-attach-v2",
    )
    assert _route_to_172(_tie_topology(pl, vpn)) == ("172.16.0.0/16 -> tgw-attach-v1 (prefix-list)", "tgw-attach-v1")
    # propagated: the VPC beats both VPNs
    assert _route_to_172(_tie_topology([], vpn)) == ("172.16.0.0/16 -> tgw-attach-x (propagated vpc)", "i-x")


def test_tie_break_among_vpn_routes_shorter_as_path() -> None:
    d = _tie_topology([], [{"dest": "172.16.0.0/16", "as_path_len": 1}])
    d["transit_gateways"]["tgw-1"]["route_tables"]["rt"]["propagations"] = ["tgw-attach-v1", "tgw-attach-v2"]
    assert _route_to_172(d)[1] == "tgw-attach-v1"  # AS path 1 < 3
    d = _tie_topology([], [{"dest": "172.16.0.0/16", "as_path_len": 5}])
    d["transit_gateways"]["tgw-1"]["route_tables"]["rt"]["propagations"] = ["tgw-attach-v1", "tgw-attach-v2"]
    assert _route_to_172(d)[1] == "tgw-attach-v2"
    # longest prefix beats every preference
    d = _tie_topology([{"dest": "172.16.0.0/12", "attachment": "tgw-attach-v2"}], [{"dest": "172.16.1.0/24"}])
    assert _route_to_172(d)[1] == "tgw-attach-v1"


def test_overlapping_vpc_cidr_is_not_propagated() -> None:
    d = _tie_topology([], [])
    d["vpcs"]["vpc-y"] = {
        "region": "r",
        "cidrs": ["172.16.0.0/12"],
        "route_tables": {"rtb-y": {"routes": []}},
        "subnets": {"subnet-y": {"cidr": "172.17.1.0/24", "az": "r-a", "route_table": "rtb-y"}},
    }
    tg = d["transit_gateways"]["tgw-1"]
    tg["attachments"]["tgw-attach-y"] = {"vpc": "vpc-y", "subnets": ["subnet-y"]}
    tg["route_tables"]["rt"]["propagations"] = ["tgw-attach-x", "tgw-attach-y"]
    dp = Dataplane(topology_from_dict(d))
    r = dp.send(build("10.0.1.10", "172.17.1.10", PROTO_TCP, 1, 2), "i-a", 0.0)
    assert (r.verdict, r.reason) == ("dropped", "no_route")  # 172.16.0.0/12 overlaps 172.16.0.0/16: skipped
