"""TGW stories for the tour: a topology, packets sent at given instants, changes in between (appliance mode,
an AZ or ENI failing), expectations on each packet's verdict; per-hop annotated captures and a path diagram.

A story file (YAML; ``emulator/scenarios/tgw/``)::

    name: tgw-appliance-mode-off
    description: free text
    topology: ../topologies/tgw-seed.yaml      # YAML topology (tgw_dataplane/TOPOLOGY.md), relative to this file
    settings: {pinned_flow_on_failure: rehash} # optional overrides of the topology's settings
    appliance_mode: {tgw-attach-c: false}      # optional ApplianceModeSupport overrides at the start
    steps:
      - {at: 0, send: request, flow: "tcp 10.0.1.10:40000 > 10.1.2.20:443", name: SYN}
      - {at: 0.001, send: reply, flow: "tcp 10.0.1.10:40000 > 10.1.2.20:443", name: SYN-ACK}
      - {at: 10, do: az_health, az_id: use1-az3, healthy: false}
      - {at: 10, do: eni_health, eni: eni-c-use1-az1, healthy: false}
      - {at: 10, do: appliance_mode, attachment: tgw-attach-c, enabled: true}
      - {at: 10.5, send: ack, flow: "tcp 10.0.1.10:40000 > 10.1.2.20:443", name: ACK}
    expect:
      - {name: SYN, verdict: delivered}
      - {name: SYN-ACK, verdict: dropped, reason: appliance_no_state}

``send`` is ``request`` (a SYN for TCP), ``reply`` (the SYN-ACK, from the destination) or ``ack`` (a bare
ACK from the source); ``from`` names the sending node when the address's owner is not it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from typing import Any

import yaml

from emulator.annotate import HopCapture, drop_explanation, pair_hops
from emulator.errors import ConfigError

PCAP_EPOCH_US = 1_767_225_600 * 1_000_000  # virtual t=0 in captures (the scenario runner's epoch)
STEP_KEYS = {"at", "send", "flow", "name", "from", "do", "az_id", "eni", "healthy", "attachment", "enabled"}
TOP_KEYS = {"name", "description", "topology", "settings", "appliance_mode", "steps", "expect"}


@dataclass
class PacketResult:
    """One packet of a story: what was sent and what the dataplane did with it."""

    name: str
    at: float
    flow: str
    send: str
    source: str
    verdict: str
    reason: str
    hops: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class TgwStoryResult:
    """A story after its run: its packets with their hops, the changes made, the expectations' verdicts and
    every hop's capture with its comment."""

    name: str
    description: str
    topology: str
    raw: dict[str, Any]
    packets: list[PacketResult] = field(default_factory=list)
    changes: list[tuple[float, str]] = field(default_factory=list)
    expectations: list[dict[str, Any]] = field(default_factory=list)
    captures: list[HopCapture] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(e["ok"] for e in self.expectations)


def load_story(path: str) -> dict[str, Any]:
    """Read and check a story file; relative topology paths become absolute."""
    try:
        with open(path) as f:
            raw = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"{path}: cannot read: {e.strerror}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    for k in raw:
        if k not in TOP_KEYS:
            raise ConfigError(f"{k}: unknown key (allowed: {', '.join(sorted(TOP_KEYS))})")
    if not raw.get("topology"):
        raise ConfigError("topology: required")
    topo = str(raw["topology"])
    if not os.path.isabs(topo):
        # relative to the story file; for an edited copy kept elsewhere, also to the embedded stories
        here = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)), topo))
        embedded = os.path.normpath(os.path.join(os.path.dirname(os.path.dirname(__file__)), "scenarios", "tgw", topo))
        topo = here if os.path.exists(here) or not os.path.exists(embedded) else embedded
    raw["topology"] = topo
    raw.setdefault("name", os.path.splitext(os.path.basename(path))[0])
    with open(path) as f:
        raw["_source"] = f.read()  # the file as written, for the page (not a story key)
    for i, st in enumerate(raw.get("steps") or []):
        if not isinstance(st, dict) or "at" not in st:
            raise ConfigError(f"steps[{i}]: needs at")
        for k in st:
            if k not in STEP_KEYS:
                raise ConfigError(f"steps[{i}].{k}: unknown key (allowed: {', '.join(sorted(STEP_KEYS))})")
        if ("send" in st) == ("do" in st):
            raise ConfigError(f"steps[{i}]: needs exactly one of send, do")
        if "send" in st and st["send"] not in ("request", "reply", "ack"):
            raise ConfigError(f"steps[{i}].send: must be request, reply or ack, got {st['send']!r}")
        if "do" in st and st["do"] not in ("az_health", "eni_health", "appliance_mode"):
            raise ConfigError(f"steps[{i}].do: must be az_health, eni_health or appliance_mode, got {st['do']!r}")
    return raw


