"""Both IKE versions through the same virtual-time timelines, with exact instants and event fields.

The AWS model (``cgw_peer.lifecycle``): with t0 the last authenticated inbound message, probes at t0+10, +20,
+30 and the peer dead at t0 + DPDTimeoutSeconds (40). In every timeline below the CGW answers AWS's probes at 10,
20, ..., 90, so t0 = 90: probes at 100, 110, 120, dead at 130. The only differences between the versions are the
documented ones: how a probe is repeated (a new R-U-THERE vs a retransmission of the same INFORMATIONAL request,
visible as ``seq`` vs ``message_id``) and the AWS log line.
"""

from __future__ import annotations

import itertools

import pytest

from cgw_peer.config import Behaviour, DpdTimeoutAction, Retransmit, StartupAction
from cgw_peer.lifecycle.status import LOG_IKEV1_PEER_DEAD
from emulator.link import FaultPlan
from tests.lifecycle.pair import AWS_IP, CGW_IP, QUIET, Pair, options

VERSIONS = [1, 2]
FOREVER = 1e9
SKIP = frozenset({"datagram_sent", "sa_keys", "request_retransmitted"})

# AWS allows StartupAction=start with IKEv2 only (ike-dpd.md §1.3).
COMBOS = [
    (v, startup, action)
    for v in VERSIONS
    for startup in (StartupAction.ADD, StartupAction.START)
    for action in DpdTimeoutAction
    if not (v == 1 and startup is StartupAction.START)
]


def make(version: int, startup: StartupAction = StartupAction.ADD, action: str = "clear", **kw: object) -> Pair:
    opts = options(version, startup_action=startup, dpd_timeout_action=DpdTimeoutAction(action))
    return Pair(version, opts=opts, cgw_initiates=startup is StartupAction.ADD, **kw)  # type: ignore[arg-type]


def at(p: Pair, t: float, node: str = "aws") -> list[tuple[str, dict[str, object]]]:
    return [(r.event, dict(r.fields)) for r in p.trace if r.t == t and r.node == node and r.event not in SKIP]


def aws_line(version: int, retransmits: int) -> str:
    return LOG_IKEV1_PEER_DEAD if version == 1 else f"AWS tunnel DPD timed out after {retransmits} retransmits"


def probe_id(version: int, fields: dict[str, object]) -> object:
    """What identifies a probe on the wire: the R-U-THERE sequence number, or the request's message ID."""
    return fields["seq"] if version == 1 else fields["message_id"]


