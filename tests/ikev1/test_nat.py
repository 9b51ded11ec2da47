"""NAT traversal with a real address translation in the path (moved by hand, virtual time): NAT-D detects the
NAT on the right side, Main Mode floats to 4500 with the non-ESP marker, UDP-encapsulated tunnel mode is
negotiated, the CGW behind the NAT sends keepalives (0xFF) which AWS ignores, and AWS probes periodically."""

from __future__ import annotations

import random

from cgw_peer.config import PROFILES, Behaviour
from cgw_peer.ikev1.peer import IkeV1Peer
from cgw_peer.lifecycle.status import Status
from emulator.actions import Action, Event, Transmit
from tests.ikev1.helpers import AWS_ADDR, aws_config, cgw_config

PRIVATE = "10.0.0.1"
PUBLIC = "198.51.100.1"


class Lab:
    """AWS, a NAT (private port p <-> public port base + p; packets to a stale mapping are lost), a CGW."""

    def __init__(self, cgw_beh: Behaviour | None = None) -> None:
        self.aws = IkeV1Peer(aws_config(), local=AWS_ADDR, remote=(PUBLIC, 500), rng=random.Random(1))
        cfg = cgw_config() if cgw_beh is None else cgw_config(behaviour=cgw_beh)
        self.cgw = IkeV1Peer(cfg, local=(PRIVATE, 500), remote=AWS_ADDR, rng=random.Random(2))
        self.log: list[tuple[float, str, Action]] = []
        self.base = 30000
        self.lost = 0

    def nat_out(self, addr: tuple[str, int]) -> tuple[str, int]:
        assert addr[0] == PRIVATE
        return (PUBLIC, self.base + addr[1])

    def nat_in(self, addr: tuple[str, int]) -> tuple[str, int] | None:
        assert addr[0] == PUBLIC
        if not self.base <= addr[1] < self.base + 10000:
            return None  # no such mapping (any more)
        return (PRIVATE, addr[1] - self.base)

    def deliver(self, who: str, actions: list[Action], now: float) -> None:
        queue = [(who, a) for a in actions]
        while queue:
            sender, a = queue.pop(0)
            self.log.append((now, sender, a))
            if not isinstance(a, Transmit):
                continue
            if sender == "cgw":
                out = self.aws.receive_datagram(a.data, self.nat_out(a.src), a.dst, now)
                queue += [("aws", x) for x in out]
            else:
                dst = self.nat_in(a.dst)
                if dst is None:
                    self.lost += 1
                    continue
                out = self.cgw.receive_datagram(a.data, a.src, dst, now)
                queue += [("cgw", x) for x in out]

    def run_until(self, t_end: float) -> None:
        while True:
            times = [(p.next_deadline(), name) for name, p in (("aws", self.aws), ("cgw", self.cgw))]
            due = [(t, n) for t, n in times if t is not None and t <= t_end]
            if not due:
                return
            t, name = min(due)
            peer = self.aws if name == "aws" else self.cgw
            self.deliver(name, peer.handle_timer(t), t)

    def sent(self, who: str, kind: str) -> list[tuple[float, Transmit]]:
        return [(t, a) for t, w, a in self.log if w == who and isinstance(a, Transmit) and a.kind == kind]

    def events(self, who: str, name: str) -> list[tuple[float, Event]]:
        return [(t, a) for t, w, a in self.log if w == who and isinstance(a, Event) and a.name == name]


def test_nat_detected_float_keepalives_and_periodic_dpd() -> None:
    lab = Lab()
    lab.deliver("cgw", lab.cgw.start(0.0), 0.0)
    assert lab.aws.status.status is Status.UP and lab.cgw.status.status is Status.UP
    a, c = lab.aws.current_isakmp, lab.cgw.current_isakmp
    assert a is not None and c is not None
    assert (c.nat_local, c.nat_remote, a.nat_local, a.nat_remote) == (True, False, False, True)
    assert c.local == (PRIVATE, 4500) and c.remote == (AWS_ADDR[0], 4500)
    assert a.remote == (PUBLIC, 34500) and a.local == (AWS_ADDR[0], 4500)
    mm5 = lab.sent("cgw", "main_mode_5")[0][1]
    assert mm5.src == (PRIVATE, 4500) and mm5.data[:4] == bytes(4)
    assert lab.aws.children[0].encap == 3 and lab.cgw.children[0].encap == 3  # UDP-Encapsulated-Tunnel
    # ESP from the CGW keeps flowing: with NAT, AWS probes periodically anyway (A-KC).
    for t in range(1, 45):
        lab.aws.note_esp_inbound(float(t))
    lab.run_until(45)
    assert [t for t, _ in lab.sent("aws", "dpd_request")] == [10.0, 20.0, 30.0, 40.0]
    ka = lab.sent("cgw", "nat_keepalive")
    assert [t for t, _ in ka] == [20.0, 40.0] and all(tx.data == b"\xff" for _, tx in ka)
    assert lab.aws.counters == {"nat_keepalive_received": 2}
    assert lab.events("aws", "dpd_timeout") == []


def test_nat_rebinding_needs_authenticated_traffic_from_the_new_port() -> None:
    """libreswan #1728: the NAT remaps the CGW's port. Keepalives (unauthenticated) must not move the peer; the
    CGW's next R-U-THERE (authenticated) does, and AWS's probes reach the CGW again: no DPD timeout."""
    lab = Lab(PROFILES["strongswan"])
    lab.deliver("cgw", lab.cgw.start(0.0), 0.0)
    lab.run_until(50)
    lab.base = 40000  # new mapping from now on; the old one is gone
    lab.run_until(200)
    assert lab.aws.counters["nat_mapping_changed"] == 1
    a = lab.aws.current_isakmp
    assert a is not None and a.remote == (PUBLIC, 44500)
    assert lab.events("aws", "dpd_timeout") == [] and lab.events("cgw", "dpd_timeout") == []


def test_nat_rebinding_without_cgw_traffic_is_a_dead_peer() -> None:
    """Same remap, but the CGW never sends anything authenticated (no DPD of its own, keepalives only): AWS's
    probes go to the stale mapping and AWS declares the peer dead although keepalives keep arriving."""
    lab = Lab()
    lab.deliver("cgw", lab.cgw.start(0.0), 0.0)
    lab.run_until(50)
    lab.base = 40000
    lab.run_until(200)
    assert lab.lost >= 3 and lab.aws.counters["nat_keepalive_received"] >= 5
    assert [t for t, _ in lab.events("aws", "dpd_timeout")] == [90.0]  # last ACK at 50 (periodic DPD) + 40