def run_story(raw: Mapping[str, Any]) -> TgwStoryResult:
    """Run a story (from :func:`load_story`): every packet traced and captured at every hop."""
    from tgw_dataplane.craft import build, parse_flow
    from tgw_dataplane.dataplane import Dataplane
    from tgw_dataplane.model import PinnedFlowPolicy, load_topology
    from tgw_dataplane.packet import PROTO_TCP, TCP_ACK

    topo = load_topology(str(raw["topology"]))
    for k, v in (raw.get("settings") or {}).items():
        if not hasattr(topo.settings, k):
            raise ConfigError(f"settings.{k}: unknown setting")
        if k == "pinned_flow_on_failure":
            v = PinnedFlowPolicy(v)
        setattr(topo.settings, k, v)
    caps: list[tuple[str, int, bytes]] = []

    def sink(node: str, ts: float, frame: bytes) -> None:
        caps.append((node, PCAP_EPOCH_US + round(ts * 1_000_000), bytes(frame)))

    dp = Dataplane(topo, capture_sink=sink)
    for att, on in (raw.get("appliance_mode") or {}).items():
        dp.set_appliance_mode(str(att), bool(on))
    res = TgwStoryResult(str(raw["name"]), str(raw.get("description", "")).strip(), str(raw["topology"]), dict(raw))
    for i, st in enumerate(sorted(raw.get("steps") or [], key=lambda s: float(s["at"]))):
        at = float(st["at"])
        if "do" in st:
            if st["do"] == "az_health":
                dp.set_az_health(str(st["az_id"]), bool(st.get("healthy", False)))
                res.changes.append((at, f"AZ {st['az_id']} " + ("recovers" if st.get("healthy") else "fails")))
            elif st["do"] == "eni_health":
                dp.set_eni_health(str(st["eni"]), bool(st.get("healthy", False)))
                res.changes.append((at, f"ENI {st['eni']} " + ("recovers" if st.get("healthy") else "fails")))
            else:
                dp.set_appliance_mode(str(st["attachment"]), bool(st.get("enabled", True)))
                res.changes.append(
                    (at, f"appliance mode {'on' if st.get('enabled', True) else 'off'} for {st['attachment']}")
                )
            continue
        try:
            flow = parse_flow(str(st["flow"]))
        except ValueError as e:
            raise ConfigError(f"steps[{i}].flow: {e}") from None
        kind = st["send"]
        if kind == "request":
            data, src_ip = flow.request(), flow.src
        elif kind == "reply":
            data, src_ip = flow.reply(), flow.dst
        else:
            data = build(flow.src, flow.dst, PROTO_TCP, flow.sport, flow.dport, flags=TCP_ACK, seq=1001, ack=5001)
            src_ip = flow.src
        source = str(st.get("from") or dp.source_for_ip(src_ip))
        caps.clear()
        r = dp.send(data, source, at, trace=True)
        name = str(st.get("name") or f"{kind} {i}")
        pr = PacketResult(
            name, at, str(st["flow"]), kind, source, str(r.verdict), str(r.reason or ""), list(r.hops or [])
        )
        res.packets.append(pr)
        res.captures += pair_hops(caps, pr.hops, name)
    for want in raw.get("expect") or []:
        got = next((p for p in res.packets if p.name == want.get("name")), None)
        if got is None:
            detail = f"no packet named {want.get('name')!r}"
            res.expectations.append({"expectation": want, "ok": False, "detail": detail})
            continue
        bad = {k: getattr(got, k) for k in ("verdict", "reason") if k in want and getattr(got, k) != want[k]}
        detail = f"{got.verdict}" + (f" ({got.reason})" if got.reason else "")
        res.expectations.append({"expectation": want, "ok": not bad, "detail": detail})
    return res