@pytest.mark.parametrize(("version", "startup", "action"), COMBOS, ids=lambda x: str(getattr(x, "value", x)))
def test_silent_peer(version: int, startup: StartupAction, action: DpdTimeoutAction) -> None:
    """The CGW dies at 95: each DPDTimeoutAction x StartupAction AWS allows, with exact instants and fields."""
    p = make(version, startup, action.value)
    p.crash("cgw", 95)
    p.run(300)
    up = p.times("tunnel_up")
    assert up == [0.0]
    probes = [r for r in p.sel("dpd_request_sent") if 95 < r.t <= 300]
    assert [r.t for r in probes][:3] == [100.0, 110.0, 120.0]
    assert [r.fields["attempt"] for r in probes][:3] == [1, 2, 3]
    # IKEv1 reuses the unanswered sequence number (AWS profile, as strongSwan); IKEv2 repeats the same request.
    assert len({probe_id(version, r.fields) for r in probes}) == 1
    expected = [
        (
            "dpd_timeout",
            {"action": action.value, "last_inbound": 90.0, "model": "aws", "probes": 3, "retransmits": 2},
        ),
        ("aws_log", {"message": aws_line(version, 2)}),
    ]
    if action is not DpdTimeoutAction.NONE:
        expected += [("tunnel_down", {"reason": "dpd_timeout"}), ("routes_withdrawn", {"reason": "dpd_timeout"})]
    if action is DpdTimeoutAction.RESTART:
        expected += [("restart_scheduled", {"at": 131.0, "attempt": 1, "delay": 1.0})]
    # (With DPDTimeoutAction=none the probe due at 130 still goes out, after the verdict: checked below.)
    assert [e for e in at(p, 130.0) if e[0] != "dpd_request_sent"] == expected
    assert p.times("dpd_timeout") == [130.0]  # once per silence, in every action
    st = p.node("aws").status
    if action is DpdTimeoutAction.NONE:
        # The SAs stay UP and probing goes on every 10 s, with the same probe identity.
        assert st.status.value == "UP" and p.node("aws").ike_spis()
        assert [r.t for r in probes][3:6] == [130.0, 140.0, 150.0]
        assert [r.fields["attempt"] for r in probes][3:6] == [4, 5, 6]
        assert len({probe_id(version, r.fields) for r in probes}) == 1
    else:
        assert st.status.value == "DOWN"
        if action is DpdTimeoutAction.CLEAR:
            assert st.last_status_change == 130.0 and p.node("aws").ike_spis() == set()
        assert probes[-1].t == 120.0
    first = "main_mode_1" if version == 1 else "ike_sa_init_request"
    inits = [r.t for r in p.sel("datagram_sent") if r.fields["kind"] == first and r.t > 100]
    if action is DpdTimeoutAction.RESTART:
        # Initiation at 131, then the request's own retransmissions (4 s * 1.8**n), given up after 165.06 s, and
        # the second attempt 2 s later.
        assert [round(t, 4) for t in inits] == [131.0, 135.0, 142.2, 155.16, 178.488, 220.4784, 298.0611]
        restarts = p.sel("restart_scheduled")
        assert [(round(r.t, 4), r.fields["attempt"], r.fields["delay"]) for r in restarts] == [
            (130.0, 1, 1.0),
            (296.0611, 2, 2.0),
        ]
        nf = p.sel("negotiation_failed")
        assert [r.fields for r in nf] == [
            {
                "exchange": "main_mode" if version == 1 else "ike_sa_init",
                "reason": "peer_not_responding",
                "retransmits": 5,
            }
        ]
    else:
        assert inits == []


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("action", ["clear", "restart"])
def test_crash_and_return(version: int, action: str) -> None:
    """The CGW dies at 95 and a fresh process returns at 150. With ``clear`` it initiates and the tunnel is UP at
    150; with ``restart`` it waits, and AWS's retransmitted initiation at 155.16 brings the tunnel UP."""
    p = make(version, StartupAction.ADD, action)
    p.crash("cgw", 95)
    p.revive("cgw", 150, initiate=action == "clear")
    p.run(400)
    back = 150.0 if action == "clear" else 155.16
    assert [round(t, 4) for t in p.times("tunnel_up")] == [0.0, back]
    assert p.times("tunnel_down") == [130.0]
    assert [round(t, 4) for t in p.times("tunnel_up", "cgw") if t > 100] == [back]
    assert p.times("dpd_timeout") == [130.0]
    assert p.node("aws").status.status.value == p.node("cgw").status.status.value == "UP"
    # After the return, the probe cadence restarts from the new SA: 10 s after the last inbound message.
    later = [r for r in p.sel("dpd_request_sent") if r.t > back]
    assert round(later[0].t, 4) == round(back + 10, 4) and later[0].fields["attempt"] == 1
    if action == "restart":
        assert [r.fields["attempt"] for r in p.sel("restart_scheduled")] == [1]
        # The next outage counts attempts from 1 again (reset when the tunnel came UP).
        assert p.node("aws").lifecycle.restart.attempt == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_lost_acks(version: int) -> None:
    """The CGW's answers are lost between 100 and 112: AWS's probes at 100 and 110 go unanswered, the one at 120
    is answered before the deadline (90 + 40 = 130): no timeout, and the next round starts from 120."""
    p = make(version)
    kind = "dpd_ack" if version == 1 else "liveness_response"
    p.net.set_faults(CGW_IP, AWS_IP, FaultPlan(drop_kinds=frozenset({kind}), drop_kinds_window=(100, 112)))
    p.run(155)
    probes = [r for r in p.sel("dpd_request_sent") if r.t >= 100]
    assert [(r.t, r.fields["attempt"]) for r in probes] == [(100, 1), (110, 2), (120, 3), (130, 1), (140, 1), (150, 1)]
    acks = [(r.t, r.fields["valid"]) for r in p.sel("dpd_ack_received") if r.t >= 100]
    assert acks == [(120.0, True), (130.0, True), (140.0, True), (150.0, True)]
    assert p.sel("dpd_timeout") == [] and p.node("aws").status.status.value == "UP"


