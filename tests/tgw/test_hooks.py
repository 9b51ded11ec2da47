"""Dataplane hooks for plug-ins and tools: node_up, inject (a node sending a packet of its own), expiry."""

from __future__ import annotations

import pytest

from emulator.cli import ConfigError
from tgw_dataplane.craft import build, parse_flow
from tgw_dataplane.dataplane import Dataplane
from tgw_dataplane.model import Topology

FLOW = parse_flow("tcp 10.0.1.10:40000 > 10.1.2.20:443")


def test_node_up_follows_instance_eni_and_az_health(seed: Topology) -> None:
    dp = Dataplane(seed)
    tgw_enis = dp.attachment_enis("tgw-attach-a")
    assert all(dp.node_up(n) for n in ("i-a", "eni-fw1", "i-fw2", *tgw_enis))
    dp.set_eni_health("eni-fw1", False)  # by ENI id: the instance is down
    assert not dp.node_up("i-fw1") and not dp.node_up("eni-fw1")
    dp.set_eni_health("i-fw1", True)
    assert dp.node_up("eni-fw1")
    dp.set_az_health("use1-az1", False)
    assert [dp.node_up(n) for n in ("i-a", "i-fw1", "i-fw2", *tgw_enis)] == [False, False, True, False, True]
    dp.set_az_health("use1-az1", True)
    assert dp.node_up("i-a") and all(dp.node_up(e) for e in tgw_enis)
    with pytest.raises(ConfigError, match="node_up: no instance, ENI or GWLB endpoint 'i-nope'"):
        dp.node_up("i-nope")


def test_inject_routes_from_the_node_without_its_own_middlebox(seed: Topology) -> None:
    dp = Dataplane(seed)
    # A host injecting is like send(): the SYN crosses FW1 and reaches i-b.
    r = dp.inject("i-a", FLOW.request(), 0.0, trace=True)
    assert (r.verdict, r.node) == ("delivered", "i-b")
    assert r.hops is not None and [h["node"] for h in r.hops if h["kind"] == "stateful-firewall"] == ["i-fw1"]
    assert list(dp.emitted) == [r]
    # A packet the firewall FW2 sends itself (a mid-flow ACK it never tracked) leaves by its subnet's route
    # table (0.0.0.0/0 -> tgw-1) without passing its own connection tracker, so it is delivered.
    mid = build(FLOW.dst, FLOW.src, 6, FLOW.dport, FLOW.sport, flags=0x10, seq=5001, ack=1001)
    assert dp.send(mid, "i-b", 0.1).reason == "appliance_no_state"  # through FW2 it is dropped
    r = dp.inject("i-fw2", mid, 0.2)
    assert (r.verdict, r.node) == ("delivered", "i-a")


def test_inject_bad_input(seed: Topology) -> None:
    dp = Dataplane(seed)
    with pytest.raises(ConfigError, match="inject: no instance, ENI or GWLB endpoint 'i-nope'"):
        dp.inject("i-nope", FLOW.request(), 0.0)
    assert dp.inject("i-a", b"\x45\x00", 0.0).reason == "truncated"
    dp.set_eni_health("i-a", False)
    assert dp.inject("i-a", FLOW.request(), 0.0).reason == "instance_failed"
    assert [r.verdict for r in dp.emitted] == ["dropped", "dropped"]
