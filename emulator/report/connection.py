"""Teaching material for a VPN connection run (:mod:`emulator.connection`: two tunnels, the TGW, traffic).

A connection run's capture holds the IKE datagrams of both tunnels and every ESP packet; its event trace holds the
IKE datagrams only (one event per ESP packet would swamp it). The run keeps, while it writes the capture, one
:class:`emulator.connection.Captured` per datagram: who sent it, whether the path delivered it, and for ESP the
SPI and sequence number the endpoint wrote and the inner packet it was handed. From those and the trace:

* each tunnel's IKE datagrams are explained by :func:`emulator.annotate.annotate_vpn` on that tunnel's part of the
  trace (``aws1``/``cgw1`` seen as ``aws``/``cgw``), prefixed with the tunnel's name;
* each ESP packet by :func:`esp_comment`: what it carries (which flow, which packet of it, or the tunnel's own
  BGP), why it took this tunnel (the TGW's routes in use, or the CGW's choice) and, when it was lost, why (the
  path's fault plan, or an end that is down: AWS keeps sending on a tunnel whose CGW died until DPD says so).

:func:`write_connection_material` writes ``NAME.pcapng`` (a comment on every packet), one sequence diagram per
tunnel (IKE and DPD), a timeline of both tunnels, the TGW's routes and each flow's delivery, the manifest
``NAME-run.json`` and the page ``NAME.html``. :func:`rebuild_connection` redoes the pictures and the page from the
files (``awsnetemu report DIR``); the annotated capture is the one the run wrote.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import yaml

from cgw_peer.connection.packets import parse4, read_probe
from emulator.annotate import (
    Annotation,
    CaptureMismatch,
    LinkFaults,
    VpnContext,
    _at,
    _loss_detail,
    annotate_vpn,
    load_trace,
    write_annotated_pcapng,
)
from emulator.report import _events_text, _json_safe
from emulator.report.html import connection_page
from emulator.report.sequence import sequence_svg
from emulator.report.timeline import connection_timeline_model, plot_timeline
from emulator.trace import TraceRecord

__all__ = [
    "connection_summary",
    "esp_comment",
    "rebuild_connection",
    "tunnel_contexts",
    "tunnel_records",
    "write_connection_material",
]

_PICTURES = ("timeline_svg", "timeline_png")

PACKETS_KEPT = 400
"""Explained packets kept in the manifest for the page's table (:func:`_selection`; the capture holds every
comment)."""


# ------------------------------------------------------------------------------------------- per tunnel


def tunnel_records(records: Sequence[TraceRecord], index: int) -> list[TraceRecord]:
    """The part of a connection trace that belongs to tunnel ``index`` (0-based), with its ends renamed ``aws``
    and ``cgw`` as in a single-tunnel run."""
    rename = {f"aws{index + 1}": "aws", f"cgw{index + 1}": "cgw"}
    return [TraceRecord(r.t, rename[r.node], r.event, r.fields) for r in records if r.node in rename]


def _plan(fp: Any) -> LinkFaults:
    return LinkFaults(
        delay=float(fp.delay),
        jitter=float(fp.jitter),
        loss=float(fp.loss),
        blackholes=[(float(a), float(b)) for a, b in fp.blackholes],
        drop_kinds=sorted(fp.drop_kinds),
        drop_kinds_window=(float(fp.drop_kinds_window[0]), float(fp.drop_kinds_window[1])),
    )


def tunnel_contexts(sc: Any) -> list[VpnContext]:
    """One :class:`VpnContext` per tunnel of a :class:`emulator.connection.ConnectionScenario`: its addresses,
    the AWS end's options, both ends' DPD delays, its path's fault plans and the schedule's changes to them."""
    out = []
    for i, t in enumerate(sc.tunnels):
        aws, cgw = sc.tunnel_configs[("aws", i)], sc.tunnel_configs[("cgw", i)]
        opts = aws.options
        ctx = VpnContext(
            ike_version=int(sc.ike_version),
            addresses={"aws": t.aws_address, "cgw": sc.cgw_address},
            startup_action=str(opts.startup_action),
            dpd_timeout_action=str(opts.dpd_timeout_action),
            dpd_timeout_seconds=float(opts.dpd_timeout_seconds),
            dpd_delay={"aws": float(aws.behaviour.dpd_delay), "cgw": float(cgw.behaviour.dpd_delay)},
            dpd_enabled={"aws": bool(aws.behaviour.dpd_enabled), "cgw": bool(cgw.behaviour.dpd_enabled)},
        )
        for d in ("cgw->aws", "aws->cgw"):
            fp = sc.link_plans.get((t.name, d))
            ctx.links[d] = _plan(fp) if fp is not None else LinkFaults()
        for item in sc.items:
            if item.tunnel != t.name:
                continue
            for d in item.directions:
                if item.do == "blackhole":
                    ctx.links.setdefault(d, LinkFaults()).blackholes.append((float(item.at), float(item.until)))
                elif item.do == "faults" and item.plan is not None:
                    ctx.plan_changes.append((float(item.at), d, _plan(item.plan)))
        ctx.plan_changes.sort(key=lambda x: x[0])
        out.append(ctx)
    return out


# -------------------------------------------------------------------------------------------------- ESP


def _ip(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def esp_comment(
    c: Any,
    sc: Any,
    ctx: VpnContext,
    crashes: Mapping[str, Sequence[float]],
    timeouts: Mapping[str, Sequence[TraceRecord]],
) -> tuple[str, str, str]:
    """(what, why, fate) of one ESP packet (a :class:`emulator.connection.Captured`)."""
    i = int(c.node[-1]) - 1
    tname = sc.tunnels[i].name
    aws_side = c.node.startswith("aws")
    me, them = ("AWS", "CGW") if aws_side else ("CGW", "AWS")
    what = f"[{tname}] ESP SPI 0x{c.spi:08x} seq {c.seq} ({me} -> {them})"
    why = ""
    inner = c.inner
    if inner is None:
        if sc.routing == "dynamic":
            t = sc.tunnels[i]
            why = (
                f"carries a BGP message of the session inside {tname} ({t.aws_inside} <-> {t.cgw_inside}, "
                "RFC 4271): the tunnel's own traffic, which keeps its dynamic routes"
            )
        else:
            why = "carries the tunnel's own traffic"
    else:
        p = read_probe(inner)
        ip = parse4(inner)
        if p is not None and p.flow < len(sc.flows):
            f = sc.flows[p.flow]
            if f.kind == "echo":
                if ip is not None and _ip(ip.src) == f.src_ip:
                    carried = f"echo request {p.seq + 1} of flow {f.name!r} ({f.src_ip} -> {f.dst_ip})"
                else:
                    carried = f"the reply to echo request {p.seq + 1} of flow {f.name!r} ({f.dst_ip} -> {f.src_ip})"
            else:
                carried = (
                    f"packet {p.seq + 1} of flow {f.name!r} (UDP {f.src_ip} -> {f.dst_ip}, {len(inner)} octets, "
                    f"{f.rate:g} packets/s)"
                )
        elif ip is not None:
            carried = f"an inner packet {_ip(ip.src)} -> {_ip(ip.dst)} ({len(inner)} octets)"
        else:
            carried = f"an inner packet of {len(inner)} octets"
        why = f"carries {carried}; " + _route_reason(c, sc, tname, aws_side)
    fate = ""
    if not c.delivered:
        direction = "aws->cgw" if aws_side else "cgw->aws"
        fate = f"Lost: {tname}'s path dropped it" + _loss_detail(ctx.plan(direction, c.t), direction, "esp", c.t, ctx)
    elif not c.peer_alive:
        crashed = [x for x in crashes.get(c.peer, ()) if x <= c.t]
        when = f" (crashed at {_at(crashed[-1])})" if crashed else ""
        fate = f"Not received: the {them}'s {tname} end is down{when}"
        if aws_side:
            later = [r for r in timeouts.get(c.node, ()) if r.t >= c.t]
            if later:
                to = later[0]
                fate += (
                    f". AWS keeps sending on {tname} until its DPD declares the peer dead at {_at(to.t)} "
                    f"(DPDTimeoutAction={to.fields.get('action')})"
                )
    return what, why, fate


def _route_reason(c: Any, sc: Any, tname: str, aws_side: bool) -> str:
    both = c.routes == 3
    if aws_side:
        if sc.routing == "static":
            return (
                f"static routing, active/standby: the TGW's routes to the on-premises network use {tname}, the "
                "first tunnel that is UP"
            )
        if not both:
            return f"{tname} is the only tunnel whose BGP routes the TGW has"
        return f"both tunnels have BGP routes; the TGW's ECMP chose {tname} for this flow"
    if not both:
        return f"{tname} is the only tunnel the CGW has UP"
    if sc.cgw_routing == "ecmp":
        return f"both tunnels are UP; the CGW's ECMP hash chose {tname} for this flow"
    return f"both tunnels are UP; the CGW sends on {tname}, its first (active/standby)"


# ---------------------------------------------------------------------------------------------- comments


def connection_annotations(
    sc: Any, records: Sequence[TraceRecord], captured: Sequence[Any]
) -> tuple[list[Annotation], list[list[Annotation]]]:
    """Every captured datagram explained, in capture order, and each tunnel's IKE annotations (for its sequence
    diagram). :class:`CaptureMismatch` when the capture records and the trace disagree."""
    ctxs = tunnel_contexts(sc)
    per_tunnel = [annotate_vpn(tunnel_records(records, i), ctxs[i]) for i in range(len(sc.tunnels))]
    crashes: dict[str, list[float]] = {}
    timeouts: dict[str, list[TraceRecord]] = {}
    for r in records:
        if r.event == "node_crashed":
            crashes.setdefault(r.node, []).append(r.t)
        elif r.event == "dpd_timeout":
            timeouts.setdefault(r.node, []).append(r)
    taken = [0] * len(per_tunnel)
    out: list[Annotation] = []
    for c in captured:
        i = int(c.node[-1]) - 1
        tname = sc.tunnels[i].name
        if c.kind != "esp":
            anns = per_tunnel[i]
            if taken[i] >= len(anns):
                raise CaptureMismatch(f"{c.node} sent more IKE datagrams than the trace records")
            a = anns[taken[i]]
            taken[i] += 1
            if a.length != c.length or a.kind != c.kind:
                raise CaptureMismatch(
                    f"{c.node} at t={c.t}: the capture has {c.kind} ({c.length} octets), the trace {a.kind} "
                    f"({a.length})"
                )
            out.append(replace(a, index=len(out), node=c.node, peer=c.peer, what=f"[{tname}] {a.what}"))
            continue
        what, why, fate = esp_comment(c, sc, ctxs[i], crashes, timeouts)
        out.append(
            Annotation(
                index=len(out),
                trace_index=-1,
                t=c.t,
                node=c.node,
                peer=c.peer,
                kind="esp",
                src=ctxs[i].addresses["aws" if c.node.startswith("aws") else "cgw"],
                dst=ctxs[i].addresses["cgw" if c.node.startswith("aws") else "aws"],
                length=c.length,
                lost=not c.delivered,
                received=c.delivered and c.peer_alive,
                what=what,
                why=why,
                fate=fate,
                label="ESP",
                seq=c.seq,
            )
        )
    for i, anns in enumerate(per_tunnel):
        if taken[i] != len(anns):
            raise CaptureMismatch(f"tunnel {i + 1}: the trace has {len(anns)} IKE datagrams, the capture {taken[i]}")
    return out, per_tunnel


# ------------------------------------------------------------------------------------------------ summary


def connection_summary(records: Sequence[TraceRecord]) -> str:
    """One line about a connection run: DPD timeouts, the TGW's route changes, each flow's losses."""
    parts = []
    credits = []
    for r in records:
        if r.event == "dpd_timeout":
            parts.append(f"{r.node}: DPD timeout at t={r.t:g} ({r.fields.get('action')})")
        elif r.event == "ec2_credits_exhausted":
            credits.append(
                f"{r.fields.get('instance')} out of burst credits at t={r.t:g} ({r.fields.get('direction')})"
            )
    moves = [r for r in records if r.event == "tgw_routes_changed"]
    if moves:
        parts.append(
            "TGW routes: "
            + ", ".join(
                f"{r.fields.get('tunnel')} {'in' if r.fields.get('up') else 'out'} t={r.t:g}" for r in moves[:6]
            )
            + (", ..." if len(moves) > 6 else "")
        )
    parts += credits
    flows = [r for r in records if r.event == "flow_summary"]
    if flows:
        parts.append(
            "flows: "
            + ", ".join(
                f"{r.fields.get('name')} lost {r.fields.get('lost')}/{r.fields.get('sent')}"
                + (f" (recovered in {float(r.fields.get('time_to_recover') or 0):g} s)" if r.fields.get("lost") else "")
                for r in flows
            )
        )
    return "; ".join(parts)


_FLOW_OF = re.compile(r"flow '[^']*'")


def _selection(annotations: Sequence[Annotation]) -> list[Annotation]:
    """What the page's table shows (the capture explains every packet): every IKE datagram, and an ESP packet
    when its story differs from the previous one its sender sent in the same flow and direction (another
    tunnel, route or fate)."""
    out: list[Annotation] = []
    last: dict[tuple[str, str], str] = {}
    for a in annotations:
        if a.kind == "esp":
            story = re.sub(r"\d+", "#", a.what.split("seq", 1)[0] + a.why + a.fate)
            m = _FLOW_OF.search(a.why)
            key = (a.node, (m.group(0) if m else "") + ("reply" if "reply" in a.why else ""))
            if last.get(key) == story:
                continue
            last[key] = story
        out.append(a)
        if len(out) >= PACKETS_KEPT:
            break
    return out


# -------------------------------------------------------------------------------------------------- files


def write_connection_material(sc: Any, result: Any, out_dir: str) -> dict[str, str]:
    """The material of a connection run, next to what ``sc.run(out_dir)`` wrote (its ``site`` still holds the
    captured datagrams). Returns the paths written, by kind."""
    outputs = dict(getattr(result, "outputs", {}) or {})
    trace_path = outputs.get("trace")
    records = load_trace(trace_path) if trace_path and os.path.exists(trace_path) else list(result.trace)
    site = sc.site
    captured = site.captured if site is not None and site.captured is not None else None
    files: dict[str, str] = {}
    base = os.path.join(out_dir, sc.name)
    problems: list[str] = []
    for k in ("pcap", "keys", "trace", "timeline"):
        if outputs.get(k):
            files["timeline_text" if k == "timeline" else k] = outputs[k]
    annotations: list[Annotation] = []
    per_tunnel: list[list[Annotation]] | None = None
    if captured is None or not outputs.get("pcap"):
        problems.append("no annotated capture: the run kept no record of its datagrams (run it with an output dir)")
    else:
        try:
            annotations, per_tunnel = connection_annotations(sc, records, captured)
            write_annotated_pcapng(
                outputs["pcap"],
                annotations,
                base + ".pcapng",
                title=f"awsnetemu scenario {sc.name}",
                interface="the simulated network between the customer gateway and AWS (virtual time)",
            )
            files["pcapng"] = base + ".pcapng"
        except CaptureMismatch as e:
            problems.append(f"no annotated capture: {e}")
    manifest = {
        "kind": "connection",
        "name": sc.name,
        "description": str(sc.raw.get("description", "")).strip(),
        "duration": float(sc.duration),
        "ok": bool(getattr(result, "ok", True)),
        "scenario": _json_safe(sc.raw),
        "tunnels": [t.name for t in sc.tunnels],
        "contexts": [c.to_json() for c in tunnel_contexts(sc)],
        "options": _options(sc),
        "flow_windows": [(f.name, f.start, f.start + (f.count() - 1) * f.interval) for f in sc.flows if f.count()],
        "expectations": _json_safe(
            [r.to_json() if hasattr(r, "to_json") else dict(r) for r in getattr(result, "results", [])]
        ),
        "status": _json_safe(dict(getattr(result, "status", {}) or {})),
        "summary": connection_summary(records),
        "packets": [a.to_json() for a in _selection(annotations)],
        "packet_count": len(annotations),
        "esp_count": sum(1 for a in annotations if a.kind == "esp"),
        "problems": problems,
    }
    return _draw(out_dir, manifest, records, files, per_tunnel)


def _options(sc: Any) -> dict[str, Any]:
    o: dict[str, Any] = {
        "IKE version": sc.ike_version,
        "routing": f"{sc.routing} (the TGW's VPN attachment {sc.attachment})",
        "CGW routing": sc.cgw_routing,
    }
    for i, t in enumerate(sc.tunnels):
        opts = sc.tunnel_configs[("aws", i)].options
        o[t.name] = (
            f"AWS {t.aws_address} <-> CGW {sc.cgw_address}, inside {t.inside}; StartupAction={opts.startup_action}, "
            f"DPDTimeoutAction={opts.dpd_timeout_action}, DPDTimeoutSeconds={float(opts.dpd_timeout_seconds):g}"
        )
    for f in sc.flows:
        o[f"flow {f.name}"] = (
            f"{f.kind} {f.src_ip} -> {f.dst_ip}, {f.rate:g}/s, {f.size} octets, t={f.start:g}..{f.until:g}"
        )
    return o


def _draw(
    out_dir: str,
    manifest: dict[str, Any],
    records: Sequence[TraceRecord],
    files: dict[str, str],
    per_tunnel: Sequence[Sequence[Annotation]] | None = None,
) -> dict[str, str]:
    """Pictures, manifest and page from a manifest's facts and the trace (shared by the run and the rebuild);
    ``per_tunnel``: each tunnel's IKE annotations when the caller has them already."""
    os.makedirs(out_dir, exist_ok=True)
    name = str(manifest["name"])
    base = os.path.join(out_dir, name)
    tunnels = [str(t) for t in manifest["tunnels"]]
    ctxs = [VpnContext.from_json(c) for c in manifest["contexts"]]
    duration = float(manifest["duration"])
    parts = [tunnel_records(records, i) for i in range(len(tunnels))]
    if per_tunnel is None:
        per_tunnel = [annotate_vpn(parts[i], ctxs[i]) for i in range(len(tunnels))]
    seqs: list[tuple[str, str]] = []
    for i, tname in enumerate(tunnels):
        svg = sequence_svg(per_tunnel[i], parts[i], ctxs[i], title=f"{name}: {tname}")
        files[f"sequence_svg_{i + 1}"] = p = f"{base}-sequence-{tname}.svg"
        with open(p, "w") as f:
            f.write(svg)
        seqs.append((tname, svg))
    windows = [(str(f[0]), float(f[1]), float(f[2])) for f in manifest.get("flow_windows") or []]
    model = connection_timeline_model(records, per_tunnel, tunnels, duration, windows)
    tl_svg, tl_png = plot_timeline(model, name)
    files["timeline_svg"], files["timeline_png"] = base + "-timeline.svg", base + "-timeline.png"
    with open(files["timeline_svg"], "w") as f:
        f.write(tl_svg)
    with open(files["timeline_png"], "wb") as fb:
        fb.write(tl_png)
    files["html"] = base + ".html"
    files["manifest"] = base + "-run.json"
    manifest["files"] = {k: os.path.relpath(v, out_dir) for k, v in files.items()}
    with open(files["manifest"], "w") as f:
        json.dump(manifest, f, indent=1)
    flows = [dict(r.fields) for r in records if r.event == "flow_summary"]
    page = connection_page(
        name=name,
        description=str(manifest.get("description") or manifest.get("summary", "")),
        ok=manifest.get("ok"),
        scenario_yaml=yaml.safe_dump(manifest.get("scenario") or {}, sort_keys=False, allow_unicode=True),
        options=manifest.get("options") or {},
        expectations=manifest.get("expectations") or [],
        status=manifest.get("status") or {},
        flows=flows,
        timeline_png=tl_png,
        timeline_svg_path=files["timeline_svg"],
        sequence_svgs=seqs,
        files=files,
        base=out_dir,
        annotations=manifest.get("packets") or [],
        packet_count=int(manifest.get("packet_count") or 0),
        esp_count=int(manifest.get("esp_count") or 0),
        ike_version=int(ctxs[0].ike_version) if ctxs else 1,
        events_text=_events_text(records),
        problems=manifest.get("problems") or [],
    )
    with open(files["html"], "w") as f:
        f.write(page)
    return files


def rebuild_connection(manifest: Mapping[str, Any], out_dir: str) -> dict[str, str]:
    """Redo a connection run's pictures and page from its manifest and trace (the annotated capture stays)."""
    man = dict(manifest)
    rel = dict(man.get("files") or {})
    files = {k: os.path.join(out_dir, v) for k, v in rel.items() if k not in ("html", "manifest")}
    files = {k: v for k, v in files.items() if not k.startswith("sequence_svg") and k not in _PICTURES}
    trace = files.get("trace") or os.path.join(out_dir, str(man["name"]) + ".jsonl")
    records = load_trace(trace)
    return _draw(out_dir, man, records, files)
