"""RFC 3706 DPD and the AWS timeout model in virtual time, with exact timelines.

AWS (ike-dpd.md §1.2): with t0 the last authenticated inbound traffic, R-U-THEREs go out at t0+10, t0+20, ...
and the peer is dead at t0 + DPDTimeoutSeconds (40 by default).
"""

from __future__ import annotations

import itertools
import random
from typing import Any

import pytest

from cgw_peer.config import PROFILES, Behaviour, DpdTimeoutAction, SeqOnRetry, TunnelOptions
from cgw_peer.ikev1.peer import IkeV1Peer
from cgw_peer.ikev1.sa import IsakmpSa
from cgw_peer.lifecycle.status import LOG_IKEV1_PEER_DEAD, PhaseState, Status
from cgw_peer.wire.constants import NotifyType
from emulator.link import FaultPlan
from tests.ikev1.helpers import AWS_IP, CGW_IP, QUIET_CGW, aws_config, cgw_config, make_net, make_peer, sel, sent, times

FOREVER = 1e9


def aws_with(action: str = "clear", timeout: int = 40, **beh: Any) -> Any:
    return aws_config(
        options=TunnelOptions(dpd_timeout_action=DpdTimeoutAction(action), dpd_timeout_seconds=timeout),
        behaviour=Behaviour(**beh),
    )


def test_idle_dpd_probe_instants() -> None:
    net, aws, cgw = make_net()
    net.start_all()
    net.run_until(45)
    assert times(net, "dpd_request_sent", "aws") == [10.0, 20.0, 30.0, 40.0]
    assert times(net, "dpd_ack_sent", "cgw") == [10.0, 20.0, 30.0, 40.0]
    req = [r.fields["seq"] for r in sel(net, "dpd_request_sent", "aws")]
    ack = [r.fields["seq"] for r in sel(net, "dpd_ack_received", "aws")]
    # RFC 3706 §6: random first value with the high bit clear, +1 per acknowledged probe, ACK echoes.
    assert req[0] < 2**31 and req == [req[0] + i for i in range(4)] and ack == req
    assert sel(net, "dpd_timeout") == [] and aws.counters == {} and cgw.counters == {}


def test_traffic_suppresses_probes() -> None:
    net, aws, _cgw = make_net()
    net.start_all()
    for t in range(5, 60, 5):  # inbound ESP every 5 s (liveness_traffic = ike+esp by default)
        net.at(t, lambda t=t: aws.note_esp_inbound(float(t)))
    net.run_until(80)
    assert times(net, "dpd_request_sent", "aws") == [65.0, 75.0]


def test_esp_does_not_count_when_configured_ike_only() -> None:
    net, aws, _cgw = make_net(aws_cfg=aws_config(behaviour=PROFILES["device"]))
    net.start_all()
    for t in range(5, 60, 5):
        net.at(t, lambda t=t: aws.note_esp_inbound(float(t)))
    net.run_until(25)
    assert times(net, "dpd_request_sent", "aws") == [10.0, 20.0]


def silent_from(net: Any, t: float) -> None:
    net.set_faults(CGW_IP, AWS_IP, FaultPlan(blackholes=((t, FOREVER),)))
    net.set_faults(AWS_IP, CGW_IP, FaultPlan(blackholes=((t, FOREVER),)))


def test_timeout_clear() -> None:
    net, aws, _cgw = make_net(aws_cfg=aws_with("clear"))
    net.start_all()
    silent_from(net, 95)
    net.run_until(400)
    # Last inbound: the ACK at 90. Probes at 100, 110, 120; dead at 90 + 40 = 130 (no fourth probe).
    assert times(net, "dpd_request_sent", "aws") == [10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 110, 120]
    (to,) = sel(net, "dpd_timeout", "aws")
    assert (to.t, to.fields) == (
        130.0,
        {"action": "clear", "last_inbound": 90.0, "model": "aws", "probes": 3, "retransmits": 2},
    )
    assert [(r.t, r.fields) for r in sel(net, "aws_log", "aws")] == [(130.0, {"message": LOG_IKEV1_PEER_DEAD})]
    assert [(r.t, r.fields) for r in sel(net, "tunnel_down", "aws")] == [(130.0, {"reason": "dpd_timeout"})]
    assert times(net, "routes_withdrawn", "aws") == [130.0]
    assert sel(net, "restart_scheduled", "aws") == [] and sent(net, "delete", "aws") == []
    st = aws.status
    assert (st.status, st.status_message, st.last_status_change) == (Status.DOWN, "IPSEC IS DOWN", 130.0)
    assert (st.phase1_state, st.phase2_state) == (PhaseState.DOWN, PhaseState.DOWN)
    assert aws.ike_spis() == set() and aws.children == [] and aws.next_deadline() is None  # waits for the CGW
    # Same seq on every unanswered probe (AWS profile: reuse, as strongSwan).
    seqs = [r.fields["seq"] for r in sel(net, "dpd_request_sent", "aws") if r.t >= 100]
    assert len(set(seqs)) == 1


