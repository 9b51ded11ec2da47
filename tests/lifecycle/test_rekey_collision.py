"""Phase-1 rekey collisions (issue 13): both sides start the IKE SA rekey at the same instant.

With RekeyFuzzPercentage 0 both sides compute the same rekey instant: lifetime - margin = 1800 - 120 = 1680 s
after the IKE SA came up at 0 (and again 1680 s after the survivor came up). The shared rule
(``cgw_peer.lifecycle.rekey.redundant``, RFC 7296 §2.8.1): of the two new SAs, the one holding the lowest nonce is
deleted by its creator; the creator of the survivor deletes the old one. Before the IKEv1 engine applied it,
each side deleted one of the two new SAs, the old one expired at 1800 and the tunnel stayed down."""

from __future__ import annotations

import pytest

from cgw_peer.config import Behaviour, DpdTimeoutAction
from tests.lifecycle.pair import Pair, options


def make(version: int, action: DpdTimeoutAction = DpdTimeoutAction.CLEAR) -> Pair:
    opts = options(
        version,
        phase1_lifetime_seconds=1800,
        phase2_lifetime_seconds=900,
        rekey_margin_time_seconds=120,
        rekey_fuzz_percentage=0,
        dpd_timeout_action=action,
    )
    # Both sides rekey (the CGW as an AWS-like device would), both run DPD.
    return Pair(version, opts=opts, cgw_beh=Behaviour(restart_backoff_jitter=0.0))


@pytest.mark.parametrize("version", [1, 2])
def test_simultaneous_phase1_rekey_leaves_one_sa_both_agree(version: int) -> None:
    p = make(version)
    p.run(4000)
    for side in ("aws", "cgw"):
        ike = [r for r in p.sel("rekey_collision", side) if r.fields["sa"] == "ike"]
        # One decision per side per collision (at 1680 and at 3360), with the redundant SA named.
        assert [r.t for r in ike] == [1680.0, 3360.0]
        assert all(r.fields["kind"] == "simultaneous_rekey" and "redundant" in r.fields for r in ike)
    # Both sides name the same redundant SA, and exactly one of them created it.
    aws_c = [r.fields for r in p.sel("rekey_collision", "aws") if r.fields["sa"] == "ike"]
    cgw_c = [r.fields for r in p.sel("rekey_collision", "cgw") if r.fields["sa"] == "ike"]
    for a, c in zip(aws_c, cgw_c, strict=True):
        assert a["ours_redundant"] != c["ours_redundant"]
    # The tunnel never went down; each side holds one IKE SA, the same one.
    assert p.sel("tunnel_down") == [] and p.sel("tunnel_down", "cgw") == []
    assert p.node("aws").status.status.value == p.node("cgw").status.status.value == "UP"
    spis = p.node("aws").ike_spis()
    assert spis == p.node("cgw").ike_spis() and len(spis) == 2
    assert p.sel("dpd_timeout") == [] and p.sel("dpd_timeout", "cgw") == []


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("crashed", ["aws", "cgw"])
def test_crash_at_the_rekey_instant(version: int, crashed: str) -> None:
    """One side dies at the very instant both start the rekey and a fresh process returns 30 s later. The other
    side's rekey goes unanswered, DPD declares the peer dead (restart), and the tunnel comes back: no outage that
    outlives the peer's absence by more than the DPD timeout and one restart backoff."""
    p = make(version, DpdTimeoutAction.RESTART)
    p.crash(crashed, 1680.0)
    p.revive(crashed, 1710.0, initiate=crashed == "cgw")
    p.run(2200)
    other = "cgw" if crashed == "aws" else "aws"
    downs = p.times("tunnel_down", other)
    assert len(downs) == 1 and 1680 < downs[0] <= 1680 + 40 + 1e-6
    up_again = [t for t in p.times("tunnel_up", other) if t > 1680]
    assert len(up_again) == 1 and up_again[0] < 1800
    assert p.node("aws").status.status.value == p.node("cgw").status.status.value == "UP"
    assert p.node("aws").ike_spis() == p.node("cgw").ike_spis()