# ------------------------------------------------------------------------------------------- path diagram

_BOX_W = 168
_BOX_H = 92
_GAP = 26
_KIND_FILL = {
    "host": "#e3f2fd",
    "tgw": "#fff3e0",
    "tgw-attachment-eni": "#f3e5f5",
    "stateful-firewall": "#fce4ec",
    "igw": "#e0f2f1",
    "vpn-attachment": "#e8f5e9",
}
_AZ_COLORS = ["#1565c0", "#6a1b9a", "#00838f", "#ef6c00", "#2e7d32", "#ad1457"]


def _lines(h: Mapping[str, Any]) -> list[str]:
    kind = str(h.get("kind", ""))
    out = [kind] if kind != "hop" else []
    if h.get("attachment") and kind != "tgw-attachment-eni":
        out.append(str(h["attachment"]))
    if kind == "tgw":
        if h.get("route_table"):
            out.append(f"table {h['route_table']}")
        if h.get("egress_attachment"):
            out.append(f"-> {h['egress_attachment']}")
        if h.get("egress_eni"):
            out.append(f"-> {h['egress_eni']}")
        if h.get("appliance_mode"):
            out.append("appliance mode")
    else:
        if h.get("eni") and h.get("eni") != h.get("node"):
            out.append(str(h["eni"]))
        if h.get("route"):
            out.append(str(h["route"]))
    return [x if len(x) <= 27 else x[:26] + "…" for x in out[:5]]


