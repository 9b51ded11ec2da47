"""The sequence diagram of a VPN run as SVG: two lifelines (the CGW and AWS), one arrow per datagram, notes for
what the engines reported (tunnel state, DPD timeout, routes, restarts, crashes, rekeys), compressed time gaps.

Notation (after mscgen and Mermaid): a lost datagram ends in a red cross half-way; a datagram sent to a node
that is down ends in a grey cross at its lifeline; a retransmission is dashed. A lifeline is green while that
side's tunnel is UP, grey while DOWN and red-dashed while the node is crashed. Rows follow the trace; a gap of
more than ``gap`` seconds between two rows is drawn as a break labelled with its length. Long runs of routine
DPD exchanges (answered first probes and their answers) are folded into one row that says how many were folded.

Every element carries what it shows as data attributes (``class="msg"`` with ``data-index``, ``data-t``,
``data-from``, ``data-to``, ``data-kind``, ``data-lost``; ``class="note"`` with ``data-event``,
``data-node``, ``data-t``; ``class="collapsed"`` with the folded index range), and a ``<title>`` with the
packet's full comment, so a browser shows it on hover and a test can read the picture back.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape
from typing import Any

from emulator.annotate import PROBES, Annotation, VpnContext
from emulator.trace import TraceRecord

NOTE_EVENTS = (
    "tunnel_up",
    "tunnel_down",
    "dpd_timeout",
    "routes_withdrawn",
    "restart_scheduled",
    "node_crashed",
    "node_revived",
    "rekey_started",
    "rekey_done",
    "negotiation_failed",
    "tgw_routes_changed",
    "tgw_flow",
)
ROUTINE_ANSWERS = frozenset({"dpd_ack", "liveness_response"})

_W = 960
_X = {"cgw": 300.0, "aws": 760.0}
_TOP = 70.0
_ROW = 30.0
_NOTE_ROW = 28.0
_GAP_ROW = 22.0
_COLORS = {"up": "#2e7d32", "down": "#9e9e9e", "crashed": "#c62828"}


@dataclass
class _Row:
    kind: str  # msg | note | gap | collapsed
    t: float
    ann: Annotation | None = None
    rec: TraceRecord | None = None
    text: str = ""
    first: int = 0
    last: int = 0
    count: int = 0
    seconds: float = 0.0


def note_text(r: TraceRecord, ctx: VpnContext) -> str:
    """The text of a note for an engine or runtime event."""
    f = r.fields
    ev = r.event
    them = ctx.the("cgw" if r.node == "aws" else "aws")
    if ev == "tunnel_up":
        return "tunnel UP"
    if ev == "tunnel_down":
        return f"tunnel DOWN ({f.get('reason', '?')})"
    if ev == "dpd_timeout":
        li = f.get("last_inbound")
        since = f" since t={float(li):g}" if li is not None else ""
        return f"DPD timeout: nothing from {them}{since}; action={f.get('action')}"
    if ev == "routes_withdrawn":
        return "routes withdrawn"
    if ev == "restart_scheduled":
        at = f.get("at")
        text = f"restart at t={float(at):.3f}" if at is not None else "restart scheduled"
        return text + (f" (attempt {f['attempt']})" if "attempt" in f else "")
    if ev == "node_crashed":
        return "crashed (kill -9)"
    if ev == "node_revived":
        return "revived (fresh process)"
    if ev == "rekey_started":
        return f"rekey of the {f.get('sa', '?')} SA started"
    if ev == "rekey_done":
        return f"rekey of the {f.get('sa', '?')} SA done"
    if ev == "negotiation_failed":
        return f"{f.get('exchange', '?')} failed: {f.get('reason', '?')}"
    if ev == "tgw_routes_changed":
        return "TGW: routes " + ("installed" if f.get("up") else "removed") + f" ({f.get('attachment')})"
    if ev == "tgw_flow":
        v = f.get("verdict")
        return f"TGW probe {f.get('name')}: {v}" + (f" ({f.get('reason')})" if f.get("reason") else "")
    return ev


def _routine(a: Annotation) -> bool:
    if a.lost or not a.received or a.retransmit:
        return False
    if a.kind in PROBES:
        return (a.attempt or 1) <= 1
    return a.kind in ROUTINE_ANSWERS


def build_rows(
    annotations: Sequence[Annotation],
    records: Sequence[TraceRecord],
    ctx: VpnContext,
    *,
    gap: float = 0.5,
    fold_after: int = 8,
    keep_head: int = 4,
    keep_tail: int = 2,
) -> list[_Row]:
    """The diagram's rows, in trace order, before layout (public for tests)."""
    by_trace = {a.trace_index: a for a in annotations}
    raw: list[_Row] = []
    for i, r in enumerate(records):
        a = by_trace.get(i)
        if a is not None:
            raw.append(_Row("msg", r.t, ann=a))
        elif r.event in NOTE_EVENTS:
            raw.append(_Row("note", r.t, rec=r, text=note_text(r, ctx)))
    # fold long runs of routine messages
    rows: list[_Row] = []
    i = 0
    while i < len(raw):
        j = i
        while j < len(raw) and raw[j].kind == "msg" and raw[j].ann is not None and _routine(raw[j].ann):  # type: ignore[arg-type]
            j += 1
        if j - i > fold_after:
            rows.extend(raw[i : i + keep_head])
            hidden = raw[i + keep_head : j - keep_tail]
            anns = [h.ann for h in hidden if h.ann is not None]
            rows.append(
                _Row(
                    "collapsed",
                    hidden[0].t,
                    first=anns[0].index,
                    last=anns[-1].index,
                    count=len(anns),
                    seconds=hidden[-1].t,
                    text=_fold_text(anns),
                )
            )
            rows.extend(raw[j - keep_tail : j])
            i = j
        elif j > i:
            rows.extend(raw[i:j])
            i = j
        else:
            rows.append(raw[i])
            i += 1
    # time gaps
    out: list[_Row] = []
    prev: float | None = None
    for row in rows:
        if prev is not None and row.kind != "collapsed" and row.t - prev > gap:
            out.append(_Row("gap", row.t, seconds=row.t - prev))
        out.append(row)
        prev = row.seconds if row.kind == "collapsed" else row.t
    return out


