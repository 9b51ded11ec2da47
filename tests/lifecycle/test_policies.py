"""The shared lifecycle's pure parts on their own: liveness monitor, retransmission schedule, restart backoff,
rekey schedule and collision rule, the UP/DOWN machine."""

from __future__ import annotations

import random

from cgw_peer.config import Behaviour, LivenessModel, Retransmit, TunnelOptions
from cgw_peer.events import check_event
from cgw_peer.lifecycle import (
    DEAD,
    IDLE,
    PROBE,
    DeadRule,
    Liveness,
    PhaseState,
    Restart,
    Retransmission,
    Status,
    TunnelState,
    TunnelStatus,
    backoff_delay,
    dead_rule,
    policy_for,
    redundant,
    rekey_delay,
)
from emulator.actions import Event

EST = PhaseState.ESTABLISHED


def _walk(m: Liveness, until: float) -> list[tuple[float, int]]:
    seen = []
    while True:
        t = m.deadline()
        assert t is not None
        if t > until:
            return seen
        d = m.poll(t)
        seen.append((t, d))
        if d == PROBE:
            m.on_probe_sent(t)
        elif d == DEAD:
            m.mark_dead()
        else:  # pragma: no cover - deadline() names an instant where something is due
            raise AssertionError(f"idle at {t}")


def test_aws_timeline_ikev1() -> None:
    """AWS (ike-dpd.md §1.2): probes at t0+10/20/30, dead at t0+40, no fourth probe before the verdict."""
    m = Liveness(10, 10, 40, DeadRule.LAST_INBOUND, repeat_probes=True)
    m.start(0.0)
    assert m.deadline() == 10 and m.dead_at is None
    assert _walk(m, 40) == [(10, PROBE), (20, PROBE), (30, PROBE), (40, DEAD), (40, PROBE)]
    # After the verdict (action none) probing goes on and no second verdict comes until traffic returns.
    assert m.dead_at is None and m.probes == 4
    m.on_inbound(41)
    assert m.deadline() == 51 and not m.dead_reported and m.probes == 0 and m.dead_at is None


def test_first_probe_reference_and_early_poll() -> None:
    m = Liveness(10, 5, 30, dead_rule(LivenessModel.LIBRESWAN, 1), repeat_probes=True)
    m.start(100.0)
    assert m.poll(109.9) == IDLE
    m.on_probe_sent(110)
    assert m.dead_at == 140 and m.deadline() == 115
    m.on_probe_skipped(115)
    assert m.deadline() == 120


def test_idle_peer_is_never_declared_dead_without_a_probe() -> None:
    m = Liveness(10, 10, 40, DeadRule.LAST_INBOUND, repeat_probes=False)
    m.start(0.0)
    assert m.poll(1000.0) == PROBE  # an overdue probe, never a verdict
    m.on_probe_sent(1000.0)
    assert m.dead_at == 40.0 and m.poll(1000.0) == DEAD  # now asked: dead at t0 + 40 (already past)


def test_ikev2_request_waits_for_its_retransmissions() -> None:
    """IKEv2: one request per probe, retransmitted by its own schedule; the monitor only arms the verdict."""
    m = Liveness(10, 10, 40, DeadRule.LAST_INBOUND, repeat_probes=False)
    m.start(0.0)
    m.on_probe_sent(10)
    assert m.probe_at is None and m.deadline() == 40
    m.on_probe_repeated()
    m.on_probe_repeated()
    assert m.probes == 3 and m.poll(40) == DEAD
    # A peer request crossing our unanswered one: alive now, the verdict re-armed from now.
    m2 = Liveness(10, 10, 40, DeadRule.LAST_INBOUND, repeat_probes=False)
    m2.start(0.0)
    m2.on_probe_sent(10)
    m2.on_inbound(15, awaiting=True)
    assert m2.dead_at == 55 and m2.probes == 0


def test_budget_rule_never_times_out_by_itself() -> None:
    m = Liveness(10, 10, 40, dead_rule(LivenessModel.STRONGSWAN, 2), repeat_probes=False)
    m.start(0.0)
    m.on_probe_sent(10)
    assert m.deadline() is None and m.poll(1e9) == IDLE
    m.on_inbound(200)
    assert m.deadline() == 210


def test_periodic_ignores_traffic_for_probes() -> None:
    m = Liveness(10, 10, 40, DeadRule.LAST_INBOUND, repeat_probes=True)
    m.periodic = True
    m.start(0)
    m.on_inbound(5)
    assert m.deadline() == 10  # periodic: traffic does not push the probe back
    m2 = Liveness(10, 10, 40, DeadRule.LAST_INBOUND, repeat_probes=True)
    m2.start(0)
    m2.on_inbound(5)
    assert m2.deadline() == 15


def test_dead_rule_table() -> None:
    assert dead_rule(LivenessModel.AWS, 1) is dead_rule(LivenessModel.AWS, 2) is DeadRule.LAST_INBOUND
    assert dead_rule(LivenessModel.STRONGSWAN, 1) is DeadRule.LAST_INBOUND
    assert dead_rule(LivenessModel.LIBRESWAN, 1) is DeadRule.FIRST_PROBE
    assert dead_rule(LivenessModel.STRONGSWAN, 2) is dead_rule(LivenessModel.LIBRESWAN, 2)


def test_retransmission_schedule_strongswan() -> None:
    """strongSwan's defaults: 4 s * 1.8**n, 5 retransmits, given up after about 165 s (ike-dpd.md §5.1)."""
    pol = policy_for(Retransmit())
    r = Retransmission(b"x", "k", pol, 30.0, random.Random(1))
    sends = [30.0]
    while True:
        t = r.due()
        if not r.advance(t):
            break
        sends.append(t)
    assert [round(s, 4) for s in sends] == [30.0, 34.0, 41.2, 54.16, 77.488, 119.4784]
    assert round(r.give_up_at, 5) == 195.06112 and r.retransmits == 5