def test_timeout_clear_with_30s_and_first_probe_reference() -> None:
    net, _aws, _cgw = make_net(aws_cfg=aws_with("clear", timeout=30, liveness_model="libreswan"))
    net.start_all()
    silent_from(net, 95)
    net.run_until(200)
    # libreswan-style: dead 30 s after the first unanswered probe (100).
    assert times(net, "dpd_timeout", "aws") == [130.0]


def test_timeout_none_keeps_sas_and_status() -> None:
    net, aws, _cgw = make_net(aws_cfg=aws_with("none"))
    net.start_all()
    silent_from(net, 95)
    net.run_until(200)
    (to,) = sel(net, "dpd_timeout", "aws")
    assert (to.t, to.fields["action"]) == (130.0, "none")
    assert sel(net, "tunnel_down") == [] and aws.status.status is Status.UP and len(aws.children) == 1
    assert times(net, "dpd_request_sent", "aws")[-4:] == [170.0, 180.0, 190.0, 200.0]  # probing continues


def test_timeout_restart_backoff_and_recovery() -> None:
    net, aws, cgw = make_net(aws_cfg=aws_with("restart", restart_backoff_jitter=0.0))
    net.start_all()
    net.set_faults(CGW_IP, AWS_IP, FaultPlan(blackholes=((95, 400),)))
    net.set_faults(AWS_IP, CGW_IP, FaultPlan(blackholes=((95, 400),)))
    net.run_until(1000)
    (to,) = sel(net, "dpd_timeout", "aws")
    assert (to.t, to.fields["action"]) == (130.0, "restart")
    assert times(net, "tunnel_down", "aws") == [130.0] and times(net, "routes_withdrawn", "aws") == [130.0]
    rs = sel(net, "restart_scheduled", "aws")
    # Backoff 1 s, then (after a full retransmission budget of 165.06 s each) 2 s, 4 s...
    assert rs[0].t == 130.0 and rs[0].fields == {"at": 131.0, "attempt": 1, "delay": 1.0}
    assert rs[1].fields["attempt"] == 2 and rs[1].fields["at"] - rs[1].t == 2.0
    assert sent(net, "main_mode_1", "aws")[0].t == 131.0
    # AWS re-initiates IKEv1 with INITIAL-CONTACT; the CGW (which never noticed) replaces its stale SAs.
    up = times(net, "tunnel_up", "aws")
    assert len(up) == 2 and 400 <= up[1] < 500
    assert aws.status.status is Status.UP and len(aws.children) == 1 and len(cgw.children) == 1
    assert aws.ike_spis() == cgw.ike_spis() and len(aws.ike_spis()) == 2
    assert cgw.counters.get("initial_contact_deleted", 0) >= 2


def test_lost_acks() -> None:
    net, _aws, cgw = make_net(aws_cfg=aws_with("clear"))
    net.set_faults(CGW_IP, AWS_IP, FaultPlan(drop_kinds=frozenset({"dpd_ack"}), drop_kinds_window=(95, FOREVER)))
    net.start_all()
    net.run_until(200)
    assert times(net, "dpd_ack_sent", "cgw")[-3:] == [100.0, 110.0, 120.0]  # the CGW hears and answers...
    assert times(net, "dpd_timeout", "aws") == [130.0]  # ...but AWS never hears back
    # The retries reuse the seq: the CGW sees duplicates (strongSwan-like: answered anyway).
    assert cgw.counters["dpd:duplicate_request"] == 2