def _fold_text(anns: Sequence[Annotation]) -> str:
    probes = [a for a in anns if a.kind in PROBES]
    t0, t1 = anns[0].t, anns[-1].t
    if len(probes) >= 2:
        every = (probes[-1].t - probes[0].t) / (len(probes) - 1)
        return (
            f"{len(anns)} routine messages folded: {len(probes)} answered DPD probes, "
            f"about every {every:.3g} s, t={t0:g} to t={t1:g}"
        )
    return f"{len(anns)} routine messages folded, t={t0:g} to t={t1:g}"


def _fmt_t(t: float) -> str:
    s = f"{t:.6f}".rstrip("0").rstrip(".")
    return f"t={s}"


def _state_at(records: Sequence[TraceRecord], rows: Sequence[_Row]) -> list[dict[str, str]]:
    """Per row, each lifeline's state (up / down / crashed) after that row."""
    st = {"aws": "down", "cgw": "down"}
    alive = {"aws": True, "cgw": True}
    out = []
    for row in rows:
        r = row.rec
        if r is not None and r.node in st:
            if r.event == "tunnel_up":
                st[r.node] = "up"
            elif r.event == "tunnel_down":
                st[r.node] = "down"
            elif r.event == "node_crashed":
                alive[r.node] = False
                st[r.node] = "down"
            elif r.event == "node_revived":
                alive[r.node] = True
        out.append({n: (st[n] if alive[n] else "crashed") for n in st})
    return out


