"""The symmetric flow hash and rendezvous choice of appliance mode (tgw.md §4.4 tests 1-5)."""

from __future__ import annotations

import ipaddress
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from tgw_dataplane.craft import build
from tgw_dataplane.dataplane import Dataplane
from tgw_dataplane.model import Topology
from tgw_dataplane.packet import (
    PROTO_GRE,
    PROTO_ICMP,
    PROTO_TCP,
    PROTO_UDP,
    Packet,
    flow_hash,
    flow_key,
    hrw_pick,
    parse,
    salt_of,
)

SEED = (7).to_bytes(16, "big")
ENIS = [salt_of(f"eni-{i}") for i in range(4)]


def pick(version: int, proto: int, src: int, dst: int, sport: int, dport: int, salts: list[int] = ENIS) -> int:
    return hrw_pick(flow_hash(flow_key(version, proto, src, dst, sport, dport), SEED), salts)


v4 = st.integers(0, 2**32 - 1)
v6 = st.integers(0, 2**128 - 1)
port = st.integers(0, 65535)
proto = st.sampled_from([PROTO_TCP, PROTO_UDP, PROTO_ICMP, PROTO_GRE])


@given(v4, v4, port, port, proto)
def test_symmetric_ipv4(a: int, b: int, p: int, q: int, pr: int) -> None:
    assert flow_key(4, pr, a, b, p, q) == flow_key(4, pr, b, a, q, p)
    assert pick(4, pr, a, b, p, q) == pick(4, pr, b, a, q, p)


@given(v6, v6, port, port, proto)
def test_symmetric_ipv6(a: int, b: int, p: int, q: int, pr: int) -> None:
    assert pick(6, pr, a, b, p, q) == pick(6, pr, b, a, q, p)


@settings(max_examples=50)
@given(v4, v4, port, port, st.sampled_from([PROTO_TCP, PROTO_UDP]))
def test_parsed_packets_symmetric(a: int, b: int, p: int, q: int, pr: int) -> None:
    """The key computed by the parser from real bytes is the same in both directions."""
    sa, sb = str(ipaddress.IPv4Address(a)), str(ipaddress.IPv4Address(b))
    f = parse(build(sa, sb, pr, p, q))
    r = parse(build(sb, sa, pr, q, p))
    assert isinstance(f, Packet) and isinstance(r, Packet)
    assert f.key == r.key
    assert f.forward != r.forward or (a, p) == (b, q)


def test_kernel_overflow_vectors() -> None:
    """64ae13ed4784 (tgw.md §4.1): a signed difference of 2^31 swapped the order in one direction only."""
    # 192.168.37.50 and .178 read as little-endian u32: 0x3225a8c0 and 0xb225a8c0.
    a, b = 0x3225A8C0, 0xB225A8C0
    assert b - a == 2**31
    for x, y in ((a, b), (0, 2**31), (2**31 - 1, 2**32 - 1), (1, 2**31 + 1)):
        for pr in (PROTO_TCP, PROTO_UDP):
            assert flow_key(4, pr, x, y, 1000, 2000) == flow_key(4, pr, y, x, 2000, 1000)
            assert pick(4, pr, x, y, 1000, 2000) == pick(4, pr, y, x, 2000, 1000)
    # the addresses 192.168.37.50 / .178 themselves
    s, d = int(ipaddress.IPv4Address("192.168.37.50")), int(ipaddress.IPv4Address("192.168.37.178"))
    assert pick(4, PROTO_TCP, s, d, 5, 6) == pick(4, PROTO_TCP, d, s, 6, 5)


def test_swapped_ports_are_distinct_flows() -> None:
    """Ports are tied to their address (§4.4), unlike Linux's independent sort (1e60cebf8294): (A:p->B:q) and
    (A:q->B:p) are different flows, while equal addresses fall back to sorting the ports."""
    a, b = 0x0A000001, 0x0A000002
    assert flow_key(4, PROTO_TCP, a, b, 1000, 2000) != flow_key(4, PROTO_TCP, a, b, 2000, 1000)
    assert flow_key(4, PROTO_TCP, a, a, 1000, 2000) == flow_key(4, PROTO_TCP, a, a, 2000, 1000)
    # v6 addresses differing only in the last byte
    x = int(ipaddress.IPv6Address("2001:db8::1"))
    assert pick(6, PROTO_UDP, x, x + 1, 53, 5353) == pick(6, PROTO_UDP, x + 1, x, 5353, 53)


