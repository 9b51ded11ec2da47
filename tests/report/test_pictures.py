"""The pictures say what the events say: every datagram of a run is an arrow of the sequence diagram (or in a
folded run of routine exchanges), with its time, direction, kind and fate; the notes are the engine's state
changes; the timeline's tunnel states, probes, answers and timeouts are those of the trace. The trace is read
here with ``json`` directly, not with the report's own reader."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from emulator.report.sequence import parse_sequence_svg
from emulator.report.timeline import parse_timeline_svg

NOTE_EVENTS = ("tunnel_up", "tunnel_down", "dpd_timeout", "routes_withdrawn", "node_crashed", "node_revived")


def _runs(tour: Path) -> list[dict[str, Any]]:
    out = []
    for m in sorted((tour / "vpn").glob("*-run.json")):
        man = json.loads(m.read_text())
        trace = [json.loads(line) for line in (tour / "vpn" / man["files"]["trace"]).read_text().splitlines()]
        out.append({"man": man, "trace": trace, "dir": tour / "vpn"})
    assert len(out) >= 14
    return out


def test_sequence_diagram_shows_every_datagram(tour_dir: Path) -> None:
    for run in _runs(tour_dir):
        man, trace = run["man"], run["trace"]
        seq = parse_sequence_svg((run["dir"] / man["files"]["sequence_svg"]).read_text())
        sent = [r for r in trace if r["event"] == "datagram_sent"]
        addr = man["context"]["addresses"]
        owner = {v: k for k, v in addr.items()}
        assert seq["total"] == len(sent), man["name"]
        covered = [m["index"] for m in seq["messages"]]
        for first, last, count in seq["folded"]:
            assert last - first + 1 == count
            covered += range(first, last + 1)
        assert sorted(covered) == list(range(len(sent))), man["name"]
        for m in seq["messages"]:
            r = sent[m["index"]]
            assert m["t"] == pytest.approx(r["t"], abs=1e-6)
            assert (m["from"], m["kind"], m["lost"]) == (r["node"], r["kind"], r["lost"]), (man["name"], m)
            assert m["to"] == owner[r["dst"].rsplit(":", 1)[0]]
        for first, last, _count in seq["folded"]:
            # only answered, routine DPD traffic is folded
            assert all(not sent[i]["lost"] for i in range(first, last + 1))
            assert {sent[i]["kind"] for i in range(first, last + 1)} <= {
                "dpd_request",
                "dpd_ack",
                "liveness_request",
                "liveness_response",
            }
        want = [(r["event"], r["node"], r["t"]) for r in trace if r["event"] in NOTE_EVENTS]
        got = [(n["event"], n["node"], n["t"]) for n in seq["notes"] if n["event"] in NOTE_EVENTS]
        assert len(got) == len(want) and all(
            g[:2] == w[:2] and g[2] == pytest.approx(w[2], abs=1e-6) for g, w in zip(got, want, strict=True)
        ), man["name"]


def _transitions(trace: list[dict[str, Any]], node: str) -> list[tuple[float, str]]:
    """(t, state) each time the state changes: DOWN at the start; tunnel_up -> UP, tunnel_down -> DOWN,
    node_crashed -> CRASHED, node_revived -> DOWN."""
    out: list[tuple[float, str]] = [(0.0, "DOWN")]
    for r in trace:
        if r["node"] != node:
            continue
        new = {"tunnel_up": "UP", "tunnel_down": "DOWN", "node_crashed": "CRASHED", "node_revived": "DOWN"}.get(
            r["event"]
        )
        if new is None or new == out[-1][1]:
            continue
        if r["t"] == out[-1][0]:
            out[-1] = (r["t"], new)
            if len(out) > 1 and out[-2][1] == new:
                out.pop()
        else:
            out.append((r["t"], new))
    return out


def test_timeline_matches_the_trace(tour_dir: Path) -> None:
    for run in _runs(tour_dir):
        man, trace = run["man"], run["trace"]
        tl = parse_timeline_svg((run["dir"] / man["files"]["timeline_svg"]).read_text())
        names = man["context"]["names"]
        for node in ("aws", "cgw"):
            lane = f"{names[node]} tunnel"
            ivs = sorted((t0, st) for ln, _n, st, t0, _t1 in tl["intervals"] if ln == lane)
            got = [(round(t0, 6), st) for t0, st in ivs]
            want = [(round(t, 6), st) for t, st in _transitions(trace, node)]
            assert got == want, (man["name"], node)
            pts = {what: times for ln, n, what, times in tl["points"] if n == node}
            rtx = {r["t"] for r in trace if r["node"] == node and r["event"] == "request_retransmitted"}
            probes = [
                r["t"]
                for r in trace
                if r["event"] == "datagram_sent"
                and r["node"] == node
                and r["kind"] in ("dpd_request", "liveness_request")
                and not r["lost"]
                and r["t"] not in rtx
            ]
            assert pts.get("probe", []) == pytest.approx(probes, abs=1e-6), (man["name"], node)
            acks = [r["t"] for r in trace if r["node"] == node and r["event"] == "dpd_ack_received"]
            assert pts.get("answer_received", []) == pytest.approx(acks, abs=1e-6)
            timeouts = [r["t"] for r in trace if r["node"] == node and r["event"] == "dpd_timeout"]
            assert [t for n, t, _ in tl["marks"] if n == node] == pytest.approx(timeouts, abs=1e-6)
        tgw = [r for r in trace if r["event"] == "tgw_routes_changed"]
        if tgw:
            ivs = sorted((t0, st) for ln, _n, st, t0, _t1 in tl["intervals"] if ln == "TGW routes")
            assert [st for _t, st in ivs] == ["UP" if r["up"] else "DOWN" for r in tgw][: len(ivs)]