class ShiftedAckPeer(IkeV1Peer):
    """A CGW that answers with the wrong sequence number (Openswan issue #312 against a Cisco ASA)."""

    def _send_dpd(self, sa: IsakmpSa, ntype: int, seq: int, kind: str) -> None:
        if ntype == NotifyType.R_U_THERE_ACK:
            seq = (seq + 1) & 0xFFFFFFFF
        super()._send_dpd(sa, ntype, seq, kind)


@pytest.mark.parametrize("counts", [False, True])
def test_wrong_sequence_acks(counts: bool) -> None:
    cgw = ShiftedAckPeer(cgw_config(), local=(CGW_IP, 500), remote=(AWS_IP, 500), rng=random.Random(9))
    net, aws, _ = make_net(aws_cfg=aws_with("clear", wrong_seq_ack_counts=counts), cgw_peer=cgw)
    net.start_all()
    net.run_until(100)
    acks = sel(net, "dpd_ack_received", "aws")
    assert acks and all(not a.fields["valid"] for a in acks)
    if counts:  # libreswan: any authenticated ACK cancels the timeout
        assert sel(net, "dpd_timeout") == [] and aws.counters["dpd:wrong_seq_ack"] == 10
    else:  # strongSwan / RFC 3706 §6.2: counted, no liveness credit -> dead at t0 + 40
        assert times(net, "dpd_timeout", "aws") == [40.0]
        assert aws.counters["dpd:wrong_seq_ack"] == 3


@pytest.mark.parametrize(("limit", "answered"), [(None, 3), (1, 2), (0, 1)])
def test_duplicate_r_u_there_answer_limit(limit: int | None, answered: int) -> None:
    net, _aws, cgw = make_net(
        aws_cfg=aws_with("clear"), cgw_cfg=cgw_config(behaviour=Behaviour(dpd_enabled=False, dup_answer_limit=limit))
    )
    net.set_faults(CGW_IP, AWS_IP, FaultPlan(drop_kinds=frozenset({"dpd_ack"}), drop_kinds_window=(95, FOREVER)))
    net.start_all()
    net.run_until(125)
    assert len([t for t in times(net, "dpd_ack_sent", "cgw") if t >= 100]) == answered
    assert cgw.counters["dpd:duplicate_request"] == 2
    assert cgw.counters.get("dpd:duplicate_not_answered", 0) == 3 - answered


def test_duplicated_datagrams_are_recognised_and_dropped() -> None:
    net, aws, _cgw = make_net()
    net.set_faults(AWS_IP, CGW_IP, FaultPlan(duplicate=1.0, duplicate_delay=0.001))
    net.start_all()
    net.run_until(25)
    # Each R-U-THERE arrives twice. The copy has the message ID of the original (a peer repeats a probe in a new
    # exchange, never bitwise), so it is recognised as the same message: dropped, not answered, no liveness.
    assert times(net, "dpd_ack_sent", "cgw") == [10.0, 20.0]
    assert _cgw.counters["replay:dpd"] == 2
    assert [r.t for r in sel(net, "datagram_dropped", "cgw") if r.fields["reason"] == "replayed"] == [10.001, 20.001]
    assert "dpd:wrong_seq_ack" not in aws.counters and sel(net, "dpd_timeout") == []


def test_increment_seq_on_retry() -> None:
    net, _aws, _cgw = make_net(aws_cfg=aws_with("clear", seq_on_retry=SeqOnRetry.INCREMENT))
    net.start_all()
    silent_from(net, 95)
    net.run_until(135)
    seqs = [r.fields["seq"] for r in sel(net, "dpd_request_sent", "aws")]
    assert seqs == [seqs[0] + i for i in range(len(seqs))]


def test_one_way_blackhole() -> None:
    """CGW -> AWS lost from 95 s: AWS declares the peer dead although the CGW still hears AWS (issue #1728)."""
    cgw_beh = PROFILES["strongswan"]
    cgw_opts = TunnelOptions(dpd_timeout_action=DpdTimeoutAction.RESTART)
    net, aws, cgw = make_net(aws_cfg=aws_with("clear"), cgw_cfg=cgw_config(behaviour=cgw_beh, options=cgw_opts))
    net.set_faults(CGW_IP, AWS_IP, FaultPlan(blackholes=((95, 300),)))
    net.start_all()
    net.run_until(600)
    assert times(net, "dpd_timeout", "aws") == [130.0]
    # The CGW heard AWS's probes at 100/110/120; its own probes go unanswered: dead at 120 + 30.
    assert sel(net, "dpd_timeout", "cgw")[0].t == 150.0
    assert sel(net, "restart_scheduled", "cgw")[0].t == 150.0
    # After the path heals the CGW's restart brings the tunnel back.
    assert aws.status.status is Status.UP and cgw.status.status is Status.UP
    assert 300 <= times(net, "tunnel_up", "aws")[-1] < 400


