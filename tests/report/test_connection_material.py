"""The tour's VPN connection stop (two tunnels, the TGW, traffic; failover when the active tunnel's CGW dies):
its capture explains every packet, ESP included, and tshark (an independent dissector) decrypts the ESP with the
run's ``esp_sa`` table to the very inner packets the comments name; the pictures say what the events say; the
page is rebuilt from the files alone. The trace is read with ``json`` here, not with the report's reader."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from emulator.report.sequence import parse_sequence_svg
from emulator.report.timeline import parse_timeline_svg
from tests.report.test_pictures import _transitions
from tests.tools import require_tool

NAME = "14-connection-dpd-clear"


def _run(tour: Path) -> tuple[dict[str, Any], list[dict[str, Any]], Path]:
    d = tour / "connection"
    man = json.loads((d / f"{NAME}-run.json").read_text())
    trace = [json.loads(x) for x in (d / man["files"]["trace"]).read_text().splitlines()]
    return man, trace, d


def test_the_story_the_material_tells(tour_dir: Path) -> None:
    man, trace, _d = _run(tour_dir)
    assert man["kind"] == "connection" and man["ok"] is True and man["problems"] == []
    # the story: the AWS end of tunnel1 times out, then the TGW moves its routes to tunnel2
    to = [r for r in trace if r["event"] == "dpd_timeout" and r["node"] == "aws1"]
    moves = [r for r in trace if r["event"] == "tgw_routes_changed" and r["t"] >= to[0]["t"]]
    assert len(to) == 1 and moves[0]["tunnel"] == "tunnel1" and moves[0]["up"] is False
    assert any(m["tunnel"] == "tunnel2" and m["up"] for m in moves)
    assert man["esp_count"] > 5000 and man["packet_count"] > man["esp_count"]


@pytest.mark.realpeer
def test_tshark_decrypts_every_esp_packet_to_what_its_comment_says(tour_dir: Path) -> None:
    require_tool("tshark")
    man, trace, d = _run(tour_dir)
    env = dict(os.environ, WIRESHARK_CONFIG_DIR=str(d / man["files"]["keys"]))
    out = subprocess.run(
        ["tshark", "-r", str(d / man["files"]["pcapng"]), "-T", "fields", "-E", "occurrence=a"]
        + [
            x
            for f in ("_ws.malformed", "esp.spi", "esp.sequence", "ip.src", "ip.dst", "frame.comment")
            for x in ("-e", f)
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    ).stdout
    rows = [line.split("\t") for line in out.splitlines()]
    assert len(rows) == man["packet_count"]
    assert all(r[0] == "" for r in rows), "malformed packets"
    assert all(r[-1].strip() for r in rows), "a packet without a comment"
    esp = [r for r in rows if r[2]]
    assert len(esp) == man["esp_count"]
    flows = {f["name"]: f for f in man["scenario"]["flows"]}
    lost_to_dead_end = 0
    for _m, spi, seq, src, dst, comment in esp:
        srcs, dsts = src.split(","), dst.split(",")
        # decrypted: an inner IPv4 header after the outer one
        assert len(srcs) == 2 and len(dsts) == 2, (spi, seq)
        assert f"ESP SPI 0x{int(spi, 16):08x} seq {seq} " in comment
        m = re.search(r"flow '([^']+)' \((?:UDP )?([\d.]+) -> ([\d.]+)", comment)
        assert m is not None, comment
        assert m.group(1) in flows and (m.group(2), m.group(3)) == (srcs[1], dsts[1]), comment
        if "Not received: the CGW's tunnel1 end is down" in comment:
            assert "until its DPD declares the peer dead at t=90.01" in comment
            lost_to_dead_end += 1
    # the packets AWS sent into the dead tunnel are those the flows lost: vpc-to-dc's outage and the pings
    summaries = {r["name"]: r for r in trace if r["event"] == "flow_summary"}
    assert lost_to_dead_end == summaries["vpc-to-dc"]["lost"] + summaries["ping"]["lost"]


def test_pictures_match_the_events(tour_dir: Path) -> None:
    man, trace, d = _run(tour_dir)
    tl = parse_timeline_svg((d / man["files"]["timeline_svg"]).read_text())
    for i, tname in enumerate(man["tunnels"]):
        for side, who in (("aws", "AWS end"), ("cgw", "CGW end")):
            node = f"{side}{i + 1}"
            got = sorted((round(t0, 6), st) for ln, _n, st, t0, _t1 in tl["intervals"] if ln == f"{tname} {who}")
            assert got == [(round(t, 6), st) for t, st in _transitions(trace, node)], node
            timeouts = [r["t"] for r in trace if r["node"] == node and r["event"] == "dpd_timeout"]
            assert [t for n, t, _ in tl["marks"] if n == node] == pytest.approx(timeouts, abs=1e-6)
        moves = [r for r in trace if r["event"] == "tgw_routes_changed" and r["tunnel"] == tname]
        ivs = sorted((t0, st) for ln, _n, st, t0, _t1 in tl["intervals"] if ln == f"TGW routes via {tname}")
        want = [(0.0, "DOWN")] + [(r["t"], "UP" if r["up"] else "DOWN") for r in moves]
        merged = [w for k, w in enumerate(want) if k == 0 or w[1] != want[k - 1][1]]
        if len(merged) > 1 and merged[1][0] == 0.0:
            merged = merged[1:]
        assert [(round(t, 6), s) for t, s in ivs] == [(round(t, 6), s) for t, s in merged], tname
        # each tunnel's sequence diagram: every IKE datagram of its two ends, in order
        seq = parse_sequence_svg((d / man["files"][f"sequence_svg_{i + 1}"]).read_text())
        sent = [r for r in trace if r["event"] == "datagram_sent" and r["node"] in (f"aws{i + 1}", f"cgw{i + 1}")]
        assert seq["total"] == len(sent) > 0
        for msg in seq["messages"]:
            r = sent[msg["index"]]
            assert msg["t"] == pytest.approx(r["t"], abs=1e-6)
            assert (msg["from"] + str(i + 1), msg["kind"], msg["lost"]) == (r["node"], r["kind"], r["lost"])
    for name, *_ in man["flow_windows"]:
        lost = sorted(
            (round(t0, 6), round(t1, 6))
            for ln, _n, st, t0, t1 in tl["intervals"]
            if ln == f"flow {name}" and st == "LOSING"
        )
        want = sorted(
            (round(r["start"], 6), round(r["end"], 6))
            for r in trace
            if r["event"] == "flow_outage" and r["name"] == name
        )
        assert lost == want, name
    assert any(st == "LOSING" for _l, _n, st, _a, _b in tl["intervals"])


def test_report_rebuilds_the_page_from_the_files(tour_dir: Path, tmp_path: Path) -> None:
    import shutil

    from emulator.report import rebuild

    man, _trace, d = _run(tour_dir)
    copy = tmp_path / "c"
    shutil.copytree(d, copy)
    for k in ("html", "timeline_svg", "sequence_svg_1"):
        (copy / man["files"][k]).unlink()
    done = rebuild(str(copy))
    assert len(done) == len(list(copy.glob("*-run.json"))) >= 5
    page = (copy / man["files"]["html"]).read_text()
    assert page.count('class="sequence"') >= 2 and 'class="flow"' in page and "esp.spi" in page
    assert (copy / man["files"]["sequence_svg_1"]).exists() and (copy / man["files"]["timeline_svg"]).exists()
    assert "VPN + TGW" in (copy / "index.html").read_text()
