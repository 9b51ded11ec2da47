"""Teaching material for a finished run: an annotated pcapng, a sequence diagram, a timeline, TGW path diagrams
and one self-contained HTML page, plus an index page for a directory of runs.

The entry points:

* :func:`write_material` (VPN scenario runs): call it after ``Scenario.run(out_dir)`` has written the run's
  capture, trace and key tables into ``out_dir``. It adds ``NAME.pcapng`` (every packet commented),
  ``NAME-sequence.svg``, ``NAME-timeline.svg`` / ``.png``, ``NAME-run.json`` (what a report needs to be
  redone later) and ``NAME.html``, and returns their paths.
* :func:`write_tgw_material` (TGW stories, :mod:`emulator.report.tgw`): per-hop annotated captures, the path
  diagram and the page.
* :func:`rebuild` (``awsnetemu report DIR``): the pages of every run found in a directory, from the files
  alone, and :func:`write_index`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import yaml

from emulator.annotate import (
    Annotation,
    CaptureMismatch,
    VpnContext,
    annotate_vpn,
    load_trace,
    write_annotated_pcapng,
    write_hop_pcapngs,
)
from emulator.report.html import index_page, tgw_page, vpn_page
from emulator.report.sequence import sequence_svg
from emulator.report.tgw import PacketResult, TgwStoryResult, hops_from_names, paths_svg
from emulator.report.timeline import plot_timeline, timeline_model
from emulator.trace import TraceRecord

__all__ = ["rebuild", "summarize", "write_index", "write_material", "write_tgw_material", "write_vpn_material"]

OPTION_KEYS = ("IKEVersions", "StartupAction", "DPDTimeoutSeconds", "DPDTimeoutAction")


def summarize(records: Sequence[TraceRecord], names: Mapping[str, str] | None = None) -> str:
    """One line about what happened in a VPN run, from its events."""
    names = names or {"aws": "AWS", "cgw": "CGW"}
    parts = []
    for node in ("aws", "cgw"):
        mine = [r for r in records if r.node == node]
        probes = sum(1 for r in mine if r.event == "dpd_request_sent")
        acks = sum(1 for r in mine if r.event == "dpd_ack_received")
        ups = [r.t for r in mine if r.event == "tunnel_up"]
        downs = [r for r in mine if r.event == "tunnel_down"]
        tos = [r for r in mine if r.event == "dpd_timeout"]
        bits = []
        if ups:
            bits.append("UP at " + ", ".join(f"t={t:g}" for t in ups[:3]) + (", ..." if len(ups) > 3 else ""))
        if probes:
            bits.append(f"{probes} probe{'s' if probes != 1 else ''}, {acks} answered")
        for to in tos:
            bits.append(f"DPD timeout at t={to.t:g} ({to.fields.get('action')})")
        if downs:
            bits.append(f"DOWN at t={downs[-1].t:g}")
        if any(r.event == "node_crashed" for r in mine):
            bits.append("crashed")
        if bits:
            parts.append(f"{names.get(node, node)}: " + ", ".join(bits))
    flows = [r for r in records if r.event == "tgw_flow"]
    if flows:
        parts.append("TGW probes: " + ", ".join(f"{r.fields.get('name')} {r.fields.get('verdict')}" for r in flows))
    return "; ".join(parts)


def _events_text(records: Sequence[TraceRecord]) -> str:
    lines = []
    for r in records:
        if r.event in ("datagram_sent", "sa_keys"):
            continue
        extra = " ".join(f"{k}={v}" for k, v in r.fields.items())
        lines.append(f"{r.t:12.6f}  {r.node:<4} {r.event:<22} {extra}".rstrip())
    return "\n".join(lines) + "\n"


def _json_safe(x: Any) -> Any:
    return json.loads(json.dumps(x, default=str))


def _tgw_probe_paths(records: Sequence[TraceRecord]) -> list[PacketResult]:
    out = []
    for r in records:
        if r.event != "tgw_flow":
            continue
        hops = hops_from_names(r.fields.get("hops") or [])
        reason = str(r.fields.get("reason") or "")
        verdict = str(r.fields.get("verdict", ""))
        if verdict != "delivered" and hops and hops[-1].get("kind") != "drop":
            # tgw_flow names the nodes only; the last name is the drop record's node, where the packet died
            last = hops.pop()
            if not hops or hops[-1].get("node") != last["node"]:
                hops.append(dict(last))
            hops.append({"node": last["node"], "kind": "drop", "reason": reason})
        elif verdict != "delivered" and not hops:
            hops = [{"node": "?", "kind": "drop", "reason": reason}]
        out.append(
            PacketResult(str(r.fields.get("name")), r.t, str(r.fields.get("flow")), "probe", "", verdict, reason, hops)
        )
    return out


def write_vpn_material(
    out_dir: str,
    *,
    name: str,
    records: Sequence[TraceRecord],
    ctx: VpnContext,
    duration: float,
    pcap: str | None,
    keys: str | None,
    trace_path: str | None,
    raw: Mapping[str, Any] | None = None,
    expectations: Sequence[Mapping[str, Any]] = (),
    status: Mapping[str, Any] | None = None,
    ok: bool | None = None,
    extra_files: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Everything for one VPN run from its parts (used by :func:`write_material` and :func:`rebuild`)."""
    os.makedirs(out_dir, exist_ok=True)
    anns: list[Annotation] = annotate_vpn(records, ctx)
    files: dict[str, str] = {}
    base = os.path.join(out_dir, name)
    problems: list[str] = []
    if pcap and os.path.exists(pcap):
        files["pcap"] = pcap
        try:
            write_annotated_pcapng(pcap, anns, base + ".pcapng", title=f"awsnetemu scenario {name}")
            files["pcapng"] = base + ".pcapng"
        except CaptureMismatch as e:
            # a capture and a trace that disagree get no comments rather than wrong ones; the page says why
            problems.append(f"no annotated capture: {e}")
    if keys:
        files["keys"] = keys
    if trace_path:
        files["trace"] = trace_path
    for k, v in (extra_files or {}).items():
        files.setdefault(k, v)
    seq = sequence_svg(anns, records, ctx, title=name)
    files["sequence_svg"] = base + "-sequence.svg"
    with open(files["sequence_svg"], "w") as f:
        f.write(seq)
    model = timeline_model(records, anns, ctx, duration)
    tl_svg, tl_png = plot_timeline(model, name)
    files["timeline_svg"] = base + "-timeline.svg"
    files["timeline_png"] = base + "-timeline.png"
    with open(files["timeline_svg"], "w") as f:
        f.write(tl_svg)
    with open(files["timeline_png"], "wb") as fb:
        fb.write(tl_png)
    probes = _tgw_probe_paths(records)
    psvg = None
    if probes:
        psvg = paths_svg(probes, f"{name}: TGW probes")
        files["paths_svg"] = base + "-paths.svg"
        with open(files["paths_svg"], "w") as f:
            f.write(psvg)
    raw = dict(raw or {})
    tunnel = dict(raw.get("tunnel") or {})
    options: dict[str, Any] = {"IKE version": ctx.ike_version}
    for k in OPTION_KEYS:
        options[k] = tunnel.get(k, "(default)")
    options["in force"] = (
        f"StartupAction={ctx.startup_action}, DPDTimeoutAction={ctx.dpd_timeout_action}, "
        f"DPDTimeoutSeconds={ctx.dpd_timeout_seconds:g}, DPD delay AWS {ctx.dpd_delay.get('aws', 10):g} s / "
        f"CGW {ctx.dpd_delay.get('cgw', 10):g} s"
    )
    for k, v in tunnel.items():
        if k not in OPTION_KEYS:
            options[k] = v
    for side in ("aws", "cgw"):
        if raw.get(side):
            options[side] = raw[side]
    if raw.get("links"):
        options["links"] = raw["links"]
    if raw.get("schedule"):
        options["schedule"] = raw["schedule"]
    files["html"] = base + ".html"
    manifest = {
        "kind": "vpn",
        "name": name,
        "description": str(raw.get("description", "")).strip(),
        "duration": duration,
        "ok": ok,
        "scenario": _json_safe(raw),
        "context": ctx.to_json(),
        "expectations": _json_safe(list(expectations)),
        "status": _json_safe(dict(status or {})),
        "files": {k: os.path.relpath(v, out_dir) for k, v in files.items()},
        "summary": summarize(records, ctx.names),
        "problems": problems,
    }
    files["manifest"] = base + "-run.json"
    with open(files["manifest"], "w") as f:
        json.dump(manifest, f, indent=1)
    page = vpn_page(
        name=name,
        description=manifest["description"] or manifest["summary"],
        ok=ok,
        scenario_yaml=(
            yaml.safe_dump(_json_safe(raw), sort_keys=False, allow_unicode=True)
            if raw
            else "(no scenario file recorded)"
        ),
        options=options,
        expectations=manifest["expectations"],
        status=manifest["status"],
        sequence_svg=seq,
        timeline_png=tl_png,
        timeline_svg_path=files["timeline_svg"],
        paths_svg=psvg,
        files=files,
        base=out_dir,
        annotations=[a.to_json() for a in anns],
        ike_version=ctx.ike_version,
        events_text=_events_text(records),
        problems=problems,
    )
    with open(files["html"], "w") as f:
        f.write(page)
    return files


