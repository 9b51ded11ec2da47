"""The fault primitives campaigns are built on: Gilbert-Elliott loss and corruption on a link, and the node
faults of the virtual-time network (pause, clock step, NAT rebinding) through scenario files."""

from __future__ import annotations

import random
from typing import Any

import pytest

from emulator.errors import ConfigError
from emulator.link import FaultPlan, Link
from emulator.scenario import Scenario

BASE: dict[str, Any] = {
    "name": "faults",
    "seed": 3,
    "duration": 200,
    "ike_version": 1,
    "tunnel": {
        "IKEVersions": ["ikev1"],
        "DPDTimeoutSeconds": 30,
        "DPDTimeoutAction": "restart",
        "Phase1DHGroupNumbers": [19],
        "Phase2DHGroupNumbers": [19],
    },
    "aws": {"behaviour": {"restart_backoff_max": 8}},
}


def run(schedule: list[dict[str, Any]], version: int = 1, **extra: Any) -> tuple[Any, list[Any]]:
    raw = dict(BASE, schedule=schedule, ike_version=version, **extra)
    raw["tunnel"] = dict(BASE["tunnel"], IKEVersions=[f"ikev{version}"])
    res = Scenario.from_mapping(raw).run()
    return res, list(res.trace)


def test_gilbert_elliott_loss_comes_in_bursts() -> None:
    """With p small and r small the losses cluster: the mean burst length is about 1/r (netem's gemodel)."""
    link = Link(FaultPlan(gilbert_p=0.02, gilbert_r=0.25), random.Random(5))
    lost = [not link.transmit(b"x", "k", float(i)) for i in range(20000)]
    bursts, run_len = [], 0
    for x in lost:
        if x:
            run_len += 1
        elif run_len:
            bursts.append(run_len)
            run_len = 0
    mean = sum(bursts) / len(bursts)
    assert 3.0 < mean < 5.5  # 1/r = 4
    # stationary share of the bad state: p / (p + r) = 0.074
    assert 0.05 < sum(lost) / len(lost) < 0.10
    again = Link(FaultPlan(gilbert_p=0.02, gilbert_r=0.25), random.Random(5))
    assert [not again.transmit(b"x", "k", float(i)) for i in range(20000)] == lost


def test_gilbert_elliott_off_draws_nothing_extra() -> None:
    """A plan without the new fields consumes exactly the random numbers it always did."""
    a, b = random.Random(9), random.Random(9)
    link = Link(FaultPlan(loss=0.3, jitter=0.1, duplicate=0.2, reorder=0.1), a)
    for i in range(100):
        link.transmit(b"x", "k", float(i))
    # the same sequence of draws by hand: loss, then (if kept) jitter, reorder, duplicate
    for _ in range(100):
        if b.random() < 0.3:
            continue
        b.uniform(0.0, 0.1)
        b.random()
        b.random()
    assert a.getstate() == b.getstate()


def test_corrupt_flips_exactly_one_bit() -> None:
    link = Link(FaultPlan(corrupt=1.0), random.Random(2))
    data = bytes(range(64))
    for _ in range(50):
        out = link.corrupt(data)
        assert len(out) == len(data)
        assert sum(bin(x ^ y).count("1") for x, y in zip(out, data, strict=True)) == 1
    assert Link(FaultPlan(corrupt=0.0), random.Random(2)).corrupt(data) is data
    assert link.corrupted == 50


@pytest.mark.parametrize(
    ("plan", "field"),
    [
        ({"gilbert_p": 1.5}, "faults.gilbert_p"),
        ({"gilbert_r": -0.1}, "faults.gilbert_r"),
        ({"corrupt": "often"}, "faults.corrupt"),
        ({"gilbert_loss_bad": True}, "faults.gilbert_loss_bad"),
    ],
)
def test_new_plan_fields_are_validated(plan: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field.replace(".", r"\.")):
        FaultPlan.from_mapping(plan)


def test_corrupted_datagrams_are_dropped_with_a_reason_never_a_crash() -> None:
    _, recs = run([{"at": 20, "do": "faults", "direction": "both", "plan": {"corrupt": 0.5}}])
    reasons = {r.fields["reason"] for r in recs if r.event == "datagram_dropped"}
    assert reasons and not any(x.startswith("internal_error") for x in reasons)