@pytest.mark.parametrize("version", VERSIONS)
def test_one_way_blackhole(version: int) -> None:
    """From 95 nothing from the CGW reaches AWS, while AWS's probes still reach the CGW, which answers into the
    void: AWS declares it dead at 130 (liveness needs a round trip); the CGW never notices."""
    p = make(version)
    p.net.set_faults(CGW_IP, AWS_IP, FaultPlan(blackholes=((95, FOREVER),)))
    p.run(200)
    assert p.times("dpd_timeout") == [130.0]
    # IKEv1: three R-U-THEREs; IKEv2: one request, then its retransmissions (answered from the CGW's cache).
    assert p.times("dpd_request_received", "cgw")[-3:] == (
        [100.0, 110.0, 120.0] if version == 1 else [80.0, 90.0, 100.0]
    )
    if version == 2:
        assert p.times("response_retransmitted", "cgw") == [110.0, 120.0]
    assert p.sel("dpd_timeout", "cgw") == [] and p.node("cgw").status.status.value == "UP"
    assert p.node("aws").status.status.value == "DOWN"


@pytest.mark.parametrize("version", VERSIONS)
def test_idle_tunnel_probe_cadence(version: int) -> None:
    p = make(version)
    p.run(65)
    assert p.times("dpd_request_sent") == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    assert {r.fields["attempt"] for r in p.sel("dpd_request_sent")} == {1}
    assert p.times("dpd_ack_received") == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
    assert all(r.fields["valid"] for r in p.sel("dpd_ack_received"))
    assert p.sel("dpd_request_sent", "cgw") == [] and p.sel("dpd_timeout") == []