def write_material(scenario: Any, result: Any, out_dir: str) -> dict[str, str]:
    """The teaching material of one scenario run, next to the files ``scenario.run(out_dir)`` wrote.

    ``scenario`` is an :class:`emulator.scenario.Scenario`, ``result`` its :class:`ScenarioResult` (with
    ``outputs`` naming the pcap, the JSON-lines trace and the key directory). The trace is read from the JSONL
    file when there is one (the in-memory trace otherwise). Returns the paths written, by kind. A VPN connection
    scenario (two tunnels, the TGW, traffic) gets :func:`emulator.report.connection.write_connection_material`."""
    if getattr(scenario, "conn", None) is not None and hasattr(scenario, "tunnels"):
        from emulator.report.connection import write_connection_material

        return write_connection_material(scenario, result, out_dir)
    outputs = dict(getattr(result, "outputs", {}) or {})
    trace_path = outputs.get("trace")
    if trace_path and os.path.exists(trace_path):
        records: Sequence[TraceRecord] = load_trace(trace_path)
    else:
        records = list(result.trace)
    ctx = VpnContext.from_scenario(scenario)
    exps = [r.to_json() if hasattr(r, "to_json") else dict(r) for r in getattr(result, "results", [])]
    extra = {k: v for k, v in outputs.items() if k == "timeline"}
    return write_vpn_material(
        out_dir,
        name=str(scenario.name),
        records=records,
        ctx=ctx,
        duration=float(scenario.duration),
        pcap=outputs.get("pcap"),
        keys=outputs.get("keys"),
        trace_path=trace_path,
        raw=scenario.raw,
        expectations=exps,
        status=getattr(result, "status", {}),
        ok=bool(getattr(result, "ok", True)),
        extra_files={"timeline_text": extra["timeline"]} if "timeline" in extra else None,
    )


