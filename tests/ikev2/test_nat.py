"""IKEv2 through a real address translation (moved by hand, virtual time; the NAT of tests/ikev1/test_nat.py):
NAT detection tells each side who is behind the NAT, both float to 4500, the side behind the NAT sends RFC 3948
§2.3 keepalives (one 0xFF octet every ``Behaviour.nat_keepalive`` seconds) that the other side counts and does
not take as a sign of life, and forced encapsulation alone (strongSwan's encap=yes) sends none."""

from __future__ import annotations

import random

from cgw_peer.config import Behaviour, Role
from cgw_peer.ikev2.peer import IkeV2Peer
from cgw_peer.lifecycle.status import Status
from tests.ikev1.test_nat import PRIVATE, PUBLIC
from tests.ikev1.test_nat import Lab as NatLab
from tests.ikev2.helpers import AWS_ADDR, config, pair


class Lab(NatLab):
    """The IKEv1 NAT lab with IKEv2 peers: AWS on a public address, the CGW on a private one."""

    def __init__(self, cgw_beh: Behaviour | None = None, aws_beh: Behaviour | None = None, **cgw_kw: object) -> None:
        super().__init__()
        aws_cfg = config(Role.AWS, behaviour=aws_beh or Behaviour())
        cgw_cfg = config(Role.CGW, behaviour=cgw_beh or Behaviour(dpd_enabled=False, rekey_initiator=False), **cgw_kw)
        self.aws = IkeV2Peer(aws_cfg, local=AWS_ADDR, remote=(PUBLIC, 500), rng=random.Random(1))  # type: ignore[assignment]
        self.cgw = IkeV2Peer(cgw_cfg, local=(PRIVATE, 500), remote=AWS_ADDR, rng=random.Random(2))  # type: ignore[assignment]


def test_side_behind_nat_sends_keepalives_that_are_not_liveness() -> None:
    lab = Lab()
    lab.deliver("cgw", lab.cgw.start(0.0), 0.0)
    aws, cgw = lab.aws, lab.cgw
    assert isinstance(aws, IkeV2Peer) and isinstance(cgw, IkeV2Peer)
    assert aws.status.status is Status.UP and cgw.status.status is Status.UP
    a, c = aws._current(), cgw._current()
    assert a is not None and c is not None
    assert (c.nat_detected, c.nat_local, a.nat_detected, a.nat_local) == (True, True, True, False)
    assert c.local == (PRIVATE, 4500) and a.remote == (PUBLIC, 34500)
    lab.run_until(65)
    ka = lab.sent("cgw", "nat_keepalive")
    assert [t for t, _ in ka] == [20.0, 40.0, 60.0]
    assert all(tx.data == b"\xff" and tx.src == (PRIVATE, 4500) and tx.dst == (AWS_ADDR[0], 4500) for _, tx in ka)
    assert lab.sent("aws", "nat_keepalive") == []  # AWS is not behind a NAT
    assert aws.counters["nat_keepalive_received"] == 3
    # keepalives are not a sign of life: AWS still checks liveness every 10 s (periodic behind NAT)
    assert [t for t, _ in lab.events("aws", "dpd_request_sent")] == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    assert lab.events("aws", "dpd_timeout") == [] and lab.lost == 0


def test_keepalive_interval_setting_and_off() -> None:
    lab = Lab(cgw_beh=Behaviour(dpd_enabled=False, rekey_initiator=False, nat_keepalive=7.0))
    lab.deliver("cgw", lab.cgw.start(0.0), 0.0)
    lab.run_until(30)
    assert [t for t, _ in lab.sent("cgw", "nat_keepalive")] == [7.0, 14.0, 21.0, 28.0]
    off = Lab(cgw_beh=Behaviour(dpd_enabled=False, rekey_initiator=False, nat_keepalive=0.0))
    off.deliver("cgw", off.cgw.start(0.0), 0.0)
    off.run_until(60)
    assert off.sent("cgw", "nat_keepalive") == []


def test_close_stops_keepalives() -> None:
    lab = Lab()
    lab.deliver("cgw", lab.cgw.start(0.0), 0.0)
    lab.run_until(25)
    lab.deliver("cgw", lab.cgw.close(25.0), 25.0)
    lab.run_until(100)
    assert [t for t, _ in lab.sent("cgw", "nat_keepalive")] == [20.0]
    assert lab.cgw.next_deadline() is None


def test_forced_encapsulation_alone_sends_no_keepalives() -> None:
    """force_encap (strongSwan encap=yes) fakes a NAT so ESP goes in UDP; with no real NAT in the path
    nobody's own address is translated, so nobody keeps a mapping alive (charon: COND_NAT_FAKE, not NAT_HERE)."""
    from tests.ikev2.test_liveness import net_for

    aws, cgw = pair(cgw_cfg=config(Role.CGW, behaviour=Behaviour(dpd_enabled=False), force_encap=True))
    net = net_for(aws, cgw)
    net.start_all()
    net.run_until(70)
    c = cgw._current()
    assert c is not None and c.nat_detected and not c.nat_local and c.local[1] == 4500
    assert aws.status.status is Status.UP
    assert not [r for r in net.trace.records if r.fields.get("kind") == "nat_keepalive"]
    assert "nat_keepalive_received" not in aws.counters
