"""Packet comments come from the engine's events: checked against the scenarios' own documented timelines."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from emulator.annotate import CaptureMismatch, VpnContext, annotate_vpn, load_trace, write_annotated_pcapng
from emulator.pcapng import read_pcapng
from emulator.scenario import Scenario

ROOT = Path(__file__).resolve().parents[2]
SC = ROOT / "emulator" / "scenarios"
V2 = ROOT / "tests" / "ikev2" / "scenarios"


def _run(path: Path, tmp_path: Path) -> tuple[Scenario, list, list]:  # type: ignore[type-arg]
    sc = Scenario.load(str(path))
    res = sc.run(str(tmp_path))
    records = load_trace(res.outputs["trace"])
    return sc, records, annotate_vpn(records, VpnContext.from_scenario(sc))


def test_one_annotation_per_datagram_in_pcap_order(tmp_path: Path) -> None:
    sc, records, anns = _run(SC / "03-dpd-timeout-clear.yaml", tmp_path)
    sent = [r for r in records if r.event == "datagram_sent"]
    assert [(a.t, a.node, a.kind, a.length, a.lost) for a in anns] == [
        (r.t, r.node, r.fields["kind"], r.fields["len"], r.fields["lost"]) for r in sent
    ]
    out = tmp_path / "x.pcapng"
    n = write_annotated_pcapng(str(tmp_path / f"{sc.name}.pcap"), anns, str(out))
    got = read_pcapng(str(out))
    assert n == len(sent) == len(got.packets)
    assert all(len(p.comments) == 1 and p.comments[0] for p in got.packets)


def test_dpd_timeline_of_scenario_03(tmp_path: Path) -> None:
    """03: the CGW dies at 95, its last packet reached AWS at 90; AWS probes at 100 and 110 (dead at 120)."""
    _sc, _records, anns = _run(SC / "03-dpd-timeout-clear.yaml", tmp_path)
    probes = [a for a in anns if a.kind == "dpd_request"]
    first = probes[0]
    assert first.t == 10.0 and first.attempt == 1
    assert first.comment.startswith(f"R-U-THERE seq 0x{first.seq:08x} (AWS -> CGW): AWS probes after 10 s")
    acks = [a for a in anns if a.kind == "dpd_ack"]
    assert acks[0].answers == first.index and f"0x{first.seq:08x}" in acks[0].comment
    p100, p110 = (a for a in probes if a.t in (100.0, 110.0))
    assert p100.attempt == 1 and "Not received: the CGW is down (crashed at t=95)" in p100.comment
    assert p110.attempt == 2
    assert "last inbound message at t=90" in p110.comment and "dead at t=120" in p110.comment


def test_lost_acks_name_the_fault(tmp_path: Path) -> None:
    _sc, _records, anns = _run(SC / "06-lost-acks.yaml", tmp_path)
    lost = [a for a in anns if a.lost]
    assert [a.t for a in lost] == [100.0, 110.0] and all(a.kind == "dpd_ack" for a in lost)
    assert all("it drops dpd_ack datagrams CGW -> AWS between t=100 and t=112" in a.comment for a in lost)


def test_ikev2_retransmission_and_restart_attempts(tmp_path: Path) -> None:
    _sc, records, anns = _run(V2 / "v2-04-aws-timeout-restart.yaml", tmp_path)
    restarts = [r for r in records if r.event == "restart_scheduled"]
    inits = [a for a in anns if a.kind == "ike_sa_init_request" and a.node == "aws" and not a.retransmit]
    # every restart_scheduled is followed by an IKE_SA_INIT at its `at`, commented with its attempt
    assert len(inits) == 1 + len(restarts)
    for r, a in zip(restarts, inits[1:], strict=True):
        assert abs(a.t - float(r.fields["at"])) < 1e-6
        assert f"AWS restarts the tunnel (DPDTimeoutAction=restart, attempt {r.fields['attempt']}" in a.comment
    rtx = [r for r in records if r.event == "request_retransmitted" and r.fields["kind"] == "liveness_request"]
    live = [a for a in anns if a.kind == "liveness_request" and a.retransmit]
    assert [(a.t, a.retransmit) for a in live[: len(rtx)]] == [(r.t, r.fields["retransmit"]) for r in rtx]
    assert "retransmission 2 of the liveness check" in live[1].comment


def test_lost_ike_request_retransmitted(tmp_path: Path) -> None:
    _sc, _records, anns = _run(SC / "12-ikev2-lost-ike-sa-init.yaml", tmp_path)
    init = [a for a in anns if a.kind == "ike_sa_init_request"]
    assert [(a.t, a.retransmit, a.lost) for a in init] == [(0.0, 0, True), (4.0, 1, True), (11.2, 2, False)]
    assert "retransmission 2 of the IKE_SA_INIT request" in init[2].comment
    assert "blackhole CGW -> AWS from t=0 until t=5" in init[0].comment


def test_a_capture_that_does_not_match_the_trace_is_refused(tmp_path: Path) -> None:
    sc, _records, anns = _run(SC / "02-idle-dpd.yaml", tmp_path)
    with pytest.raises(CaptureMismatch):
        write_annotated_pcapng(str(tmp_path / f"{sc.name}.pcap"), anns[:-1], str(tmp_path / "x.pcapng"))
    swapped = [*anns]
    swapped[0], swapped[1] = swapped[1], swapped[0]
    with pytest.raises(CaptureMismatch):
        write_annotated_pcapng(str(tmp_path / f"{sc.name}.pcap"), swapped, str(tmp_path / "y.pcapng"))
    assert not os.path.exists(tmp_path / "y.pcapng")