def write_tgw_material(res: TgwStoryResult, out_dir: str) -> dict[str, str]:
    """A TGW story's captures (``NAME-hops/<point>.pcapng`` and ``NAME-hops/path.pcapng``), path diagram,
    manifest and page."""
    os.makedirs(out_dir, exist_ok=True)
    base = os.path.join(out_dir, res.name)
    files: dict[str, str] = {}
    caps = write_hop_pcapngs(res.captures, base + "-hops")
    files["path_pcapng"] = caps.pop("*")
    files["path_pcap"] = caps.pop("pcap")
    files["hops"] = base + "-hops"
    svg = paths_svg(res.packets, res.name, res.changes)
    files["paths_svg"] = base + "-paths.svg"
    with open(files["paths_svg"], "w") as f:
        f.write(svg)
    raw = dict(res.raw)
    files["html"] = base + ".html"
    manifest = {
        "kind": "tgw",
        "name": res.name,
        "description": res.description,
        "ok": res.ok,
        "story": _json_safe(raw),
        "packets": [p.to_json() for p in res.packets],
        "changes": res.changes,
        "expectations": _json_safe(res.expectations),
        "comments": [(c.capture, c.comment) for c in res.captures],
        "files": {k: os.path.relpath(v, out_dir) for k, v in files.items()},
        "summary": tgw_summary(res.packets),
    }
    files["manifest"] = base + "-run.json"
    with open(files["manifest"], "w") as f:
        json.dump(manifest, f, indent=1)
    _write_tgw_page(manifest, svg, files, out_dir)
    return files


def tgw_summary(packets: Sequence[PacketResult]) -> str:
    def firewall(p: PacketResult) -> str:
        fw = [h.get("node") for h in p.hops if "firewall" in str(h.get("kind")) and h.get("kind") != "drop"]
        return f" via {fw[0]}" if fw else ""

    return "; ".join(f"{p.name}: {p.verdict}{firewall(p)}" + (f" ({p.reason})" if p.reason else "") for p in packets)


def _write_tgw_page(manifest: Mapping[str, Any], svg: str, files: Mapping[str, str], out_dir: str) -> None:
    story = dict(manifest.get("story") or {})
    source = story.pop("_source", None)
    page = tgw_page(
        name=str(manifest["name"]),
        description=str(manifest.get("description") or manifest.get("summary", "")),
        ok=manifest.get("ok"),
        story_yaml=str(source) if source else yaml.safe_dump(story, sort_keys=False, allow_unicode=True),
        expectations=manifest.get("expectations") or [],
        paths_svg=svg,
        files=files,
        base=out_dir,
        comments=[(str(a), str(b)) for a, b in manifest.get("comments") or []],
    )
    with open(files["html"], "w") as f:
        f.write(page)