def sequence_svg(
    annotations: Sequence[Annotation],
    records: Sequence[TraceRecord],
    ctx: VpnContext | None = None,
    *,
    title: str = "",
    gap: float = 0.5,
) -> str:
    """The sequence diagram as a standalone SVG document (UTF-8 text)."""
    ctx = ctx or VpnContext()
    rows = build_rows(annotations, records, ctx, gap=gap)
    states = _state_at(records, rows)
    heights = {"msg": _ROW, "note": _NOTE_ROW, "gap": _GAP_ROW, "collapsed": _ROW}
    y = _TOP + 40
    ys: list[float] = []
    for row in rows:
        ys.append(y)
        y += heights[row.kind]
    height = y + 30
    p: list[str] = []
    add = p.append
    n_msgs = len(annotations)
    add(
        f'<svg xmlns="http://www.w3.org/2000/svg" class="sequence" width="{_W}" height="{height:.0f}" '
        f'viewBox="0 0 {_W} {height:.0f}" data-messages="{n_msgs}" data-scenario="{escape(title)}" '
        'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="12">'
    )
    add(
        "<defs>"
        '<marker id="arr" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto">'
        '<path d="M0,0 L10,5 L0,10 z" fill="#333"/></marker>'
        '<marker id="arr-grey" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#999"/></marker>'
        "</defs>"
    )
    add(f'<rect x="0" y="0" width="{_W}" height="{height:.0f}" fill="#ffffff"/>')
    if title:
        add(f'<text x="12" y="22" font-size="15" font-weight="bold">{escape(title)}</text>')
    add('<text x="12" y="42" fill="#555">virtual time (s)</text>')
    # lifeline heads
    for node, x in _X.items():
        name = ctx.name(node)
        addr = ctx.addresses.get(node, "")
        add(
            f'<g class="head" data-node="{node}"><rect x="{x - 90:.0f}" y="{_TOP - 18:.0f}" width="180" height="38" '
            f'rx="6" fill="#eceff1" stroke="#455a64"/><text x="{x:.0f}" y="{_TOP:.0f}" text-anchor="middle" '
            f'font-weight="bold">{escape(name)}</text><text x="{x:.0f}" y="{_TOP + 14:.0f}" text-anchor="middle" '
            f'fill="#555" font-size="11">{escape(addr)}</text></g>'
        )
    # lifelines, one segment per row, coloured by state
    prev_y = _TOP + 20
    prev_state = {"aws": "down", "cgw": "down"}
    for i, row in enumerate(rows):
        y_end = ys[i] + heights[row.kind] / 2
        for node, x in _X.items():
            s = prev_state[node]
            dash = ' stroke-dasharray="4 3"' if s == "crashed" else ""
            w = 4 if s == "up" else 2
            add(
                f'<line class="life" data-node="{node}" data-state="{s}" x1="{x:.0f}" y1="{prev_y:.1f}" '
                f'x2="{x:.0f}" y2="{y_end:.1f}" stroke="{_COLORS[s]}" stroke-width="{w}"{dash}/>'
            )
        prev_y = y_end
        prev_state = states[i]
    for node, x in _X.items():
        s = prev_state[node]
        add(
            f'<line class="life" data-node="{node}" data-state="{s}" x1="{x:.0f}" y1="{prev_y:.1f}" x2="{x:.0f}" '
            f'y2="{height - 20:.1f}" stroke="{_COLORS[s]}" stroke-width="{4 if s == "up" else 2}"/>'
        )
    for row, y0 in zip(rows, ys, strict=True):
        if row.kind == "msg" and row.ann is not None:
            add(_msg(row.ann, y0))
        elif row.kind == "note" and row.rec is not None:
            add(_note(row, y0))
        elif row.kind == "gap":
            add(_gap(row, y0))
        elif row.kind == "collapsed":
            add(_collapsed(row, y0))
    # legend
    ly = height - 8
    add(
        f'<text x="12" y="{ly:.0f}" fill="#555" font-size="11">lifeline: green = tunnel UP, grey = DOWN, '
        "red dashed = crashed; red cross = lost on the link; grey cross = receiver down; dashed arrow = "
        "retransmission</text>"
    )
    add("</svg>")
    return "\n".join(p) + "\n"


def _msg(a: Annotation, y: float) -> str:
    x1 = _X.get(a.node, 300.0)
    x2 = _X.get(a.peer or "", 760.0)
    mid_y = y + 18
    dash = ' stroke-dasharray="6 4"' if a.retransmit else ""
    parts = [
        f'<g class="msg" data-index="{a.index}" data-t="{a.t:.6f}" data-from="{a.node}" data-to="{a.peer or ""}" '
        f'data-kind="{escape(a.kind)}" data-lost="{str(a.lost).lower()}" data-received="{str(a.received).lower()}" '
        f'data-retransmit="{a.retransmit}">',
        f"<title>{escape(a.comment)}</title>",
        f'<text x="12" y="{mid_y + 4:.1f}" fill="#333">{_fmt_t(a.t)}</text>',
    ]
    if a.lost:
        xe = x1 + (x2 - x1) * 0.55
        parts.append(
            f'<line x1="{x1:.0f}" y1="{mid_y:.1f}" x2="{xe:.1f}" y2="{mid_y:.1f}" stroke="#c62828" '
            f'stroke-width="1.6"{dash}/>'
        )
        parts.append(_cross(xe, mid_y, "#c62828", "lost"))
    elif not a.received:
        xe = x2 - (8 if x2 > x1 else -8)
        parts.append(
            f'<line x1="{x1:.0f}" y1="{mid_y:.1f}" x2="{xe:.1f}" y2="{mid_y:.1f}" stroke="#999" '
            f'stroke-width="1.6"{dash}/>'
        )
        parts.append(_cross(xe, mid_y, "#777", "not-received"))
    else:
        parts.append(
            f'<line x1="{x1:.0f}" y1="{mid_y:.1f}" x2="{x2:.0f}" y2="{mid_y:.1f}" stroke="#333" '
            f'stroke-width="1.6" marker-end="url(#arr)"{dash}/>'
        )
    color = "#c62828" if a.lost else ("#777" if not a.received else "#1a237e")
    parts.append(
        f'<text class="label" x="{(x1 + x2) / 2:.0f}" y="{mid_y - 5:.1f}" text-anchor="middle" fill="{color}">'
        f"{escape(a.label)}</text>"
    )
    parts.append("</g>")
    return "".join(parts)