def test_peer_crash_and_return_after_timeout() -> None:
    net, aws, _cgw = make_net(aws_cfg=aws_with("clear"))
    net.start_all()
    net.at(95, lambda: net.crash("cgw"))
    net.at(300, lambda: net.revive("cgw", make_peer(cgw_config(), 77)))
    net.run_until(320)
    assert times(net, "dpd_timeout", "aws") == [130.0]
    assert times(net, "tunnel_up", "aws") == [0.0, 300.0]
    assert aws.status.status is Status.UP and aws.status.last_status_change == 300.0


def test_peer_crash_and_quick_return_replaces_stale_sas() -> None:
    net, aws, _cgw = make_net(aws_cfg=aws_with("clear"))
    net.start_all()
    new_cgw = make_peer(cgw_config(), 77)
    net.at(95, lambda: net.crash("cgw"))
    net.at(115, lambda: net.revive("cgw", new_cgw))
    net.run_until(200)
    assert sel(net, "dpd_timeout") == []  # INITIAL-CONTACT came in before the timeout
    assert aws.counters["initial_contact_deleted"] == 2  # the stale ISAKMP SA and IPsec SA pair
    assert len(aws.children) == 1 and aws.ike_spis() == new_cgw.ike_spis()
    # DPD continues on the new SA: probes 10 s after the new SA's last traffic.
    assert [t for t in times(net, "dpd_request_sent", "aws") if t > 115][:2] == [125.0, 135.0]


def test_rekey_while_dpd_runs() -> None:
    opts = TunnelOptions(
        phase1_lifetime_seconds=1000,
        phase2_lifetime_seconds=900,
        rekey_margin_time_seconds=60,
        rekey_fuzz_percentage=0,
    )
    aws_cfg = aws_config(options=opts)
    cgw_cfg = cgw_config(options=opts, behaviour=Behaviour(dpd_enabled=False, rekey_initiator=False))
    net, aws, cgw = make_net(aws_cfg, cgw_cfg)
    probe_cookies: list[tuple[float, bytes]] = []

    def spy(data: bytes, kind: str, now: float) -> bool:
        if kind == "dpd_request":
            probe_cookies.append((now, data[:16]))
        return False

    net.set_faults(CGW_IP, AWS_IP, FaultPlan(delay=0.02))
    net.set_faults(AWS_IP, CGW_IP, FaultPlan(delay=0.02, drop_if=spy))
    net.start_all()
    net.run_until(5)
    first_ike = set(aws.ike_spis())
    net.run_until(2000)
    # strongSwan's formula with fuzz 0: rekey at lifetime - margin (child 840, 1680; ISAKMP 940, 1880).
    rk = [(round(r.t, 3), r.fields["sa"]) for r in sel(net, "rekey_started", "aws")]
    child_up = [round(t, 3) for t in times(net, "child_sa_established", "aws")]
    ike_up = [round(t, 3) for t in times(net, "ike_sa_established", "aws")]
    assert child_up[:2] == [0.18, 840.22] and ike_up[:2] == [0.1, 940.22]  # 20 ms per hop
    assert rk == [(840.18, "child"), (940.1, "ike"), (1680.22, "child"), (1880.22, "ike")]
    assert [r.fields["sa"] for r in sel(net, "rekey_done", "aws")] == ["child", "ike", "child", "ike"]
    assert [r.fields["sa"] for r in sel(net, "rekey_done", "cgw")] == ["child", "ike", "child", "ike"]
    assert sel(net, "tunnel_down") == [] and sel(net, "dpd_timeout") == []
    # DPD never stopped: the gap between consecutive probes never exceeds the 10 s delay + RTT.
    probes = times(net, "dpd_request_sent", "aws")
    # Rekey messages are inbound traffic, so they postpone the next probe (on-demand DPD); probing resumes
    # 10 s after the rekey on the new SA.
    for done in times(net, "rekey_done", "aws"):
        assert any(done < p <= done + 10.05 for p in probes)
    assert max(b - a for a, b in itertools.pairwise(probes)) <= 20.1
    assert all(r.fields["valid"] for r in sel(net, "dpd_ack_received", "aws"))
    # The old SAs were deleted by the rekeying side; one of each remains on both sides.
    assert len(aws.children) == 1 and len(cgw.children) == 1 and aws.ike_spis() == cgw.ike_spis()
    assert aws.ike_spis().isdisjoint(first_ike)
    # R-U-THEREs go out under the newest ISAKMP SA's cookies after each phase-1 rekey.
    cur = aws.current_isakmp
    assert cur is not None and probe_cookies[-1][1] == cur.icookie + cur.rcookie
    cookies_by_period = {c for t, c in probe_cookies if 950 < t < 1870}
    assert len(cookies_by_period) == 1 and cookies_by_period != {probe_cookies[0][1]}
    assert len(sel(net, "delete_received", "cgw")) == 4


