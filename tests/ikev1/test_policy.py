"""Pure policy objects (version-agnostic): DPD timing, rekey schedule, restart backoff; periodic DPD with NAT."""

from __future__ import annotations

import random

import pytest

from cgw_peer.config import DeadReference, TunnelOptions
from cgw_peer.crypto.keymat_v1 import phase2_iv
from cgw_peer.dpd import DpdDecision, DpdMonitor
from cgw_peer.rekey import backoff_delay, rekey_delay
from cgw_peer.status import Status, TunnelStatus
from tests.ikev1.helpers import aws_config, cgw_config, make_net, times


def test_monitor_aws_timeline() -> None:
    m = DpdMonitor(10, 10, 40)
    m.reset(0.0)
    assert m.deadline() == 10 and m.dead_at is None
    seen = []
    t = 0.0
    while True:
        t = m.deadline()  # type: ignore[assignment]
        d = m.poll(t)
        seen.append((t, d))
        if d is DpdDecision.SEND_PROBE:
            m.on_probe_sent(t)
        else:
            m.mark_dead()
            break
    assert seen == [
        (10, DpdDecision.SEND_PROBE),
        (20, DpdDecision.SEND_PROBE),
        (30, DpdDecision.SEND_PROBE),
        (40, DpdDecision.PEER_DEAD),
    ]
    assert m.dead_at is None and m.poll(40) is DpdDecision.SEND_PROBE  # probing may continue (action none)
    m.on_inbound(41)
    assert m.deadline() == 51 and not m.dead_reported


def test_monitor_first_probe_reference_and_early_poll() -> None:
    m = DpdMonitor(10, 5, 30, DeadReference.FIRST_PROBE)
    m.reset(100.0)
    assert m.poll(109.9) is DpdDecision.IDLE
    m.on_probe_sent(110)
    assert m.dead_at == 140 and m.deadline() == 115
    m.on_probe_skipped(115)
    assert m.deadline() == 120


def test_monitor_periodic_ignores_traffic_for_probes() -> None:
    m = DpdMonitor(10, 10, 40, periodic=True)
    m.reset(0)
    m.on_inbound(5)
    assert m.deadline() == 10  # periodic: traffic does not push the probe back
    m2 = DpdMonitor(10, 10, 40)
    m2.reset(0)
    m2.on_inbound(5)
    assert m2.deadline() == 15


def test_rekey_formula() -> None:
    rng = random.Random(1)
    # strongSwan: rekeytime = lifetime - (margin + random(0, margin * fuzz)).
    assert rekey_delay(3600, 270, 0, rng) == 3330
    vals = [rekey_delay(3600, 270, 100, rng) for _ in range(2000)]
    assert min(vals) >= 3600 - 540 and max(vals) <= 3330
    assert min(vals) < 3600 - 500 and max(vals) > 3300  # spread over the whole window
    opts = TunnelOptions()
    assert opts.rekey_margin_time_seconds * 2 <= opts.phase2_lifetime_seconds


def test_backoff() -> None:
    rng = random.Random(2)
    assert [backoff_delay(a, 1.0, 60.0, 0.0, rng) for a in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    j = [backoff_delay(3, 1.0, 60.0, 0.5, rng) for _ in range(500)]
    assert min(j) >= 4.0 and max(j) <= 8.0 and len(set(j)) > 400


def test_status_update_stamps_changes() -> None:
    from cgw_peer.status import PhaseState

    s = TunnelStatus()
    assert s.to_aws()["Status"] == "DOWN"
    assert s.update(5.0, up=False, phase1=PhaseState.NEGOTIATING, phase2=PhaseState.DOWN)
    assert not s.update(6.0, up=False, phase1=PhaseState.NEGOTIATING, phase2=PhaseState.DOWN)
    assert s.update(7.0, up=True, phase1=PhaseState.ESTABLISHED, phase2=PhaseState.ESTABLISHED)
    assert (s.status, s.status_message, s.last_status_change) == (Status.UP, "IPSEC IS UP", 7.0)


def test_periodic_dpd_with_nat() -> None:
    """AWS: on-demand DPD without NAT, periodic DPD for peers using NAT (UDP encapsulation here)."""
    net, aws, _cgw = make_net(aws_config(), cgw_config(force_encap=True))
    net.start_all()
    for t in range(5, 50, 5):
        net.at(t, lambda t=t: aws.note_esp_inbound(float(t)))
    net.run_until(35)
    assert times(net, "dpd_request_sent", "aws") == [10.0, 20.0, 30.0]


@pytest.mark.parametrize("mid", [0, 1, 0xDEADBEEF, 0xFFFFFFFF])
def test_engine_phase2_iv_matches_keymat(mid: int) -> None:
    net, aws, _cgw = make_net()
    net.start_all()
    net.run_until(1)
    sa = aws.current_isakmp
    assert sa is not None
    assert aws._phase2_iv(sa, mid.to_bytes(4, "big")) == phase2_iv(sa.hash_name, sa.last_p1_block, mid)


def test_rekey_delay_with_a_short_negotiated_lifetime() -> None:
    # A peer may negotiate a lifetime far below the configured margin (charon with rekey_time=3s answers 3 s):
    # the rekey then lands between a third and two thirds of it, never at once.
    rng = random.Random(3)
    vals = [rekey_delay(3.3, 270, 100, rng) for _ in range(500)]
    assert min(vals) >= 3.3 / 3 - 1e-9 and max(vals) <= 3.3 * 2 / 3 + 1e-9
    assert max(vals) - min(vals) > 0.8  # still fuzzed
    # Ordinary AWS values are untouched by the clamp.
    assert rekey_delay(3600, 270, 0, rng) == 3330
