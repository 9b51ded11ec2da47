"""VPN ECMP (tgw.md §1.10): with VpnEcmpSupport, equal BGP routes from several VPN attachments and the up
tunnels of each share the traffic per flow (every packet of a flow on one tunnel); a longer AS path, a
static route or VpnEcmpSupport off leaves one path; tunnels and attachments going down move only the flows
they carried."""

from __future__ import annotations

import dataclasses
from collections import Counter

from tgw_dataplane.craft import build
from tgw_dataplane.dataplane import Dataplane
from tgw_dataplane.model import Topology
from tgw_dataplane.packet import PROTO_TCP, PROTO_UDP

from .conftest import topo


def path(dp: Dataplane, dst: str, sport: int, t: float = 0.0) -> tuple[str, str]:
    r = dp.send(build("10.0.1.10", dst, PROTO_TCP, sport, 443), "i-a", t, trace=True)
    assert r.verdict == "delivered", r.reason
    last = (r.hops or [])[-1]
    assert last["kind"] == "vpn-attachment" and last["node"] == r.node
    return r.node, last["tunnel"]


def spread(dp: Dataplane, dst: str = "192.168.1.1", n: int = 400) -> dict[int, tuple[str, str]]:
    return {sp: path(dp, dst, sp) for sp in range(20000, 20000 + n)}


def test_flows_spread_over_attachments_and_tunnels() -> None:
    dp = Dataplane(topo("story_vpn_ecmp"))
    got = spread(dp)
    counts = Counter(got.values())
    assert set(counts) == {(a, t) for a in ("tgw-attach-vpn-1", "tgw-attach-vpn-2") for t in ("tunnel1", "tunnel2")}
    assert min(counts.values()) > 400 / 4 * 0.6  # roughly even
    # per flow: every packet of a flow (and a later packet) takes the same attachment and tunnel
    assert all(path(dp, "192.168.1.1", sp, 5.0) == got[sp] for sp in list(got)[:50])
    r = dp.send(build("10.0.1.10", "192.168.1.1", PROTO_UDP, 5353, 53), "i-a", 0.0, trace=True)
    assert "ECMP" in next(h for h in r.hops or [] if h["kind"] == "tgw")["route"]


def test_longer_as_path_and_static_routes_take_one_path() -> None:
    dp = Dataplane(topo("story_vpn_ecmp"))
    assert {p[0] for p in spread(dp, "172.16.5.5", 100).values()} == {"tgw-attach-vpn-1"}
    static = spread(dp, "192.168.50.9", 100).values()
    assert set(static) == {("tgw-attach-vpn-2", "tunnel1")}  # static: no ECMP, the first up tunnel


def test_vpn_ecmp_off_is_active_passive() -> None:
    t: Topology = topo("story_vpn_ecmp")
    t.tgws["tgw-1"] = dataclasses.replace(t.tgws["tgw-1"], vpn_ecmp=False)
    dp = Dataplane(t)
    assert set(spread(dp, n=100).values()) == {("tgw-attach-vpn-1", "tunnel1")}


def test_tunnel_and_attachment_failures_move_only_their_flows() -> None:
    dp = Dataplane(topo("story_vpn_ecmp"))
    before = spread(dp)
    dp.set_tunnel_state("tgw-attach-vpn-1", "tunnel1", False)
    after = spread(dp)
    for sp, p in before.items():
        if p != ("tgw-attach-vpn-1", "tunnel1"):
            assert after[sp] == p  # untouched flows stay put (rendezvous hashing)
        else:
            assert after[sp] != p
    assert ("tgw-attach-vpn-1", "tunnel1") not in set(after.values())
    dp.set_tunnel_state("tgw-attach-vpn-1", "tunnel2", False)  # vpn-1 has no tunnel: its BGP routes go
    gone = spread(dp)
    assert {p[0] for p in gone.values()} == {"tgw-attach-vpn-2"}
    assert all(gone[sp] == p for sp, p in before.items() if p[0] == "tgw-attach-vpn-2")
    dp.set_tunnel_state("tgw-attach-vpn-1", "tunnel1", True)
    dp.set_tunnel_state("tgw-attach-vpn-1", "tunnel2", True)
    assert spread(dp) == before  # deterministic: the same flows come back
