"""The timeline of a VPN run, plotted with matplotlib (Agg backend, no display): per side, the tunnel state over
virtual time and the DPD traffic (probes, retransmissions, answers, lost datagrams, the timeout), and the routes
(the AWS side's routes, and the TGW VPN attachment's when the scenario has one), with the TGW probes.

:func:`timeline_model` turns a trace into intervals and instants; :func:`plot_timeline` draws them and writes
SVG and PNG. In the SVG every drawn series is a group whose ``id`` starts with ``tl-`` and which carries what it
shows as data attributes (``data-node``, ``data-state``, ``data-t0``/``data-t1`` for an interval,
``data-times`` for a series of instants), so a test can compare the picture with the trace.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

from emulator.annotate import INITIATIONS, PROBES, Annotation, VpnContext
from emulator.trace import TraceRecord

STATE_COLORS = {
    "UP": "#43a047",
    "DOWN": "#ef9a9a",
    "CRASHED": "#6d0000",
    "DELIVERING": "#90caf9",
    "LOSING": "#ff6f00",
    "PARTIAL": "#ffcc80",
}
STATE_LABELS = {
    "UP": "UP / routes present",
    "DOWN": "DOWN / no routes",
    "CRASHED": "crashed",
    "DELIVERING": "flow: packets delivered",
    "LOSING": "flow: packets lost (an outage)",
    "PARTIAL": "flow: many short outages",
}


@dataclass
class Interval:
    """A state held over ``[t0, t1)`` on one lane (tunnel UP/DOWN/CRASHED, routes present or not)."""

    lane: str
    node: str
    state: str
    t0: float
    t1: float


@dataclass
class Points:
    """Instants of one kind on one lane (probes sent, answers received, lost datagrams, ...)."""

    lane: str
    node: str
    what: str
    times: list[float] = field(default_factory=list)


@dataclass
class TimelineModel:
    """What the timeline shows, computed from the trace alone."""

    duration: float
    intervals: list[Interval] = field(default_factory=list)
    points: list[Points] = field(default_factory=list)
    marks: list[tuple[float, str, str]] = field(default_factory=list)
    """(t, node, text): the DPD timeouts, drawn as vertical lines with a label."""
    lanes: list[str] = field(default_factory=list)


def _state_intervals(
    records: Sequence[TraceRecord], node: str, duration: float, up_events: set[str], down_events: set[str]
) -> list[tuple[float, float, str]]:
    state = "DOWN"
    crashed = False
    t_prev = 0.0
    out: list[tuple[float, float, str]] = []

    def cur() -> str:
        return "CRASHED" if crashed else state

    for r in records:
        if r.node != node:
            continue
        before = cur()
        if r.event in up_events:
            state = "UP"
        elif r.event in down_events:
            state = "DOWN"
        elif r.event == "node_crashed":
            crashed = True
            state = "DOWN"
        elif r.event == "node_revived":
            crashed = False
        else:
            continue
        after = cur()
        if after != before:
            if r.t > t_prev:
                out.append((t_prev, r.t, before))
            t_prev = r.t
    end = max(duration, t_prev)
    if end > t_prev or not out:
        out.append((t_prev, end, cur()))
    # merge neighbours with the same state (a zero-length excursion leaves two)
    merged: list[tuple[float, float, str]] = []
    for iv in out:
        if merged and merged[-1][2] == iv[2] and abs(merged[-1][1] - iv[0]) < 1e-12:
            merged[-1] = (merged[-1][0], iv[1], iv[2])
        else:
            merged.append(iv)
    return merged


def _tgw_route_intervals(records: Sequence[TraceRecord], duration: float) -> list[tuple[float, float, str]]:
    state = "DOWN"
    t_prev = 0.0
    out: list[tuple[float, float, str]] = []
    for r in records:
        if r.event != "tgw_routes_changed":
            continue
        new = "UP" if r.fields.get("up") else "DOWN"
        if new != state:
            if r.t > t_prev:
                out.append((t_prev, r.t, state))
            state, t_prev = new, r.t
    out.append((t_prev, max(duration, t_prev), state))
    return out


def _exchanges(
    m: TimelineModel, lane: str, node: str, mine: Sequence[Annotation], records: Sequence[TraceRecord], who: str
) -> None:
    """One end's IKE / DPD instants on ``lane`` (its datagrams ``mine``, its events under ``node`` in the trace):
    probes, initiations, retransmissions, answers received, lost datagrams, and its DPD timeouts as marks."""
    m.points.append(
        Points(lane, node, "probe", [a.t for a in mine if a.kind in PROBES and not a.retransmit and not a.lost])
    )
    m.points.append(Points(lane, node, "initiation", [a.t for a in mine if a.kind in INITIATIONS and not a.retransmit]))
    m.points.append(Points(lane, node, "retransmit", [a.t for a in mine if a.retransmit and not a.lost]))
    m.points.append(
        Points(
            lane, node, "answer_received", [r.t for r in records if r.node == node and r.event == "dpd_ack_received"]
        )
    )
    m.points.append(Points(lane, node, "lost", [a.t for a in mine if a.lost]))
    for r in records:
        if r.node == node and r.event == "dpd_timeout":
            m.marks.append((r.t, node, f"{who}: DPD timeout, action={r.fields.get('action')}"))


def timeline_model(
    records: Sequence[TraceRecord], annotations: Sequence[Annotation], ctx: VpnContext, duration: float
) -> TimelineModel:
    """Intervals (tunnel state, routes present) and instants (probes, answers, lost datagrams, TGW probes)."""
    m = TimelineModel(duration=duration)
    for node in ("aws", "cgw"):
        name = ctx.name(node)
        lane_t, lane_d = f"{name} tunnel", f"{name} IKE / DPD"
        m.lanes += [lane_t, lane_d]
        for t0, t1, st in _state_intervals(records, node, duration, {"tunnel_up"}, {"tunnel_down"}):
            m.intervals.append(Interval(lane_t, node, st, t0, t1))
        _exchanges(m, lane_d, node, [a for a in annotations if a.node == node], records, name)
    lane_r = f"{ctx.name('aws')} routes"
    m.lanes.append(lane_r)
    for t0, t1, st in _state_intervals(records, "aws", duration, {"tunnel_up"}, {"routes_withdrawn", "tunnel_down"}):
        m.intervals.append(
            Interval(lane_r, "aws", "UP" if st == "UP" else ("CRASHED" if st == "CRASHED" else "DOWN"), t0, t1)
        )
    if any(r.event == "tgw_routes_changed" for r in records):
        lane_g = "TGW routes"
        m.lanes.append(lane_g)
        for t0, t1, st in _tgw_route_intervals(records, duration):
            m.intervals.append(Interval(lane_g, "tgw", st, t0, t1))
        flows = [r for r in records if r.event == "tgw_flow"]
        m.points.append(
            Points(lane_g, "tgw", "flow_delivered", [r.t for r in flows if r.fields.get("verdict") == "delivered"])
        )
        m.points.append(
            Points(lane_g, "tgw", "flow_dropped", [r.t for r in flows if r.fields.get("verdict") != "delivered"])
        )
    return m


MAX_OUTAGES_DRAWN = 40
"""A flow lane draws each outage up to this many; beyond, outages closer than 1/300 of the flow's span are drawn
as one ``PARTIAL`` interval (packets partly lost), so that a rate limit's thousands of short gaps stay a picture."""


