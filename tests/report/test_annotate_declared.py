"""Comments from events in their declared shape (cgw_peer/events.py), as the engines will emit them: the
declared fields are used as given, nothing is marked inferred. The trace is written by hand here."""

from __future__ import annotations

from typing import Any

from cgw_peer.events import check_event
from emulator.annotate import VpnContext, annotate_vpn
from emulator.trace import TraceRecord

CGW, AWS = "198.51.100.20:500", "203.0.113.10:500"


def _dg(t: float, node: str, kind: str, lost: bool = False) -> TraceRecord:
    src, dst = (CGW, AWS) if node == "cgw" else (AWS, CGW)
    return TraceRecord(t, node, "datagram_sent", {"kind": kind, "src": src, "dst": dst, "len": 100, "lost": lost})


def _ev(t: float, node: str, name: str, **f: Any) -> TraceRecord:
    assert check_event(name, f) == [], (name, f)
    return TraceRecord(t, node, name, f)


def test_declared_fields_are_used() -> None:
    recs = [
        _dg(0.0, "cgw", "main_mode_1", lost=True),
        _dg(4.0, "cgw", "main_mode_1"),
        _ev(4.0, "cgw", "request_retransmitted", kind="main_mode_1", retransmit=1, message_id=0),
        _dg(4.0, "aws", "main_mode_2"),
        _dg(5.0, "cgw", "main_mode_1"),
        _ev(5.0, "cgw", "request_retransmitted", kind="main_mode_1", retransmit=2, message_id=0),
        _dg(5.0, "aws", "main_mode_2"),
        _ev(5.0, "aws", "response_retransmitted", kind="main_mode_2", message_id=0),
        _ev(6.0, "aws", "tunnel_up"),
        _dg(30.0, "aws", "dpd_request"),
        _ev(30.0, "aws", "dpd_request_sent", attempt=3, seq=0x2B7F),
        _ev(50.0, "aws", "dpd_timeout", action="restart", last_inbound=6.0, model="aws", probes=3, retransmits=2),
        _ev(50.0, "aws", "tunnel_down", reason="dpd_timeout"),
        _ev(50.0, "aws", "routes_withdrawn", reason="dpd_timeout"),
        _ev(50.0, "aws", "restart_scheduled", at=51.25, attempt=1, delay=1.25),
        _dg(51.25, "aws", "main_mode_1"),
    ]
    anns = annotate_vpn(recs, VpnContext(dpd_timeout_seconds=40.0, dpd_timeout_action="restart"))
    c = [a.comment for a in anns]
    assert "Lost: the link's fault plan dropped it" in c[0]
    assert anns[1].retransmit == 1 and "retransmission 1 of the Main Mode 1/6" in c[1] and "inferred" not in c[1]
    assert anns[3].retransmit == 2 and "first sent at t=0" in c[3]
    assert "sent again, unchanged" in c[4] and "inferred" not in c[4]
    assert anns[5].attempt == 3 and anns[5].seq == 0x2B7F
    assert c[5].startswith("R-U-THERE seq 0x00002b7f (AWS -> CGW): probe 3 since the last inbound message")
    assert "AWS restarts the tunnel (DPDTimeoutAction=restart, attempt 1, after a 1.25 s backoff)" in c[6]
    assert not any(a.inferred for a in anns)