def paths_svg(packets: Sequence[PacketResult], title: str = "", changes: Sequence[tuple[float, str]] = ()) -> str:
    """One row per packet: its hops left to right, each box with the node, its kind, AZ (a coloured badge, the
    same colour for the same AZ everywhere), attachment, ENI and route; a dropped packet ends in a red box that
    says why. Between packets, the changes made (an AZ failing, appliance mode switched)."""
    azs: list[str] = []
    for pk in packets:
        for h in pk.hops:
            for key in ("az", "egress_az"):
                if h.get(key) and h[key] not in azs:
                    azs.append(str(h[key]))
    color = {az: _AZ_COLORS[i % len(_AZ_COLORS)] for i, az in enumerate(sorted(azs))}
    max_hops = max((len(pk.hops) for pk in packets), default=1)
    longest = max(
        (
            len(f"{pk.name} at t={pk.at:g}: {pk.flow} ({pk.send}, from {pk.source}) -> {pk.verdict} ({pk.reason})")
            for pk in packets
        ),
        default=40,
    )
    width = max(40 + max_hops * (_BOX_W + _GAP), int(24 + 7.2 * longest))  # the header line stays whole
    row_h = _BOX_H + 58
    events: list[tuple[float, int, Any]] = [(pk.at, 1, pk) for pk in packets] + [(t, 0, c) for t, c in changes]
    events.sort(key=lambda x: (x[0], x[1]))
    height = 50 + sum(row_h if ev_kind == 1 else 30 for _, ev_kind, _ in events) + 40
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="tgw-paths" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" data-packets="{len(packets)}" '
        'font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="11">',
        '<defs><marker id="parr" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#444"/></marker></defs>',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#fff"/>',
    ]
    if title:
        out.append(f'<text x="12" y="22" font-size="15" font-weight="bold">{escape(title)}</text>')
    y = 44.0
    for at, kind, item in events:
        if kind == 0:
            out.append(
                f'<g class="change" data-t="{at:.6f}"><rect x="12" y="{y:.0f}" width="{width - 24}" height="22" '
                f'fill="#fff8e1" stroke="#f9a825" rx="4"/><text x="20" y="{y + 15:.0f}">t={at:g}: {escape(item)}'
                "</text></g>"
            )
            y += 30
            continue
        p: PacketResult = item
        vcol = "#2e7d32" if p.verdict == "delivered" else "#c62828"
        sent = f"{p.send}, from {p.source}" if p.source else p.send
        head = f"{p.name} at t={p.at:g}: {p.flow} ({sent}) -> {p.verdict}"
        if p.reason:
            head += f" ({p.reason})"
        out.append(
            f'<g class="path" data-name="{escape(p.name)}" data-verdict="{p.verdict}" data-reason="{escape(p.reason)}"'
            f' data-t="{p.at:.6f}" data-hops="{len(p.hops)}">'
            f'<text x="12" y="{y + 14:.0f}" font-weight="bold" fill="{vcol}">{escape(head)}</text>'
        )
        x = 20.0
        by = y + 26
        real = [h for h in p.hops if h.get("kind") != "drop"]
        drop = next((h for h in p.hops if h.get("kind") == "drop"), None)
        for n, h in enumerate(real):
            az = h.get("az")
            fill = _KIND_FILL.get(str(h.get("kind")), "#f5f5f5")
            out.append(
                f'<g class="hop" data-hop="{n + 1}" data-node="{escape(str(h.get("node")))}" '
                f'data-kind="{escape(str(h.get("kind")))}" data-az="{escape(str(az or ""))}">'
                f"<title>{escape(', '.join(f'{kk}={vv}' for kk, vv in h.items() if vv not in (None, '')))}</title>"
                f'<rect x="{x:.0f}" y="{by:.0f}" width="{_BOX_W}" height="{_BOX_H}" rx="6" fill="{fill}" '
                'stroke="#546e7a"/>'
                f'<text x="{x + 8:.0f}" y="{by + 16:.0f}" font-weight="bold" font-size="12">'
                f"{escape(str(h.get('node')))}</text>"
            )
            if az:
                out.append(
                    f'<rect x="{x + _BOX_W - 78:.0f}" y="{by - 9:.0f}" width="74" height="16" rx="8" '
                    f'fill="{color.get(str(az), "#777")}"/><text x="{x + _BOX_W - 41:.0f}" y="{by + 3:.0f}" '
                    f'text-anchor="middle" fill="#fff" font-size="10">{escape(str(az))}</text>'
                )
            for j, line in enumerate(_lines(h)):
                out.append(f'<text x="{x + 8:.0f}" y="{by + 32 + 13 * j:.0f}" fill="#333">{escape(line)}</text>')
            out.append("</g>")
            if n + 1 < len(real) or drop is not None:
                out.append(
                    f'<line x1="{x + _BOX_W:.0f}" y1="{by + _BOX_H / 2:.0f}" x2="{x + _BOX_W + _GAP - 2:.0f}" '
                    f'y2="{by + _BOX_H / 2:.0f}" stroke="#444" marker-end="url(#parr)"/>'
                )
            x += _BOX_W + _GAP
        if drop is not None:
            why = drop_explanation(str(drop.get("reason", "")), real[-1] if real else drop)
            words = why.split()
            lines: list[str] = []
            for w in words:
                if lines and len(lines[-1]) + len(w) < 26:
                    lines[-1] += " " + w
                else:
                    lines.append(w)
            out.append(
                f'<g class="hop drop" data-reason="{escape(str(drop.get("reason")))}" data-node="'
                f'{escape(str(drop.get("node")))}"><title>{escape(why)}</title>'
                f'<rect x="{x:.0f}" y="{by:.0f}" width="{_BOX_W}" height="{_BOX_H}" rx="6" fill="#ffebee" '
                f'stroke="#c62828" stroke-width="2"/><text x="{x + 8:.0f}" y="{by + 16:.0f}" font-weight="bold" '
                f'fill="#c62828" font-size="12">DROPPED: {escape(str(drop.get("reason")))}</text>'
            )
            for j, line in enumerate(lines[:5]):
                out.append(f'<text x="{x + 8:.0f}" y="{by + 32 + 12 * j:.0f}" fill="#b71c1c">{escape(line)}</text>')
            out.append("</g>")
        out.append("</g>")
        y += row_h
    out.append("</svg>")
    return "\n".join(out) + "\n"


def hops_from_names(names: Sequence[Any]) -> list[dict[str, Any]]:
    """``tgw_flow`` events carry hop node names only: turn them into minimal hop records for :func:`paths_svg`
    (a ``drop`` kind is kept, so a dropped probe still ends in a red box)."""
    out: list[dict[str, Any]] = []
    for n in names:
        if isinstance(n, Mapping):
            out.append(dict(n))
        else:
            out.append({"node": str(n), "kind": "hop"})
    return out