def _clusters(outages: Sequence[tuple[float, float]], gap: float) -> tuple[list[tuple[float, float]], list[bool]]:
    out: list[tuple[float, float]] = []
    partial: list[bool] = []
    for a, b in outages:
        if out and a - out[-1][1] < gap:
            out[-1] = (out[-1][0], max(out[-1][1], b))
            partial[-1] = True
        else:
            out.append((a, b))
            partial.append(False)
    return out, partial


def connection_timeline_model(
    records: Sequence[TraceRecord],
    tunnel_annotations: Sequence[Sequence[Annotation]],
    tunnels: Sequence[str],
    duration: float,
    flows: Sequence[tuple[str, float, float]] = (),
) -> TimelineModel:
    """The timeline of a VPN connection run (:mod:`emulator.connection`): per tunnel, its AWS end and its CGW end
    (state, DPD probes and answers, lost IKE datagrams) and the TGW's routes over it
    (``tgw_routes_changed``); per flow, when its packets were delivered and the outages in which they were lost
    (``flow_outage``; :data:`MAX_OUTAGES_DRAWN`). ``tunnel_annotations[i]`` are tunnel ``i``'s IKE annotations
    (ends named ``aws``/``cgw``); ``flows`` the flows as (name, first packet's time, last packet's time)."""
    m = TimelineModel(duration=duration)
    for i, tname in enumerate(tunnels):
        anns = tunnel_annotations[i] if i < len(tunnel_annotations) else []
        for side, who in (("aws", "AWS end"), ("cgw", "CGW end")):
            node = f"{side}{i + 1}"
            lane = f"{tname} {who}"
            m.lanes.append(lane)
            for t0, t1, st in _state_intervals(records, node, duration, {"tunnel_up"}, {"tunnel_down"}):
                m.intervals.append(Interval(lane, node, st, t0, t1))
            _exchanges(m, lane, node, [a for a in anns if a.node == side], records, f"{tname} {who}")
    for tname in tunnels:
        lane = f"TGW routes via {tname}"
        m.lanes.append(lane)
        moves = [r for r in records if r.event == "tgw_routes_changed" and r.fields.get("tunnel") == tname]
        for t0, t1, st in _tgw_route_intervals(moves, duration):
            m.intervals.append(Interval(lane, "tgw", st, t0, t1))
    for name, first, last in flows:
        lane = f"flow {name}"
        m.lanes.append(lane)
        outages = sorted(
            (float(o.fields["start"]), float(o.fields["end"]))
            for o in records
            if o.event == "flow_outage" and o.fields.get("name") == name
        )
        t, end = first, last
        if len(outages) > MAX_OUTAGES_DRAWN:
            outages, partial = _clusters(outages, max(last - first, 1e-9) / 300)
        else:
            partial = [False] * len(outages)
        for (a, b), part in zip(outages, partial, strict=True):
            if a > t:
                m.intervals.append(Interval(lane, "flows", "DELIVERING", t, a))
            m.intervals.append(Interval(lane, "flows", "PARTIAL" if part else "LOSING", a, b))
            t = b
        if end > t:
            m.intervals.append(Interval(lane, "flows", "DELIVERING", t, end))
    return m