def test_simultaneous_restart_by_both_sides_converges() -> None:
    aws_cfg = aws_with("restart")
    cgw_opts = TunnelOptions(dpd_timeout_action=DpdTimeoutAction.RESTART)
    cgw_cfg = cgw_config(options=cgw_opts, behaviour=Behaviour(dpd_timeout=40.0))
    net, aws, cgw = make_net(aws_cfg, cgw_cfg, seed=5)
    for a, b in ((CGW_IP, AWS_IP), (AWS_IP, CGW_IP)):
        net.set_faults(a, b, FaultPlan(delay=0.01, blackholes=((95, 400),)))
    net.start_all()
    net.run_until(1500)
    # Last inbound at ~90.3 on both sides (10 ms links): dead 40 s later on both sides.
    assert times(net, "dpd_timeout", "aws") == [pytest.approx(130.3, abs=0.05)]
    assert times(net, "dpd_timeout", "cgw") == [pytest.approx(130.3, abs=0.05)]
    # No storm: each side made 3 attempts (backoff 1 s, 2 s, 4 s with jitter, each after a full retransmission
    # budget); the first Main Mode after the path healed won and cancelled the other side's pending restart.
    assert [r.fields["attempt"] for r in sel(net, "restart_scheduled", "aws")] == [1, 2, 3]
    assert [r.fields["attempt"] for r in sel(net, "restart_scheduled", "cgw")] == [1, 2, 3]
    assert len([r for r in sent(net, "main_mode_1") if r.t > 400]) == 1
    # Converged: exactly one ISAKMP SA and one IPsec SA pair, the same on both sides.
    assert aws.status.status is Status.UP and cgw.status.status is Status.UP
    assert len(aws.children) == 1 and len(cgw.children) == 1
    assert aws.children[0].spi_in == cgw.children[0].spi_out
    assert aws.ike_spis() == cgw.ike_spis() and len(aws.ike_spis()) == 2
    assert sel(net, "dpd_timeout")[-1].t < 400  # and no DPD timeout after recovery


def test_crossing_main_modes_converge_to_one_sa() -> None:
    net, aws, cgw = make_net(aws_config(initiate=True, options=TunnelOptions(phase2_dh_group_numbers=(14,))))
    for a, b in ((CGW_IP, AWS_IP), (AWS_IP, CGW_IP)):
        net.set_faults(a, b, FaultPlan(delay=0.01))
    net.start_all()
    net.run_until(5)
    assert len(sent(net, "main_mode_1")) == 2  # both initiated at 0, the MM1s crossed
    # The lower initiator cookie wins on both sides: one ISAKMP SA, one IPsec SA pair.
    assert aws.counters.get("dropped:mm_collision", 0) + cgw.counters.get("dropped:mm_collision", 0) == 1
    assert aws.counters.get("mm_collision_yielded", 0) + cgw.counters.get("mm_collision_yielded", 0) == 1
    assert len(sel(net, "ike_sa_established")) == 2 and len(sel(net, "tunnel_up")) == 2
    assert aws.ike_spis() == cgw.ike_spis() and len(aws.children) == len(cgw.children) == 1