def test_pause_holds_inputs_and_resumes_them_first() -> None:
    """A CGW paused for 15 s (shorter than DPDTimeoutSeconds): AWS's probes wait in its queue and are answered
    at the resume instant, so AWS never times out."""
    res, recs = run([{"at": 50, "do": "pause", "node": "cgw", "until": 65}])
    cgw_sent = [r.t for r in recs if r.node == "cgw" and r.event == "datagram_sent"]
    assert not [t for t in cgw_sent if 50 < t < 65]
    assert 65.0 in cgw_sent  # answers the held probes at once
    assert not [r for r in recs if r.event == "dpd_timeout"]
    assert res.status["aws"]["Status"] == "UP"


def test_long_pause_of_aws_times_the_cgw_out() -> None:
    res, recs = run([{"at": 50, "do": "pause", "node": "aws", "until": 120}])
    t = [r for r in recs if r.event == "dpd_timeout"]
    assert t and t[0].node == "cgw"
    assert res.status["aws"]["Status"] == "UP"  # back UP by the end


def test_clock_step_forward_beyond_the_timeout_declares_the_peer_dead_at_once() -> None:
    _, recs = run([{"at": 50, "do": "clock_step", "node": "aws", "by": 45}])
    (first,) = [r for r in recs if r.event == "dpd_timeout"][:1]
    assert (first.t, first.node) == (50.0, "aws")
    # the event's last_inbound is on the node's (stepped) clock
    assert first.fields["last_inbound"] <= 50.0


def test_small_clock_steps_change_nothing_visible() -> None:
    for by in (-30.0, 5.0):
        res, recs = run([{"at": 50, "do": "clock_step", "node": "aws", "by": by}])
        assert not [r for r in recs if r.event in ("dpd_timeout", "tunnel_down")], by
        assert res.status["aws"]["Status"] == "UP"


@pytest.mark.parametrize("version", [1, 2])
def test_nat_rebinding_under_nat_t_keeps_the_tunnel_up(version: int) -> None:
    """Behind a NAT from the start (NAT-T on UDP 4500), the mapping changes at t=50: the CGW's next
    authenticated message moves AWS to the new port (RFC 3947 §5, RFC 7296 §2.23)."""
    res, recs = run(
        [
            {"at": 0, "do": "nat_rebind", "node": "cgw", "port": 30000},
            {"at": 50, "do": "nat_rebind", "node": "cgw", "port": 40000, "address": "198.51.100.99"},
        ],
        version,
    )
    aws_dst = {r.fields["dst"] for r in recs if r.node == "aws" and r.event == "datagram_sent" and r.t > 80}
    assert aws_dst == {"198.51.100.99:40000"}
    assert not [r for r in recs if r.event in ("dpd_timeout", "tunnel_down")]
    assert res.status["aws"]["Status"] == "UP"


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"at": 5, "do": "pause", "node": "cgw"}, r"schedule\[0\]\.until: required"),
        ({"at": 5, "do": "pause", "node": "cgw", "until": 1}, r"schedule\[0\]\.until: must be >= at"),
        ({"at": 5, "do": "pause", "node": "cgw", "until": 9, "resume": "later"}, r"schedule\[0\]\.resume"),
        ({"at": 5, "do": "clock_step", "node": "aws"}, r"schedule\[0\]\.by: required"),
        ({"at": 5, "do": "clock_step", "node": "aws", "by": float("nan")}, r"schedule\[0\]\.by"),
        ({"at": 5, "do": "nat_rebind", "node": "cgw", "port": 80}, r"schedule\[0\]\.port: must be >= 1024"),
        ({"at": 5, "do": "nat_rebind", "node": "cgw", "address": "203.0.113.10"}, r"schedule\[0\]\.address"),
        ({"at": 5, "do": "nat_rebind", "node": "cgw", "bogus": 1}, r"schedule\[0\]\.bogus: unknown key"),
    ],
)
def test_bad_fault_actions_name_the_field(item: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        Scenario.from_mapping(dict(BASE, schedule=[item]))