_STYLE = {
    "probe": dict(marker="^", color="#1565c0", s=46, label="DPD probe sent"),
    "initiation": dict(marker=">", color="#6a1b9a", s=52, label="IKE (re)initiation"),
    "retransmit": dict(marker="^", facecolors="none", edgecolors="#1565c0", s=46, label="retransmission"),
    "answer_received": dict(marker="o", color="#2e7d32", s=26, label="answer received"),
    "lost": dict(marker="x", color="#c62828", s=46, label="sent, lost on the link"),
    "flow_delivered": dict(marker="P", color="#2e7d32", s=60, label="TGW probe delivered"),
    "flow_dropped": dict(marker="X", color="#c62828", s=60, label="TGW probe dropped"),
}


def plot_timeline(model: TimelineModel, title: str = "") -> tuple[str, bytes]:
    """Draw the model; returns (SVG text with data attributes, PNG bytes)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    matplotlib.rcParams["svg.hashsalt"] = "awsnetemu"  # stable ids from run to run
    lanes = model.lanes
    ypos = {lane: len(lanes) - 1 - i for i, lane in enumerate(lanes)}
    fig = Figure(figsize=(11, 1.0 + 0.55 * len(lanes)), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    attrs: dict[str, dict[str, str]] = {}
    n = 0
    y: float
    for iv in model.intervals:
        gid = f"tl-interval-{n}"
        n += 1
        y = ypos[iv.lane]
        bars = ax.broken_barh(
            [(iv.t0, max(iv.t1 - iv.t0, 1e-9))], (y - 0.3, 0.6), facecolors=STATE_COLORS[iv.state], edgecolor="none"
        )
        bars.set_gid(gid)
        attrs[gid] = {
            "class": "tl-interval",
            "data-lane": iv.lane,
            "data-node": iv.node,
            "data-state": iv.state,
            "data-t0": f"{iv.t0:.6f}",
            "data-t1": f"{iv.t1:.6f}",
        }
    for pts in model.points:
        if not pts.times:
            continue
        gid = f"tl-points-{n}"
        n += 1
        # requests above the lane's centre line, answers below: at one instant they would hide each other
        y = ypos[pts.lane] + {"probe": 0.14, "retransmit": 0.14, "initiation": 0.14, "answer_received": -0.14}.get(
            pts.what, 0.0
        )
        style = dict(_STYLE[pts.what])
        style.pop("label")
        sc = ax.scatter(pts.times, [y] * len(pts.times), zorder=3, **style)  # type: ignore[arg-type]
        sc.set_gid(gid)
        attrs[gid] = {
            "class": "tl-points",
            "data-lane": pts.lane,
            "data-node": pts.node,
            "data-what": pts.what,
            "data-times": " ".join(f"{t:.6f}" for t in pts.times),
        }
    for t, node, text in model.marks:
        gid = f"tl-mark-{n}"
        n += 1
        line = ax.axvline(t, color="#e65100", linestyle="--", linewidth=1.2, zorder=2)
        line.set_gid(gid)
        attrs[gid] = {"class": "tl-mark", "data-node": node, "data-t": f"{t:.6f}", "data-text": text}
        ax.annotate(
            text,
            xy=(t, len(lanes) - 0.45),
            xytext=(4, 0),
            textcoords="offset points",
            fontsize=8,
            color="#e65100",
            va="bottom",
        )
    ax.set_yticks(list(ypos.values()), list(ypos.keys()))
    ax.set_ylim(-0.7, len(lanes) - 0.1 + 0.35)
    ax.set_xlim(-model.duration * 0.01, model.duration * 1.01)  # markers at 0 and at the end stay whole
    ax.set_xlabel("virtual time (s)")
    ax.grid(axis="x", color="#e0e0e0", linewidth=0.6)
    ax.set_axisbelow(True)
    if title:
        ax.set_title(title, loc="left", fontsize=11)
    used_states = {iv.state for iv in model.intervals}
    handles: list[Any] = [
        Patch(facecolor=STATE_COLORS[st], label=STATE_LABELS[st])
        for st in STATE_COLORS
        if st in ("UP", "DOWN", "CRASHED") or st in used_states
    ]
    used = {p.what for p in model.points if p.times}
    for what, st in _STYLE.items():
        if what in used:
            handles.append(
                Line2D(
                    [],
                    [],
                    linestyle="none",
                    marker=str(st["marker"]),
                    markerfacecolor="none" if what == "retransmit" else str(st.get("color", "#1565c0")),
                    markeredgecolor=str(st.get("edgecolors", st.get("color", "#1565c0"))),
                    label=str(st["label"]),
                )
            )
    if model.marks:
        handles.append(Line2D([], [], color="#e65100", linestyle="--", label="DPD timeout"))
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=4, fontsize=8, frameon=False)
    fig.subplots_adjust(left=0.12, right=0.98, top=0.9, bottom=0.22 + 0.02 * max(0, 8 - len(lanes)))
    fig.tight_layout()
    svg_buf = io.StringIO()
    fig.savefig(svg_buf, format="svg", metadata={"Date": None})
    png_buf = io.BytesIO()
    fig.savefig(png_buf, format="png", metadata={"Software": None})
    return _add_attrs(svg_buf.getvalue(), attrs), png_buf.getvalue()


def _add_attrs(svg: str, attrs: dict[str, dict[str, str]]) -> str:
    def repl(m: re.Match[str]) -> str:
        gid = m.group(1)
        extra = attrs.get(gid)
        if not extra:
            return m.group(0)
        return f'<g id="{gid}" ' + " ".join(f'{k}="{escape(v)}"' for k, v in extra.items())

    return re.sub(r'<g id="(tl-[a-z]+-\d+)"', repl, svg)


def parse_timeline_svg(svg: str) -> dict[str, Any]:
    """Read the intervals, instants and marks back from a timeline SVG's data attributes."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    out: dict[str, Any] = {"intervals": [], "points": [], "marks": []}
    for g in root.iter(f"{ns}g"):
        cls = g.get("class")
        if cls == "tl-interval":
            out["intervals"].append(
                (
                    g.get("data-lane"),
                    g.get("data-node"),
                    g.get("data-state"),
                    float(g.get("data-t0", "0")),
                    float(g.get("data-t1", "0")),
                )
            )
        elif cls == "tl-points":
            times = [float(x) for x in (g.get("data-times") or "").split()]
            out["points"].append((g.get("data-lane"), g.get("data-node"), g.get("data-what"), times))
        elif cls == "tl-mark":
            out["marks"].append((g.get("data-node"), float(g.get("data-t", "0")), g.get("data-text")))
    return out
