"""Virtual-time IKEv2 liveness and DPD timeout scenarios on SimNetwork, with exact timelines per policy."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from cgw_peer.config import Behaviour, DpdTimeoutAction, LivenessModel, Retransmit, Role, StartupAction
from cgw_peer.ikev2.peer import IkeV2Peer
from emulator.link import FaultPlan
from emulator.simnet import SimNetwork
from emulator.trace import TraceRecord

from .helpers import AWS_ADDR, CGW_ADDR, config, options, pair

AWS_IP, CGW_IP = AWS_ADDR[0], CGW_ADDR[0]


def net_for(aws: IkeV2Peer, cgw: IkeV2Peer) -> SimNetwork:
    net = SimNetwork(seed=7)
    net.add_node("aws", aws, [AWS_IP])
    net.add_node("cgw", cgw, [CGW_IP])
    return net


def times(recs: list[TraceRecord]) -> list[float]:
    return [round(r.t, 6) for r in recs]


def quiet_cgw(**kw: Any) -> Behaviour:
    """A CGW that never probes (so AWS's timeline is the only one) and never rekeys."""
    return Behaviour(dpd_enabled=False, rekey_initiator=False, **kw)


def test_aws_probes_every_10s_when_idle_and_not_when_traffic_flows() -> None:
    aws, cgw = pair(cgw_cfg=config(Role.CGW, behaviour=quiet_cgw()))
    net = net_for(aws, cgw)
    net.start_all()
    net.run_until(35)
    sent = net.trace.select("dpd_request_sent", node="aws")
    assert times(sent) == [10.0, 20.0, 30.0]
    assert [r.fields["message_id"] for r in sent] == [0, 1, 2]  # responder's own requests start at ID 0
    assert times(net.trace.select("dpd_ack_received", node="aws")) == [10.0, 20.0, 30.0]
    # ESP arriving every 5 s counts as liveness (liveness_traffic = ike+esp): no probes at all.
    for k in range(8):
        net.at(35 + 5 * k, lambda: aws.note_esp_inbound(net.now))
    net.run_until(75)
    assert times(net.trace.select("dpd_request_sent", node="aws")) == [10.0, 20.0, 30.0]
    net.run_until(86)
    # Last ESP at 70 -> next probe at 80.
    assert times(net.trace.select("dpd_request_sent", node="aws"))[-1] == 80.0


@pytest.mark.parametrize(
    ("action", "expect"),
    [
        (DpdTimeoutAction.CLEAR, ["dpd_timeout", "aws_log", "tunnel_down", "routes_withdrawn"]),
        (DpdTimeoutAction.RESTART, ["dpd_timeout", "aws_log", "tunnel_down", "routes_withdrawn", "restart_scheduled"]),
        (DpdTimeoutAction.NONE, ["dpd_timeout", "aws_log"]),
    ],
)
def test_aws_dead_at_last_inbound_plus_timeout(action: DpdTimeoutAction, expect: list[str]) -> None:
    """CGW silent from 25 s: last inbound 20 (the ACK), probe at 30, retransmits at 40 and 50, dead at
    20 + DPDTimeoutSeconds(40) = 60 with "DPD timed out after 2 retransmits"."""
    opts = options(dpd_timeout_action=action)
    aws, cgw = pair(
        config(Role.AWS, opts, behaviour=Behaviour(rekey_initiator=False)),
        config(Role.CGW, opts, behaviour=quiet_cgw()),
    )
    net = net_for(aws, cgw)
    net.start_all()
    net.at(25, lambda: net.crash("cgw"))
    net.run_until(60.5)
    assert times(net.trace.select("dpd_request_sent", node="aws"))[:5] == [10.0, 20.0, 30.0, 40.0, 50.0]
    rec = net.trace.select(node="aws")
    skip = ("datagram_sent", "dpd_request_sent", "request_retransmitted")
    at60 = [r.event for r in rec if r.t == 60.0 and r.event not in skip]
    assert at60 == expect
    to = net.trace.first("dpd_timeout", node="aws")
    assert to is not None and to.fields["last_inbound"] == 20.0 and to.fields["retransmits"] == 2
    log = net.trace.first("aws_log", node="aws")
    assert log is not None and log.fields["message"] == "AWS tunnel DPD timed out after 2 retransmits"
    if action is DpdTimeoutAction.NONE:
        assert aws.status.status.value == "UP" and aws.ike_sa() is not None
        net.run_until(101)
        # The same request keeps going out every 10 s (same message ID, so a returning peer answers it);
        # the timeout is reported once per silence (cgw_peer.lifecycle), as under IKEv1.
        sent = net.trace.select("dpd_request_sent", node="aws")
        assert times(sent)[-5:] == [60.0, 70.0, 80.0, 90.0, 100.0]
        assert {r.fields["message_id"] for r in sent[2:]} == {2}
        assert times(net.trace.select("dpd_timeout", node="aws")) == [60.0]
    else:
        assert aws.status.status.value == "DOWN" and aws.ike_spis() == set()
    if action is DpdTimeoutAction.RESTART:
        r = net.trace.first("restart_scheduled", node="aws")
        assert r is not None and 60.5 <= r.fields["at"] <= 61.0  # 1 s initial backoff, up to 50 % jitter
        net.run_until(62)
        init = [x for x in net.trace.select("datagram_sent", node="aws") if x.fields["kind"] == "ike_sa_init_request"]
        assert times(init) == [round(r.fields["at"], 6)]


def test_strongswan_policy_dead_when_budget_spent() -> None:
    """strongSwan model, retransmit 1.0 * 1.4**n x3 (real-peers.md §1.5): probe at dpd_delay idle, retransmits
    at +1.0, +2.4, +4.36, dead at +7.104 (the sum of the four waits)."""
    b = Behaviour(
        dpd_delay=2.0,
        liveness_model=LivenessModel.STRONGSWAN,
        rekey_initiator=False,
        retransmit=Retransmit(timeout=1.0, base=1.4, tries=3),
    )
    cgw_cfg = config(Role.CGW, behaviour=b)
    aws, cgw = pair(config(Role.AWS, behaviour=Behaviour(dpd_enabled=False, rekey_initiator=False)), cgw_cfg)
    net = net_for(aws, cgw)
    net.start_all()
    net.at(5, lambda: net.crash("aws"))
    net.run_until(20)
    sent = net.trace.select("dpd_request_sent", node="cgw")
    assert times(sent) == [2.0, 4.0, 6.0, 7.0, 8.4, 10.36]
    to = net.trace.first("dpd_timeout", node="cgw")
    assert to is not None and to.t == pytest.approx(6.0 + 1.0 + 1.4 + 1.96 + 2.744)
    assert to.fields["retransmits"] == 3 and to.fields["model"] == "strongswan"
    assert net.trace.first("aws_log", node="cgw") is None  # the CGW writes no AWS log lines
    assert net.trace.first("tunnel_down", node="cgw") is not None


def test_libreswan_policy_dead_after_budget() -> None:
    """libreswan model: 0.5 s doubling, the whole budget 60 s (retransmit-timeout)."""
    b = Behaviour(
        dpd_delay=10.0,
        liveness_model=LivenessModel.LIBRESWAN,
        rekey_initiator=False,
        retransmit=Retransmit(timeout=0.5, base=2.0, tries=7, limit=60.0, budget=60.0),
    )
    aws, cgw = pair(
        config(Role.AWS, behaviour=Behaviour(dpd_enabled=False, rekey_initiator=False)), config(Role.CGW, behaviour=b)
    )
    net = net_for(aws, cgw)
    net.start_all()
    net.at(15, lambda: net.crash("aws"))
    net.run_until(100)
    sent = times(net.trace.select("dpd_request_sent", node="cgw"))
    assert sent == [10.0, 20.0, 20.5, 21.5, 23.5, 27.5, 35.5, 51.5]
    to = net.trace.first("dpd_timeout", node="cgw")
    assert to is not None and to.t == 80.0 and to.fields["retransmits"] == 6


def test_lost_response_is_answered_from_cache() -> None:
    """The CGW's liveness response at 10 s is lost; AWS retransmits the same request (same ID, same bytes)
    at 20 s; the CGW answers from its response cache without processing it again."""
    aws, cgw = pair(cgw_cfg=config(Role.CGW, behaviour=quiet_cgw()))
    net = net_for(aws, cgw)
    net.set_faults(CGW_IP, AWS_IP, FaultPlan(drop_kinds=frozenset({"liveness_response"}), drop_kinds_window=(9, 11)))
    net.start_all()
    net.run_until(25)
    assert times(net.trace.select("dpd_request_received", node="cgw")) == [10.0]
    assert times(net.trace.select("response_retransmitted", node="cgw")) == [20.0]
    acks = net.trace.select("dpd_ack_received", node="aws")
    assert times(acks) == [20.0] and acks[0].fields["message_id"] == 0
    assert cgw.counters["response_retransmitted"] == 1
    # The resent response keeps its label (a fault plan dropping "liveness_response" drops it too).
    resent = [r for r in net.trace.select("datagram_sent", node="cgw") if r.t == 20.0]
    assert [r.fields["kind"] for r in resent] == ["liveness_response"]
    assert aws.status.status.value == "UP"


def test_aws_restart_until_cgw_returns() -> None:
    """DPDTimeoutAction=restart: the AWS side (StartupAction=start) keeps re-initiating with backoff while the
    CGW is gone; the CGW comes back as a fresh process that waits; then exactly one IKE SA remains each side."""
    opts = options(dpd_timeout_action=DpdTimeoutAction.RESTART, startup_action=StartupAction.START)
    rt = Retransmit(timeout=1.0, base=1.4, tries=3)
    aws, cgw = pair(
        config(Role.AWS, opts, behaviour=Behaviour(rekey_initiator=False, retransmit=rt)),
        config(Role.CGW, opts, behaviour=Behaviour(rekey_initiator=False, retransmit=rt)),
    )
    net = net_for(aws, cgw)
    net.start_all()
    net.at(25, lambda: net.crash("cgw"))
    fresh = IkeV2Peer(
        config(Role.CGW, opts, behaviour=Behaviour(rekey_initiator=False, retransmit=rt)),
        local=CGW_ADDR,
        remote=AWS_ADDR,
        rng=__import__("random").Random(99),
    )
    net.at(120, lambda: net.revive("cgw", fresh, start=False))
    net.run_until(300)
    assert net.trace.first("dpd_timeout", node="aws") is not None
    assert len(net.trace.select("restart_scheduled", node="aws")) >= 2
    ups = net.trace.select("tunnel_up", node="aws")
    assert len(ups) == 2 and ups[1].t > 120
    assert aws.status.status.value == "UP" and fresh.status.status.value == "UP"
    assert len(aws.ike_spis()) == 2 and aws.ike_spis() == fresh.ike_spis()  # one IKE SA each, the same one


@pytest.mark.parametrize("nat", [False, True])
def test_aws_periodic_checks_behind_nat(nat: bool) -> None:
    """AWS: on-demand checks without NAT (none while ESP arrives), periodic checks behind NAT (every 10 s even
    while ESP arrives); Behaviour.periodic_dpd_with_nat (default on)."""
    aws, cgw = pair(cgw_cfg=config(Role.CGW, behaviour=quiet_cgw(), force_encap=nat))
    net = net_for(aws, cgw)
    net.start_all()
    for k in range(60):
        net.at(0.5 + k, lambda: aws.note_esp_inbound(net.now))
    net.run_until(45)
    sent = times(net.trace.select("dpd_request_sent", node="aws"))
    assert sent == ([10.0, 20.0, 30.0, 40.0] if nat else [])
    assert times(net.trace.select("dpd_ack_received", node="aws")) == sent


def test_retransmit_jitter_only_shortens() -> None:
    """Retransmit.jitter (strongSwan retransmit_jitter): every wait is shortened by up to the fraction, never
    lengthened; the give-up time is the sum of the jittered waits."""
    b = Behaviour(
        dpd_delay=2.0,
        liveness_model=LivenessModel.STRONGSWAN,
        rekey_initiator=False,
        retransmit=Retransmit(timeout=1.0, base=2.0, tries=3, jitter=0.5),
    )
    aws, cgw = pair(
        config(Role.AWS, behaviour=Behaviour(dpd_enabled=False, rekey_initiator=False)), config(Role.CGW, behaviour=b)
    )
    net = net_for(aws, cgw)
    net.start_all()
    net.at(3, lambda: net.crash("aws"))
    net.run_until(30)
    sent = times(net.trace.select("dpd_request_sent", node="cgw"))
    assert sent[0] == 2.0 and sent[1] == 4.0 and len(sent) == 5
    gaps = [y - x for x, y in itertools.pairwise(sent[1:])]
    for gap, full in zip(gaps, [1.0, 2.0, 4.0], strict=True):
        assert full * 0.5 <= gap <= full
    to = net.trace.first("dpd_timeout", node="cgw")
    assert to is not None and sent[-1] < to.t <= sent[-1] + 8.0