def _cross(x: float, y: float, color: str, cls: str) -> str:
    d = 6
    return (
        f'<path class="{cls}" d="M{x - d:.1f},{y - d:.1f} L{x + d:.1f},{y + d:.1f} M{x - d:.1f},{y + d:.1f} '
        f'L{x + d:.1f},{y - d:.1f}" stroke="{color}" stroke-width="2.5"/>'
    )


def _note(row: _Row, y: float) -> str:
    r = row.rec
    assert r is not None
    x = _X.get(r.node, (_X["aws"] + _X["cgw"]) / 2)
    text = row.text
    w = min(max(7.6 * len(text) + 16, 80.0), 560.0)
    x0 = min(max(x - w / 2, 110.0), _W - w - 4)
    fill = {"tunnel_up": "#e8f5e9", "tunnel_down": "#ffebee", "dpd_timeout": "#fff3e0", "node_crashed": "#ffebee"}
    stroke = {"tunnel_up": "#2e7d32", "tunnel_down": "#c62828", "dpd_timeout": "#e65100", "node_crashed": "#c62828"}
    extra = " ".join(
        f'data-{k.replace("_", "-")}="{escape(str(v))}"'
        for k, v in r.fields.items()
        if isinstance(v, str | int | float | bool) and k in ("action", "reason", "up", "attempt", "verdict", "name")
    )
    return (
        f'<g class="note" data-event="{r.event}" data-node="{r.node}" data-t="{r.t:.6f}" {extra}>'
        f"<title>{escape(r.event)} at {_fmt_t(r.t)}: {escape(str(r.fields))}</title>"
        f'<text x="12" y="{y + 17:.1f}" fill="#888">{_fmt_t(r.t)}</text>'
        f'<rect x="{x0:.1f}" y="{y + 3:.1f}" width="{w:.0f}" height="21" rx="4" '
        f'fill="{fill.get(r.event, "#fffde7")}" stroke="{stroke.get(r.event, "#f9a825")}"/>'
        f'<text x="{x0 + w / 2:.1f}" y="{y + 18:.1f}" text-anchor="middle">{escape(text)}</text></g>'
    )


def _gap(row: _Row, y: float) -> str:
    s = row.seconds
    label = f"{s:.3f}".rstrip("0").rstrip(".") + " s later"
    parts = [f'<g class="gap" data-seconds="{s:.6f}">']
    for x in _X.values():
        parts.append(
            f'<path d="M{x - 10:.0f},{y + 8:.1f} l6,-5 l8,10 l6,-5" stroke="#555" fill="none" stroke-width="1.2"/>'
        )
    parts.append(
        f'<text x="{(_X["aws"] + _X["cgw"]) / 2:.0f}" y="{y + 14:.1f}" text-anchor="middle" fill="#777" '
        f'font-style="italic">⋯ {escape(label)} ⋯</text></g>'
    )
    return "".join(parts)


def _collapsed(row: _Row, y: float) -> str:
    return (
        f'<g class="collapsed" data-first="{row.first}" data-last="{row.last}" data-count="{row.count}">'
        f'<rect x="{_X["cgw"] - 40:.0f}" y="{y + 4:.1f}" width="{_X["aws"] - _X["cgw"] + 80:.0f}" height="22" '
        f'rx="4" fill="#f5f5f5" stroke="#bbb" stroke-dasharray="3 3"/>'
        f'<text x="{(_X["aws"] + _X["cgw"]) / 2:.0f}" y="{y + 19:.1f}" text-anchor="middle" fill="#555">'
        f"{escape(row.text)}</text></g>"
    )


def parse_sequence_svg(svg: str) -> dict[str, Any]:
    """Read a diagram back (messages, notes, folded ranges) from its data attributes: for tests and tools."""
    import xml.etree.ElementTree as ET

    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    msgs, notes, folded = [], [], []
    for g in root.iter(f"{ns}g"):
        cls = g.get("class")
        if cls == "msg":
            msgs.append(
                {
                    "index": int(g.get("data-index", "-1")),
                    "t": float(g.get("data-t", "nan")),
                    "from": g.get("data-from"),
                    "to": g.get("data-to"),
                    "kind": g.get("data-kind"),
                    "lost": g.get("data-lost") == "true",
                    "received": g.get("data-received") == "true",
                    "retransmit": int(g.get("data-retransmit", "0")),
                }
            )
        elif cls == "note":
            notes.append({"event": g.get("data-event"), "node": g.get("data-node"), "t": float(g.get("data-t", "nan"))})
        elif cls == "collapsed":
            folded.append((int(g.get("data-first", "0")), int(g.get("data-last", "0")), int(g.get("data-count", "0"))))
    return {"messages": msgs, "notes": notes, "folded": folded, "total": int(root.get("data-messages", "0"))}