def test_retransmission_budget_and_jitter() -> None:
    """libreswan: 0.5 s doubling, retransmit-timeout 60 s; jitter only ever shortens a wait."""
    pol = policy_for(Retransmit(timeout=0.5, base=2.0, tries=7, limit=60.0, budget=60.0))
    r = Retransmission(b"x", "k", pol, 30.0, random.Random(1))
    assert r.give_up_at == 90.0
    pol_j = policy_for(Retransmit(jitter=0.5))
    rs = [Retransmission(b"x", "k", pol_j, 0.0, random.Random(i)) for i in range(50)]
    assert all(2.0 <= x.next_at <= 4.0 for x in rs) and len({x.next_at for x in rs}) > 40
    assert all(x.give_up_at <= pol.total + 165.1 for x in rs)


def test_rekey_formula() -> None:
    rng = random.Random(1)
    # strongSwan: rekeytime = lifetime - (margin + random(0, margin * fuzz)).
    assert rekey_delay(3600, 270, 0, rng) == 3330
    vals = [rekey_delay(3600, 270, 100, rng) for _ in range(2000)]
    assert min(vals) >= 3600 - 540 and max(vals) <= 3330
    assert min(vals) < 3600 - 500 and max(vals) > 3300  # spread over the whole window
    opts = TunnelOptions()
    assert opts.rekey_margin_time_seconds * 2 <= opts.phase2_lifetime_seconds


def test_rekey_delay_with_a_short_negotiated_lifetime() -> None:
    # A peer may negotiate a lifetime far below the configured margin (charon with rekey_time=3s answers 3 s):
    # the rekey then lands between a third and two thirds of it, never at once.
    rng = random.Random(3)
    vals = [rekey_delay(3.3, 270, 100, rng) for _ in range(500)]
    assert min(vals) >= 3.3 / 3 - 1e-9 and max(vals) <= 3.3 * 2 / 3 + 1e-9
    assert max(vals) - min(vals) > 0.8  # still fuzzed
    assert rekey_delay(3600, 270, 0, rng) == 3330


def test_collision_rule_lowest_nonce() -> None:
    """RFC 7296 §2.8.1: the SA holding the lowest of the four nonces is redundant (octet-wise)."""
    a = (b"\x05" * 32, b"\x09" * 32, "a")
    b = (b"\x07" * 32, b"\x04" + b"\xff" * 31, "b")
    assert redundant([a, b]) == "b"
    assert redundant([b, a]) == "b"
    assert redundant([(b"\x01", b"\x02", "short"), (b"\x01\x00", b"\x09", "long")]) == "short"


def test_backoff_is_one_based() -> None:
    rng = random.Random(2)
    assert [backoff_delay(a, 1.0, 60.0, 0.0, rng) for a in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
    j = [backoff_delay(4, 1.0, 60.0, 0.5, rng) for _ in range(500)]
    assert min(j) >= 4.0 and max(j) <= 8.0 and len(set(j)) > 400


def test_restart_attempts_count_from_one_and_reset_on_up() -> None:
    r = Restart()
    beh = Behaviour(restart_backoff_jitter=0.0)
    evs = [r.schedule(float(t), beh, random.Random(0)) for t in (0, 10, 20)]
    assert [e.fields["attempt"] for e in evs if e] == [1, 2, 3]
    assert [e.fields["delay"] for e in evs if e] == [1.0, 2.0, 4.0]
    assert all(not check_event(e.name, e.fields) for e in evs if e)
    assert r.due(24.0) and not r.due(24.0)
    r.on_up()
    ev = r.schedule(100.0, beh, random.Random(0))
    assert ev is not None and ev.fields["attempt"] == 1
    r.close()
    assert r.schedule(200.0, beh, random.Random(0)) is None and r.at is None


def test_state_machine_emits_each_transition_once() -> None:
    st = TunnelState()
    out: list[Event] = []
    assert not st.settle(1.0, False, PhaseState.NEGOTIATING, PhaseState.DOWN, "x", out)  # type: ignore[arg-type]
    assert st.settle(2.0, True, EST, EST, "x", out) and not st.settle(3.0, True, EST, EST, "x", out)  # type: ignore[arg-type]
    st.cause("dpd_timeout")
    st.cause("closed")  # the first cause wins: it is what started the teardown
    assert st.settle(4.0, False, PhaseState.DOWN, PhaseState.DOWN, "child_deleted", out)  # type: ignore[arg-type]
    assert not st.settle(5.0, False, PhaseState.DOWN, PhaseState.DOWN, "child_deleted", out)  # type: ignore[arg-type]
    assert [(e.name, dict(e.fields)) for e in out] == [
        ("tunnel_up", {}),
        ("tunnel_down", {"reason": "dpd_timeout"}),
        ("routes_withdrawn", {"reason": "dpd_timeout"}),
    ]
    assert st.status.status is Status.DOWN and st.status.last_status_change == 4.0


def test_status_update_stamps_changes() -> None:
    s = TunnelStatus()
    assert s.to_aws()["Status"] == "DOWN"
    assert s.update(5.0, up=False, phase1=PhaseState.NEGOTIATING, phase2=PhaseState.DOWN)
    assert not s.update(6.0, up=False, phase1=PhaseState.NEGOTIATING, phase2=PhaseState.DOWN)
    assert s.update(7.0, up=True, phase1=EST, phase2=EST)
    assert (s.status, s.status_message, s.last_status_change) == (Status.UP, "IPSEC IS UP", 7.0)