def write_index(out_dir: str, entries: Sequence[Mapping[str, Any]] | None = None, title: str = "awsnetemu runs") -> str:
    """``index.html`` in ``out_dir``: one row per run. Without ``entries``, every ``*-run.json`` below
    ``out_dir`` is listed."""
    if entries is None:
        entries = []
        for m in _manifests(out_dir):
            d = os.path.dirname(m)
            with open(m) as f:
                man = json.load(f)
            entries.append(
                {
                    "name": man.get("name"),
                    "kind": {"tgw": "TGW", "connection": "VPN + TGW"}.get(str(man.get("kind")), "VPN"),
                    "ok": man.get("ok"),
                    "summary": man.get("summary", ""),
                    "html": os.path.join(d, str(man.get("files", {}).get("html", man.get("name", "") + ".html"))),
                }
            )
    path = os.path.join(out_dir, "index.html")
    intro = "Each page explains one run: its sequence diagram, timeline or packet paths, and its annotated captures."
    with open(path, "w") as f:
        f.write(index_page(title, intro, entries, out_dir))
    return path


def _manifests(out_dir: str) -> list[str]:
    found = []
    for root, _dirs, names in os.walk(out_dir):
        for n in sorted(names):
            if n.endswith("-run.json"):
                found.append(os.path.join(root, n))
    return sorted(found)


def rebuild(out_dir: str) -> list[dict[str, str]]:
    """Redo the material of every run found in ``out_dir`` (and below): runs with a ``NAME-run.json`` manifest,
    and bare ``NAME.jsonl`` traces with a ``NAME.pcap`` next to them (as ``awsnetemu run --out`` writes; the
    page then lacks the scenario and its expectations). Writes the index; returns the files of each run."""
    done: list[dict[str, str]] = []
    seen: set[str] = set()
    for m in _manifests(out_dir):
        d = os.path.dirname(m)
        with open(m) as f:
            man = json.load(f)
        name = str(man["name"])
        seen.add(os.path.join(d, name))
        rel = man.get("files", {})

        def p(key: str, rel: Mapping[str, str] = rel, d: str = d) -> str | None:
            return os.path.join(d, rel[key]) if key in rel else None

        if man.get("kind") == "connection":
            from emulator.report.connection import rebuild_connection

            done.append(rebuild_connection(man, d))
            continue
        if man.get("kind") == "tgw":
            packets = [PacketResult(**x) for x in man.get("packets") or []]
            svg = paths_svg(packets, name, [(float(a), str(b)) for a, b in man.get("changes") or []])
            files = {k: os.path.join(d, v) for k, v in rel.items()}
            files["html"] = os.path.join(d, name + ".html")
            with open(files["paths_svg"], "w") as f:
                f.write(svg)
            _write_tgw_page(man, svg, files, d)
            done.append(files)
            continue
        trace = p("trace") or os.path.join(d, name + ".jsonl")
        records = load_trace(trace)
        ctx = VpnContext.from_json(man.get("context") or {})
        done.append(
            write_vpn_material(
                d,
                name=name,
                records=records,
                ctx=ctx,
                duration=float(man.get("duration") or (records[-1].t if records else 1.0)),
                pcap=p("pcap"),
                keys=p("keys"),
                trace_path=trace,
                raw=man.get("scenario") or {},
                expectations=man.get("expectations") or [],
                status=man.get("status") or {},
                ok=man.get("ok"),
            )
        )
    for root, _dirs, names in os.walk(out_dir):
        for n in sorted(names):
            if not n.endswith(".jsonl"):
                continue
            stem = os.path.join(root, n[: -len(".jsonl")])
            if stem in seen or not os.path.exists(stem + ".pcap"):
                continue
            records = load_trace(stem + ".jsonl")
            ctx = _guess_context(records)
            keys = stem + "-keys"
            done.append(
                write_vpn_material(
                    root,
                    name=os.path.basename(stem),
                    records=records,
                    ctx=ctx,
                    duration=max((r.t for r in records), default=1.0),
                    pcap=stem + ".pcap",
                    keys=keys if os.path.isdir(keys) else None,
                    trace_path=stem + ".jsonl",
                )
            )
    write_index(out_dir)
    return done


def _guess_context(records: Sequence[TraceRecord]) -> VpnContext:
    """A context for a bare trace: addresses from the datagrams, the IKE version from the keys events."""
    ctx = VpnContext()
    for r in records:
        if r.event == "datagram_sent" and r.node in ("aws", "cgw"):
            ctx.addresses[r.node] = str(r.fields.get("src", "")).rsplit(":", 1)[0]
        if r.event == "sa_keys":
            ctx.ike_version = int(r.fields.get("ike_version", 1))
    return ctx