def test_close_sends_deletes_and_peer_goes_down() -> None:
    net, aws, cgw = make_net()
    net.start_all()
    net.call("cgw", cgw.close, at=50)
    net.run_until(100)
    assert [r.fields["protocol"] for r in sel(net, "delete_sent", "cgw")] == ["esp", "ike"]
    assert [r.fields["protocol"] for r in sel(net, "delete_received", "aws")] == ["esp", "ike"]
    assert "AWS tunnel received DELETE for IKE_SA from CGW" in [r.fields["message"] for r in sel(net, "aws_log")]
    assert times(net, "tunnel_down") == [50.0, 50.0]
    assert aws.status.status is Status.DOWN and aws.next_deadline() is None and cgw.next_deadline() is None


def test_quiet_cgw_helper_is_quiet() -> None:
    assert QUIET_CGW.dpd_enabled is False


@pytest.mark.parametrize("seed", [1, 2])
def test_soak_rekeys_on_a_lossy_jittery_path_never_flap(seed: int) -> None:
    """Both sides rekey (fuzzed), 50 ms +- 20 ms links with 1 % loss, 6000 s: the tunnel never goes down, at most
    two IPsec SA pairs overlap, and it ends with one ISAKMP SA and one pair on each side."""
    opts = TunnelOptions(
        phase1_lifetime_seconds=1200,
        phase2_lifetime_seconds=900,
        rekey_margin_time_seconds=120,
        rekey_fuzz_percentage=100,
    )
    net, aws, cgw = make_net(aws_config(options=opts), cgw_config(options=opts, behaviour=PROFILES["strongswan"]), seed)
    for a, b in ((AWS_IP, CGW_IP), (CGW_IP, AWS_IP)):
        net.set_faults(a, b, FaultPlan(delay=0.05, jitter=0.02, loss=0.01))
    most = [0]
    net.on_event(lambda r: most.__setitem__(0, max(most[0], len(aws.children), len(cgw.children))))
    net.start_all()
    net.run_until(6000)
    assert sel(net, "tunnel_down") == [] and sel(net, "dpd_timeout") == []
    assert len(sel(net, "rekey_done")) >= 20 and most[0] == 2
    assert len(aws.children) == len(cgw.children) == 1 and aws.ike_spis() == cgw.ike_spis()
    assert aws.children[0].keys_in == cgw.children[0].keys_out
    assert not any(k.startswith("dropped:") for k in (*aws.counters, *cgw.counters))


@pytest.mark.parametrize("seed", [3, 8, 13])
def test_chaos_converges_after_faults_end(seed: int) -> None:
    """Random (partly one-way) blackholes, loss, duplication, reordering for 4000 s with DPD restart on both
    sides and fuzzed rekeys; once the path is clean again both sides converge to one tunnel with matching keys."""
    opts = TunnelOptions(
        phase1_lifetime_seconds=1200,
        phase2_lifetime_seconds=900,
        rekey_margin_time_seconds=120,
        dpd_timeout_action=DpdTimeoutAction.RESTART,
    )
    r = random.Random(seed)
    holes = []
    t = 50.0
    while t < 4000:
        s = t + r.uniform(50, 400)
        e = s + r.uniform(5, 200)
        holes.append((s, e))
        t = e
    beh = PROFILES["strongswan"] if seed % 2 else PROFILES["libreswan"]
    net, aws, cgw = make_net(aws_config(options=opts), cgw_config(options=opts, behaviour=beh), seed=seed)
    for a, b in ((AWS_IP, CGW_IP), (CGW_IP, AWS_IP)):
        windows = tuple(h for i, h in enumerate(holes) if i % 3 or a == AWS_IP)  # every third one is one-way
        plan = FaultPlan(delay=0.03, jitter=0.03, loss=0.05, duplicate=0.02, reorder=0.02, blackholes=windows)
        net.set_faults(a, b, plan)
    net.start_all()
    net.run_until(4000)
    assert sel(net, "dpd_timeout")  # the faults did bite
    for a, b in ((AWS_IP, CGW_IP), (CGW_IP, AWS_IP)):
        net.set_faults(a, b, FaultPlan(delay=0.03))
    net.run_until(5500)
    assert aws.status.status is Status.UP and cgw.status.status is Status.UP
    assert len(aws.children) == len(cgw.children) == 1
    assert aws.children[0].keys_in == cgw.children[0].keys_out and aws.ike_spis() == cgw.ike_spis()
    assert not any("internal" in k for k in (*aws.counters, *cgw.counters))
