"""Self-contained HTML pages: everything inline (CSS, SVG, PNG as a data URI), no script, nothing fetched.

A page links to the run's files (captures, key tables, trace) by relative paths and shows the tshark commands
that open them, so the page, the files and the commands move together as one directory.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

CSS = """
body{font-family:DejaVu Sans,Helvetica,Arial,sans-serif;margin:0;color:#222;background:#fafafa}
header{background:#263238;color:#fff;padding:14px 24px}
header h1{margin:0;font-size:22px}
header p{margin:6px 0 0;color:#cfd8dc;max-width:70em}
main{padding:12px 24px 40px;max-width:1500px}
section{background:#fff;border:1px solid #e0e0e0;border-radius:6px;margin:14px 0;padding:10px 16px}
h2{font-size:17px;margin:6px 0 10px}
table{border-collapse:collapse;font-size:13px}
td,th{border:1px solid #e0e0e0;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f5f5f5}
.ok{color:#2e7d32;font-weight:bold}.fail{color:#c62828;font-weight:bold}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;font-size:13px;margin-left:10px}
.badge.ok{background:#e8f5e9}.badge.fail{background:#ffebee}
pre{background:#f5f5f5;padding:8px;overflow-x:auto;font-size:12px}
code{font-size:12px}
.diagram{overflow-x:auto}
img.timeline{max-width:100%;height:auto}
tr.lost td{color:#c62828}
tr.notrecv td{color:#777}
small{color:#666}
"""


def _page(title: str, subtitle: str, body: str, ok: bool | None = None) -> str:
    badge = ""
    if ok is not None:
        badge = f'<span class="badge {"ok" if ok else "fail"}">{"expectations hold" if ok else "FAILED"}</span>'
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<title>{escape(title)}</title><meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<style>{CSS}</style></head><body><header><h1>{escape(title)}{badge}</h1>"
        f"<p>{escape(subtitle)}</p></header><main>{body}</main></body></html>\n"
    )


def _svg_inline(svg: str) -> str:
    # An inline SVG inside HTML needs no XML prolog; the documents we make have none.
    return f'<div class="diagram">{svg}</div>'


def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _link(path: str | None, base: str, text: str | None = None) -> str:
    if not path:
        return ""
    rel = os.path.relpath(path, base)
    return f'<a href="{escape(rel)}">{escape(text or rel)}</a>'


def _expectations(rows: Sequence[Mapping[str, Any]]) -> str:
    if not rows:
        return "<p>No expectations.</p>"
    out = ["<table><tr><th></th><th>expectation</th><th>result</th></tr>"]
    for r in rows:
        ok = bool(r.get("ok"))
        exp = r.get("expectation", {})
        text = ", ".join(f"{k}={v}" for k, v in exp.items()) if isinstance(exp, Mapping) else str(exp)
        out.append(
            f'<tr><td class="{"ok" if ok else "fail"}">{"holds" if ok else "FAILED"}</td>'
            f"<td><code>{escape(text)}</code></td><td>{escape(str(r.get('detail', '')))}</td></tr>"
        )
    out.append("</table>")
    return "".join(out)


def tshark_commands(
    name: str, pcapng: str, keys: str | None, base: str, ike_version: int, *, esp: bool = False
) -> list[tuple[str, str]]:
    """(what it shows, command) pairs, with paths relative to ``base`` (the page's directory)."""
    cap = shlex.quote(os.path.relpath(pcapng, base))
    env = f"WIRESHARK_CONFIG_DIR={shlex.quote(os.path.relpath(keys, base))} " if keys else ""
    out = [
        (
            "every packet with its comment (what it is, why then)",
            f"tshark -r {cap} -T fields -e frame.number -e frame.time_relative -e ip.src -e ip.dst -e frame.comment",
        ),
    ]
    if ike_version == 1:
        out.append(
            (
                "the decrypted DPD notifies (36136 R-U-THERE, 36137 R-U-THERE-ACK) with their sequence numbers",
                f"{env}tshark -r {cap} -Y isakmp.exchangetype==5 -T fields -e frame.number "
                "-e isakmp.notify.msgtype -e isakmp.notify.data.dpd.are_you_there "
                "-e isakmp.notify.data.dpd.are_you_there_ack",
            )
        )
    else:
        out.append(
            (
                "the decrypted IKEv2 INFORMATIONAL exchanges (empty ones are liveness checks)",
                f"{env}tshark -r {cap} -Y isakmp.exchangetype==37 -T fields -e frame.number -e isakmp.messageid "
                "-e isakmp.flags -e isakmp.nextpayload",
            )
        )
    if esp:
        out.append(
            (
                "the ESP packets decrypted with the esp_sa table: SPI, sequence number, then the outer and the inner "
                "addresses",
                f"{env}tshark -r {cap} -Y esp -T fields -E occurrence=a -e frame.number -e esp.spi -e esp.sequence "
                "-e ip.src -e ip.dst -e udp.dstport",
            )
        )
    out.append(("the whole dissection, decrypted", f"{env}tshark -r {cap} -V"))
    out.append(("in Wireshark (the comments appear under each packet)", f"{env}wireshark {cap}"))
    return out


def _problems(problems: Sequence[str]) -> list[str]:
    """A page's sections so far: the problems section when there are any."""
    if not problems:
        return []
    items = "".join(f"<li>{escape(p)}</li>" for p in problems)
    return [f'<section id="problems"><h2 class="fail">Problems</h2><ul>{items}</ul></section>']


def _options_section(title: str, options: Mapping[str, Any], scenario_yaml: str) -> str:
    opts = "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>" for k, v in options.items())
    return (
        f"<section><h2>{escape(title)}</h2>"
        f"<table>{opts}</table><details><summary>scenario file</summary><pre>{escape(scenario_yaml)}</pre>"
        "</details></section>"
    )


def _expectations_section(expectations: Sequence[Mapping[str, Any]], status: Mapping[str, Any]) -> str:
    st = "".join(
        f"<tr><th>{escape(n)}</th><td>{escape(json.dumps(s, default=str))}</td></tr>" for n, s in status.items()
    )
    return (
        f"<section><h2>Expectations</h2>{_expectations(expectations)}"
        + (f"<p>Tunnel status at the end:</p><table>{st}</table>" if st else "")
        + "</section>"
    )


def _timeline_section(name: str, png: bytes, svg_path: str | None, base: str, caption: str = "") -> str:
    svg_link = _link(svg_path, base, "SVG") if svg_path else ""
    return (
        '<section id="timeline"><h2>Timeline</h2>'
        + (f"<p><small>{escape(caption)}</small></p>" if caption else "")
        + f'<img class="timeline" alt="timeline of {escape(name)}" src="{_png_data_uri(png)}">'
        + (f"<p><small>Also as {svg_link}.</small></p>" if svg_link else "")
        + "</section>"
    )


def _events_section(events_text: str) -> str:
    return (
        "<section><h2>Events</h2><details><summary>every event but datagrams and keys</summary><pre>"
        f"{escape(events_text)}</pre></details></section>"
    )


def vpn_page(
    *,
    name: str,
    description: str,
    ok: bool | None,
    scenario_yaml: str,
    options: Mapping[str, Any],
    expectations: Sequence[Mapping[str, Any]],
    status: Mapping[str, Any],
    sequence_svg: str,
    timeline_png: bytes,
    timeline_svg_path: str | None,
    paths_svg: str | None,
    files: Mapping[str, str],
    base: str,
    annotations: Sequence[Mapping[str, Any]],
    ike_version: int,
    events_text: str,
    problems: Sequence[str] = (),
) -> str:
    """The page of one VPN scenario run."""
    b = _problems(problems)
    b.append(_options_section("The scenario and its options", options, scenario_yaml))
    b.append(_expectations_section(expectations, status))
    b.append(
        '<section id="sequence"><h2>Sequence diagram</h2><p><small>Hover over an arrow for the packet\'s full '
        "comment. Time gaps are compressed and labelled; long runs of routine DPD exchanges are folded.</small></p>"
        f"{_svg_inline(sequence_svg)}</section>"
    )
    b.append(_timeline_section(name, timeline_png, timeline_svg_path, base))
    if paths_svg:
        b.append(f'<section id="paths"><h2>TGW probes: the path of each packet</h2>{_svg_inline(paths_svg)}</section>')
    b.append(_files_section(name, files, base, ike_version))
    b.append(_packets_table(annotations))
    b.append(_events_section(events_text))
    return _page(name, description, "".join(b), ok)


def _files_section(name: str, files: Mapping[str, str], base: str, ike_version: int, *, esp: bool = False) -> str:
    labels = {
        "pcapng": "annotated capture (pcapng, a comment on every packet)",
        "pcap": "plain capture (classic pcap)",
        "keys": "Wireshark key tables (directory)",
        "trace": "event trace (JSON lines)",
        "timeline_text": "text timeline",
        "sequence_svg": "sequence diagram (SVG)",
        "timeline_svg": "timeline (SVG)",
        "timeline_png": "timeline (PNG)",
        "paths_svg": "TGW paths (SVG)",
        "sequence_svg_1": "sequence diagram of the first tunnel (SVG)",
        "sequence_svg_2": "sequence diagram of the second tunnel (SVG)",
        "hops": "per-hop captures (directory)",
        "path_pcapng": "every hop of every packet (pcapng, one interface per capture point)",
    }
    rows = "".join(
        f"<tr><th>{escape(labels.get(k, k))}</th><td>{_link(v, base)}</td></tr>"
        for k, v in files.items()
        if v and k not in ("html", "manifest") and os.path.exists(v)
    )
    cmds = ""
    if files.get("pcapng"):
        items = tshark_commands(name, files["pcapng"], files.get("keys"), base, ike_version, esp=esp)
        cmds = "<p>From this page's directory:</p>" + "".join(
            f"<p>{escape(what)}:</p><pre>{escape(cmd)}</pre>" for what, cmd in items
        )
    return f'<section id="files"><h2>Captures and files</h2><table>{rows}</table>{cmds}</section>'


def connection_page(
    *,
    name: str,
    description: str,
    ok: bool | None,
    scenario_yaml: str,
    options: Mapping[str, Any],
    expectations: Sequence[Mapping[str, Any]],
    status: Mapping[str, Any],
    flows: Sequence[Mapping[str, Any]],
    timeline_png: bytes,
    timeline_svg_path: str | None,
    sequence_svgs: Sequence[tuple[str, str]],
    files: Mapping[str, str],
    base: str,
    annotations: Sequence[Mapping[str, Any]],
    packet_count: int,
    esp_count: int,
    ike_version: int,
    events_text: str,
    problems: Sequence[str] = (),
) -> str:
    """The page of one VPN connection run: two tunnels, the TGW and the traffic through them."""
    b = _problems(problems)
    b.append(_options_section("The connection and its traffic", options, scenario_yaml))
    head = "".join(
        f"<th>{h}</th>"
        for h in ("flow", "kind", "sent", "delivered", "lost", "outages", "longest outage (s)", "lost where", "via")
    )
    rows = []
    for f in flows:
        drops = ", ".join(f"{k}: {v}" for k, v in dict(f.get("drops") or {}).items()) or "-"
        via = ", ".join(f"{k}: {v}" for k, v in dict(f.get("via") or {}).items()) or "-"
        cls = "fail" if f.get("lost") else "ok"
        rows.append(
            f'<tr class="flow"><td>{escape(str(f.get("name")))}</td><td>{escape(str(f.get("kind")))}</td>'
            f'<td>{f.get("sent")}</td><td>{f.get("delivered")}</td><td class="{cls}">{f.get("lost")}</td>'
            f"<td>{f.get('outages')}</td><td>{float(f.get('time_to_recover') or 0):g}</td>"
            f"<td>{escape(drops)}</td><td>{escape(via)}</td></tr>"
        )
    b.append(
        '<section id="flows"><h2>Traffic</h2><p><small>Per flow: packets sent and delivered end to end, the '
        "outages (consecutive packets lost) and where the lost ones died; <em>via</em> counts the packets each "
        "tunnel carried from each side.</small></p>"
        f"<table><tr>{head}</tr>{''.join(rows)}</table></section>"
    )
    b.append(_expectations_section(expectations, status))
    b.append(
        _timeline_section(
            name,
            timeline_png,
            timeline_svg_path,
            base,
            "Each tunnel's two ends, the TGW's routes over each tunnel, and each flow: when its packets arrived and "
            "when they were lost.",
        )
    )
    for tname, svg in sequence_svgs:
        b.append(
            f'<section id="sequence-{escape(tname)}" class="sequence"><h2>Sequence diagram: {escape(tname)}</h2>'
            "<p><small>The IKE and DPD exchanges of this tunnel; its ESP packets are in the capture, each with a "
            "comment. Hover over an arrow for the packet's full comment.</small></p>"
            f"{_svg_inline(svg)}</section>"
        )
    b.append(_files_section(name, files, base, ike_version, esp=True))
    b.append(
        f"<p><small>The capture holds {packet_count} packets: {packet_count - esp_count} IKE datagrams and "
        f"{esp_count} ESP packets.</small></p>"
    )
    b.append(_packets_table(annotations, total=packet_count, selection=True))
    b.append(_events_section(events_text))
    return _page(name, description, "".join(b), ok)


def _packets_table(
    annotations: Sequence[Mapping[str, Any]], limit: int = 400, total: int | None = None, selection: bool = False
) -> str:
    head = (
        "<h2>Packets, explained</h2><p><small>Every IKE datagram, and an ESP packet each time the story changes "
        "(another flow, tunnel, route or fate); the capture has a comment on every one of its packets, in the same "
        "words. # is the packet's number in the capture.</small></p>"
        if selection
        else "<h2>Every packet, explained</h2><p><small>The same text is each packet's comment in the pcapng "
        "capture.</small></p>"
    )
    out = [f'<section id="packets">{head}<table><tr><th>#</th><th>t (s)</th><th>from → to</th><th>comment</th></tr>']
    for a in annotations[:limit]:
        cls = "lost" if a.get("lost") else ("notrecv" if not a.get("received") else "")
        out.append(
            f'<tr class="{cls}"><td>{int(a["index"]) + 1}</td><td>{float(a["t"]):.6f}</td>'
            f"<td>{escape(str(a['node']))} → {escape(str(a.get('peer') or '?'))}</td>"
            f"<td>{escape(str(a['comment']))}</td></tr>"
        )
    out.append("</table>")
    total = len(annotations) if total is None else total
    if selection:
        out.append(f"<p>{min(limit, len(annotations))} of {total} packets shown: see the capture for all.</p>")
    elif total > min(limit, len(annotations)):
        out.append(f"<p>… and {total - min(limit, len(annotations))} more: see the capture.</p>")
    out.append("</section>")
    return "".join(out)


def tgw_page(
    *,
    name: str,
    description: str,
    ok: bool | None,
    story_yaml: str,
    expectations: Sequence[Mapping[str, Any]],
    paths_svg: str,
    files: Mapping[str, str],
    base: str,
    comments: Sequence[tuple[str, str]],
) -> str:
    """The page of one TGW story."""
    b = [
        f"<section><h2>The story</h2><pre>{escape(story_yaml)}</pre></section>",
        f"<section><h2>Expectations</h2>{_expectations(expectations)}</section>",
        f'<section id="paths"><h2>The path of each packet</h2>{_svg_inline(paths_svg)}</section>',
    ]
    rows = "".join(
        f"<tr><th>{escape(k)}</th><td>{_link(v, base)}</td></tr>"
        for k, v in files.items()
        if v and k not in ("html", "manifest") and os.path.exists(v)
    )
    cmd = ""
    if files.get("path_pcapng"):
        cap = shlex.quote(os.path.relpath(files["path_pcapng"], base))
        cmd = (
            "<p>Every hop with its comment and capture point:</p><pre>"
            + escape(
                f"tshark -r {cap} -T fields -e frame.number -e frame.interface_name -e ip.src -e ip.dst "
                "-e ip.ttl -e frame.comment"
            )
            + "</pre>"
        )
    b.append(f'<section id="files"><h2>Captures</h2><table>{rows}</table>{cmd}</section>')
    rows2 = "".join(f"<tr><td>{escape(p)}</td><td>{escape(c)}</td></tr>" for p, c in comments)
    b.append(
        '<section id="packets"><h2>Every capture, explained</h2><table><tr><th>capture point</th><th>comment</th>'
        f"</tr>{rows2}</table></section>"
    )
    return _page(name, description, "".join(b), ok)


def index_page(title: str, intro: str, entries: Sequence[Mapping[str, Any]], base: str) -> str:
    """The index: one row per run (name, kind, verdict, what happened, link)."""
    rows = []
    for e in entries:
        ok = e.get("ok")
        verdict = "" if ok is None else (f'<span class="{"ok" if ok else "fail"}">{"holds" if ok else "FAILED"}</span>')
        rows.append(
            f"<tr><td>{escape(str(e.get('topic', '')))}</td><td>{_link(e.get('html'), base, str(e.get('name')))}</td>"
            f"<td>{escape(str(e.get('kind', '')))}</td><td>{verdict}</td>"
            f"<td>{escape(str(e.get('summary', '')))}</td></tr>"
        )
    body = (
        f"<section><p>{escape(intro)}</p><table><tr><th>topic</th><th>run</th><th>kind</th><th>expectations</th>"
        f"<th>what happened</th></tr>{''.join(rows)}</table></section>"
    )
    return _page(title, "", body, None)