@pytest.mark.parametrize("version", VERSIONS)
def test_retransmit_budget_and_jitter_apply_to_both_versions(version: int) -> None:
    """Drift fixed: ``Behaviour.retransmit``'s budget and jitter used to be honoured by IKEv2 only. A CGW with
    libreswan's schedule (0.5 s doubling, retransmit-timeout 60 s) initiating towards a dead AWS gives up at 60."""
    libreswan = Retransmit(timeout=0.5, base=2.0, tries=7, limit=60.0, budget=60.0)
    p = make(version, cgw_beh=Behaviour(dpd_enabled=False, retransmit=libreswan, retry_initiation=False))
    p.crash("aws", 0)
    p.run(100)
    first = "main_mode_1" if version == 1 else "ike_sa_init_request"
    sends = [r.t for r in p.sel("datagram_sent", "cgw") if r.fields["kind"] == first]
    assert sends == [0.0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    (nf,) = p.sel("negotiation_failed", "cgw")
    assert nf.t == 60.0 and nf.fields["retransmits"] == 6
    # With jitter every wait is shortened by up to the fraction, never lengthened.
    jit = make(version, cgw_beh=Behaviour(dpd_enabled=False, retransmit=Retransmit(jitter=0.5), retry_initiation=False))
    jit.crash("aws", 0)
    jit.run(200)
    got = [r.t for r in jit.sel("datagram_sent", "cgw") if r.fields["kind"] == first]
    plain = [0.0, 4.0, 11.2, 24.16, 47.488, 89.4784]
    waits = [b - a for a, b in itertools.pairwise(got)]
    full = [b - a for a, b in itertools.pairwise(plain)]
    assert len(got) == 6 and got != plain
    assert all(f * 0.5 - 1e-9 <= w <= f + 1e-9 for w, f in zip(waits, full, strict=True))


@pytest.mark.parametrize("version", VERSIONS)
def test_restart_attempts_count_from_one(version: int) -> None:
    """Drift fixed: ``restart_scheduled.attempt`` counted from 0 in IKEv1 and from 1 in IKEv2."""
    fast = Retransmit(timeout=1.0, base=1.0, tries=1)
    p = make(version, action="restart", aws_beh=Behaviour(retransmit=fast, restart_backoff_jitter=0.0))
    p.crash("cgw", 95)
    p.run(200)
    rs = p.sel("restart_scheduled")
    assert [r.fields["attempt"] for r in rs][:4] == [1, 2, 3, 4]
    assert [r.fields["delay"] for r in rs][:4] == [1.0, 2.0, 4.0, 8.0]
    assert all(r.fields["at"] == pytest.approx(r.t + r.fields["delay"]) for r in rs)


@pytest.mark.parametrize("version", VERSIONS)
def test_close_is_a_clean_down_without_restart(version: int) -> None:
    p = make(version, action="restart")
    p.net.call("aws", p.node("aws").close, at=35.0)
    p.run(100)
    names = [e for e in at(p, 35.0) if e[0] in ("delete_sent", "tunnel_down", "routes_withdrawn")]
    assert names[-2:] == [("tunnel_down", {"reason": "closed"}), ("routes_withdrawn", {"reason": "closed"})]
    assert p.sel("restart_scheduled") == []
    assert [r.fields["protocol"] for r in p.sel("delete_sent")][-1] == "ike"
    assert p.times("tunnel_down", "cgw") == [35.0]
    assert p.sel("tunnel_down", "cgw")[0].fields["reason"] == "delete_received"


def test_quiet_cgw_is_the_default() -> None:
    assert QUIET.dpd_enabled is False


@pytest.mark.parametrize("version", VERSIONS)
def test_both_engines_use_the_shared_lifecycle(version: int) -> None:
    """Drift fixed: the DPD monitor was IKEv1's only, and IKEv2 derived the same deadlines again. Both engines
    now hold the one lifecycle (liveness monitor, restart policy, status machine) and report through it."""
    from cgw_peer.lifecycle import Lifecycle, Liveness

    p = make(version)
    p.run(15)
    for side in ("aws", "cgw"):
        peer = p.node(side)
        assert isinstance(peer.lifecycle, Lifecycle)  # type: ignore[attr-defined]
        assert isinstance(peer.liveness, Liveness) and peer.liveness is peer.lifecycle.liveness  # type: ignore[attr-defined]
        assert peer.status is peer.lifecycle.status  # type: ignore[attr-defined]
    # The AWS side's monitor holds the real instant of the last authenticated message (the ACK to its probe at 10).
    assert p.node("aws").liveness.last_inbound_at == 10.0  # type: ignore[attr-defined]


@pytest.mark.parametrize("version", VERSIONS)
def test_restart_crossing_the_peers_initiation_leaves_one_ike_sa(version: int) -> None:
    """AWS restarts (its Main Mode / IKE_SA_INIT is being retransmitted towards a dead CGW) and the CGW comes
    back and initiates itself: one tunnel, one IKE SA on both sides, no second teardown (issue 15's failover
    tests found IKEv2 finishing its own restart afterwards with INITIAL_CONTACT, which dropped the SAs in use)."""
    p = make(version, action="restart")
    p.crash("cgw", 95)
    p.revive("cgw", 133.5, initiate=True)  # AWS's restart IKE_SA_INIT went out at 131 and is retransmitted at 135
    p.run(400)
    assert p.times("tunnel_down") == [130.0]
    assert len(p.times("tunnel_up")) == 2 and len([t for t in p.times("tunnel_up", "cgw") if t > 100]) == 1
    assert p.sel("tunnel_down", "cgw") == [] or all(r.t < 100 for r in p.sel("tunnel_down", "cgw"))
    spis = p.node("aws").ike_spis()
    assert spis == p.node("cgw").ike_spis() and len(spis) == 2


def test_ikev1_keeps_no_action_list_between_calls() -> None:
    """The IKEv1 engine hands each call's actions to the caller (memory per idle tunnel); its shared idle list
    must never be written to."""
    from cgw_peer.ikev1 import peer as v1

    p = make(1, action="restart")
    p.crash("cgw", 95)
    p.run(300)
    assert v1._IDLE == []