def test_non_tcp_udp_use_three_tuple() -> None:
    assert flow_key(4, PROTO_ICMP, 1, 2, 7, 9) == flow_key(4, PROTO_ICMP, 1, 2, 0, 0)
    assert flow_key(4, PROTO_GRE, 1, 2) != flow_key(4, PROTO_ICMP, 1, 2)


@pytest.mark.parametrize("n", [2, 3, 4, 6])
def test_distribution_is_uniform(n: int) -> None:
    rng = random.Random(n)
    salts = [salt_of(f"eni-{i}") for i in range(n)]
    counts = [0] * n
    flows = 20_000
    for _ in range(flows):
        k = flow_key(4, PROTO_TCP, rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16), 443)
        counts[hrw_pick(flow_hash(k, SEED), salts)] += 1
    assert chisquare(counts).pvalue > 0.001, counts
    assert min(counts) > flows / n * 0.9


@pytest.mark.parametrize("n", [3, 4, 6])
def test_only_the_failed_enis_flows_move(n: int) -> None:
    rng = random.Random(100 + n)
    salts = [salt_of(f"eni-{i}") for i in range(n)]
    keys = [
        flow_key(4, PROTO_UDP, rng.getrandbits(32), rng.getrandbits(32), 53, rng.getrandbits(16)) for _ in range(6000)
    ]
    before = [hrw_pick(flow_hash(k, SEED), salts) for k in keys]
    failed = 1
    survivors = [s for i, s in enumerate(salts) if i != failed]
    index = [i for i in range(n) if i != failed]
    after = [index[hrw_pick(flow_hash(k, SEED), survivors)] for k in keys]
    moved = sum(b != a for b, a in zip(before, after, strict=True))
    # exactly the flows that were on the failed ENI move, about 1/n of them
    assert moved == before.count(failed)
    assert abs(moved / len(keys) - 1 / n) < 0.03


def test_two_tgws_disagree_on_some_flows() -> None:
    rng = random.Random(5)
    s1, s2 = (1).to_bytes(16, "big"), (2).to_bytes(16, "big")
    keys = [
        flow_key(4, PROTO_TCP, rng.getrandbits(32), rng.getrandbits(32), rng.getrandbits(16), 443) for _ in range(500)
    ]
    a = [hrw_pick(flow_hash(k, s1), ENIS) for k in keys]
    b = [hrw_pick(flow_hash(k, s2), ENIS) for k in keys]
    differ = sum(x != y for x, y in zip(a, b, strict=True))
    assert 0.5 < differ / len(keys) < 0.95  # independent 4-way choices disagree ~75% of the time


def test_deterministic_under_fixed_seed(seed: Topology) -> None:
    """Same topology, same seed: the same ENI for every flow, across Dataplane instances (no hash())."""
    seed.tgws["tgw-1"].attachments["tgw-attach-c"].appliance_mode = True  # type: ignore[union-attr]
    pkts = [parse(build("10.0.1.10", "10.1.2.20", PROTO_TCP, sp, 443)) for sp in range(40000, 40200)]
    runs = []
    for _ in range(2):
        dp = Dataplane(seed)
        runs.append([dp.pick_appliance_eni("tgw-attach-c", p) for p in pkts if isinstance(p, Packet)])
    assert runs[0] == runs[1]
    assert set(runs[0]) == {"eni-c-use1-az1", "eni-c-use1-az2"}
    seed.tgws["tgw-1"].seed = 2
    other = Dataplane(seed)
    third = [other.pick_appliance_eni("tgw-attach-c", p) for p in pkts if isinstance(p, Packet)]
    assert third != runs[0]


def test_hash_is_stable_across_processes() -> None:
    """A golden value: the hash must not depend on PYTHONHASHSEED or the interpreter (blake2b, RFC 7693)."""
    import os
    import subprocess
    import sys

    code = "from tgw_dataplane.packet import flow_hash; print(flow_hash(12345678901234567890, bytes(16)))"
    outs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": str(h)},
        ).stdout
        for h in (0, 1)
    }
    assert len(outs) == 1
    assert int(outs.pop()) == flow_hash(12345678901234567890, bytes(16))
